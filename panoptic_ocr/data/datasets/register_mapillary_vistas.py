"""Mapillary Vistas v1.2: 65 evaluated classes (street scenes), "Unlabeled" (65) ignored as 255.

Names:

* ``mapillary_vistas_v1.2_sem_seg_{train,val}``: the 18000 / 2000 images of
  ``mapillary_vistas/{training,validation}/images/*.jpg``, labels in
  ``mapillary_vistas/annotations_detectron2/v1.2/{training,validation}/*.png``; every image must
  have its label and every label its image (:func:`.sem_seg_loaders.load_sem_seg_paired`).

``annotations_detectron2/v1.2`` is written by ``datasets/prepare_mapillary_vistas.py`` from the
release's v1.2 labels: single-channel (palette) PNGs of the 66 ids of the v1.2 ``config.json``
(0..64 = the classes below, 65 = "Unlabeled"). Two releases hold them, both read by the script:

* v2.0 (``mapillary-vistas-dataset_public_v2.0.zip``, the current download):
  ``{training,validation}/v1.2/labels/*.png`` beside ``v2.0/labels`` (124 classes, not used);
* v1.1/v1.2 (``mapillary-vistas-dataset_public_v1.{1,2}.zip``): ``{training,validation}/labels``.

Ids 0..64 are kept as train ids, 65 becomes 255. The 5000 ``testing`` images have no public labels
and no submission writer here: they are not registered.
"""

import functools
import os
from typing import Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .sem_seg_loaders import load_sem_seg_paired

__all__ = [
    "MAPILLARY_VISTAS_V1_2_LABELS",
    "mapillary_vistas_v1_2_lut",
    "register_mapillary_vistas",
]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_mapillary_vistas.py"
IGNORE_LABEL = 255
NUM_CLASSES = 65
VERSION = "v1.2"
# Split name -> the release's folder.
SPLITS = {"train": "training", "val": "validation"}

# (id, name, readable name, color): the "labels" of the v1.2 config.json, in its order; the label
# PNGs hold the id. Id 65 ("Unlabeled", "evaluate": false) is ignored; the 65 others are scored.
# fmt: off
MAPILLARY_VISTAS_V1_2_LABELS: List[Tuple[int, str, str, Tuple[int, int, int]]] = [
    (0, "animal--bird", "Bird", (165, 42, 42)),
    (1, "animal--ground-animal", "Ground Animal", (0, 192, 0)),
    (2, "construction--barrier--curb", "Curb", (196, 196, 196)),
    (3, "construction--barrier--fence", "Fence", (190, 153, 153)),
    (4, "construction--barrier--guard-rail", "Guard Rail", (180, 165, 180)),
    (5, "construction--barrier--other-barrier", "Barrier", (90, 120, 150)),
    (6, "construction--barrier--wall", "Wall", (102, 102, 156)),
    (7, "construction--flat--bike-lane", "Bike Lane", (128, 64, 255)),
    (8, "construction--flat--crosswalk-plain", "Crosswalk - Plain", (140, 140, 200)),
    (9, "construction--flat--curb-cut", "Curb Cut", (170, 170, 170)),
    (10, "construction--flat--parking", "Parking", (250, 170, 160)),
    (11, "construction--flat--pedestrian-area", "Pedestrian Area", (96, 96, 96)),
    (12, "construction--flat--rail-track", "Rail Track", (230, 150, 140)),
    (13, "construction--flat--road", "Road", (128, 64, 128)),
    (14, "construction--flat--service-lane", "Service Lane", (110, 110, 110)),
    (15, "construction--flat--sidewalk", "Sidewalk", (244, 35, 232)),
    (16, "construction--structure--bridge", "Bridge", (150, 100, 100)),
    (17, "construction--structure--building", "Building", (70, 70, 70)),
    (18, "construction--structure--tunnel", "Tunnel", (150, 120, 90)),
    (19, "human--person", "Person", (220, 20, 60)),
    (20, "human--rider--bicyclist", "Bicyclist", (255, 0, 0)),
    (21, "human--rider--motorcyclist", "Motorcyclist", (255, 0, 100)),
    (22, "human--rider--other-rider", "Other Rider", (255, 0, 200)),
    (23, "marking--crosswalk-zebra", "Lane Marking - Crosswalk", (200, 128, 128)),
    (24, "marking--general", "Lane Marking - General", (255, 255, 255)),
    (25, "nature--mountain", "Mountain", (64, 170, 64)),
    (26, "nature--sand", "Sand", (230, 160, 50)),
    (27, "nature--sky", "Sky", (70, 130, 180)),
    (28, "nature--snow", "Snow", (190, 255, 255)),
    (29, "nature--terrain", "Terrain", (152, 251, 152)),
    (30, "nature--vegetation", "Vegetation", (107, 142, 35)),
    (31, "nature--water", "Water", (0, 170, 30)),
    (32, "object--banner", "Banner", (255, 255, 128)),
    (33, "object--bench", "Bench", (250, 0, 30)),
    (34, "object--bike-rack", "Bike Rack", (100, 140, 180)),
    (35, "object--billboard", "Billboard", (220, 220, 220)),
    (36, "object--catch-basin", "Catch Basin", (220, 128, 128)),
    (37, "object--cctv-camera", "CCTV Camera", (222, 40, 40)),
    (38, "object--fire-hydrant", "Fire Hydrant", (100, 170, 30)),
    (39, "object--junction-box", "Junction Box", (40, 40, 40)),
    (40, "object--mailbox", "Mailbox", (33, 33, 33)),
    (41, "object--manhole", "Manhole", (100, 128, 160)),
    (42, "object--phone-booth", "Phone Booth", (142, 0, 0)),
    (43, "object--pothole", "Pothole", (70, 100, 150)),
    (44, "object--street-light", "Street Light", (210, 170, 100)),
    (45, "object--support--pole", "Pole", (153, 153, 153)),
    (46, "object--support--traffic-sign-frame", "Traffic Sign Frame", (128, 128, 128)),
    (47, "object--support--utility-pole", "Utility Pole", (0, 0, 80)),
    (48, "object--traffic-light", "Traffic Light", (250, 170, 30)),
    (49, "object--traffic-sign--back", "Traffic Sign (Back)", (192, 192, 192)),
    (50, "object--traffic-sign--front", "Traffic Sign (Front)", (220, 220, 0)),
    (51, "object--trash-can", "Trash Can", (140, 140, 20)),
    (52, "object--vehicle--bicycle", "Bicycle", (119, 11, 32)),
    (53, "object--vehicle--boat", "Boat", (150, 0, 255)),
    (54, "object--vehicle--bus", "Bus", (0, 60, 100)),
    (55, "object--vehicle--car", "Car", (0, 0, 142)),
    (56, "object--vehicle--caravan", "Caravan", (0, 0, 90)),
    (57, "object--vehicle--motorcycle", "Motorcycle", (0, 0, 230)),
    (58, "object--vehicle--on-rails", "On Rails", (0, 80, 100)),
    (59, "object--vehicle--other-vehicle", "Other Vehicle", (128, 64, 64)),
    (60, "object--vehicle--trailer", "Trailer", (0, 0, 110)),
    (61, "object--vehicle--truck", "Truck", (0, 0, 70)),
    (62, "object--vehicle--wheeled-slow", "Wheeled Slow", (0, 0, 192)),
    (63, "void--car-mount", "Car Mount", (32, 32, 32)),
    (64, "void--ego-vehicle", "Ego Vehicle", (120, 10, 10)),
    (65, "void--unlabeled", "Unlabeled", (0, 0, 0)),
]
# fmt: on
UNLABELED_ID = 65
assert [i for i, _, _, _ in MAPILLARY_VISTAS_V1_2_LABELS] == list(range(NUM_CLASSES + 1))


def mapillary_vistas_v1_2_lut() -> List[int]:
    """``table[v]`` = train id for every v1.2 label value ``v`` in 0..65: ``v`` for the 65
    classes, 255 for "Unlabeled" (65)."""
    return [IGNORE_LABEL if i == UNLABELED_ID else i for i, _, _, _ in MAPILLARY_VISTAS_V1_2_LABELS]


def _get_mapillary_vistas_v1_2_meta() -> Dict:
    classes = [c for c in MAPILLARY_VISTAS_V1_2_LABELS if c[0] != UNLABELED_ID]
    return {
        "stuff_classes": [readable for _, _, readable, _ in classes],
        "stuff_colors": [list(color) for _, _, _, color in classes],
        "ignore_label": IGNORE_LABEL,
        "prepare_command": PREPARE_COMMAND,
    }


def register_mapillary_vistas(root: str, prefix: str = "mapillary_vistas_v1.2") -> None:
    """Register ``{prefix}_sem_seg_{train,val}`` on ``<root>/mapillary_vistas/{training,
    validation}/images`` and ``<root>/mapillary_vistas/annotations_detectron2/v1.2/{training,
    validation}``."""
    base = os.path.join(root, "mapillary_vistas")
    meta = _get_mapillary_vistas_v1_2_meta()
    for split, folder in SPLITS.items():
        image_dir = os.path.join(base, folder, "images")
        gt_dir = os.path.join(base, "annotations_detectron2", VERSION, folder)
        name = f"{prefix}_sem_seg_{split}"
        DatasetCatalog.register(
            name,
            functools.partial(
                load_sem_seg_paired, gt_dir, image_dir, gt_ext="png", image_ext="jpg"
            ),
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", **meta
        )
