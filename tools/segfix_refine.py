#!/usr/bin/env python
"""Refine a folder of label PNGs written by any model with a trained SegFix model.

    .venv/bin/python tools/segfix_refine.py \\
        --config-file configs/toy_scenes/segfix_R18_toy_scenes_600it.yaml \\
        --dataset toy_scenes_sem_seg_val --predictions preds/ --output preds_segfix/ \\
        MODEL.WEIGHTS output/toy_scenes/segfix_R18_toy_scenes_600it/model_final.pth

Predictions are ``<image stem><--suffix>.png`` (single-channel labels in any id space; the demo's
``--raw`` output uses ``--suffix _sem_seg``), matched to the images of ``--dataset`` (a registered
dataset) or of ``--images`` (a folder). Refined files keep their names under ``--output``; an
existing one is replaced only with ``--overwrite``. Trailing KEY VALUE pairs override the SegFix
config (``MODEL.SEGFIX.SCALE``, ``THRESHOLD``). The logic is
:mod:`panoptic_ocr.engine.segfix_refine`; docs/segfix.md.
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import logging
import sys
from typing import List, Optional

from detectron2.utils.logger import setup_logger

from panoptic_ocr import setup_cfg
from panoptic_ocr.checkpoint.weight_files import WeightFileError
from panoptic_ocr.engine.arguments import add_weight_arguments, weight_overrides
from panoptic_ocr.engine.segfix_refine import refine_folder
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides
from panoptic_ocr.utils.safe_write import OutputExistsError


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the SegFix config")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="registered dataset whose images were predicted")
    source.add_argument("--images", help="folder of the predicted images")
    parser.add_argument("--predictions", required=True, help="folder of label PNGs")
    parser.add_argument("--output", required=True, help="folder for the refined PNGs")
    parser.add_argument("--suffix", default="", help="prediction name = <image stem><suffix>.png")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_config_overrides(parser)
    add_weight_arguments(parser)
    args = parse_args_with_overrides(parser, argv)
    setup_logger(name="panoptic_ocr")
    logging.getLogger("panoptic_ocr").setLevel(logging.INFO)
    try:
        cfg = setup_cfg(args.config_file, list(args.opts) + weight_overrides(args))
        summary = refine_folder(
            cfg,
            args.predictions,
            args.output,
            dataset=args.dataset,
            images=args.images,
            suffix=args.suffix,
            overwrite=args.overwrite,
        )
    except (FileNotFoundError, ValueError, OutputExistsError, WeightFileError) as e:
        print(f"segfix_refine: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
