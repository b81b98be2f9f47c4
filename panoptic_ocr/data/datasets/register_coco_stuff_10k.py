"""COCO-Stuff-10K (v1.1): 171 classes (80 things, 91 stuff), ignore 255.

Names:

* ``coco_stuff_10k_sem_seg_{train,test}``: 9000 / 1000 images of ``cocostuff-10k-v1.1.zip``, labels
  in ``coco_stuff_10k/annotations_detectron2/{train,test}``, written by
  ``datasets/prepare_coco_stuff_10k.py`` from ``annotations/<name>.mat`` (field ``S``:
  0 = unlabeled, 1..182 = COCO-Stuff ids of ``labels.txt``).

Train ids 0..170 follow the COCO-Stuff ids with the 11 ids that COCO removed left out (the
convention of DeepLab and the OCR paper); 0 (unlabeled) and the removed ids become 255. Both
splits have public labels, so the test split is scored like a validation split. COCO-Stuff
publishes no palette of its own: colors are COCO's where COCO panoptic has the class, else
mmsegmentation's (:mod:`.palettes`).
"""

import functools
import os
from typing import Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .palettes import coco_stuff_171_colors
from .sem_seg_loaders import load_sem_seg_from_labels

__all__ = ["COCO_STUFF_171_CATEGORIES", "coco_stuff_182_to_171", "register_coco_stuff_10k"]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_coco_stuff_10k.py"
IGNORE_LABEL = 255
NUM_182_LABELS = 182

# (COCO-Stuff id, name, isthing); train id = position (0..170).
# fmt: off
COCO_STUFF_171_CATEGORIES: List[Tuple[int, str, int]] = [
    (1, "person", 1), (2, "bicycle", 1), (3, "car", 1),
    (4, "motorcycle", 1), (5, "airplane", 1), (6, "bus", 1),
    (7, "train", 1), (8, "truck", 1), (9, "boat", 1),
    (10, "traffic light", 1), (11, "fire hydrant", 1), (13, "stop sign", 1),
    (14, "parking meter", 1), (15, "bench", 1), (16, "bird", 1),
    (17, "cat", 1), (18, "dog", 1), (19, "horse", 1),
    (20, "sheep", 1), (21, "cow", 1), (22, "elephant", 1),
    (23, "bear", 1), (24, "zebra", 1), (25, "giraffe", 1),
    (27, "backpack", 1), (28, "umbrella", 1), (31, "handbag", 1),
    (32, "tie", 1), (33, "suitcase", 1), (34, "frisbee", 1),
    (35, "skis", 1), (36, "snowboard", 1), (37, "sports ball", 1),
    (38, "kite", 1), (39, "baseball bat", 1), (40, "baseball glove", 1),
    (41, "skateboard", 1), (42, "surfboard", 1), (43, "tennis racket", 1),
    (44, "bottle", 1), (46, "wine glass", 1), (47, "cup", 1),
    (48, "fork", 1), (49, "knife", 1), (50, "spoon", 1),
    (51, "bowl", 1), (52, "banana", 1), (53, "apple", 1),
    (54, "sandwich", 1), (55, "orange", 1), (56, "broccoli", 1),
    (57, "carrot", 1), (58, "hot dog", 1), (59, "pizza", 1),
    (60, "donut", 1), (61, "cake", 1), (62, "chair", 1),
    (63, "couch", 1), (64, "potted plant", 1), (65, "bed", 1),
    (67, "dining table", 1), (70, "toilet", 1), (72, "tv", 1),
    (73, "laptop", 1), (74, "mouse", 1), (75, "remote", 1),
    (76, "keyboard", 1), (77, "cell phone", 1), (78, "microwave", 1),
    (79, "oven", 1), (80, "toaster", 1), (81, "sink", 1),
    (82, "refrigerator", 1), (84, "book", 1), (85, "clock", 1),
    (86, "vase", 1), (87, "scissors", 1), (88, "teddy bear", 1),
    (89, "hair drier", 1), (90, "toothbrush", 1), (92, "banner", 0),
    (93, "blanket", 0), (94, "branch", 0), (95, "bridge", 0),
    (96, "building-other", 0), (97, "bush", 0), (98, "cabinet", 0),
    (99, "cage", 0), (100, "cardboard", 0), (101, "carpet", 0),
    (102, "ceiling-other", 0), (103, "ceiling-tile", 0), (104, "cloth", 0),
    (105, "clothes", 0), (106, "clouds", 0), (107, "counter", 0),
    (108, "cupboard", 0), (109, "curtain", 0), (110, "desk-stuff", 0),
    (111, "dirt", 0), (112, "door-stuff", 0), (113, "fence", 0),
    (114, "floor-marble", 0), (115, "floor-other", 0), (116, "floor-stone", 0),
    (117, "floor-tile", 0), (118, "floor-wood", 0), (119, "flower", 0),
    (120, "fog", 0), (121, "food-other", 0), (122, "fruit", 0),
    (123, "furniture-other", 0), (124, "grass", 0), (125, "gravel", 0),
    (126, "ground-other", 0), (127, "hill", 0), (128, "house", 0),
    (129, "leaves", 0), (130, "light", 0), (131, "mat", 0),
    (132, "metal", 0), (133, "mirror-stuff", 0), (134, "moss", 0),
    (135, "mountain", 0), (136, "mud", 0), (137, "napkin", 0),
    (138, "net", 0), (139, "paper", 0), (140, "pavement", 0),
    (141, "pillow", 0), (142, "plant-other", 0), (143, "plastic", 0),
    (144, "platform", 0), (145, "playingfield", 0), (146, "railing", 0),
    (147, "railroad", 0), (148, "river", 0), (149, "road", 0),
    (150, "rock", 0), (151, "roof", 0), (152, "rug", 0),
    (153, "salad", 0), (154, "sand", 0), (155, "sea", 0),
    (156, "shelf", 0), (157, "sky-other", 0), (158, "skyscraper", 0),
    (159, "snow", 0), (160, "solid-other", 0), (161, "stairs", 0),
    (162, "stone", 0), (163, "straw", 0), (164, "structural-other", 0),
    (165, "table", 0), (166, "tent", 0), (167, "textile-other", 0),
    (168, "towel", 0), (169, "tree", 0), (170, "vegetable", 0),
    (171, "wall-brick", 0), (172, "wall-concrete", 0), (173, "wall-other", 0),
    (174, "wall-panel", 0), (175, "wall-stone", 0), (176, "wall-tile", 0),
    (177, "wall-wood", 0), (178, "water-other", 0), (179, "waterdrops", 0),
    (180, "window-blind", 0), (181, "window-other", 0), (182, "wood", 0),
]
# fmt: on
assert len(COCO_STUFF_171_CATEGORIES) == 171


def coco_stuff_182_to_171() -> List[int]:
    """``table[v]`` = train id (0..170) or 255 for every COCO-Stuff value ``v`` in 0..182."""
    table = [IGNORE_LABEL] * (NUM_182_LABELS + 1)
    for train_id, (label_id, _, _) in enumerate(COCO_STUFF_171_CATEGORIES):
        table[label_id] = train_id
    return table


def _get_coco_stuff_10k_meta() -> Dict:
    return {
        "stuff_classes": [name for _, name, _ in COCO_STUFF_171_CATEGORIES],
        "stuff_colors": coco_stuff_171_colors(COCO_STUFF_171_CATEGORIES),
        # Lets SemSegEvaluator's json use COCO-Stuff ids, as COCO-Stuff's own tools do.
        "stuff_dataset_id_to_contiguous_id": {
            i: k for k, (i, _, _) in enumerate(COCO_STUFF_171_CATEGORIES)
        },
        "ignore_label": IGNORE_LABEL,
        "prepare_command": PREPARE_COMMAND,
    }


def register_coco_stuff_10k(root: str, prefix: str = "coco_stuff_10k") -> None:
    """Register ``{prefix}_sem_seg_{train,test}`` with files under ``<root>/coco_stuff_10k``."""
    base = os.path.join(root, "coco_stuff_10k")
    image_dir = os.path.join(base, "images")
    meta = _get_coco_stuff_10k_meta()
    for split in ("train", "test"):
        gt_dir = os.path.join(base, "annotations_detectron2", split)
        name = f"{prefix}_sem_seg_{split}"
        DatasetCatalog.register(
            name, functools.partial(load_sem_seg_from_labels, gt_dir, image_dir, ".jpg")
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", **meta
        )
