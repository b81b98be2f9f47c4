"""Dataset loaders and registrations. Importing this package registers every dataset of the
project (:func:`~.builtin.register_all_builtin`, under ``$DETECTRON2_DATASETS``)."""
import os

from . import toy_scenes
from .builtin import register_all_builtin
from .register_custom import CUSTOM_DATASETS_ENV, register_sem_seg_folder, register_sem_seg_folders_from_json
from .register_toy_scenes import register_toy_scenes

register_all_builtin(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
