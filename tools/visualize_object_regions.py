#!/usr/bin/env python3
"""Show OCR's soft object regions: per chosen class, a heat map over the image beside the
prediction (what is drawn and why: :mod:`panoptic_ocr.utils.object_regions`; the demo's
``--regions`` draws the same)."""

import argparse
import logging
import os
import warnings
from typing import List

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import torch  # noqa: E402

from panoptic_ocr import setup_cfg  # noqa: E402
from panoptic_ocr.engine.arguments import add_weight_arguments, weight_overrides  # noqa: E402
from panoptic_ocr.utils.object_regions import visualize_object_regions  # noqa: E402
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--weights",
        help="checkpoint (required: it must fill the model; random weights only with "
        "--allow-partial-weights)",
    )
    parser.add_argument("--input", nargs="+", required=True, help="image path(s)")
    parser.add_argument(
        "--classes",
        nargs="+",
        help="class names or indices (default: the classes of the --top-k largest segments of "
        "the prediction)",
    )
    parser.add_argument(
        "--top-k", type=int, default=3, help="classes shown when --classes is not given"
    )
    parser.add_argument("--output", required=True, help="folder for the PNGs (created)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    add_config_overrides(parser)
    add_weight_arguments(parser)
    args = parse_args_with_overrides(parser, argv)
    args.opts = list(args.opts) + weight_overrides(args)
    if args.top_k < 1:
        parser.error(f"--top-k must be >= 1, got {args.top_k}")
    for path in args.input:
        if not os.path.isfile(path):
            parser.error(f"--input {path!r} does not exist")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = setup_cfg(args.config_file, list(args.opts) + ["MODEL.DEVICE", args.device])
    written = visualize_object_regions(
        cfg, args.input, args.output, weights=args.weights, classes=args.classes, top_k=args.top_k
    )
    # printed: setup_cfg's loggers leave basicConfig's handler out, so a log line was lost
    print(f"Wrote {len(written)} image(s) to {args.output}")
    return written


if __name__ == "__main__":
    main()
