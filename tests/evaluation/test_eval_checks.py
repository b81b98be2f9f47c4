"""Evaluation checks its ground truth as training does, and the model must match the datasets."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUICKSTART, SHARED_DATA, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg
from PIL import Image

from panoptic_ocr.data.class_counts import ClassCountMismatchError, check_model_matches_datasets
from panoptic_ocr.engine import Trainer, build_evaluator

ADE20K = SHARED_DATA / "ade20k" / "ADEChallengeData2016"


class _Background(torch.nn.Module):
    """Predicts class 0 everywhere, at each input's original size."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs):
        return [{"sem_seg": torch.zeros(self.num_classes, x["height"], x["width"])} for x in inputs]


@pytest.fixture
def ade20k_val(tmp_path):
    """The 2 ADE20K validation samples converted as prepare_ade20k.py does (labels in tmp_path),
    registered as a 150-class sem_seg dataset; yields (name, label folder)."""
    if not ADE20K.is_dir():
        pytest.skip(f"shared ADE20K samples not found at {ADE20K}")
    labels = tmp_path / "labels"
    labels.mkdir()
    for src in sorted((ADE20K / "annotations" / "validation").glob("*.png")):
        raw = np.asarray(Image.open(src)).astype(np.int16)
        Image.fromarray(np.where(raw == 0, 255, raw - 1).astype(np.uint8)).save(labels / src.name)
    name = "test_eval_checks_ade20k_val"
    image_root = str(ADE20K / "images" / "validation")
    DatasetCatalog.register(name, lambda: load_sem_seg(str(labels), image_root))
    MetadataCatalog.get(name).set(
        stuff_classes=[f"c{i}" for i in range(150)],
        ignore_label=255,
        evaluator_type="sem_seg",
        image_root=image_root,
    )
    yield name, labels
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _evaluate(tmp_path, name):
    cfg = make_cfg(
        QUICKSTART,
        [
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            "150",
            "DATASETS.TEST",
            f'("{name}",)',
            "DATALOADER.NUM_WORKERS",
            "0",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
    )
    return Trainer.test(cfg, _Background(150))


def test_valid_ade20k_labels_evaluate(tmp_path, ade20k_val):
    results = _evaluate(tmp_path, ade20k_val[0])
    assert 0 < results["sem_seg"]["mIoU"] < 100


def test_label_of_another_size_names_the_file(tmp_path, ade20k_val):
    name, labels = ade20k_val
    bad = labels / "ADE_val_00000002.png"
    label = Image.open(bad)
    label.resize((label.width // 2, label.height // 2), Image.NEAREST).save(bad)
    with pytest.raises(ValueError) as e:  # was numpy's "operands could not be broadcast together"
        _evaluate(tmp_path, name)
    image = ADE20K / "images" / "validation" / "ADE_val_00000002.jpg"
    with Image.open(image) as im:
        w, h = im.size
    assert (
        str(e.value)
        == f"Label file '{bad}' is {w // 2}x{h // 2} but its image '{image}' is {w}x{h} (WxH)"
    )
    assert not list((tmp_path / "out").rglob("sem_seg_evaluation.pth")), "no metric may be written"


def test_label_value_outside_the_classes_names_the_file_and_value(tmp_path, ade20k_val):
    name, labels = ade20k_val
    bad = labels / "ADE_val_00000001.png"
    label = np.array(Image.open(bad))
    label[0, :3] = 200
    Image.fromarray(label).save(bad)
    with pytest.raises(ValueError) as e:  # was a silent, wrong mIoU
        _evaluate(tmp_path, name)
    assert str(e.value) == (
        f"Label file '{bad}' holds values [200] that are neither a class in [0, 150) nor the "
        "ignore label 255"
    )
    assert not list((tmp_path / "out").rglob("sem_seg_evaluation.pth"))


def test_missing_label_is_an_error_at_evaluator_build(tmp_path, ade20k_val):
    name, labels = ade20k_val
    (labels / "ADE_val_00000001.png").rename(tmp_path / "elsewhere.png")
    DatasetCatalog.remove(name)  # load_sem_seg pairs by file: list the missing label explicitly
    image_root = ADE20K / "images" / "validation"
    DatasetCatalog.register(
        name,
        lambda: [
            {
                "file_name": str(image_root / f"{s}.jpg"),
                "sem_seg_file_name": str(labels / f"{s}.png"),
            }
            for s in ("ADE_val_00000001", "ADE_val_00000002")
        ],
    )
    cfg = make_cfg(QUICKSTART, ["OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(
        FileNotFoundError,
        match=f"Label file '{labels / 'ADE_val_00000001.png'}' of dataset '{name}' "
        r"does not exist \(1 of 2 label files are missing\)",
    ):
        build_evaluator(cfg, name)


@pytest.fixture
def toy_panoptic(tmp_path):
    """2 toy validation scenes in tmp_path, registered as a COCO panoptic dataset (no instance
    or stuff evaluation); yields (name, panoptic JSON path, panoptic PNG folder)."""
    from panoptic_ocr.data.datasets.register_toy_scenes import get_toy_scenes_separated_meta
    from panoptic_ocr.data.datasets.toy_scenes import generate_toy_scenes

    root = generate_toy_scenes(tmp_path / "toy_scenes", {"val": 2})
    name = "test_eval_checks_toy_panoptic"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(
        panoptic_root=str(root / "panoptic_val"),
        panoptic_json=str(root / "panoptic_val.json"),
        evaluator_type="coco_panoptic_seg",
        ignore_label=255,
        **get_toy_scenes_separated_meta(),
    )
    yield name, root / "panoptic_val.json", root / "panoptic_val"
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _panoptic_inputs(panoptic_json):
    data = json.loads(Path(panoptic_json).read_text())
    return [
        {
            "image_id": im["id"],
            "file_name": im["file_name"],
            "height": im["height"],
            "width": im["width"],
        }
        for im in data["images"]
    ]


def _void_prediction(record):
    return {"panoptic_seg": (torch.zeros(record["height"], record["width"], dtype=torch.int32), [])}


def test_panoptic_ground_truth_is_checked_against_its_json(tmp_path, toy_panoptic):
    name, panoptic_json, panoptic_root = toy_panoptic
    cfg = make_cfg(QUICKSTART, ["OUTPUT_DIR", str(tmp_path / "out")])
    records = _panoptic_inputs(panoptic_json)
    evaluator = build_evaluator(cfg, name)
    evaluator.reset()
    evaluator.process(records[:1], [_void_prediction(records[0])])  # valid ground truth passes

    png = panoptic_root / json.loads(panoptic_json.read_text())["annotations"][1]["file_name"]
    Image.fromarray(np.zeros_like(np.asarray(Image.open(png)))).save(png)  # every segment gone
    with pytest.raises(ValueError, match=f"Panoptic PNG '{png}' does not contain segment id"):
        evaluator.process(records[1:], [_void_prediction(records[1])])

    small = Image.open(png).resize((8, 8))
    small.save(png)
    with pytest.raises(ValueError, match=f"Panoptic PNG '{png}' is 8x8 but its image"):
        evaluator.process(records[1:], [_void_prediction(records[1])])

    data = json.loads(panoptic_json.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 999
    panoptic_json.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=f"'{panoptic_json}', image id .*: category id 999 is not a category"
    ):
        build_evaluator(cfg, name)


def test_model_and_dataset_class_counts_must_agree(tmp_path):
    import train_net

    cfg = make_cfg(
        QUICKSTART, ["DATASETS.TEST", '("ade20k_sem_seg_val",)', "OUTPUT_DIR", str(tmp_path)]
    )
    expected = (
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES is 7 but DATASETS.TEST 'ade20k_sem_seg_val' has 150 "
        "classes (its metadata "
        "'stuff_classes'); the model and the dataset must agree: set "
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES 150 (and "
        "weights trained for it), or use a dataset of 7 classes"
    )
    with pytest.raises(ClassCountMismatchError) as e:
        check_model_matches_datasets(cfg)
    assert str(e.value) == expected
    with pytest.raises(ClassCountMismatchError, match="DATASETS.TEST 'ade20k_sem_seg_val' has 150"):
        train_net.evaluate_only(cfg)  # was a silent 0.43 mIoU
    with pytest.raises(ClassCountMismatchError, match="DATASETS.TEST 'ade20k_sem_seg_val' has 150"):
        Trainer(cfg)
    assert not (tmp_path / "inference").exists()

    cfg = make_cfg(QUICKSTART, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "6", "DATASETS.TEST", "()"])
    with pytest.raises(
        ClassCountMismatchError, match="is 6 but DATASETS.TRAIN 'toy_scenes_sem_seg_train' has 7"
    ):
        check_model_matches_datasets(cfg)
    check_model_matches_datasets(make_cfg(QUICKSTART))  # the quick start agrees


def test_panoptic_fpn_checks_things_and_stuff():
    base = "configs/toy_scenes/panoptic_fpn_R18_toy_scenes_600it.yaml"
    check_model_matches_datasets(make_cfg(base))  # 3 things, "things" + 4 stuff
    with pytest.raises(
        ClassCountMismatchError,
        match=r"MODEL.ROI_HEADS.NUM_CLASSES is 4 but .* has 3 classes "
        r"\(its metadata 'thing_classes'\)",
    ):
        check_model_matches_datasets(make_cfg(base, ["MODEL.ROI_HEADS.NUM_CLASSES", "4"]))
    with pytest.raises(
        ClassCountMismatchError,
        match=r"MODEL.SEM_SEG_HEAD.NUM_CLASSES is 4 but .* has 5 classes "
        r"\(its metadata 'stuff_classes'\)",
    ):
        check_model_matches_datasets(make_cfg(base, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4"]))
    with pytest.raises(
        ClassCountMismatchError, match="dataset 'toy_scenes_panoptic_val_separated'"
    ):
        check_model_matches_datasets(
            make_cfg(base, ["MODEL.ROI_HEADS.NUM_CLASSES", "4"]),
            ["toy_scenes_panoptic_val_separated"],
        )
