"""Command-line flags shared by ``train_net.py`` and the tools that load weights.

``--trust-weights`` and ``--allow-partial-weights`` set ``MODEL.WEIGHTS_TRUSTED`` and
``MODEL.WEIGHTS_ALLOW_PARTIAL`` (see :mod:`panoptic_ocr.config`), so that each tool reads them
from its config as evaluation does."""

import argparse
import sys
from typing import Callable, List

from ..checkpoint.checkpointer import IncompleteWeightsError
from ..checkpoint.weight_files import WeightFileError

__all__ = ["add_weight_arguments", "exit_status_of_weight_errors", "weight_overrides"]


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


def exit_status_of_weight_errors(tool: str, run: Callable[[], object]) -> int:
    """Run ``run()``; weights that cannot be read or do not fit the model (the refusals of
    :mod:`panoptic_ocr.checkpoint`, whose messages name the file and what is wrong) are printed
    as one ``<tool>: error: ...`` line and give exit status 2 instead of a traceback."""
    try:
        run()
    except (IncompleteWeightsError, WeightFileError) as e:
        print(f"{tool}: error: {e}", file=sys.stderr)
        return 2
    return 0
