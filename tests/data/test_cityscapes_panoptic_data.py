"""Cityscapes panoptic for Panoptic-FPN on the shared real frame: the prepare script, the
registered records and training instances, and the evaluation of one run (PQ, the branch's and
the merged output's mIoU, instance AP), which scores the ground truth 100 and agrees with
cityscapesScripts' own panoptic evaluation."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, SHARED_DATA, load_script, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluators
from detectron2.structures import BitMasks, Instances
from detectron2.utils.env import seed_all_rng
from PIL import Image

from panoptic_ocr.data.dataset_mappers.panoptic_instances_dataset_mapper import (
    PanopticInstancesDatasetMapper,
)
from panoptic_ocr.data.datasets.register_cityscapes import CITYSCAPES_LABEL_ID_TO_TRAIN_ID
from panoptic_ocr.data.datasets.register_cityscapes_panoptic import (
    get_cityscapes_panoptic_separated_meta,
    register_cityscapes_panoptic,
)
from panoptic_ocr.data.datasets.register_coco_panoptic import read_panoptic_png
from panoptic_ocr.engine.trainer import build_evaluator
from panoptic_ocr.evaluation import CityscapesPanopticSemSegEvaluator, COCOPanopticSubmissionWriter

SAMPLE = SHARED_DATA / "cityscapes"
STEM = "frankfurt_000000_000294"
CONFIG = "configs/cityscapes/panoptic/panoptic_fpn_ocr_R_50_24k.yaml"
pytestmark = pytest.mark.skipif(
    not (SAMPLE / "gtFine" / "val").is_dir(), reason="shared Cityscapes sample (../shared/data)"
)
prepare = load_script("datasets/prepare_cityscapes_panoptic.py")


def _copy_sample(root: Path) -> Path:
    """The shared val frame in a Cityscapes tree at ``root/cityscapes`` (prepare writes there)."""
    cityscapes = root / "cityscapes"
    for part in ("gtFine", "leftImg8bit"):
        shutil.copytree(SAMPLE / part / "val", cityscapes / part / "val")
    return cityscapes


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes_panoptic")
    cityscapes = _copy_sample(root)
    assert prepare.main(["--root", str(cityscapes), "--splits", "val"]) == 0
    return root


@pytest.fixture
def val_name(prepared, fresh_prefix):
    register_cityscapes_panoptic(str(prepared), prefix=fresh_prefix)
    return f"{fresh_prefix}_fine_panoptic_separated_val"


def _class_of_pixels(instance_ids: np.ndarray) -> np.ndarray:
    """Label id of each pixel of a ``*_gtFine_instanceIds.png`` (k-th instance: id * 1000 + k)."""
    return np.where(instance_ids >= 1000, instance_ids // 1000, instance_ids)


# --------------------------------------------------------------------------------------------
# Prepare
# --------------------------------------------------------------------------------------------


def test_prepare_writes_cityscapesscripts_panoptic_files_and_separated_labels(prepared):
    gt = prepared / "cityscapes" / "gtFine"
    data = json.loads((gt / "cityscapes_panoptic_val.json").read_text())
    assert [im["id"] for im in data["images"]] == [STEM]
    # cityscapesScripts' categories: the 19 evaluated classes, Cityscapes label ids.
    evaluated = sorted(i for i, t in CITYSCAPES_LABEL_ID_TO_TRAIN_ID.items() if t != 255)
    assert sorted(c["id"] for c in data["categories"]) == evaluated
    assert {c["id"] for c in data["categories"] if c["isthing"]} == {24, 25, 26, 27, 28, 31, 32, 33}

    instance_ids = np.array(Image.open(gt / "val" / "frankfurt" / f"{STEM}_gtFine_instanceIds.png"))
    ids = read_panoptic_png(str(gt / "cityscapes_panoptic_val" / f"{STEM}_gtFine_panoptic.png"))
    evaluated_pixels = np.isin(_class_of_pixels(instance_ids), evaluated)
    np.testing.assert_array_equal(ids, np.where(evaluated_pixels, instance_ids, 0))

    # Separated labels: every thing pixel (crowds included) -> 0, stuff -> train id + 1, else 255.
    train_ids = np.vectorize(lambda i: CITYSCAPES_LABEL_ID_TO_TRAIN_ID.get(int(i), 255))(
        _class_of_pixels(instance_ids)
    )
    expected = np.where(train_ids >= 11, 0, train_ids + 1)
    expected[train_ids == 255] = 255
    separated = Image.open(gt / "cityscapes_panoptic_stuff_val" / f"{STEM}_gtFine_panoptic.png")
    assert separated.mode == "L"
    np.testing.assert_array_equal(np.array(separated), expected)
    assert set(np.unique(expected)) >= {0, 1, 255}


def test_prepare_is_rerunnable_and_resumes_an_interrupted_run(tmp_path, capsys):
    cityscapes = _copy_sample(tmp_path)
    argv = ["--root", str(cityscapes), "--splits", "val"]
    assert prepare.main(argv) == 0
    gt = cityscapes / "gtFine"
    json_time = (gt / "cityscapes_panoptic_val.json").stat().st_mtime_ns
    capsys.readouterr()
    assert prepare.main(argv) == 0
    assert "Already prepared" in capsys.readouterr().out
    # A run stopped after the panoptic files: the next one writes only the separated labels.
    shutil.rmtree(gt / "cityscapes_panoptic_stuff_val")
    assert prepare.main(argv) == 0
    assert "1 separated labels" in capsys.readouterr().out
    assert (gt / "cityscapes_panoptic_val.json").stat().st_mtime_ns == json_time
    assert (gt / "cityscapes_panoptic_stuff_val" / f"{STEM}_gtFine_panoptic.png").is_file()
    assert prepare.main(argv + ["--overwrite"]) == 0
    assert (gt / "cityscapes_panoptic_val.json").stat().st_mtime_ns > json_time
    assert not [p for p in gt.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_prepare_refuses_an_instance_file_without_its_image_and_writes_nothing(tmp_path, capsys):
    cityscapes = _copy_sample(tmp_path)
    (cityscapes / "leftImg8bit" / "val" / "frankfurt" / f"{STEM}_leftImg8bit.png").unlink()
    assert prepare.main(["--root", str(cityscapes), "--splits", "val"]) == 1
    err = capsys.readouterr().err
    assert f"{STEM}_gtFine_instanceIds.png" in err and f"{STEM}_leftImg8bit.png" in err
    assert sorted(p.name for p in (cityscapes / "gtFine").iterdir()) == ["val"]


def test_prepare_refuses_an_image_of_another_size(tmp_path, capsys):
    cityscapes = _copy_sample(tmp_path)
    image = cityscapes / "leftImg8bit" / "val" / "frankfurt" / f"{STEM}_leftImg8bit.png"
    Image.open(image).resize((128, 64)).save(image)
    assert prepare.main(["--root", str(cityscapes), "--splits", "val"]) == 1
    assert "is 256x128 but its image" in capsys.readouterr().err
    assert sorted(p.name for p in (cityscapes / "gtFine").iterdir()) == ["val"]


# --------------------------------------------------------------------------------------------
# Registration, records, training instances
# --------------------------------------------------------------------------------------------


def test_metadata_is_detectron2s_cityscapes_classes_in_separated_form():
    meta = get_cityscapes_panoptic_separated_meta()
    assert (
        meta["thing_classes"]
        == MetadataCatalog.get("cityscapes_fine_instance_seg_val").thing_classes
    )
    assert meta["stuff_classes"][0] == "things" and len(meta["stuff_classes"]) == 12
    assert (
        meta["stuff_classes"][1:]
        == MetadataCatalog.get("cityscapes_fine_sem_seg_val").stuff_classes[:11]
    )
    assert meta["thing_dataset_id_to_contiguous_id"][24] == 0  # person
    assert meta["stuff_dataset_id_to_contiguous_id"] == {
        0: 0, 7: 1, 8: 2, 11: 3, 12: 4, 13: 5, 17: 6, 19: 7, 20: 8, 21: 9, 22: 10, 23: 11
    }  # fmt: skip
    # Registered for Panoptic-FPN beside Detectron2's merged cityscapes_fine_panoptic_* (kept).
    for split in ("train", "val"):
        assert f"cityscapes_fine_panoptic_separated_{split}" in DatasetCatalog.list()
        assert MetadataCatalog.get(f"cityscapes_fine_panoptic_{split}").stuff_classes[0] == "road"


def test_records_have_contiguous_segments_and_the_mapper_makes_the_thing_instances(val_name):
    (record,) = DatasetCatalog.get(val_name)
    assert record["image_id"] == STEM and (record["height"], record["width"]) == (128, 256)
    assert Path(record["sem_seg_file_name"]).parent.name == "cityscapes_panoptic_stuff_val"
    things = [s for s in record["segments_info"] if s["isthing"]]
    assert things and all(0 <= s["category_id"] < 8 for s in things)
    assert all(1 <= s["category_id"] <= 11 for s in record["segments_info"] if not s["isthing"])

    cfg = make_cfg(CONFIG, ["INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.RANDOM_FLIP", "none"])
    seed_all_rng(0)
    mapped = PanopticInstancesDatasetMapper(cfg, is_train=True)(record)
    instances = mapped["instances"]
    non_crowd = [s for s in things if not s.get("iscrowd")]
    assert sorted(instances.gt_classes.tolist()) == sorted(s["category_id"] for s in non_crowd)
    ids = read_panoptic_png(record["pan_seg_file_name"])
    expected = sorted(int((ids == s["id"]).sum()) for s in non_crowd)
    assert sorted(instances.gt_masks.tensor.sum(dim=(1, 2)).tolist()) == expected
    assert set(mapped["sem_seg"].unique().tolist()) <= set(range(12)) | {255}
    assert "annotations" not in record  # the record itself is not modified

    with pytest.raises(ValueError, match="INPUT.MASK_FORMAT 'bitmask'"):
        PanopticInstancesDatasetMapper(make_cfg(CONFIG, ["INPUT.MASK_FORMAT", "polygon"]), True)


def test_missing_panoptic_files_and_unannotated_images_are_named(tmp_path, fresh_prefix):
    cityscapes = _copy_sample(tmp_path)
    register_cityscapes_panoptic(str(tmp_path), prefix=fresh_prefix)
    name = f"{fresh_prefix}_fine_panoptic_separated_val"
    with pytest.raises(
        FileNotFoundError, match="cityscapes_panoptic_val.json.*prepare_cityscapes_panoptic"
    ):
        DatasetCatalog.get(name)
    assert prepare.main(["--root", str(cityscapes), "--splits", "val"]) == 0
    extra = (
        cityscapes / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000295_leftImg8bit.png"
    )
    shutil.copy(extra.with_name(f"{STEM}_leftImg8bit.png"), extra)
    with pytest.raises(FileNotFoundError, match="frankfurt_000000_000295.*--overwrite"):
        DatasetCatalog.get(name)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _ground_truth_outputs(record, drop_segment=None):
    """The ground truth in Panoptic-FPN's output form: panoptic ids and segments (crowds void),
    semantic scores of the separated labels, and the non-crowd thing instances (score 1).
    ``drop_segment``: the id of a segment left out (its pixels void, no instance)."""
    ids = torch.from_numpy(read_panoptic_png(record["pan_seg_file_name"]))
    segments = []
    for s in record["segments_info"]:
        if s.get("iscrowd") or s["id"] == drop_segment:
            ids[ids == s["id"]] = 0
        else:
            segments.append(
                {"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"]}
            )
    separated = torch.from_numpy(np.array(Image.open(record["sem_seg_file_name"]), dtype=np.int64))
    scores = torch.nn.functional.one_hot(separated.clamp(max=11), 12).permute(2, 0, 1).float()
    things = [s for s in segments if s["isthing"]]
    instances = Instances((record["height"], record["width"]))
    instances.pred_masks = torch.stack([ids == s["id"] for s in things])
    instances.pred_classes = torch.tensor([s["category_id"] for s in things])
    instances.scores = torch.ones(len(things))
    instances.pred_boxes = BitMasks(instances.pred_masks).get_bounding_boxes()
    inputs = {k: record[k] for k in ("file_name", "image_id", "height", "width")}
    return inputs, {"panoptic_seg": (ids, segments), "sem_seg": scores, "instances": instances}


def _evaluate(evaluator, records, **kwargs):
    evaluator.reset()
    for record in records:
        inputs, outputs = _ground_truth_outputs(record, **kwargs)
        evaluator.process([inputs], [outputs])
    return evaluator.evaluate()


def test_ground_truth_as_prediction_scores_100_in_every_metric_of_the_run(val_name, tmp_path):
    evaluator = build_evaluator(make_cfg(CONFIG), val_name, str(tmp_path / "eval"))
    assert isinstance(evaluator, DatasetEvaluators)
    results = _evaluate(evaluator, DatasetCatalog.get(val_name))
    for key in ("PQ", "PQ_th", "PQ_st", "SQ", "RQ"):
        assert results["panoptic_seg"][key] == pytest.approx(100.0), key
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)  # the branch, 12 separated classes
    merged = results["panoptic_sem_seg"]
    assert merged["mIoU"] == pytest.approx(100.0) and merged["num_images"] == 1
    assert (
        "IoU-car" in merged and "IoU-road" in merged and not any("unassigned" in k for k in merged)
    )
    assert results["segm"]["AP"] == pytest.approx(100.0)  # cityscapesScripts' instance AP
    assert not (REPO_ROOT / "matches.json").exists() and not Path("matches.json").exists()


def test_merged_miou_counts_pixels_left_void_as_wrong(val_name):
    (record,) = DatasetCatalog.get(val_name)
    car = next(s for s in record["segments_info"] if s["isthing"] and s["category_id"] == 2)
    evaluator = CityscapesPanopticSemSegEvaluator(val_name)
    merged = _evaluate(evaluator, [record], drop_segment=car["id"])["panoptic_sem_seg"]
    # The dropped car's pixels are void in the output: missed car pixels, no false positive.
    ids = read_panoptic_png(record["pan_seg_file_name"])
    cars = [s for s in record["segments_info"] if s["isthing"] and s["category_id"] == 2]
    car_pixels = sum(int((ids == s["id"]).sum()) for s in cars)
    label_ids = np.array(
        Image.open(
            Path(MetadataCatalog.get(val_name).gt_dir) / "frankfurt" / f"{STEM}_gtFine_labelIds.png"
        )
    )
    gt_car_pixels = int((label_ids == 26).sum())
    kept = car_pixels - int((ids == car["id"]).sum())
    assert merged["IoU-car"] == pytest.approx(100.0 * kept / gt_car_pixels)
    assert merged["IoU-car"] < 100.0 and merged["IoU-road"] == pytest.approx(100.0)


def test_pq_agrees_with_cityscapesscripts_on_the_submission_files(val_name, tmp_path):
    """Detectron2's COCOPanopticEvaluator (the run's PQ) and cityscapesScripts'
    evalPanopticSemanticLabeling, reading the submission writer's JSON and PNGs, agree on an
    imperfect prediction (a car left out)."""
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    records = DatasetCatalog.get(val_name)
    car = next(s for s in records[0]["segments_info"] if s["isthing"] and s["category_id"] == 2)
    ours = _evaluate(
        build_evaluator(make_cfg(CONFIG), val_name, str(tmp_path / "eval")),
        records,
        drop_segment=car["id"],
    )["panoptic_seg"]
    assert 0 < ours["PQ_th"] < 100
    writer = COCOPanopticSubmissionWriter(
        val_name, str(tmp_path / "submission"), split_tag="cityscapes_val"
    )
    assert _evaluate(writer, records, drop_segment=car["id"]) == {
        "panoptic_submission": {"num_images": 1.0}
    }
    meta = MetadataCatalog.get(val_name)
    theirs = evaluatePanoptic(
        meta.panoptic_json,
        meta.panoptic_root,
        str(writer.json_path),
        str(writer.png_dir),
        str(tmp_path / "result.json"),
    )
    for their_group, our_suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        for metric in ("pq", "sq", "rq"):
            assert ours[metric.upper() + our_suffix] == pytest.approx(
                100 * theirs[their_group][metric], abs=1e-9
            )
    assert writer.zip_path.is_file()


def test_test_split_is_a_submission_with_the_json_image_ids(tmp_path, fresh_prefix):
    images = tmp_path / "cityscapes" / "leftImg8bit" / "test" / "berlin"
    images.mkdir(parents=True)
    shutil.copy(
        SAMPLE / "leftImg8bit" / "val" / "frankfurt" / f"{STEM}_leftImg8bit.png",
        images / "berlin_000000_000019_leftImg8bit.png",
    )
    register_cityscapes_panoptic(str(tmp_path), prefix=fresh_prefix)
    name = f"{fresh_prefix}_fine_panoptic_separated_test_submission"
    assert [r["image_id"] for r in DatasetCatalog.get(name)] == ["berlin_000000_000019"]
    writer = build_evaluator(make_cfg(CONFIG), name, str(tmp_path / "out"))
    assert isinstance(writer, COCOPanopticSubmissionWriter)
    assert writer.json_path.name == "panoptic_cityscapes_test_panoptic_ocr_results.json"
    assert os.path.dirname(writer.json_path) == str(tmp_path / "out")
