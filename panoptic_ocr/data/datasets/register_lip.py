"""LIP (Look Into Person, single-person human parsing): 20 classes including background 0.

Names:

* ``lip_sem_seg_{train,val}``: 30462 / 10000 images, labels in
  ``lip/annotations_detectron2/{train,val}`` (written by ``datasets/prepare_lip.py`` from the
  released ``TrainVal_parsing_annotations/{train,val}_segmentations``);
* ``lip_sem_seg_test``: the 10000 ``Testing_images/testing_images`` without public labels;
  evaluated by writing PNGs of class ids 0..19 named as the images.

Background (0) is a class that is trained and scored, as in the paper; 255 is ignored. The
metadata's ``flip_pairs`` lists the left/right classes that a horizontal flip swaps.
"""

import functools
import os
from typing import Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .sem_seg_loaders import load_images_without_labels, load_sem_seg_from_labels

__all__ = ["LIP_CATEGORIES", "LIP_FLIP_PAIRS", "register_lip"]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_lip.py"
TEST_PREPARE_COMMAND = "unzip Testing_images.zip -d $DETECTRON2_DATASETS/lip"
IGNORE_LABEL = 255

# (id, name, color): the 20 LIP classes with the authors' colors (LIP_JPPNet).
# fmt: off
LIP_CATEGORIES: List[Tuple[int, str, Tuple[int, int, int]]] = [
    (0, "Background", (0, 0, 0)),
    (1, "Hat", (128, 0, 0)),
    (2, "Hair", (255, 0, 0)),
    (3, "Glove", (0, 85, 0)),
    (4, "Sunglasses", (170, 0, 51)),
    (5, "UpperClothes", (255, 85, 0)),
    (6, "Dress", (0, 0, 85)),
    (7, "Coat", (0, 119, 221)),
    (8, "Socks", (85, 85, 0)),
    (9, "Pants", (0, 85, 85)),
    (10, "Jumpsuits", (85, 51, 0)),
    (11, "Scarf", (52, 86, 128)),
    (12, "Skirt", (0, 128, 0)),
    (13, "Face", (0, 0, 255)),
    (14, "LeftArm", (51, 170, 221)),
    (15, "RightArm", (0, 255, 255)),
    (16, "LeftLeg", (85, 255, 170)),
    (17, "RightLeg", (170, 255, 85)),
    (18, "LeftShoe", (255, 255, 0)),
    (19, "RightShoe", (255, 170, 0)),
]
# fmt: on
# Classes exchanged by a horizontal flip: (left, right).
LIP_FLIP_PAIRS: List[Tuple[int, int]] = [(14, 15), (16, 17), (18, 19)]


def _get_lip_meta() -> Dict:
    return {
        "stuff_classes": [name for _, name, _ in LIP_CATEGORIES],
        "stuff_colors": [list(color) for _, _, color in LIP_CATEGORIES],
        "flip_pairs": [list(p) for p in LIP_FLIP_PAIRS],
        "ignore_label": IGNORE_LABEL,
        "prepare_command": PREPARE_COMMAND,
    }


def register_lip(root: str, prefix: str = "lip") -> None:
    """Register ``{prefix}_sem_seg_{train,val,test}`` with files under ``<root>/lip``."""
    base = os.path.join(root, "lip")
    meta = _get_lip_meta()
    for split in ("train", "val"):
        image_dir = os.path.join(base, "TrainVal_images", f"{split}_images")
        gt_dir = os.path.join(base, "annotations_detectron2", split)
        name = f"{prefix}_sem_seg_{split}"
        DatasetCatalog.register(
            name, functools.partial(load_sem_seg_from_labels, gt_dir, image_dir, ".jpg")
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", **meta
        )

    image_dir = os.path.join(base, "Testing_images", "testing_images")
    name = f"{prefix}_sem_seg_test"
    DatasetCatalog.register(
        name, functools.partial(load_images_without_labels, image_dir, (".jpg",))
    )
    MetadataCatalog.get(name).set(
        image_root=image_dir,
        evaluator_type="sem_seg_submission",
        submission_format="lip",
        **dict(meta, prepare_command=TEST_PREPARE_COMMAND),
    )
