"""panoptic_ocr: Object-Contextual Representations (OCR) for semantic and panoptic segmentation
in Detectron2. Importing the package registers its backbones, heads, meta-architectures and
datasets."""

import warnings

# Detectron2 calls torch.jit.script when it is imported (detectron2.layers, .structures), and the
# TorchScript export (Panoptic-FPN's only format) uses torch.jit.trace / load; torch deprecates
# them with FutureWarnings that tell a user of this package nothing. The tools import
# panoptic_ocr before detectron2 so that none is printed.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning
)

from . import (  # noqa: E402
    data,  # registers datasets
    modeling,  # registers backbones, heads and meta-architectures
)
from .config import add_ocr_config, setup_cfg  # noqa: E402

__version__ = "0.1.0"
