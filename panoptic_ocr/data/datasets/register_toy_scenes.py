"""Register the toy scenes (see :mod:`.toy_scenes`) like Detectron2's builtin datasets.

Names:
    toy_scenes_sem_seg_{train,val}              semantic segmentation over all 7 classes
    toy_scenes_panoptic_{train,val}             COCO panoptic, "standard" (like coco_2017_*_panoptic)
    toy_scenes_panoptic_{train,val}_separated   instances + stuff-only semantics (Panoptic-FPN)
The data is generated under ``$DETECTRON2_DATASETS/toy_scenes`` the first time it is loaded.
"""
import functools
import os
from typing import Callable, Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.coco_panoptic import load_coco_panoptic_json, merge_to_panoptic

from ..availability import register_dataset_generator
from .sem_seg_loaders import load_sem_seg_paired
from .toy_scenes import IGNORE_LABEL, TOY_CATEGORIES, ensure_toy_scenes

__all__ = ["get_toy_scenes_meta", "get_toy_scenes_separated_meta", "register_toy_scenes"]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_toy_scenes.py"
SPLITS = ("train", "val")


def get_toy_scenes_meta() -> Dict:
    """Metadata in the layout of Detectron2's "coco_panoptic_standard" metadata."""
    things = [c for c in TOY_CATEGORIES if c["isthing"]]
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_colors": [c["color"] for c in things],
        "stuff_classes": [c["name"] for c in TOY_CATEGORIES],
        "stuff_colors": [c["color"] for c in TOY_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(TOY_CATEGORIES)},
    }


def get_toy_scenes_separated_meta() -> Dict:
    """Metadata in the layout of Detectron2's "coco_panoptic_separated": semantic id 0 = things."""
    things = [c for c in TOY_CATEGORIES if c["isthing"]]
    stuff = [c for c in TOY_CATEGORIES if not c["isthing"]]
    stuff_ids = {c["id"]: i + 1 for i, c in enumerate(stuff)}
    stuff_ids[0] = 0
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_colors": [c["color"] for c in things],
        "stuff_classes": ["things"] + [c["name"] for c in stuff],
        "stuff_colors": [[82, 18, 128]] + [c["color"] for c in stuff],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "stuff_dataset_id_to_contiguous_id": stuff_ids,
    }


def _lazy(root: str, load: Callable[[], List[Dict]]) -> List[Dict]:
    ensure_toy_scenes(root)
    return load()


def register_toy_scenes(root: str) -> None:
    """Register every toy-scenes dataset with files under ``root`` (created on first load)."""
    generate = functools.partial(ensure_toy_scenes, root)
    for split in SPLITS:
        image_root = os.path.join(root, "images", split)
        sem_seg_root = os.path.join(root, "sem_seg", split)
        panoptic_root = os.path.join(root, f"panoptic_{split}")
        panoptic_json = os.path.join(root, f"panoptic_{split}.json")
        instances_json = os.path.join(root, f"instances_{split}.json")
        stuff_root = os.path.join(root, f"panoptic_stuff_{split}")
        common = {"image_root": image_root, "ignore_label": IGNORE_LABEL, "prepare_command": PREPARE_COMMAND}
        meta = get_toy_scenes_meta()

        name = f"toy_scenes_sem_seg_{split}"
        DatasetCatalog.register(name, functools.partial(_lazy, root, functools.partial(load_sem_seg_paired, sem_seg_root, image_root)))
        MetadataCatalog.get(name).set(
            sem_seg_root=sem_seg_root,
            evaluator_type="sem_seg",
            stuff_classes=meta["stuff_classes"],
            stuff_colors=meta["stuff_colors"],
            **common,
        )
        register_dataset_generator(name, generate)

        name = f"toy_scenes_panoptic_{split}"
        load = functools.partial(load_coco_panoptic_json, panoptic_json, image_root, panoptic_root, meta)
        DatasetCatalog.register(name, functools.partial(_lazy, root, load))
        MetadataCatalog.get(name).set(
            panoptic_root=panoptic_root,
            panoptic_json=panoptic_json,
            json_file=instances_json,
            evaluator_type="coco_panoptic_seg",
            label_divisor=1000,
            **common,
            **meta,
        )
        register_dataset_generator(name, generate)

        name = f"toy_scenes_panoptic_{split}_separated"
        separated_meta = get_toy_scenes_separated_meta()

        def load_separated(name=name, instances_json=instances_json, image_root=image_root, stuff_root=stuff_root):
            return merge_to_panoptic(load_coco_json(instances_json, image_root, name), load_sem_seg_paired(stuff_root, image_root))

        DatasetCatalog.register(name, functools.partial(_lazy, root, load_separated))
        MetadataCatalog.get(name).set(
            panoptic_root=panoptic_root,
            panoptic_json=panoptic_json,
            sem_seg_root=stuff_root,
            json_file=instances_json,
            evaluator_type="coco_panoptic_seg",
            **common,
            **separated_meta,
        )
        register_dataset_generator(name, generate)
