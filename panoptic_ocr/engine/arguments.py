"""Command-line flags shared by ``train_net.py`` and the tools that load weights.

``--trust-weights`` and ``--allow-partial-weights`` set ``MODEL.WEIGHTS_TRUSTED`` and
``MODEL.WEIGHTS_ALLOW_PARTIAL`` (see :mod:`panoptic_ocr.config`), so that each tool reads them
from its config as evaluation does."""

import argparse
from typing import List

__all__ = ["add_weight_arguments", "weight_overrides"]


def add_weight_arguments(parser: argparse.ArgumentParser, *, partial: bool = True) -> None:
    """Add ``--trust-weights`` (and, with ``partial``, ``--allow-partial-weights``) to
    ``parser``."""
    parser.add_argument(
        "--trust-weights",
        action="store_true",
        help="read weight files with a plain unpickler: any code in them runs (only for files "
        "whose source you trust; MODEL.WEIGHTS_TRUSTED True)",
    )
    if partial:
        parser.add_argument(
            "--allow-partial-weights",
            action="store_true",
            help="load weights that do not fill the model (missing, unexpected or misshaped "
            "tensors, empty MODEL.WEIGHTS) with warnings instead of refusing them "
            "(MODEL.WEIGHTS_ALLOW_PARTIAL True)",
        )


def weight_overrides(args: argparse.Namespace) -> List[str]:
    """Config ``KEY VALUE`` pairs of the flags of :func:`add_weight_arguments` that are set."""
    opts: List[str] = []
    if getattr(args, "trust_weights", False):
        opts += ["MODEL.WEIGHTS_TRUSTED", "True"]
    if getattr(args, "allow_partial_weights", False):
        opts += ["MODEL.WEIGHTS_ALLOW_PARTIAL", "True"]
    return opts
