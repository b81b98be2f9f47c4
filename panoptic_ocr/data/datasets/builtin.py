"""Registration of every dataset the project knows, in one place (as Detectron2's
``data/datasets/builtin.py``): the loaders and metadata live in the ``register_*`` modules, the
calls are here. Datasets are looked up under ``$DETECTRON2_DATASETS`` (default ``datasets``);
``$PANOPTIC_OCR_CUSTOM_DATASETS`` names a JSON file of your own folders
(docs/custom_datasets.md)."""
import os

from .register_ade20k import register_all_ade20k
from .register_cityscapes import register_all_cityscapes
from .register_cityscapes_panoptic import register_cityscapes_panoptic
from .register_coco_panoptic import register_all_coco_panoptic
from .register_coco_panoptic_test_dev import register_coco_panoptic_test_dev
from .register_coco_stuff_10k import register_coco_stuff_10k
from .register_custom import CUSTOM_DATASETS_ENV, register_sem_seg_folders_from_json
from .register_lip import register_lip
from .register_mapillary_vistas import register_mapillary_vistas
from .register_pascal_context import register_pascal_context
from .register_toy_scenes import register_toy_scenes

__all__ = ["register_all_builtin"]


def register_all_builtin(root: str) -> None:
    """Register every built-in dataset under ``root``, then the custom folders of
    ``$PANOPTIC_OCR_CUSTOM_DATASETS`` (when set)."""
    register_toy_scenes(os.path.join(root, "toy_scenes"))
    register_all_cityscapes(root)
    register_cityscapes_panoptic(root)
    register_all_ade20k(root)
    register_lip(root)
    register_pascal_context(root)
    register_coco_stuff_10k(root)
    register_mapillary_vistas(root)
    register_coco_panoptic_test_dev(root)
    register_all_coco_panoptic(root)
    if os.getenv(CUSTOM_DATASETS_ENV):
        register_sem_seg_folders_from_json(os.environ[CUSTOM_DATASETS_ENV])
