"""Cityscapes semantic segmentation (19 train classes, ignore 255).

Names:

* ``cityscapes_fine_sem_seg_{train,val,test}_checked``: the data of Detectron2's
  ``cityscapes_fine_sem_seg_{train,val,test}`` (left untouched), read by Detectron2's
  ``load_cityscapes_semantic`` (evaluator_type "cityscapes_sem_seg"), with ``image_root``,
  ``sem_seg_root``, ``stuff_colors`` and ``prepare_command`` in the metadata and a missing-label
  error that names this project's command. They read
  ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` and ``*_gtFine_polygons.json`` (for the
  image size); where the polygon files are absent (a partial copy), the records are made from
  the label PNGs and the sizes read from the image headers. The release's gtFine *test*
  labels are placeholders: scores on ``cityscapes_fine_sem_seg_test_checked`` mean nothing.
* ``cityscapes_coarse_sem_seg_{train,train_extra}``: the coarse labels
  (``gtCoarse/<split>/<city>/*_gtCoarse_labelTrainIds.png``) of the paper's "w/ coarse" rows.
* ``cityscapes_fine_sem_seg_test_submission``: the 1525 test images without labels; evaluated by
  writing the benchmark's labelIds PNGs (see :mod:`panoptic_ocr.evaluation.submission`).

``*_labelTrainIds.png`` files are made from the released ``*_labelIds.png`` by
``datasets/prepare_cityscapes.py`` with :data:`CITYSCAPES_LABELS` (the table of cityscapesScripts'
``labels.py``).
"""

import functools
import logging
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.data.datasets.cityscapes import load_cityscapes_semantic
from detectron2.utils.file_io import PathManager
from PIL import Image

from .sem_seg_loaders import load_images_without_labels

__all__ = [
    "CITYSCAPES_LABELS",
    "CITYSCAPES_LABEL_ID_TO_TRAIN_ID",
    "CITYSCAPES_TRAIN_ID_TO_LABEL_ID",
    "load_cityscapes_coarse_semantic",
    "load_cityscapes_fine_semantic",
    "load_cityscapes_test_images",
    "register_cityscapes",
    "register_all_cityscapes",
]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_cityscapes.py"
logger = logging.getLogger(__name__)
TEST_PREPARE_COMMAND = "unzip leftImg8bit_trainvaltest.zip -d $DETECTRON2_DATASETS/cityscapes"
IGNORE_LABEL = 255

# (labelId, trainId, name, color): the 35 labels of cityscapesScripts' helpers/labels.py. trainId
# 255 = ignored in training and evaluation; "license plate" (id -1) never appears in labelIds PNGs.
# fmt: off
CITYSCAPES_LABELS = [
    (0, 255, "unlabeled", (0, 0, 0)),
    (1, 255, "ego vehicle", (0, 0, 0)),
    (2, 255, "rectification border", (0, 0, 0)),
    (3, 255, "out of roi", (0, 0, 0)),
    (4, 255, "static", (0, 0, 0)),
    (5, 255, "dynamic", (111, 74, 0)),
    (6, 255, "ground", (81, 0, 81)),
    (7, 0, "road", (128, 64, 128)),
    (8, 1, "sidewalk", (244, 35, 232)),
    (9, 255, "parking", (250, 170, 160)),
    (10, 255, "rail track", (230, 150, 140)),
    (11, 2, "building", (70, 70, 70)),
    (12, 3, "wall", (102, 102, 156)),
    (13, 4, "fence", (190, 153, 153)),
    (14, 255, "guard rail", (180, 165, 180)),
    (15, 255, "bridge", (150, 100, 100)),
    (16, 255, "tunnel", (150, 120, 90)),
    (17, 5, "pole", (153, 153, 153)),
    (18, 255, "polegroup", (153, 153, 153)),
    (19, 6, "traffic light", (250, 170, 30)),
    (20, 7, "traffic sign", (220, 220, 0)),
    (21, 8, "vegetation", (107, 142, 35)),
    (22, 9, "terrain", (152, 251, 152)),
    (23, 10, "sky", (70, 130, 180)),
    (24, 11, "person", (220, 20, 60)),
    (25, 12, "rider", (255, 0, 0)),
    (26, 13, "car", (0, 0, 142)),
    (27, 14, "truck", (0, 0, 70)),
    (28, 15, "bus", (0, 60, 100)),
    (29, 255, "caravan", (0, 0, 90)),
    (30, 255, "trailer", (0, 0, 110)),
    (31, 16, "train", (0, 80, 100)),
    (32, 17, "motorcycle", (0, 0, 230)),
    (33, 18, "bicycle", (119, 11, 32)),
    (-1, -1, "license plate", (0, 0, 142)),
]
# fmt: on
CITYSCAPES_LABEL_ID_TO_TRAIN_ID: Dict[int, int] = {
    i: t for i, t, _, _ in CITYSCAPES_LABELS if i >= 0
}
_TRAIN_LABELS = sorted(
    (t, i, name, color) for i, t, name, color in CITYSCAPES_LABELS if 0 <= t < IGNORE_LABEL
)
# trainId k (0..18) -> labelId, as the benchmark server expects predictions.
CITYSCAPES_TRAIN_ID_TO_LABEL_ID: List[int] = [i for _, i, _, _ in _TRAIN_LABELS]

_FINE_SPLITS = ("train", "val", "test")
_COARSE_SPLITS = ("train", "train_extra")


def _get_cityscapes_meta() -> Dict:
    return {
        "stuff_classes": [name for _, _, name, _ in _TRAIN_LABELS],
        "stuff_colors": [list(color) for _, _, _, color in _TRAIN_LABELS],
        "ignore_label": IGNORE_LABEL,
        "prepare_command": PREPARE_COMMAND,
    }


def _city_label_records(image_dir: str, gt_dir: str, annotation: str) -> List[Dict]:
    """Records for ``<image_dir>/<city>/*_leftImg8bit.png`` with labels
    ``<gt_dir>/<city>/*_<annotation>_labelTrainIds.png``, every label checked.

    Raises:
        FileNotFoundError: no image, or naming how many labels are missing, the first of them
            and the command that creates them.
    """
    records = []
    for city in sorted(PathManager.ls(image_dir)):
        for name in sorted(PathManager.ls(os.path.join(image_dir, city))):
            if not name.endswith("_leftImg8bit.png"):
                continue
            stem = name[: -len("leftImg8bit.png")]
            label = os.path.join(gt_dir, city, f"{stem}{annotation}_labelTrainIds.png")
            records.append(
                {"file_name": os.path.join(image_dir, city, name), "sem_seg_file_name": label}
            )
    if not records:
        raise FileNotFoundError(
            f"No '*_leftImg8bit.png' image in the city folders of '{image_dir}'"
        )
    missing = [
        r["sem_seg_file_name"] for r in records if not PathManager.isfile(r["sem_seg_file_name"])
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(records)} *_{annotation}_labelTrainIds.png file(s) are "
            f"missing, e.g. '{missing[0]}'. Create them with: {PREPARE_COMMAND}"
        )
    return records


def load_cityscapes_coarse_semantic(image_dir: str, gt_dir: str) -> List[Dict]:
    """Records for ``<image_dir>/<city>/*_leftImg8bit.png`` with labels
    ``<gt_dir>/<city>/*_gtCoarse_labelTrainIds.png``.

    Raises:
        FileNotFoundError: naming the first missing label and the command that creates it.
    """
    return _city_label_records(image_dir, gt_dir, "gtCoarse")


def load_cityscapes_test_images(image_dir: str) -> List[Dict]:
    """Label-free records for ``<image_dir>/<city>/*_leftImg8bit.png`` (the test split)."""
    return load_images_without_labels(image_dir, suffixes=("_leftImg8bit.png",), recursive=True)


def _with_prepare_hint(load, *args):
    # The builtin loader asserts that the first labelTrainIds file exists and points at
    # cityscapesScripts; say which command of this project creates the files instead.
    try:
        return load(*args)
    except AssertionError as e:
        if "labelTrainIds" not in str(e):
            raise
        raise FileNotFoundError(
            f"Cityscapes *_gtFine_labelTrainIds.png files are missing. "
            f"Create them with: {PREPARE_COMMAND}"
        ) from e


def _fine_records_without_polygons(image_dir: str, gt_dir: str) -> List[Dict]:
    """The records of ``load_cityscapes_semantic`` made from the label PNGs alone: sizes from
    the image headers instead of ``*_gtFine_polygons.json``."""
    records = _city_label_records(image_dir, gt_dir, "gtFine")
    for record in records:
        with PathManager.open(record["file_name"], "rb") as f:
            record["width"], record["height"] = Image.open(f).size
    return records


def _has_polygons(image_dir: str, gt_dir: str) -> bool:
    """Whether the first image of the first city has its ``*_gtFine_polygons.json``."""
    for city in sorted(PathManager.ls(image_dir)):
        for name in sorted(PathManager.ls(os.path.join(image_dir, city))):
            if name.endswith("_leftImg8bit.png"):
                stem = name[: -len("leftImg8bit.png")]
                return PathManager.isfile(os.path.join(gt_dir, city, stem + "gtFine_polygons.json"))
    return True  # no image: Detectron2's loader says so


def load_cityscapes_fine_semantic(image_dir: str, gt_dir: str) -> List[Dict]:
    """Detectron2's ``load_cityscapes_semantic`` records (``*_gtFine_labelTrainIds.png``); the
    same records from the label PNGs where ``*_gtFine_polygons.json`` are absent.

    Raises:
        FileNotFoundError: the labelTrainIds files are missing (names the command creating them).
    """
    if PathManager.isdir(image_dir) and not _has_polygons(image_dir, gt_dir):
        logger.info("%s: no *_gtFine_polygons.json; image sizes are read from the images", gt_dir)
        return _fine_records_without_polygons(image_dir, gt_dir)
    return _with_prepare_hint(load_cityscapes_semantic, image_dir, gt_dir)


def register_cityscapes(root: str, prefix: str = "cityscapes") -> None:
    """Register the fine, coarse and label-free test splits under ``<root>/cityscapes``.

    Names: ``{prefix}_fine_sem_seg_{train,val,test}_checked``,
    ``{prefix}_coarse_sem_seg_{train,train_extra}`` and ``{prefix}_fine_sem_seg_test_submission``.
    """
    base = os.path.join(root, "cityscapes")
    meta = _get_cityscapes_meta()
    for split in _FINE_SPLITS:
        # Detectron2's folders and metadata layout (image_dir/gt_dir, read by its evaluators).
        image_dir = os.path.join(base, "leftImg8bit", split)
        gt_dir = os.path.join(base, "gtFine", split)
        name = f"{prefix}_fine_sem_seg_{split}_checked"
        DatasetCatalog.register(
            name, functools.partial(load_cityscapes_fine_semantic, image_dir, gt_dir)
        )
        MetadataCatalog.get(name).set(
            image_dir=image_dir,
            gt_dir=gt_dir,
            image_root=image_dir,
            sem_seg_root=gt_dir,
            evaluator_type="cityscapes_sem_seg",
            thing_classes=_get_builtin_metadata("cityscapes")["thing_classes"],
            **meta,
        )
    for split in _COARSE_SPLITS:
        image_dir = os.path.join(base, "leftImg8bit", split)
        gt_dir = os.path.join(base, "gtCoarse", split)
        name = f"{prefix}_coarse_sem_seg_{split}"
        DatasetCatalog.register(
            name, functools.partial(load_cityscapes_coarse_semantic, image_dir, gt_dir)
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", **meta
        )

    image_dir = os.path.join(base, "leftImg8bit", "test")
    name = f"{prefix}_fine_sem_seg_test_submission"
    DatasetCatalog.register(name, functools.partial(load_cityscapes_test_images, image_dir))
    meta = dict(meta, prepare_command=TEST_PREPARE_COMMAND)
    MetadataCatalog.get(name).set(
        image_root=image_dir,
        evaluator_type="sem_seg_submission",
        submission_format="cityscapes",
        **meta,
    )


def register_all_cityscapes(root: str) -> None:
    """Register every Cityscapes dataset of the project (:func:`register_cityscapes`)."""
    register_cityscapes(root)
