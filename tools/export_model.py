#!/usr/bin/env python
"""Export a model to ONNX, OpenVINO IR or TorchScript, optionally checking it against PyTorch.

    .venv/bin/python tools/export_model.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --format onnx --output model.onnx --check \\
        MODEL.WEIGHTS output/quickstart/ocr_R18_os16_toy_scenes_600it/model_final.pth

Input of the exported semantic model: ``image`` [1, 3, H, W] float32 raw pixels (0..255, in the
config's INPUT.FORMAT order), any H and W; output ``logits`` [1, K, H, W]. Panoptic-FPN exports
to TorchScript only. ``--check`` runs the file and PyTorch on ``--check-input`` images (default:
noise) and two odd-size resizes, prints the largest logit difference and the argmax agreement
per image, and fails when a difference exceeds ``--atol`` x max(1, largest |logit|) or an
agreement falls below ``--min-agreement``.
Trailing KEY VALUE pairs override the config, as in train_net.py. See docs/export.md.
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import logging
import sys

from detectron2.utils.logger import setup_logger

from panoptic_ocr import setup_cfg
from panoptic_ocr.engine.arguments import add_weight_arguments, weight_overrides
from panoptic_ocr.export import (
    EXPORT_FORMATS,
    check_export,
    check_images,
    export_model,
    format_checks,
)
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides
from panoptic_ocr.utils.safe_write import OutputExistsError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--output", required=True, help="file to write (.onnx, .xml or .ts)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--check", action="store_true", help="compare the export with PyTorch")
    parser.add_argument(
        "--check-input",
        action="append",
        default=[],
        metavar="IMAGE",
        help="an image for --check (repeat for more)",
    )
    parser.add_argument(
        "--int8-calibration",
        metavar="DATASET",
        help="--format openvino: quantise to int8 (NNCF), calibrated on this registered dataset",
    )
    parser.add_argument(
        "--calibration-images", type=int, default=16, help="--int8-calibration: images used"
    )
    parser.add_argument(
        "--atol",
        type=float,
        help="--check: largest logit difference allowed, x max(1, max |logit|) "
        "(default 1e-4; int8: 0.5)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        help="--check: smallest argmax agreement (default 0.9999; int8: 0.99)",
    )
    add_config_overrides(parser)
    add_weight_arguments(parser)
    args = parse_args_with_overrides(parser, argv)
    setup_logger(name="panoptic_ocr")
    logger = logging.getLogger("panoptic_ocr.export")

    cfg = setup_cfg(args.config_file, list(args.opts) + weight_overrides(args))
    int8 = bool(args.int8_calibration)
    if args.atol is None:
        args.atol = 0.5 if int8 else 1e-4
    if args.min_agreement is None:
        args.min_agreement = 0.99 if int8 else 0.9999
    try:
        model = export_model(
            cfg,
            args.output,
            args.format,
            overwrite=args.overwrite,
            int8_calibration=args.int8_calibration,
            calibration_count=args.calibration_images,
        )
    except (OutputExistsError, ValueError, KeyError) as e:
        print(f"export_model: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(
            f'export_model: --int8-calibration needs nncf ({e}): pip install -e ".[deploy]"',
            file=sys.stderr,
        )
        return 2
    print(f"wrote {args.output} ({args.format})")
    if not args.check:
        return 0
    checks = check_export(args.output, model, check_images(args.check_input, cfg.INPUT.FORMAT))
    print(format_checks(checks))
    bad = [c for c in checks if not c.passes(args.atol, args.min_agreement)]
    if bad:
        logger.error(
            "check failed on %s (allowed: |diff| <= %g x max(1, max |logit|), agreement >= %g)",
            ", ".join(c.name for c in bad),
            args.atol,
            args.min_agreement,
        )
        return 1
    print(
        f"check passed: max |diff| {max(c.max_abs_diff for c in checks):.2e} <= "
        f"{args.atol:g} x max(1, max |logit|), "
        f"min agreement {100 * min(c.agreement for c in checks):.4f}% >= "
        f"{100 * args.min_agreement:g}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
