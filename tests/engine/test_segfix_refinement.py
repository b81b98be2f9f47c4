"""SegFix applied to another model's predictions: inside the pipeline (``MODEL.SEGFIX.WEIGHTS``,
through the inference builder) and offline (``tools/segfix_refine.py``), with a SegFix model
whose predictions are known: every pixel a boundary, every direction (0, +1), so that each
pixel takes the prediction 2 pixels to its right (clamped at the image's right edge)."""

import shutil

import numpy as np
import pytest
import torch
from conftest import QUICKSTART, RANDOM_WEIGHTS, REPO_ROOT, TINY_OCR, load_tool, make_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
from PIL import Image

from panoptic_ocr.config import setup_cfg
from panoptic_ocr.export import export_model
from panoptic_ocr.modeling.inference import build_inference_model
from panoptic_ocr.modeling.segfix_refinement import SegFixRefinement
from panoptic_ocr.modeling.test_time_augmentation import SemanticSegmentorWithTTA

SEGFIX = "configs/toy_scenes/segfix_R18_toy_scenes_600it.yaml"


def _shift_left_by_two(x: np.ndarray) -> np.ndarray:
    """What the known SegFix model does: ``out[..., j] = x[..., min(j + 2, W - 1)]``."""
    index = np.minimum(np.arange(x.shape[-1]) + 2, x.shape[-1] - 1)
    return x[..., index]


@pytest.fixture(scope="module")
def segfix_weights(tmp_path_factory):
    """A SegFix checkpoint whose heads ignore the image: boundary everywhere, direction bin 4."""
    cfg = make_cfg(SEGFIX, ["MODEL.WEIGHTS", ""])
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEGFIX.NORM = "BN"
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for head, channel in ((model.boundary_head, 1), (model.direction_head, 4)):
            head[0].norm.weight.zero_()
            head[0].norm.bias.fill_(1.0)  # BN output 1, ReLU 1: a constant feature
            head[1].weight.zero_()
            head[1].weight[channel] = 1.0 / head[1].weight.shape[1]
        model.boundary_head[1].weight[0] = -1.0 / model.boundary_head[1].weight.shape[1]
    path = tmp_path_factory.mktemp("segfix") / "segfix.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def _segmentor_cfg(segfix_weights, *opts):
    return setup_cfg(
        str(REPO_ROOT / QUICKSTART),
        RANDOM_WEIGHTS
        + TINY_OCR
        + ["MODEL.SEGFIX.WEIGHTS", segfix_weights, "MODEL.SEGFIX.CONFIG", str(REPO_ROOT / SEGFIX)]
        + list(opts),
    )


def test_the_inference_builder_refines_sem_seg(segfix_weights):
    cfg = _segmentor_cfg(segfix_weights)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    refined_model = build_inference_model(cfg, model)
    assert isinstance(refined_model, SegFixRefinement) and refined_model.model is model
    assert build_inference_model(cfg, model, refine=False) is model
    inputs = [{"image": torch.rand(3, 48, 64) * 255, "height": 48, "width": 64}]
    with torch.no_grad():
        plain = model(inputs)[0]["sem_seg"].numpy()
        refined = refined_model(inputs)[0]["sem_seg"].numpy()
    np.testing.assert_array_equal(refined, _shift_left_by_two(plain))
    assert not np.array_equal(refined, plain)
    # TTA around the segmentor is refined too (the wrapper is outermost)
    tta_cfg = _segmentor_cfg(segfix_weights, "TEST.AUG.SCALES", "(1.0,)", "TEST.AUG.FLIP", "True")
    tta = SemanticSegmentorWithTTA.from_config(tta_cfg, model)
    wrapped = build_inference_model(tta_cfg, tta)
    assert isinstance(wrapped, SegFixRefinement) and wrapped.model is tta
    with torch.no_grad():
        expected = _shift_left_by_two(tta(inputs)[0]["sem_seg"].numpy())
        np.testing.assert_array_equal(wrapped(inputs)[0]["sem_seg"].numpy(), expected)


def test_panoptic_fpn_semantic_branch_is_refined_and_merged_again(segfix_weights):
    cfg = setup_cfg(
        str(REPO_ROOT / "configs/toy_scenes/panoptic_fpn_ocr_R18_toy_scenes_600it.yaml"),
        RANDOM_WEIGHTS
        + ["MODEL.SEGFIX.WEIGHTS", segfix_weights, "MODEL.SEGFIX.CONFIG", str(REPO_ROOT / SEGFIX)]
        + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    refined_model = build_inference_model(cfg, model)
    assert isinstance(refined_model, SegFixRefinement) and refined_model.combine == {
        "overlap_threshold": model.combine_overlap_thresh,
        "stuff_area_thresh": model.combine_stuff_area_thresh,
        "instances_score_thresh": model.combine_instances_score_thresh,
    }
    image = torch.from_numpy(
        np.asarray(Image.open(DatasetCatalog.get("toy_scenes_sem_seg_val")[0]["file_name"]))
    )
    inputs = [{"image": image.permute(2, 0, 1).float(), "height": 96, "width": 128}]
    with torch.no_grad():
        plain = model(inputs)[0]
        refined = refined_model(inputs)[0]
    np.testing.assert_array_equal(
        refined["sem_seg"].numpy(), _shift_left_by_two(plain["sem_seg"].numpy())
    )
    # instances are not refined
    assert torch.equal(refined["instances"].pred_masks, plain["instances"].pred_masks)
    expected = combine_semantic_and_instance_outputs(
        plain["instances"],
        refined["sem_seg"].argmax(dim=0),
        model.combine_overlap_thresh,
        model.combine_stuff_area_thresh,
        model.combine_instances_score_thresh,
    )
    assert torch.equal(refined["panoptic_seg"][0], expected[0])
    assert refined["panoptic_seg"][1] == expected[1]
    stuff_plain = plain["panoptic_seg"][0] != refined["panoptic_seg"][0]
    assert stuff_plain.any()  # the merged output follows the refined semantic map


def test_refinement_is_refused_where_it_cannot_apply(segfix_weights, tmp_path):
    cfg = _segmentor_cfg(segfix_weights)
    with pytest.raises(ValueError, match="export it with MODEL.SEGFIX.WEIGHTS"):
        export_model(cfg, str(tmp_path / "m.onnx"), "onnx")
    assert not (tmp_path / "m.onnx").exists()
    no_config = _segmentor_cfg(segfix_weights, "MODEL.SEGFIX.CONFIG", "")
    with pytest.raises(ValueError, match="MODEL.SEGFIX.CONFIG is empty"):
        build_inference_model(no_config, build_model(no_config).eval())
    wrong = _segmentor_cfg(segfix_weights, "MODEL.SEGFIX.CONFIG", str(REPO_ROOT / QUICKSTART))
    with pytest.raises(ValueError, match="not a SegFixModel one"):
        build_inference_model(wrong, build_model(wrong).eval())


def test_offline_tool_refines_a_folder_of_another_models_labels(segfix_weights, tmp_path, run_main):
    records = DatasetCatalog.get("toy_scenes_sem_seg_val")[:2]
    images, predictions = tmp_path / "images", tmp_path / "predictions"
    images.mkdir(), predictions.mkdir()
    originals = {}
    for r in records:
        shutil.copy(r["file_name"], images)
        stem = r["file_name"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        label = np.asarray(Image.open(r["sem_seg_file_name"])).astype(np.uint16) * 1000  # any ids
        Image.fromarray(label).save(predictions / f"{stem}_sem_seg.png")
        originals[stem] = label
    tool = load_tool("segfix_refine").main
    out = tmp_path / "refined"
    argv = ["--config-file", REPO_ROOT / SEGFIX, "--images", images, "--predictions", predictions]
    argv += ["--output", out, "--suffix", "_sem_seg", "MODEL.WEIGHTS", segfix_weights]
    status, stdout, stderr = run_main(tool, argv)
    assert status == 0, stderr
    assert "refined 2 prediction(s)" in stdout
    for stem, label in originals.items():
        refined = np.asarray(Image.open(out / f"{stem}_sem_seg.png"))
        assert refined.dtype == label.dtype
        np.testing.assert_array_equal(refined, _shift_left_by_two(label))
    # an existing output is kept; a missing prediction is named
    before = (out / f"{stem}_sem_seg.png").read_bytes()
    status, _, stderr = run_main(tool, argv)
    assert status == 2 and "already exists" in stderr
    assert (out / f"{stem}_sem_seg.png").read_bytes() == before
    (predictions / f"{stem}_sem_seg.png").unlink()
    status, _, stderr = run_main(tool, argv[:-2] + ["--overwrite", "MODEL.WEIGHTS", segfix_weights])
    assert status == 2 and f"{stem}_sem_seg.png" in stderr and "1 of 2 images" in stderr
