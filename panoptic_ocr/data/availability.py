"""Make sure a registered dataset's files exist before a loader reads them."""

import os
from typing import Callable, Dict

from detectron2.data import MetadataCatalog

__all__ = ["register_dataset_generator", "ensure_dataset_available"]

_GENERATORS: Dict[str, Callable[[], object]] = {}
# Metadata keys that name files or folders a dataset needs.
_PATH_KEYS = (
    "image_root",
    "sem_seg_root",
    "panoptic_root",
    "panoptic_json",
    "json_file",
    "image_info_json",
)


def register_dataset_generator(dataset_name: str, generate: Callable[[], object]) -> None:
    """Record a function that creates ``dataset_name``'s files on first use (toy data)."""
    _GENERATORS[dataset_name] = generate


def ensure_dataset_available(dataset_name: str) -> None:
    """Generate the dataset if it is generated on demand, then check that its paths exist.

    Raises:
        FileNotFoundError: naming the missing path and the command that creates it.
    """
    if dataset_name in _GENERATORS:
        _GENERATORS[dataset_name]()
    meta = MetadataCatalog.get(dataset_name)
    how = meta.get("prepare_command", None)
    how = (
        f"Create it with: {how} (see datasets/README.md)"
        if how
        else "See datasets/README.md for how to prepare it."
    )
    for key in _PATH_KEYS:
        path = meta.get(key, None)
        if path and not os.path.exists(path):
            raise FileNotFoundError(
                f"Dataset '{dataset_name}': {key} '{path}' does not exist "
                f"(DETECTRON2_DATASETS={os.getenv('DETECTRON2_DATASETS', 'datasets')}). {how}"
            )
