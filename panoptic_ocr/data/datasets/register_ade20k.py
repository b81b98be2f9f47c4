"""ADE20K (SceneParsing, ADEChallengeData2016): 150 classes, ignore 255.

Names:

* ``ade20k_sem_seg_{train,val}_checked``: the data of Detectron2's ``ade20k_sem_seg_{train,val}``
  (left untouched): ``load_sem_seg``'s records on
  ``ADEChallengeData2016/{images,annotations_detectron2}/{training,validation}``, but every image
  must have its label and every label its image (:func:`.sem_seg_loaders.load_sem_seg_paired`), with
  ``stuff_colors`` and ``prepare_command`` in the metadata.
* ``ade20k_sem_seg_test``: the 3352 images of ``release_test.zip`` (no public labels), unzipped
  into ``ADEChallengeData2016/release_test/testing``; evaluated by writing the challenge's PNGs
  (ids 1..150, see :mod:`panoptic_ocr.evaluation.submission`).

``annotations_detectron2`` is made by ``datasets/prepare_ade20k.py``: released value ``v`` (0 =
"other", 1..150 = classes of objectInfo150) becomes ``v - 1``, and 0 becomes 255.
"""

import functools
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

from .sem_seg_loaders import load_images_without_labels, load_sem_seg_paired

__all__ = ["ADE20K_COLORS", "load_ade20k_test_images", "register_ade20k", "register_all_ade20k"]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_ade20k.py"
TEST_PREPARE_COMMAND = "unzip release_test.zip -d $DETECTRON2_DATASETS/ADEChallengeData2016"
IGNORE_LABEL = 255
NUM_CLASSES = 150

# Color of class k (0-based train id; the release's id k + 1), from the SceneParsing toolkit's
# color150.mat (objectInfo150 order). Class names are Detectron2's ADE20K_SEM_SEG_CATEGORIES.
# fmt: off
ADE20K_COLORS: List[List[int]] = [
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3], [120, 120, 80],
    [140, 140, 140], [204, 5, 255], [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7],
    [150, 5, 61], [120, 120, 70], [8, 255, 51], [255, 6, 82], [143, 255, 140], [204, 255, 4],
    [255, 51, 7], [204, 70, 3], [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255],
    [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92], [112, 9, 255],
    [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10], [7, 255, 255],
    [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7], [255, 122, 8], [0, 255, 20],
    [255, 8, 41], [255, 5, 153], [6, 51, 255], [235, 12, 255], [160, 150, 20], [0, 163, 255],
    [140, 140, 140], [250, 10, 15], [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0],
    [153, 255, 0], [0, 0, 255], [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255],
    [11, 200, 200], [255, 82, 0], [0, 255, 245], [0, 61, 255], [0, 255, 112], [0, 255, 133],
    [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0], [0, 143, 255], [51, 255, 0],
    [0, 82, 255], [0, 255, 41], [0, 255, 173], [10, 0, 255], [173, 255, 0], [0, 255, 153],
    [255, 92, 0], [255, 0, 255], [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20],
    [255, 184, 184], [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194],
    [0, 255, 82], [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255], [0, 122, 255],
    [0, 255, 163], [255, 153, 0], [0, 255, 10], [255, 112, 0], [143, 255, 0], [82, 0, 255],
    [163, 255, 0], [255, 235, 0], [8, 184, 170], [133, 0, 255], [0, 255, 92], [184, 0, 255],
    [255, 0, 31], [0, 184, 255], [0, 214, 255], [255, 0, 112], [92, 255, 0], [0, 224, 255],
    [112, 224, 255], [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0], [255, 0, 163],
    [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235], [245, 0, 255],
    [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0], [0, 204, 255], [20, 0, 255],
    [255, 255, 0], [0, 153, 255], [0, 41, 255], [0, 255, 204], [41, 0, 255], [41, 255, 0],
    [173, 0, 255], [0, 245, 255], [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255],
    [184, 255, 0], [0, 133, 255], [255, 214, 0], [25, 194, 194], [102, 255, 0], [92, 0, 255],
]
# fmt: on
assert len(ADE20K_COLORS) == NUM_CLASSES == len(ADE20K_SEM_SEG_CATEGORIES)


def _get_ade20k_meta() -> Dict:
    return {
        "stuff_classes": ADE20K_SEM_SEG_CATEGORIES[:],
        "stuff_colors": [c[:] for c in ADE20K_COLORS],
        "ignore_label": IGNORE_LABEL,
        "prepare_command": PREPARE_COMMAND,
    }


def load_ade20k_test_images(image_dir: str) -> List[Dict]:
    """Label-free records for ``release_test/testing/ADE_test_*.jpg``."""
    return load_images_without_labels(image_dir, suffixes=(".jpg",))


def register_ade20k(root: str, prefix: str = "ade20k") -> None:
    """Register ``{prefix}_sem_seg_{train,val}_checked`` on
    ``<root>/ADEChallengeData2016/{images,annotations_detectron2}/{training,validation}`` and
    ``{prefix}_sem_seg_test`` on ``<root>/ADEChallengeData2016/release_test/testing/*.jpg``."""
    for split, folder in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(root, "ADEChallengeData2016", "images", folder)
        gt_dir = os.path.join(root, "ADEChallengeData2016", "annotations_detectron2", folder)
        name = f"{prefix}_sem_seg_{split}_checked"
        DatasetCatalog.register(
            name,
            functools.partial(load_sem_seg_paired, gt_dir, image_dir, gt_ext="png", image_ext="jpg"),
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", **_get_ade20k_meta()
        )
    image_dir = os.path.join(root, "ADEChallengeData2016", "release_test", "testing")
    name = f"{prefix}_sem_seg_test"
    DatasetCatalog.register(name, functools.partial(load_ade20k_test_images, image_dir))
    meta = dict(_get_ade20k_meta(), prepare_command=TEST_PREPARE_COMMAND)
    MetadataCatalog.get(name).set(
        image_root=image_dir,
        evaluator_type="sem_seg_submission",
        submission_format="ade20k",
        **meta,
    )


def register_all_ade20k(root: str) -> None:
    """Register every ADE20K dataset of the project (:func:`register_ade20k`)."""
    register_ade20k(root)
