"""The SegFix network: its targets (mapper or in-model), losses against a direct computation,
inference outputs, evaluator, and a short train + evaluate through train_net.py."""

import json

import numpy as np
import pytest
import torch
from conftest import QUICKSTART, RANDOM_WEIGHTS, REPO_ROOT, TINY_OCR, load_script, make_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from PIL import Image
from torch.nn import functional as F

from panoptic_ocr.config import setup_cfg
from panoptic_ocr.data.dataset_mappers import SegFixDatasetMapper
from panoptic_ocr.engine import Trainer
from panoptic_ocr.evaluation import SegFixEvaluator
from panoptic_ocr.modeling.meta_arch import SegFixModel
from panoptic_ocr.segfix import segfix_targets
from panoptic_ocr.segfix.loss import balanced_weights, segfix_losses

CONFIG = "configs/toy_scenes/segfix_R18_toy_scenes_600it.yaml"
SMALL = ["MODEL.SEGFIX.MID_CHANNELS", "16", "MODEL.WEIGHTS", ""]


def _model(opts=()):
    cfg = make_cfg(CONFIG, SMALL + list(opts))
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEGFIX.NORM = "BN"
    torch.manual_seed(0)
    return build_model(cfg), cfg


def _without_segfix(cfg):
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.SEGFIX.WEIGHTS = ""
    plain.OUTPUT_DIR = cfg.OUTPUT_DIR + "_plain"
    plain.freeze()
    return plain


def _label(size=(48, 64)):
    label = torch.zeros(size, dtype=torch.long)
    label[10:30, 8:40] = 1
    label[20:44, 30:60] = 2
    label[:3, :5] = 255
    return label


def _weights(target, k):
    valid = target[target != 255]
    counts = torch.tensor([(valid == c).sum() for c in range(k)], dtype=torch.float)
    return 1 - counts / counts.sum()


def test_losses_are_balanced_cross_entropies_of_the_label_targets():
    model, _ = _model()
    label = _label()
    inputs = [{"image": torch.rand(3, 48, 64) * 255, "sem_seg": label}]
    with EventStorage():
        losses = model(inputs)
    assert set(losses) == {"loss_segfix_boundary", "loss_segfix_direction"}
    sum(losses.values()).backward()
    assert model.direction_head[1].weight.grad.abs().sum() > 0
    # the same from the targets computed directly (no padding: 48x64 is a multiple of 16)
    boundary, direction, _ = segfix_targets(label.numpy(), 255, 5)
    boundary, direction = torch.from_numpy(boundary).long(), torch.from_numpy(direction).long()
    with torch.no_grad():
        model.eval()  # the same weights; BN on running statistics in both passes
        b_logits, d_logits = model.predict(
            (inputs[0]["image"][None] - model.pixel_mean) / model.pixel_std
        )
        b_logits = F.interpolate(b_logits, size=(48, 64), mode="bilinear", align_corners=True)
        d_logits = F.interpolate(d_logits, size=(48, 64), mode="bilinear", align_corners=True)
        got = model.losses(inputs, b_logits, d_logits)
    expected_b = F.cross_entropy(
        b_logits, boundary[None], weight=_weights(boundary, 2), ignore_index=255
    )
    expected_d = F.cross_entropy(
        d_logits, direction[None], weight=_weights(direction, 8), ignore_index=255
    )
    torch.testing.assert_close(got["loss_segfix_boundary"], expected_b)
    torch.testing.assert_close(got["loss_segfix_direction"], expected_d)
    # openseg's masking: directions only where the boundary is also predicted
    model.direction_pixels = "ground_truth_and_predicted"
    forced = b_logits.clone()
    forced[:, 1, :, :32] = forced[:, 0, :, :32] + 5  # predicted boundary: the left half only
    forced[:, 1, :, 32:] = forced[:, 0, :, 32:] - 5
    kept = direction.clone()
    kept[:, 32:] = 255
    assert (kept != 255).any() and (kept != direction).any()
    expected = F.cross_entropy(d_logits, kept[None], weight=_weights(kept, 8), ignore_index=255)
    torch.testing.assert_close(
        model.losses(inputs, forced, d_logits)["loss_segfix_direction"], expected
    )


def test_mapper_targets_are_the_labels_targets_and_the_model_uses_them():
    cfg = make_cfg(CONFIG)
    mapper = SegFixDatasetMapper(cfg, True)
    record = mapper(DatasetCatalog.get("toy_scenes_sem_seg_train")[0])
    boundary, direction, _ = segfix_targets(record["sem_seg"].numpy(), 255, 5)
    assert np.array_equal(record["segfix_boundary"].numpy(), boundary)
    assert np.array_equal(record["segfix_direction"].numpy(), direction)
    assert (boundary == 1).any() and set(np.unique(direction)) - {255}
    model, _ = _model()
    got_b, got_d = model.targets(record)
    assert got_b is record["segfix_boundary"] and got_d is record["segfix_direction"]


def test_inference_outputs_and_the_evaluator(tmp_path):
    model, cfg = _model()
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 45, 61) * 255, "height": 30, "width": 40}])
    assert out["segfix_boundary"].shape == (30, 40) and out["segfix_direction"].shape == (8, 30, 40)
    assert 0 <= out["segfix_boundary"].min() and out["segfix_boundary"].max() <= 1
    # the evaluator scores perfect predictions 100 and their complement 0
    records = DatasetCatalog.get("toy_scenes_sem_seg_val")[:2]
    evaluator = SegFixEvaluator("toy_scenes_sem_seg_val", distributed=False)
    outputs = []
    for r in records:
        label = np.asarray(Image.open(r["sem_seg_file_name"])).astype(np.int64)
        boundary, direction, _ = segfix_targets(label, 255, 5)
        outputs.append(
            {
                "segfix_boundary": torch.from_numpy((boundary == 1).astype(np.float32)),
                "segfix_direction": F.one_hot(
                    torch.from_numpy(direction.astype(np.int64)).clamp(max=7), 8
                )
                .permute(2, 0, 1)
                .float(),
            }
        )
    evaluator.reset()
    evaluator.process(records, outputs)
    result = evaluator.evaluate()["segfix"]
    assert result["boundary_F"] == pytest.approx(100.0) and result[
        "direction_accuracy"
    ] == pytest.approx(100.0)
    evaluator.reset()
    evaluator.process(
        records, [{**o, "segfix_boundary": 1 - o["segfix_boundary"]} for o in outputs]
    )
    assert evaluator.evaluate()["segfix"]["boundary_F"] == 0.0


def test_train_net_trains_and_evaluates_segfix(tmp_path, quiet_setup_logger):
    train_net = load_script("train_net.py")
    args = train_net.argument_parser().parse_args(
        [
            "--config-file",
            str(REPO_ROOT / CONFIG),
            *SMALL,
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.SEGFIX.NORM",
            "BN",
            "INPUT.CROP.SIZE",
            "(64, 64)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "3",
            "SOLVER.WARMUP_ITERS",
            "0",
            "DATALOADER.NUM_WORKERS",
            "0",
            "INPUT.MIN_SIZE_TEST",
            "96",
            "INPUT.MAX_SIZE_TEST",
            "96",
            "OUTPUT_DIR",
            str(tmp_path),
        ]
    )
    train_net.run(args)
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert any("loss_segfix_direction" in r for r in records)
    evaluated = [r for r in records if "segfix/boundary_F" in r]
    assert evaluated and 0 <= evaluated[-1]["segfix/boundary_F"] <= 100

    # ... and refines a segmentation model's evaluation through MODEL.SEGFIX.WEIGHTS
    segmentor = setup_cfg(
        str(REPO_ROOT / QUICKSTART),
        RANDOM_WEIGHTS
        + TINY_OCR
        + [
            "MODEL.SEGFIX.WEIGHTS",
            str(tmp_path / "model_final.pth"),
            "MODEL.SEGFIX.CONFIG",
            str(tmp_path / "config.yaml"),
            "INPUT.MIN_SIZE_TEST",
            "96",
            "INPUT.MAX_SIZE_TEST",
            "96",
            "OUTPUT_DIR",
            str(tmp_path / "refined"),
        ],
    )
    torch.manual_seed(0)
    model = build_model(segmentor)
    refined = Trainer.test(segmentor, model)["sem_seg"]
    plain = Trainer.test(_without_segfix(segmentor), model)["sem_seg"]
    assert refined["num_images"] == plain["num_images"] == 40
    assert 0 <= refined["mIoU"] <= 100 and refined != plain
    assert isinstance(build_model(make_cfg(CONFIG, SMALL)), SegFixModel)


def test_balanced_weights_of_a_one_class_target_keep_the_loss_finite():
    everywhere = torch.ones(1, 8, 8, dtype=torch.long)  # every pixel is boundary
    assert torch.equal(balanced_weights(everywhere, 2), torch.ones(2))
    assert torch.allclose(
        balanced_weights(torch.tensor([0, 0, 0, 1]), 2), torch.tensor([0.25, 0.75])
    )
    losses = segfix_losses(
        torch.randn(1, 2, 8, 8),
        torch.randn(1, 8, 8, 8),
        everywhere,
        torch.zeros(1, 8, 8, dtype=torch.long),
    )
    assert all(torch.isfinite(v) for v in losses.values())
