"""Dataset registrations, datasets/prepare_*.py converters and test-set submission writers.

Cityscapes, ADE20K and LIP run on the real samples of ``../shared/data`` copied into a temporary
tree in each release's layout. PASCAL-Context and COCO-Stuff-10K have no real sample: small
files are generated in their releases' encoding (MATLAB .mat via scipy.io.savemat: field
``LabelMap`` of PASCAL-Context's trainval.tar.gz, field ``S`` of cocostuff-10k-v1.1.zip).
"""

import csv
import functools
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, load_script, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg
from detectron2.data.datasets.cityscapes import load_cityscapes_semantic
from detectron2.evaluation import SemSegEvaluator
from PIL import Image

from panoptic_ocr.data import SemanticDatasetMapper, ensure_dataset_available
from panoptic_ocr.data.datasets import register_cityscapes as rc
from panoptic_ocr.data.datasets.register_ade20k import ADE20K_COLORS, register_ade20k
from panoptic_ocr.data.datasets.register_coco_stuff_10k import (
    COCO_STUFF_171_CATEGORIES,
    register_coco_stuff_10k,
)
from panoptic_ocr.data.datasets.register_lip import LIP_CATEGORIES, register_lip
from panoptic_ocr.data.datasets.register_pascal_context import (
    PASCAL_CONTEXT_59_CATEGORIES,
    register_pascal_context,
)
from panoptic_ocr.engine.trainer import build_evaluator
from panoptic_ocr.evaluation import (
    ADE20KSubmissionWriter,
    CityscapesSubmissionWriter,
    build_submission_writer,
    cityscapesscripts_available,
)
from panoptic_ocr.utils.safe_write import OutputExistsError

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"real dataset samples not found at {SHARED_DATA} (shared/ is beside the repository)",
)
CS_FRAME = "frankfurt_000000_000294"


@functools.lru_cache(maxsize=None)
def prepare(name: str):
    """``datasets/prepare_<name>.py`` as a module (run in-process: no second torch import)."""
    return load_script(f"datasets/prepare_{name}.py")


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _image(path: Path, h: int, w: int, mode: str = "RGB") -> Path:
    """A uniform image, JPEG or PNG by suffix (JPEG cannot hold RGBA: RGBA is always PNG data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(
        mode, (w, h), {"L": 128, "RGB": (90, 120, 150), "RGBA": (90, 120, 150, 200)}[mode]
    )
    image.save(path, format="PNG" if mode == "RGBA" or path.suffix == ".png" else "JPEG")
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, dst))


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L", f"{path} is {im.mode}, not a single-channel 'L' PNG"
        return np.asarray(im)


def _csv(relpath: str):
    with open(SHARED_DATA / "meta" / relpath) as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------
# Embedded class tables == the official lists
# --------------------------------------------------------------------------------------------


@needs_shared
def test_embedded_tables_match_official_lists():
    cs = _csv("cityscapes/cityscapes_labels.csv")
    assert [
        (int(r["id"]), int(r["trainId"]) if r["trainId"] != "-1" else -1, r["name"]) for r in cs
    ] == [(i, t, n) for i, t, n, _ in rc.CITYSCAPES_LABELS]
    assert [tuple(int(r[c]) for c in "rgb") for r in cs] == [
        c for _, _, _, c in rc.CITYSCAPES_LABELS
    ]
    assert rc.CITYSCAPES_TRAIN_ID_TO_LABEL_ID == [
        7,
        8,
        11,
        12,
        13,
        17,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        31,
        32,
        33,
    ]

    ade = _csv("ade20k/ade20k_150_colors.csv")
    assert ADE20K_COLORS == [[int(r[c]) for c in "rgb"] for r in ade]

    lip = _csv("lip/lip_labels.csv")
    assert [
        (int(r["id"]), r["name"], tuple(int(r[c]) for c in "rgb")) for r in lip
    ] == LIP_CATEGORIES

    pc = _csv("pascal_context/pascal_context_59_detail_mapping.csv")
    assert [
        (int(r["label459_id"]), r["name_in_459_list"]) for r in pc if r["train_id"] != "0"
    ] == PASCAL_CONTEXT_59_CATEGORIES

    coco = _csv("coco_stuff/coco_stuff_171.csv")
    assert [
        (int(r["cocostuff_id"]), r["name"], int(r["isthing"])) for r in coco
    ] == COCO_STUFF_171_CATEGORIES


def test_registered_names_and_metadata():
    expected = {
        "cityscapes_fine_sem_seg_train_checked": ("cityscapes_sem_seg", 19),
        "cityscapes_fine_sem_seg_val_checked": ("cityscapes_sem_seg", 19),
        "cityscapes_fine_sem_seg_test_checked": ("cityscapes_sem_seg", 19),
        "cityscapes_coarse_sem_seg_train": ("sem_seg", 19),
        "cityscapes_coarse_sem_seg_train_extra": ("sem_seg", 19),
        "cityscapes_fine_sem_seg_test_submission": ("sem_seg_submission", 19),
        "ade20k_sem_seg_train_checked": ("sem_seg", 150),
        "ade20k_sem_seg_val_checked": ("sem_seg", 150),
        "ade20k_sem_seg_test": ("sem_seg_submission", 150),
        "lip_sem_seg_train": ("sem_seg", 20),
        "lip_sem_seg_val": ("sem_seg", 20),
        "lip_sem_seg_test": ("sem_seg_submission", 20),
        "pascal_context_59_sem_seg_train": ("sem_seg", 59),
        "pascal_context_59_sem_seg_val": ("sem_seg", 59),
        "coco_stuff_10k_sem_seg_train": ("sem_seg", 171),
        "coco_stuff_10k_sem_seg_test": ("sem_seg", 171),
    }
    registered = set(DatasetCatalog.list())
    for name, (evaluator_type, num_classes) in expected.items():
        assert name in registered, name
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == evaluator_type, name
        assert len(meta.stuff_classes) == len(meta.stuff_colors) == num_classes, name
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in meta.stuff_colors), name
        assert meta.ignore_label == 255 and meta.image_root and meta.prepare_command, name
        assert (meta.get("sem_seg_root") is None) == (evaluator_type == "sem_seg_submission"), name
    # The checked Cityscapes twins keep the layout Detectron2's Cityscapes evaluators read.
    for split in ("train", "val", "test"):
        ours = MetadataCatalog.get(f"cityscapes_fine_sem_seg_{split}_checked")
        builtin = MetadataCatalog.get(f"cityscapes_fine_sem_seg_{split}")
        assert (
            ours.stuff_classes == builtin.stuff_classes
            and ours.thing_classes == builtin.thing_classes
        )
        assert Path(ours.gt_dir) == Path(builtin.gt_dir) and Path(ours.image_dir) == Path(
            builtin.image_dir
        )
    assert MetadataCatalog.get("lip_sem_seg_train").flip_pairs == [[14, 15], [16, 17], [18, 19]]
    assert MetadataCatalog.get("ade20k_sem_seg_test").submission_format == "ade20k"
    assert (
        MetadataCatalog.get("cityscapes_fine_sem_seg_test_submission").submission_format
        == "cityscapes"
    )
    assert MetadataCatalog.get("lip_sem_seg_test").submission_format == "lip"


def test_missing_roots_name_the_command(d2root, fresh_prefix):
    register_lip(str(d2root), prefix=fresh_prefix)
    with pytest.raises(FileNotFoundError, match=r"lip.*python datasets/prepare_lip.py"):
        ensure_dataset_available(f"{fresh_prefix}_sem_seg_train")
    with pytest.raises(FileNotFoundError, match=r"testing_images.*unzip Testing_images.zip"):
        ensure_dataset_available(f"{fresh_prefix}_sem_seg_test")


# --------------------------------------------------------------------------------------------
# Real samples: Cityscapes, ADE20K, LIP
# --------------------------------------------------------------------------------------------


def _cityscapes_tree(root: Path) -> Path:
    """The sample frame in the release layout: labelIds, instanceIds, polygons.json; no trainIds."""
    cs = root / "cityscapes"
    src = SHARED_DATA / "cityscapes"
    for rel in (
        f"leftImg8bit/val/frankfurt/{CS_FRAME}_leftImg8bit.png",
        f"gtFine/val/frankfurt/{CS_FRAME}_gtFine_labelIds.png",
        f"gtFine/val/frankfurt/{CS_FRAME}_gtFine_instanceIds.png",
    ):
        _copy(src / rel, cs / rel)
    # The release has a polygons.json per frame; the builtin loader reads the image size from it.
    h, w = _read(cs / f"gtFine/val/frankfurt/{CS_FRAME}_gtFine_labelIds.png").shape
    (cs / f"gtFine/val/frankfurt/{CS_FRAME}_gtFine_polygons.json").write_text(
        f'{{"imgHeight": {h}, "imgWidth": {w}, "objects": []}}'
    )
    return cs


@needs_shared
def test_cityscapes_without_polygon_files_loads_from_the_label_pngs(d2root, fresh_prefix):
    """A copy without *_gtFine_polygons.json (as the shared sample is) gives the records that
    Detectron2's loader gives with them; missing labelTrainIds are named with the command."""
    cs = _cityscapes_tree(d2root)
    gt = cs / "gtFine/val/frankfurt"
    rc.register_cityscapes(str(d2root), prefix=fresh_prefix)
    assert prepare("cityscapes").main([]) == 0
    expected = load_cityscapes_semantic(str(cs / "leftImg8bit/val"), str(cs / "gtFine/val"))
    (gt / f"{CS_FRAME}_gtFine_polygons.json").unlink()
    records = DatasetCatalog.get(f"{fresh_prefix}_fine_sem_seg_val_checked")
    width, height = Image.open(cs / f"leftImg8bit/val/frankfurt/{CS_FRAME}_leftImg8bit.png").size
    assert records == expected and (records[0]["height"], records[0]["width"]) == (height, width)
    (gt / f"{CS_FRAME}_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 1 \*_gtFine_labelTrainIds.*prepare_city"):
        DatasetCatalog.get(f"{fresh_prefix}_fine_sem_seg_val_checked")


@needs_shared
def test_cityscapes_label_ids_to_train_ids(d2root, fresh_prefix):
    cs = _cityscapes_tree(d2root)
    gt = cs / "gtFine/val/frankfurt"
    # Before conversion the builtin loader's assertion becomes an error naming our command, in
    # the loader of cityscapes_fine_sem_seg_*_checked.
    rc.register_cityscapes(str(d2root), prefix=fresh_prefix)
    with pytest.raises(FileNotFoundError, match="bin/python datasets/prepare_cityscapes.py"):
        DatasetCatalog.get(f"{fresh_prefix}_fine_sem_seg_val_checked")

    assert prepare("cityscapes").main([]) == 0  # --root defaults to $DETECTRON2_DATASETS/cityscapes
    label_ids = _read(gt / f"{CS_FRAME}_gtFine_labelIds.png")
    train_ids = _read(gt / f"{CS_FRAME}_gtFine_labelTrainIds.png")
    official = {
        int(r["id"]): int(r["trainId"])
        for r in _csv("cityscapes/cityscapes_labels.csv")
        if int(r["id"]) >= 0
    }
    np.testing.assert_array_equal(train_ids, np.vectorize(official.get)(label_ids))
    assert set(np.unique(train_ids)) <= set(range(19)) | {255}
    # The separately downscaled trainIds file of the sample agrees on about 99.8% of pixels.
    shipped = _read(
        SHARED_DATA / "cityscapes/gtFine/val/frankfurt" / f"{CS_FRAME}_gtFine_labelTrainIds.png"
    )
    assert (shipped == train_ids).mean() > 0.99

    # Detectron2's loader (the one behind cityscapes_fine_sem_seg_val) reads the new files, and
    # so does the checked twin.
    records = load_cityscapes_semantic(str(cs / "leftImg8bit/val"), str(cs / "gtFine/val"))
    assert DatasetCatalog.get(f"{fresh_prefix}_fine_sem_seg_val_checked") == records
    assert len(records) == 1 and records[0]["sem_seg_file_name"].endswith(
        "_gtFine_labelTrainIds.png"
    )
    assert (records[0]["height"], records[0]["width"]) == train_ids.shape

    # Evaluated as the builtin metadata says: SemSegEvaluator (+ the official script if installed).
    name = f"{fresh_prefix}_fine_sem_seg_val"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        **MetadataCatalog.get("cityscapes_fine_sem_seg_val_checked").as_dict() | {"name": name}
    )
    evaluator = build_evaluator(make_cfg(opts=["OUTPUT_DIR", str(d2root / "out")]), name)
    if cityscapesscripts_available():  # DatasetEvaluators([SemSegEvaluator, the official one])
        evaluator = evaluator._evaluators[0]
    assert isinstance(evaluator, SemSegEvaluator)
    evaluator.reset()
    one_hot = torch.nn.functional.one_hot(
        torch.as_tensor(train_ids.astype(np.int64)).clamp(max=18), 19
    )
    evaluator.process([records[0]], [{"sem_seg": one_hot.permute(2, 0, 1).float()}])
    assert evaluator.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100.0)


@needs_shared
def test_cityscapes_coarse_and_test_splits(d2root, fresh_prefix):
    cs = d2root / "cityscapes"
    for split, city in (("train", "aachen"), ("train_extra", "augsburg")):
        stem = f"{city}_000000_000019"
        src = SHARED_DATA / "cityscapes"
        _copy(
            src / f"leftImg8bit/val/frankfurt/{CS_FRAME}_leftImg8bit.png",
            cs / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
        )
        _copy(
            src / f"gtFine/val/frankfurt/{CS_FRAME}_gtFine_labelIds.png",
            cs / f"gtCoarse/{split}/{city}/{stem}_gtCoarse_labelIds.png",
        )
    _image(cs / "leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png", 64, 128)
    assert prepare("cityscapes").main(["--root", str(cs)]) == 0
    rc.register_cityscapes(str(d2root), prefix=fresh_prefix)
    for split in ("train", "train_extra"):
        records = DatasetCatalog.get(f"{fresh_prefix}_coarse_sem_seg_{split}")
        assert len(records) == 1
        assert set(np.unique(_read(records[0]["sem_seg_file_name"]))) <= set(range(19)) | {255}
    test = DatasetCatalog.get(f"{fresh_prefix}_fine_sem_seg_test_submission")
    assert [Path(r["file_name"]).name for r in test] == ["berlin_000000_000019_leftImg8bit.png"]
    assert "sem_seg_file_name" not in test[0]


@needs_shared
def test_ade20k_prepare_and_load(d2root, fresh_prefix):
    ade = d2root / "ADEChallengeData2016"
    shutil.copytree(SHARED_DATA / "ade20k/ADEChallengeData2016", ade)
    assert (
        prepare("ade20k").main([]) == 0
    )  # --root defaults to $DETECTRON2_DATASETS/ADEChallengeData2016
    detectron2_records = {}
    for split, count in (("training", 1), ("validation", 2)):
        # The arguments of Detectron2's builtin ade20k_sem_seg_{train,val} registration.
        records = detectron2_records[split] = load_sem_seg(
            str(ade / "annotations_detectron2" / split),
            str(ade / "images" / split),
            gt_ext="png",
            image_ext="jpg",
        )
        assert len(records) == count
        for r in records:
            label = _read(r["sem_seg_file_name"])
            source = np.asarray(
                Image.open(ade / "annotations" / split / Path(r["sem_seg_file_name"]).name)
            ).astype(np.int64)
            np.testing.assert_array_equal(label, np.where(source == 0, 255, source - 1))
            assert Image.open(r["file_name"]).size[::-1] == label.shape
            assert set(np.unique(label)) <= set(range(150)) | {255}

    # The label-free test split, as release_test.zip unpacks.
    test_image = ade / "release_test/testing/ADE_test_00000001.jpg"
    test_image.parent.mkdir(parents=True)
    shutil.copy(ade / "images/validation/ADE_val_00000001.jpg", test_image)
    register_ade20k(str(d2root), prefix=fresh_prefix)
    records = DatasetCatalog.get(f"{fresh_prefix}_sem_seg_test")
    assert records == [{"file_name": str(test_image), "image_id": "ADE_test_00000001"}]
    # The checked twins of Detectron2's ade20k_sem_seg_{train,val} read the same records.
    for split, name in (("training", "train"), ("validation", "val")):
        checked = DatasetCatalog.get(f"{fresh_prefix}_sem_seg_{name}_checked")
        assert checked == detectron2_records[split]
    ensure_dataset_available(f"{fresh_prefix}_sem_seg_train_checked")


@needs_shared
def test_lip_prepare_and_load(d2root, fresh_prefix):
    lip = d2root / "lip"
    for split in ("train", "val"):
        shutil.copytree(
            SHARED_DATA / f"lip/{split}_images", lip / f"TrainVal_images/{split}_images"
        )
        shutil.copytree(
            SHARED_DATA / f"lip/{split}_segmentations",
            lip / f"TrainVal_parsing_annotations/{split}_segmentations",
        )
    _image(lip / "Testing_images/testing_images/100034_483681.jpg", 40, 30)
    assert prepare("lip").main(["--root", str(lip)]) == 0
    register_lip(str(d2root), prefix=fresh_prefix)
    mapper = SemanticDatasetMapper(
        is_train=True, augmentations=[], image_format="RGB", ignore_label=255, num_classes=20
    )
    for split in ("train", "val"):
        name = f"{fresh_prefix}_sem_seg_{split}"
        ensure_dataset_available(name)
        records = DatasetCatalog.get(name)
        assert len(records) == 1
        label = _read(records[0]["sem_seg_file_name"])
        source = np.asarray(
            Image.open(
                lip
                / f"TrainVal_parsing_annotations/{split}_segmentations"
                / f"{records[0]['image_id']}.png"
            )
        )
        np.testing.assert_array_equal(label, source)
        assert set(np.unique(label)) <= set(range(20))
        # The mapper reads the (grayscale, for val) JPEG as RGB and checks the label.
        item = mapper(records[0])
        assert item["image"].shape == (3, *label.shape) and item["sem_seg"].shape == label.shape
    assert len(DatasetCatalog.get(f"{fresh_prefix}_sem_seg_test")) == 1


# --------------------------------------------------------------------------------------------
# Generated samples in the releases' .mat encoding: PASCAL-Context, COCO-Stuff-10K
# --------------------------------------------------------------------------------------------


def test_pascal_context_459_to_59(d2root, fresh_prefix):
    savemat = pytest.importorskip("scipy.io").savemat
    voc = d2root / "VOCdevkit/VOC2010"
    ids = {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007"]}
    # 0 unlabeled, 1 accordion (not in the 59), 2 aeroplane (train id 0), 458 wood (58),
    # 284 person (36)
    values = np.array([[0, 1, 2], [458, 284, 2]], np.uint16)
    for split, split_ids in ids.items():
        (voc / "ImageSets/Main").mkdir(parents=True, exist_ok=True)
        (voc / f"ImageSets/Main/{split}.txt").write_text("\n".join(split_ids) + "\n")
        for i in split_ids:
            _image(voc / f"JPEGImages/{i}.jpg", 20, 30)
            (voc / "trainval").mkdir(exist_ok=True)
            savemat(
                voc / f"trainval/{i}.mat",
                {"LabelMap": np.kron(values, np.ones((10, 10), np.uint16))},
            )
    assert prepare("pascal_context").main([]) == 0
    register_pascal_context(str(d2root), prefix=fresh_prefix)
    expected = np.kron(
        np.array([[255, 255, 0], [58, 36, 0]], np.uint8), np.ones((10, 10), np.uint8)
    )
    for split, split_ids in ids.items():
        records = DatasetCatalog.get(f"{fresh_prefix}_sem_seg_{split}")
        assert [r["image_id"] for r in records] == split_ids
        for r in records:
            np.testing.assert_array_equal(_read(r["sem_seg_file_name"]), expected)
    meta = MetadataCatalog.get(f"{fresh_prefix}_sem_seg_val")
    assert (
        meta.stuff_classes[0] == "aeroplane"
        and meta.stuff_classes[36] == "person"
        and len(meta.stuff_classes) == 59
    )


def test_coco_stuff_10k(d2root, fresh_prefix):
    savemat = pytest.importorskip("scipy.io").savemat
    coco = d2root / "coco_stuff_10k"
    names = {
        "train": ["COCO_train2014_000000000077"],
        "test": ["COCO_train2014_000000000009", "COCO_val2014_000000000164"],
    }
    # 0 unlabeled, 1 person (0), 12 street sign (removed from COCO), 92 banner (80), 182 wood (170)
    values = np.array([[0, 1, 12], [92, 182, 1]], np.uint8)
    (coco / "imageLists").mkdir(parents=True)
    for split, split_names in names.items():
        (coco / f"imageLists/{split}.txt").write_text("\n".join(split_names) + "\n")
        for n in split_names:
            _image(coco / f"images/{n}.jpg", 4, 6, mode="L")  # grayscale COCO images exist
            (coco / "annotations").mkdir(exist_ok=True)
            savemat(
                coco / f"annotations/{n}.mat",
                {"S": np.kron(values, np.ones((2, 2), np.uint8)), "names": ["x"]},
            )
    assert prepare("coco_stuff_10k").main(["--root", str(coco)]) == 0
    register_coco_stuff_10k(str(d2root), prefix=fresh_prefix)
    expected = np.kron(np.array([[255, 0, 255], [80, 170, 0]], np.uint8), np.ones((2, 2), np.uint8))
    for split, split_names in names.items():
        records = DatasetCatalog.get(f"{fresh_prefix}_sem_seg_{split}")
        assert sorted(r["image_id"] for r in records) == sorted(split_names)
        for r in records:
            np.testing.assert_array_equal(_read(r["sem_seg_file_name"]), expected)
    meta = MetadataCatalog.get(f"{fresh_prefix}_sem_seg_train")
    assert meta.stuff_classes[80] == "banner" and meta.stuff_dataset_id_to_contiguous_id[182] == 170


# --------------------------------------------------------------------------------------------
# Bad inputs: errors name the file, and nothing is written
# --------------------------------------------------------------------------------------------


def _ade_tree(root: Path, labels: dict, image_hw=(20, 30)) -> Path:
    ade = root / "ADEChallengeData2016"
    for split in ("training", "validation"):
        (ade / "annotations" / split).mkdir(parents=True, exist_ok=True)
    for stem, label in labels.items():
        _image(ade / f"images/training/{stem}.jpg", *image_hw)
        path = ade / f"annotations/training/{stem}.png"
        if isinstance(label, bytes):
            path.write_bytes(label)
        else:
            _png(path, label)
    return ade


def _run_ade(ade: Path, capsys, *extra) -> tuple:
    rc_ = prepare("ade20k").main(["--root", str(ade), "--splits", "training", *extra])
    return rc_, capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((21, 30), np.uint8), r"is 30x21 but its image .* is 30x20"),
        (np.full((20, 30), 151, np.uint8), r"holds values \[151\] that are not ADE20K"),
        (b"not a png", "Cannot read label file"),
        (np.ones((20, 30, 3), np.uint8), "must be single-channel"),
    ],
    ids=["wrong-size", "out-of-range", "unreadable", "rgb-label"],
)
def test_bad_label_is_an_error_naming_the_file_and_nothing_is_written(d2root, capsys, bad, message):
    good = np.ones((20, 30), np.uint8)
    ade = _ade_tree(d2root, {"ADE_train_00000001": good, "ADE_train_00000002": bad})
    rc_, err = _run_ade(ade, capsys)
    assert rc_ == 1
    assert "ADE_train_00000002.png" in err and re.search(message, err), err
    assert not (ade / "annotations_detectron2").exists(), "a failed run must leave no output"


def test_unreadable_or_missing_image_is_an_error_naming_it(d2root, capsys):
    ade = _ade_tree(d2root, {"ADE_train_00000001": np.ones((20, 30), np.uint8)})
    (ade / "images/training/ADE_train_00000001.jpg").write_bytes(b"garbage")
    rc_, err = _run_ade(ade, capsys)
    assert rc_ == 1 and "Cannot read image file" in err and "ADE_train_00000001.jpg" in err
    (ade / "images/training/ADE_train_00000001.jpg").unlink()
    rc_, err = _run_ade(ade, capsys)
    assert rc_ == 1 and "ADE_train_00000001.jpg' does not exist" in err


def test_grayscale_and_rgba_images_are_accepted(d2root, capsys):
    ade = _ade_tree(d2root, {})
    for stem, mode in (("ADE_train_00000001", "L"), ("ADE_train_00000002", "RGBA")):
        _image(ade / f"images/training/{stem}.jpg", 20, 30, mode=mode)
        _png(ade / f"annotations/training/{stem}.png", np.ones((20, 30), np.uint8))
    assert _run_ade(ade, capsys)[0] == 0
    records = load_sem_seg(
        str(ade / "annotations_detectron2/training"), str(ade / "images/training"), "png", "jpg"
    )
    mapper = SemanticDatasetMapper(
        is_train=True, augmentations=[], image_format="RGB", ignore_label=255, num_classes=150
    )
    assert [tuple(mapper(r)["image"].shape) for r in records] == [(3, 20, 30)] * 2


def test_missing_mat_label_names_the_file(d2root, capsys):
    pytest.importorskip("scipy")
    coco = d2root / "coco_stuff_10k"
    (coco / "imageLists").mkdir(parents=True)
    (coco / "imageLists/train.txt").write_text("COCO_train2014_000000000077\n")
    _image(coco / "images/COCO_train2014_000000000077.jpg", 4, 6)
    assert prepare("coco_stuff_10k").main(["--root", str(coco), "--splits", "train"]) == 1
    assert "COCO_train2014_000000000077.mat" in capsys.readouterr().err


def test_prepare_refuses_to_overwrite(d2root, capsys):
    ade = _ade_tree(d2root, {"ADE_train_00000001": np.ones((20, 30), np.uint8)})
    assert _run_ade(ade, capsys)[0] == 0
    out = ade / "annotations_detectron2/training/ADE_train_00000001.png"
    np.testing.assert_array_equal(_read(out), 0)
    _png(ade / "annotations/training/ADE_train_00000001.png", np.full((20, 30), 5, np.uint8))
    rc_, err = _run_ade(ade, capsys)
    assert rc_ == 1 and "already exists" in err and "--overwrite" in err
    np.testing.assert_array_equal(_read(out), 0)  # untouched
    assert _run_ade(ade, capsys, "--overwrite")[0] == 0
    np.testing.assert_array_equal(_read(out), 4)
    assert not list(ade.rglob(".partial-*")) and not list(ade.rglob(".replaced-*"))


# --------------------------------------------------------------------------------------------
# Submission writers
# --------------------------------------------------------------------------------------------


def _logits(pred: np.ndarray, num_classes: int) -> torch.Tensor:
    return (
        torch.nn.functional.one_hot(torch.as_tensor(pred, dtype=torch.int64), num_classes)
        .permute(2, 0, 1)
        .float()
    )


def test_cityscapes_submission_writes_label_ids(tmp_path):
    pred = np.arange(19 * 4).reshape(4, 19) % 19  # every train id
    writer = CityscapesSubmissionWriter(str(tmp_path / "sub"))
    writer.reset()
    file_name = f"/data/cityscapes/leftImg8bit/test/berlin/{CS_FRAME}_leftImg8bit.png"
    writer.process(
        [{"file_name": file_name, "height": 4, "width": 19}], [{"sem_seg": _logits(pred, 19)}]
    )
    assert writer.evaluate() == {"sem_seg_submission": {"num_images": 1.0}}
    written = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert written == [f"{CS_FRAME}_leftImg8bit_pred.png"]
    label_ids = _read(tmp_path / "sub" / written[0])
    evaluated = {i for i, t, _, _ in rc.CITYSCAPES_LABELS if 0 <= t < 255}
    assert set(np.unique(label_ids)) == evaluated
    np.testing.assert_array_equal(label_ids, np.array(rc.CITYSCAPES_TRAIN_ID_TO_LABEL_ID)[pred])


def test_ade20k_submission_values_and_refusal_to_overwrite(tmp_path):
    pred = np.arange(150).reshape(10, 15)
    sub = tmp_path / "sub"
    writer = ADE20KSubmissionWriter(str(sub))
    writer.reset()
    writer.process([{"file_name": "/x/ADE_test_00000001.jpg"}], [{"sem_seg": _logits(pred, 150)}])
    writer.evaluate()
    out = _read(sub / "ADE_test_00000001.png")
    np.testing.assert_array_equal(out, pred + 1)
    assert out.min() == 1 and out.max() == 150

    with pytest.raises(OutputExistsError, match=re.escape(f"'{sub}' already exists")):
        ADE20KSubmissionWriter(str(sub))
    np.testing.assert_array_equal(_read(sub / "ADE_test_00000001.png"), pred + 1)  # nothing lost
    writer = ADE20KSubmissionWriter(str(sub), overwrite=True)
    assert (sub / "ADE_test_00000001.png").exists()  # kept until the new submission is written
    writer.reset()
    writer.process([{"file_name": "/x/ADE_test_00000002.jpg"}], [{"sem_seg": _logits(pred, 150)}])
    writer.evaluate()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no temporary sibling left
    assert sorted(p.name for p in sub.iterdir()) == ["ADE_test_00000002.png"]  # folder replaced

    writer = ADE20KSubmissionWriter(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="19 classes; this submission format expects 150"):
        writer.process([{"file_name": "/x/a.jpg"}], [{"sem_seg": torch.zeros(19, 4, 4)}])
    with pytest.raises(ValueError, match="full-resolution"):
        writer.process(
            [{"file_name": "/x/a.jpg", "height": 8, "width": 4}],
            [{"sem_seg": torch.zeros(150, 4, 4)}],
        )


def test_build_evaluator_picks_the_submission_writer(tmp_path):
    cfg = make_cfg(opts=["OUTPUT_DIR", str(tmp_path)])
    writer = build_evaluator(cfg, "ade20k_sem_seg_test")
    assert isinstance(writer, ADE20KSubmissionWriter)
    assert writer.output_dir == tmp_path / "inference" / "ade20k_sem_seg_test" / "submission"
    assert isinstance(
        build_evaluator(cfg, "cityscapes_fine_sem_seg_test_submission"), CityscapesSubmissionWriter
    )
    assert (
        type(build_submission_writer("lip_sem_seg_test", str(tmp_path / "lip"))).__name__
        == "LIPSubmissionWriter"
    )
    with pytest.raises(ValueError, match="submission_format None"):
        build_submission_writer("ade20k_sem_seg_val", str(tmp_path / "x"))


def test_trainer_test_on_a_label_free_split_writes_the_submission(d2root, fresh_prefix):
    """``train_net.py --eval-only`` path: mapper, untrained model, inference, writer."""
    from panoptic_ocr.engine.trainer import Trainer

    test_dir = d2root / "ADEChallengeData2016/release_test/testing"
    sizes = {"ADE_test_00000001": (37, 50), "ADE_test_00000002": (45, 29)}
    for stem, (h, w) in sizes.items():
        _image(test_dir / f"{stem}.jpg", h, w)
    register_ade20k(str(d2root), prefix=fresh_prefix)
    opts = ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "150", "OUTPUT_DIR", str(d2root / "out")]
    cfg = make_cfg("configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml", opts)
    cfg.DATASETS.TEST = (f"{fresh_prefix}_sem_seg_test",)
    model = Trainer.build_model(cfg)
    assert Trainer.test(cfg, model) == {"sem_seg_submission": {"num_images": 2.0}}
    submission = d2root / "out/inference" / f"{fresh_prefix}_sem_seg_test" / "submission"
    for stem, hw in sizes.items():
        label = _read(submission / f"{stem}.png")
        assert label.shape == hw and 1 <= label.min() and label.max() <= 150
    with pytest.raises(OutputExistsError, match=re.escape(f"'{submission}' already exists")):
        Trainer.test(cfg, model)  # a second run would replace the first submission


def test_every_dataset_with_a_palette_draws_with_it():
    """Official or reference palettes in the metadata (ADE20K: sky cyan, not VOC's olive);
    every class its own colour where the reference palette has one per class."""
    expected = {
        "ade20k_sem_seg_val_checked": (150, 2, [6, 230, 230]),  # sky
        "cityscapes_fine_sem_seg_val_checked": (19, 10, [70, 130, 180]),  # sky
        "lip_sem_seg_val": (20, 13, [0, 0, 255]),  # Face, as lip_labels.csv
        "pascal_context_59_sem_seg_val": (59, 0, [180, 120, 120]),  # aeroplane
        "coco_stuff_10k_sem_seg_test": (171, 0, [220, 20, 60]),  # person: COCO's colour
    }
    for name, (count, index, color) in expected.items():
        colors = MetadataCatalog.get(name).stuff_colors
        assert len(colors) == count and list(colors[index]) == color, name
    coco = MetadataCatalog.get("coco_stuff_10k_sem_seg_test").stuff_colors
    assert len({tuple(c) for c in coco}) == 171
