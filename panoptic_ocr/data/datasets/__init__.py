"""Dataset registrations. Importing this package registers every dataset of the project."""
import os

from . import toy_scenes
from .register_custom import CUSTOM_DATASETS_ENV, register_sem_seg_folder, register_sem_seg_folders_from_json
from .register_toy_scenes import register_toy_scenes

_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
register_toy_scenes(os.path.join(_root, "toy_scenes"))

from .register_ade20k import register_all_ade20k  # noqa: E402
from .register_cityscapes import register_all_cityscapes  # noqa: E402
from .register_coco_stuff_10k import register_coco_stuff_10k  # noqa: E402
from .register_lip import register_lip  # noqa: E402
from .register_pascal_context import register_pascal_context  # noqa: E402

register_all_cityscapes(_root)
register_all_ade20k(_root)
register_lip(_root)
register_pascal_context(_root)
register_coco_stuff_10k(_root)

from .register_coco_panoptic_test import register_coco_panoptic_test_dev  # noqa: E402

register_coco_panoptic_test_dev(_root)

from .register_coco_panoptic import register_all_coco_panoptic  # noqa: E402

register_all_coco_panoptic(_root)

if os.getenv(CUSTOM_DATASETS_ENV):  # your own datasets (docs/custom_datasets.md)
    register_sem_seg_folders_from_json(os.environ[CUSTOM_DATASETS_ENV])
