"""PASCAL-Context, 59 classes (the most frequent of the 459-label release; background ignored).

Names:

* ``pascal_context_59_sem_seg_{train,val}``: 4998 / 5105 VOC2010 images, labels in
  ``VOCdevkit/VOC2010/annotations_detectron2/pascal_context_59/{train,val}``, written by
  ``datasets/prepare_pascal_context.py`` from the release's ``trainval/<image id>.mat`` (field
  ``LabelMap``, ids of ``labels.txt``: 0 = unlabeled, 1..459).

Train ids 0..58 are the 59 classes in alphabetical order (the OCR paper code's 1..59 minus one);
background, unlabeled and the 400 rarer labels become 255, so mIoU is taken over 59 classes.
The release publishes no palette: colors are mmsegmentation's PASCAL-Context palette
(:mod:`.palettes`).
"""

import functools
import os
from typing import Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .palettes import PASCAL_CONTEXT_59_COLORS
from .sem_seg_loaders import load_sem_seg_from_labels

__all__ = ["PASCAL_CONTEXT_59_CATEGORIES", "pascal_context_459_to_59", "register_pascal_context"]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_pascal_context.py"
IGNORE_LABEL = 255
NUM_459_LABELS = 459

# (id in the 459-label release, name), train id = position (0..58).
# fmt: off
PASCAL_CONTEXT_59_CATEGORIES: List[Tuple[int, str]] = [
    (2, "aeroplane"), (9, "bag"), (18, "bed"), (19, "bedclothes"),
    (22, "bench"), (23, "bicycle"), (25, "bird"), (31, "boat"),
    (33, "book"), (34, "bottle"), (44, "building"), (45, "bus"),
    (46, "cabinet"), (59, "car"), (65, "cat"), (68, "ceiling"),
    (72, "chair"), (80, "cloth"), (85, "computer"), (98, "cow"),
    (104, "cup"), (105, "curtain"), (113, "dog"), (115, "door"),
    (144, "fence"), (158, "floor"), (159, "flower"), (162, "food"),
    (187, "grass"), (189, "ground"), (207, "horse"), (220, "keyboard"),
    (232, "light"), (258, "motorbike"), (259, "mountain"), (260, "mouse"),
    (284, "person"), (295, "plate"), (296, "platform"), (308, "pottedplant"),
    (324, "road"), (326, "rock"), (347, "sheep"), (349, "shelves"),
    (354, "sidewalk"), (355, "sign"), (360, "sky"), (366, "snow"),
    (368, "sofa"), (397, "table"), (415, "track"), (416, "train"),
    (420, "tree"), (424, "truck"), (427, "tvmonitor"), (440, "wall"),
    (445, "water"), (454, "window"), (458, "wood"),
]
# fmt: on
assert len(PASCAL_CONTEXT_59_CATEGORIES) == 59


def pascal_context_459_to_59() -> List[int]:
    """``table[v]`` = train id (0..58) or 255 for every release value ``v`` in 0..459."""
    table = [IGNORE_LABEL] * (NUM_459_LABELS + 1)
    for train_id, (label_id, _) in enumerate(PASCAL_CONTEXT_59_CATEGORIES):
        table[label_id] = train_id
    return table


def _get_pascal_context_59_meta() -> Dict:
    return {
        "stuff_classes": [name for _, name in PASCAL_CONTEXT_59_CATEGORIES],
        "stuff_colors": [list(c) for c in PASCAL_CONTEXT_59_COLORS],
        # Lets SemSegEvaluator's json name the release's label ids.
        "stuff_dataset_id_to_contiguous_id": {
            i: k for k, (i, _) in enumerate(PASCAL_CONTEXT_59_CATEGORIES)
        },
        "ignore_label": IGNORE_LABEL,
        "prepare_command": PREPARE_COMMAND,
    }


def register_pascal_context(root: str, prefix: str = "pascal_context_59") -> None:
    """Register ``{prefix}_sem_seg_{train,val}`` with files under ``<root>/VOCdevkit/VOC2010``."""
    base = os.path.join(root, "VOCdevkit", "VOC2010")
    image_dir = os.path.join(base, "JPEGImages")
    meta = _get_pascal_context_59_meta()
    for split in ("train", "val"):
        gt_dir = os.path.join(base, "annotations_detectron2", "pascal_context_59", split)
        name = f"{prefix}_sem_seg_{split}"
        DatasetCatalog.register(
            name, functools.partial(load_sem_seg_from_labels, gt_dir, image_dir, ".jpg")
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", **meta
        )
