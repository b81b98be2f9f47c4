"""Every listed image is evaluated: images and labels pair one to one (or, with allow_unpaired,
the images used are counted and logged), and the evaluator records how many images it scored."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUICKSTART, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg
from PIL import Image

from panoptic_ocr.data.datasets import register_sem_seg_folder
from panoptic_ocr.data.datasets.register_ade20k import register_ade20k
from panoptic_ocr.data.datasets.register_custom import register_sem_seg_folders_from_json
from panoptic_ocr.data.datasets.sem_seg_loaders import UnpairedDatasetError, load_sem_seg_paired
from panoptic_ocr.engine import Trainer
from panoptic_ocr.evaluation import CheckedSemSegEvaluator, IncompleteEvaluationError

CLASSES = ["a", "b", "c"]


def _folder(root: Path, stems, image_ext=".jpg", label_ext=".png", size=(12, 16)):
    """Tiny images and labels (class 0 top half, 1 bottom half) for ``stems``; returns the two
    folders."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    label = np.zeros(size, np.uint8)
    label[size[0] // 2 :] = 1
    for stem in stems:
        Image.fromarray(np.full(size + (3,), 90, np.uint8)).save(images / f"{stem}{image_ext}")
        Image.fromarray(label).save(labels / f"{stem}{label_ext}")
    return images, labels


@pytest.fixture
def registered():
    """Names registered by a test, removed after it."""
    names = []
    yield names
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


class _Background(torch.nn.Module):
    """Predicts class 0 everywhere, at each input's original size."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs):
        return [{"sem_seg": torch.zeros(self.num_classes, x["height"], x["width"])} for x in inputs]


def _test(tmp_path, name, num_classes=3):
    cfg = make_cfg(
        QUICKSTART,
        [
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            str(num_classes),
            "DATASETS.TEST",
            f'("{name}",)',
            "DATALOADER.NUM_WORKERS",
            "0",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
    )
    return Trainer.test(cfg, _Background(num_classes))


# ---------------------------------------------------------------------------------------------
# Pairing
# ---------------------------------------------------------------------------------------------


def test_paired_folders_give_detectron2s_records(tmp_path):
    images, labels = _folder(tmp_path, ["b_2", "a_10", "a_9", "c.1"])
    ours = load_sem_seg_paired(str(labels), str(images), gt_ext="png", image_ext="jpg")
    assert ours == load_sem_seg(str(labels), str(images), gt_ext="png", image_ext="jpg")
    assert [Path(r["file_name"]).name for r in ours] == [
        "a_10.jpg",
        "a_9.jpg",
        "b_2.jpg",
        "c.1.jpg",
    ]
    assert load_sem_seg_paired(str(labels), str(images), gt_ext=".png", image_ext=".jpg") == ours


def test_same_counts_but_other_stems_are_not_zipped_together(tmp_path):
    # Detectron2 zips two sorted lists of equal length: 'x' would be scored against 'y''s label.
    images, labels = _folder(tmp_path, ["x"])
    (labels / "x.png").rename(labels / "y.png")
    with pytest.raises(
        UnpairedDatasetError,
        match=r"1 of 1 image\(s\) have no label, 1 of 1 label\(s\) have no image",
    ):
        load_sem_seg_paired(str(labels), str(images))


def test_custom_folder_with_labels_deleted_errors(tmp_path, registered):
    stems = [f"img_{i}" for i in range(6)]
    images, labels = _folder(tmp_path, stems)
    for stem in stems[3:]:
        (labels / f"{stem}.png").unlink()
    register_sem_seg_folder("test_pairing_custom", str(images), str(labels), CLASSES)
    registered.append("test_pairing_custom")
    with pytest.raises(UnpairedDatasetError) as e:  # was: scored over the 3 images left
        DatasetCatalog.get("test_pairing_custom")
    assert isinstance(e.value, FileNotFoundError)
    assert str(e.value) == (
        f"Dataset 'test_pairing_custom': The images '{images}' (*.jpg) and labels '{labels}' "
        "(*.png) do not pair "
        f"one to one: 3 of 6 image(s) have no label, 0 of 3 label(s) have no image; missing: "
        f"'{labels / 'img_3.png'}', '{labels / 'img_4.png'}', '{labels / 'img_5.png'}'. Every "
        "listed image must be "
        "evaluated: restore the missing files; to use only the images that have a label, register "
        "the dataset "
        "with allow_unpaired=True (JSON key 'allow_unpaired')"
    )


def test_labels_without_images_and_the_first_few_missing_files(tmp_path):
    images, labels = _folder(tmp_path, [f"s{i}" for i in range(5)])
    for i in range(5):
        (images / f"s{i}.jpg").unlink()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(images / "other.jpg")
    with pytest.raises(UnpairedDatasetError) as e:
        load_sem_seg_paired(str(labels), str(images))
    message = str(e.value)
    assert "1 of 1 image(s) have no label, 5 of 5 label(s) have no image" in message
    assert (
        f"missing: '{labels / 'other.png'}', '{images / 's0.jpg'}', '{images / 's1.jpg'}', "
        f"'{images / 's2.jpg'}' ..." in message
    )


def test_ade20k_layout_with_a_label_deleted_errors(tmp_path, registered):
    ade = tmp_path / "ADEChallengeData2016"
    for split, folder in (("train", "training"), ("val", "validation")):
        images, labels = _folder(tmp_path / folder, [f"ADE_{split}_0000000{i}" for i in (1, 2)])
        (ade / "images").mkdir(parents=True, exist_ok=True)
        (ade / "annotations_detectron2").mkdir(exist_ok=True)
        images.rename(ade / "images" / folder)
        labels.rename(ade / "annotations_detectron2" / folder)
    missing = ade / "annotations_detectron2" / "validation" / "ADE_val_00000002.png"
    missing.unlink()
    register_ade20k(str(tmp_path), prefix="test_pairing_ade")
    registered.extend(
        f"test_pairing_ade_sem_seg_{s}" for s in ("train_checked", "val_checked", "test")
    )
    assert len(DatasetCatalog.get("test_pairing_ade_sem_seg_train_checked")) == 2
    with pytest.raises(UnpairedDatasetError) as e:  # was: a warning, then 1 of 2 images scored
        DatasetCatalog.get("test_pairing_ade_sem_seg_val_checked")
    assert str(e.value).startswith(
        f"The images '{ade / 'images' / 'validation'}' (*.jpg) and labels "
        f"'{ade / 'annotations_detectron2' / 'validation'}'"
        " (*.png) do not pair one to one: 1 of 2 image(s) have no label, 0 of 1 label(s) have no "
        "image; "
        f"missing: '{missing}'. Every listed image must be evaluated"
    )


# The checked ADE20K registrations on the shared samples: tests/data/test_datasets.py
# (test_ade20k_prepare_and_load).


def test_toy_scenes_registrations_give_detectron2s_records():
    from detectron2.data.datasets import load_coco_json
    from detectron2.data.datasets.coco_panoptic import merge_to_panoptic

    records = DatasetCatalog.get("toy_scenes_sem_seg_val")  # generates the toy scenes if needed
    root = Path(records[0]["file_name"]).parents[2]
    images = str(root / "images" / "val")
    assert records == load_sem_seg(str(root / "sem_seg" / "val"), images)
    separated = merge_to_panoptic(
        load_coco_json(
            str(root / "instances_val.json"), images, "toy_scenes_panoptic_val_separated"
        ),
        load_sem_seg(str(root / "panoptic_stuff_val"), images),
    )
    assert DatasetCatalog.get("toy_scenes_panoptic_val_separated") == separated


def test_images_of_other_splits_may_share_the_image_folder(tmp_path):
    images, labels = _folder(tmp_path, ["a", "b", "c"])
    (labels / "c.png").unlink()  # COCO's val2017 images beside val2017_100's labels
    records = load_sem_seg_paired(str(labels), str(images), images_of_other_splits=True)
    assert [Path(r["file_name"]).name for r in records] == ["a.jpg", "b.jpg"]
    (images / "a.jpg").unlink()
    with pytest.raises(
        UnpairedDatasetError, match=r"pair one to one: 1 of 2 label\(s\) have no image; missing: "
    ):
        load_sem_seg_paired(str(labels), str(images), images_of_other_splits=True)


# ---------------------------------------------------------------------------------------------
# allow_unpaired, and the evaluator's count
# ---------------------------------------------------------------------------------------------


def test_allow_unpaired_scores_the_paired_images_and_says_how_many(tmp_path, registered, caplog):
    stems = [f"img_{i}" for i in range(6)]
    images, labels = _folder(tmp_path, stems)
    for stem in stems[3:]:
        (labels / f"{stem}.png").unlink()
    register_sem_seg_folder(
        "test_pairing_allowed", str(images), str(labels), CLASSES, allow_unpaired=True
    )
    registered.append("test_pairing_allowed")
    with caplog.at_level(logging.INFO):
        results = _test(tmp_path, "test_pairing_allowed")
    assert results["sem_seg"]["num_images"] == 3
    assert results["sem_seg"]["pACC"] == pytest.approx(
        50.0
    )  # class 0 predicted, half of each label is 0
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "allow_unpaired" in r.getMessage()
    ]
    assert warnings and warnings[0].endswith(
        "3 of 6 image(s) have no label, 0 of 3 label(s) have no image; allow_unpaired is set: only "
        "the 3 of 6 "
        "image(s) with a label will be used and scored"
    )
    assert "Dataset 'test_pairing_allowed': 3 of its 3 images evaluated" in caplog.messages
    saved = torch.load(
        tmp_path / "out" / "inference" / "test_pairing_allowed" / "sem_seg_evaluation.pth",
        weights_only=False,
    )
    assert "num_images" not in saved  # the metric file is Detectron2's; the count is in the results


def test_allow_unpaired_from_json(tmp_path, registered):
    images, labels = _folder(tmp_path, ["p", "q"])
    (labels / "q.png").unlink()
    spec = tmp_path / "datasets.json"
    entry = {"image_root": "images", "label_root": "labels", "classes": CLASSES}
    spec.write_text(
        json.dumps(
            {
                "test_pairing_json_strict": entry,
                "test_pairing_json_allowed": dict(entry, allow_unpaired=True),
            }
        )
    )
    registered.extend(register_sem_seg_folders_from_json(str(spec)))
    assert [Path(r["file_name"]).name for r in DatasetCatalog.get("test_pairing_json_allowed")] == [
        "p.jpg"
    ]
    assert DatasetCatalog.get("test_pairing_json_allowed")[0]["image_id"] == "p"
    with pytest.raises(UnpairedDatasetError, match="^Dataset 'test_pairing_json_strict': "):
        DatasetCatalog.get("test_pairing_json_strict")
    with pytest.raises(ValueError, match="allow_unpaired must be true or false, got 'yes'"):
        register_sem_seg_folder("test_pairing_bad_flag", "i", "l", CLASSES, allow_unpaired="yes")


def test_evaluator_records_the_count_and_refuses_a_partial_evaluation(tmp_path, registered):
    images, labels = _folder(tmp_path, ["u", "v", "w"])
    register_sem_seg_folder("test_pairing_count", str(images), str(labels), CLASSES)
    registered.append("test_pairing_count")
    records = DatasetCatalog.get("test_pairing_count")
    inputs = [dict(r, height=12, width=16) for r in records]
    prediction = {"sem_seg": torch.zeros(3, 12, 16)}
    evaluator = CheckedSemSegEvaluator(
        "test_pairing_count", distributed=True, output_dir=str(tmp_path / "eval")
    )
    evaluator.reset()
    evaluator.process(inputs[:2], [prediction] * 2)
    evaluator.process(inputs[:1], [prediction])  # the same image twice counts once
    with pytest.raises(IncompleteEvaluationError) as e:
        evaluator.evaluate()
    assert str(e.value) == (
        "Dataset 'test_pairing_count': 2 distinct image(s) were evaluated but the dataset has 3 "
        "(1 listed "
        f"image(s) were not evaluated, e.g. '{images / 'w.jpg'}'); a metric over part of a dataset "
        "is not its "
        "metric, so none is returned. Evaluate the whole dataset (every record of "
        "DatasetCatalog.get(name), once)"
    )
    assert not (tmp_path / "eval").exists(), "no metric file may be written"
    evaluator.reset()
    evaluator.process(inputs, [prediction] * 3)
    results = evaluator.evaluate()
    assert results["sem_seg"]["num_images"] == 3 and results["sem_seg"]["pACC"] == pytest.approx(
        50.0
    )


def test_panoptic_summary_and_expected_results_accept_the_count():
    from detectron2.evaluation import verify_results
    from detectron2.evaluation.testing import flatten_results_dict, print_csv_format

    from panoptic_ocr.evaluation.panoptic_summary import format_panoptic_summary, panoptic_summary

    results = {
        "sem_seg": {"mIoU": 40.0, "pACC": 80.0, "num_images": 3},
        "panoptic_seg": {"PQ": 30.0, "PQ_th": 20.0, "PQ_st": 35.0},
    }
    cfg = make_cfg(QUICKSTART, ["TEST.EXPECTED_RESULTS", "[['sem_seg', 'mIoU', 40.0, 0.1]]"])
    assert verify_results(cfg, results)
    print_csv_format(results)
    assert flatten_results_dict(results)["sem_seg/num_images"] == 3
    assert panoptic_summary(results)["mIoU"] == 40.0
    assert format_panoptic_summary({"d": results}).splitlines()[-1].split("|")[4].strip() == "40"
