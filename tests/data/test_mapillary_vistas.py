"""Mapillary Vistas v1.2: class table, registration, datasets/prepare_mapillary_vistas.py and the
configs. No real sample is shared: small images and palette label PNGs (as the release stores
them) are written in both releases' layouts (v2.0: ``<split>/v1.2/labels``; v1.x:
``<split>/labels``)."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from PIL import Image

from panoptic_ocr.data import SemanticDatasetMapper, ensure_dataset_available
from panoptic_ocr.data.augmentations import (
    RandomBrightnessShift,
    build_semantic_train_augmentations,
)
from panoptic_ocr.data.datasets.register_mapillary_vistas import (
    MAPILLARY_VISTAS_V1_2_LABELS,
    mapillary_vistas_v1_2_lut,
    register_mapillary_vistas,
)
from panoptic_ocr.data.datasets.sem_seg_loaders import UnpairedDatasetError

CONFIGS = Path("configs/mapillary_vistas/semantic")
RECIPE = CONFIGS / "ocr_HRNetV2W48_bs16_crop1024_poly_225k.yaml"
H, W = 12, 16
# Release values: 0 Bird, 13 Road, 27 Sky, 55 Car, 64 Ego Vehicle, 65 Unlabeled.
VALUES = np.array([[0, 13, 27, 55], [64, 65, 65, 13]], np.uint8)
LABEL = np.kron(VALUES, np.ones((H // 2, W // 4), np.uint8))
EXPECTED = np.kron(
    np.array([[0, 13, 27, 55], [64, 255, 255, 13]], np.uint8), np.ones((H // 2, W // 4), np.uint8)
)
STEMS = {
    "training": ["0035fkbjWljhaftpVM37-g", "00qclUcInksIYnm19b1Xfw"],
    "validation": ["_1Gn_xkw7sa_i9GU4mkxxQ"],
}


@pytest.fixture(scope="module")
def prepare():
    return load_script("datasets/prepare_mapillary_vistas.py")


def _image(path: Path, h: int = H, w: int = W) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 120, 150)).save(path, format="JPEG")
    return path


def _palette_label(path: Path, label: np.ndarray) -> Path:
    """A "P" PNG with the v1.2 palette, as the release's labels are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label, mode="P")
    image.putpalette([v for *_, color in MAPILLARY_VISTAS_V1_2_LABELS for v in color])
    image.save(path)
    return path


def _release(d2root: Path, layout: str, splits=("training", "validation")) -> Path:
    """The release's tree under ``<d2root>/mapillary_vistas``; ``layout`` "v2.0" or "v1.2"."""
    root = d2root / "mapillary_vistas"
    for split in splits:
        labels = root / split / ("v1.2/labels" if layout == "v2.0" else "labels")
        for stem in STEMS[split]:
            _image(root / split / "images" / f"{stem}.jpg")
            _palette_label(labels / f"{stem}.png", LABEL)
    return root


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L", f"{path} is {im.mode}, not a single-channel 'L' PNG"
        return np.asarray(im)


# --------------------------------------------------------------------------------------------
# Class table and metadata
# --------------------------------------------------------------------------------------------


def test_class_table_is_the_v1_2_config():
    assert [i for i, *_ in MAPILLARY_VISTAS_V1_2_LABELS] == list(range(66))
    known = {
        0: ("animal--bird", "Bird", (165, 42, 42)),
        9: ("construction--flat--curb-cut", "Curb Cut", (170, 170, 170)),
        13: ("construction--flat--road", "Road", (128, 64, 128)),
        19: ("human--person", "Person", (220, 20, 60)),
        23: ("marking--crosswalk-zebra", "Lane Marking - Crosswalk", (200, 128, 128)),
        24: ("marking--general", "Lane Marking - General", (255, 255, 255)),
        27: ("nature--sky", "Sky", (70, 130, 180)),
        46: ("object--support--traffic-sign-frame", "Traffic Sign Frame", (128, 128, 128)),
        50: ("object--traffic-sign--front", "Traffic Sign (Front)", (220, 220, 0)),
        55: ("object--vehicle--car", "Car", (0, 0, 142)),
        64: ("void--ego-vehicle", "Ego Vehicle", (120, 10, 10)),
        65: ("void--unlabeled", "Unlabeled", (0, 0, 0)),
    }
    for i, entry in known.items():
        assert tuple(MAPILLARY_VISTAS_V1_2_LABELS[i][1:]) == entry, i
    assert len({name for _, name, _, _ in MAPILLARY_VISTAS_V1_2_LABELS}) == 66
    assert mapillary_vistas_v1_2_lut() == list(range(65)) + [255]


def test_registered_names_and_metadata():
    for split, folder in (("train", "training"), ("val", "validation")):
        name = f"mapillary_vistas_v1.2_sem_seg_{split}"
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "sem_seg" and meta.ignore_label == 255
        assert len(meta.stuff_classes) == len(meta.stuff_colors) == 65
        assert "Unlabeled" not in meta.stuff_classes
        assert (meta.stuff_classes[0], meta.stuff_colors[0]) == ("Bird", [165, 42, 42])
        assert (meta.stuff_classes[13], meta.stuff_colors[13]) == ("Road", [128, 64, 128])
        assert (meta.stuff_classes[64], meta.stuff_colors[64]) == ("Ego Vehicle", [120, 10, 10])
        assert meta.prepare_command == ".venv/bin/python datasets/prepare_mapillary_vistas.py"
        assert Path(meta.image_root).parts[-3:] == ("mapillary_vistas", folder, "images")
        assert Path(meta.sem_seg_root).parts[-4:] == (
            "mapillary_vistas",
            "annotations_detectron2",
            "v1.2",
            folder,
        )


def test_missing_folders_name_the_path_and_the_command(d2root, fresh_prefix):
    register_mapillary_vistas(str(d2root), prefix=fresh_prefix)
    name = f"{fresh_prefix}_sem_seg_train"
    with pytest.raises(
        FileNotFoundError, match=r"mapillary_vistas.*python datasets/prepare_mapillary_vistas.py"
    ):
        ensure_dataset_available(name)
    gt_dir = d2root / "mapillary_vistas/annotations_detectron2/v1.2/training"
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{gt_dir}' does not exist")):
        DatasetCatalog.get(name)


# --------------------------------------------------------------------------------------------
# Prepare, then load
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["v2.0", "v1.2"])
def test_prepare_and_load(d2root, fresh_prefix, prepare, run_main, layout):
    root = _release(d2root, layout)
    status, out, err = run_main(prepare.main, [])  # --root: $DETECTRON2_DATASETS/mapillary_vistas
    assert status == 0, err
    source = "v1.2/labels" if layout == "v2.0" else "labels"
    assert "{'training': 2, 'validation': 1}" in out and f"training/{source}" in out
    register_mapillary_vistas(str(d2root), prefix=fresh_prefix)
    mapper = SemanticDatasetMapper(
        is_train=True, augmentations=[], image_format="RGB", ignore_label=255, num_classes=65
    )
    for split, folder in (("train", "training"), ("val", "validation")):
        name = f"{fresh_prefix}_sem_seg_{split}"
        ensure_dataset_available(name)
        records = DatasetCatalog.get(name)
        assert [Path(r["file_name"]).name for r in records] == [
            f"{s}.jpg" for s in sorted(STEMS[folder])
        ]
        for r in records:
            assert Path(r["file_name"]).parent == root / folder / "images"
            assert Path(r["sem_seg_file_name"]) == (
                root / "annotations_detectron2/v1.2" / folder / f"{Path(r['file_name']).stem}.png"
            )
            np.testing.assert_array_equal(_read(r["sem_seg_file_name"]), EXPECTED)
            item = mapper(r)  # the values are valid for a 65-class model
            assert item["image"].shape == (3, H, W)
            np.testing.assert_array_equal(item["sem_seg"].numpy(), EXPECTED)

    status, out, err = run_main(prepare.main, [])
    assert status == 0 and out.startswith("Already prepared"), (out, err)


def test_unpaired_image_is_refused_naming_the_file(d2root, fresh_prefix, prepare, run_main):
    root = _release(d2root, "v2.0")
    assert run_main(prepare.main, [])[0] == 0
    extra = _image(root / "validation/images/extra_image_without_label.jpg")
    register_mapillary_vistas(str(d2root), prefix=fresh_prefix)
    missing = root / "annotations_detectron2/v1.2/validation/extra_image_without_label.png"
    with pytest.raises(UnpairedDatasetError, match=re.escape(f"'{missing}'")):
        DatasetCatalog.get(f"{fresh_prefix}_sem_seg_val")
    assert len(DatasetCatalog.get(f"{fresh_prefix}_sem_seg_train")) == 2  # the other split is fine

    # The prepare script refuses the split too, naming the release's missing label.
    status, _, err = run_main(prepare.main, ["--splits", "validation", "--overwrite"])
    assert status == 1
    assert f"'{root / 'validation/v1.2/labels/extra_image_without_label.png'}'" in err, err
    assert "1 of 2 image(s) have no label" in err
    extra.unlink()
    (root / "validation/images" / f"{STEMS['validation'][0]}.jpg").unlink()  # a label alone
    status, _, err = run_main(prepare.main, ["--splits", "validation", "--overwrite"])
    assert status == 1 and "1 of 1 label(s) have no image" in err, err
    assert f"'{root / 'validation/images' / STEMS['validation'][0]}.jpg'" in err


def test_missing_split_names_both_layouts(d2root, prepare, run_main):
    root = _release(d2root, "v2.0", splits=("validation",))
    status, _, err = run_main(prepare.main, [])
    assert status == 1
    assert err.strip() == (
        f"error: Split 'training': neither '{root / 'training/v1.2/labels'}' (v2.0 release) nor "
        f"'{root / 'training/labels'}' (v1.1/v1.2 release) exists; found only validation: "
        "convert those with --splits validation (see datasets/README.md for the expected tree)"
    )
    assert not (root / "annotations_detectron2").exists()
    assert run_main(prepare.main, ["--splits", "validation"])[0] == 0
    assert sorted(p.name for p in (root / "annotations_detectron2/v1.2/validation").iterdir()) == [
        f"{STEMS['validation'][0]}.png"
    ]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((H, W), 66, np.uint8), r"holds values \[66\] that are not Mapillary Vistas v1.2"),
        (np.zeros((H + 1, W), np.uint8), r"is 16x13 but its image .* is 16x12"),
    ],
    ids=["value-66", "wrong-size"],
)
def test_bad_label_names_the_file_and_nothing_is_written(d2root, prepare, run_main, bad, message):
    root = _release(d2root, "v1.2")
    bad_file = _palette_label(root / "training/labels" / f"{STEMS['training'][1]}.png", bad)
    status, _, err = run_main(prepare.main, [])
    assert status == 1 and str(bad_file) in err and re.search(message, err), err
    assert not (root / "annotations_detectron2").exists(), "a failed run must leave no output"


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def test_configs_match_the_dataset():
    cfg = make_cfg(str(RECIPE))
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 65 and cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE == 255
    assert cfg.DATASETS.TRAIN == ("mapillary_vistas_v1.2_sem_seg_train",)
    assert cfg.DATASETS.TEST == ("mapillary_vistas_v1.2_sem_seg_val",)
    for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST:
        assert len(MetadataCatalog.get(name).stuff_classes) == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    assert cfg.MODEL.SEM_SEG_HEAD.NAME == "OCRHead" and cfg.MODEL.HRNET.WIDTH == 48
    assert tuple(cfg.INPUT.CROP.SIZE) == (1024, 1024) and cfg.INPUT.CROP.ENABLED
    # NVIDIA's long side 2177 x scale [0.5, 2] on a 4:3 image: the short side 816..3266.
    assert tuple(cfg.INPUT.RANDOM_SCALE) == (1.0, 1.0)
    assert cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range"
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (816, 3266) and cfg.INPUT.MAX_SIZE_TRAIN == 4354
    augs = build_semantic_train_augmentations(cfg)
    assert [type(a) for a in augs] == [
        T.ResizeShortestEdge,
        T.FixedSizeCrop,
        T.RandomFlip,
        RandomBrightnessShift,
    ]
    assert (augs[0].short_edge_length, augs[0].max_size, augs[0].sample_style) == (
        (816, 3266),
        4354,
        "range",
    )
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.MAX_ITER == 200 * 18000 // 16
    assert cfg.TEST.SLIDING_WINDOW.ENABLED and tuple(cfg.TEST.SLIDING_WINDOW.SIZE) == (1024, 1024)
