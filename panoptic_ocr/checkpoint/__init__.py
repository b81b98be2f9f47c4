"""Checkpoint conversion: other checkpoints renamed and checked for the project's models
(:mod:`.convert`, behind ``tools/convert_pretrained.py``).

The conversion of a file is :func:`convert_checkpoint` (the submodule keeps the name
``convert``)."""

from .convert import (
    CONVERTERS,
    KINDS,
    Conversion,
    ConversionError,
    check_state_dict,
    convert_checkpoint,
    convert_state_dict,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "CONVERTERS",
    "KINDS",
    "Conversion",
    "ConversionError",
    "check_state_dict",
    "convert_checkpoint",
    "convert_state_dict",
    "load_checkpoint",
    "save_checkpoint",
]
