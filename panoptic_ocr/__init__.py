"""panoptic_ocr: Object-Contextual Representations (OCR) for semantic and panoptic segmentation
in Detectron2. Importing the package registers its backbones, heads, meta-architectures and
datasets."""

from . import (
    data,  # registers datasets
    modeling,  # registers backbones, heads and meta-architectures
)
from .config import add_ocr_config, setup_cfg

__version__ = "0.1.0"
