"""Dataset registrations. Importing this package registers every dataset of the project."""
import os

from . import toy_scenes
from .register_toy_scenes import register_toy_scenes

_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
register_toy_scenes(os.path.join(_root, "toy_scenes"))
