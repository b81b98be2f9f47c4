#!/usr/bin/env python
"""Evaluate an exported semantic model on a dataset, through the test loader and evaluators that
``train_net.py --eval-only`` uses: the mIoU of the deployed file itself.

    .venv/bin/python tools/export_model.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --format onnx --output model.onnx \\
        MODEL.WEIGHTS output/quickstart/ocr_R18_os16_toy_scenes_600it/model_final.pth
    .venv/bin/python tools/evaluate_exported.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --exported model.onnx --runtime onnxruntime

``--runtime``: onnxruntime (default for .onnx), openvino (reads .onnx and OpenVINO IR .xml) or
torchscript (.ts). The file must have been exported from this config's model with fully loaded
weights (its metadata says so), else nothing is evaluated. Results are printed as a table (and
logged as ``train_net.py`` logs them); the evaluators write under
``OUTPUT_DIR/inference_<runtime>/``.
Trailing KEY VALUE pairs override the config, as in train_net.py. See docs/export.md.
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import sys

from detectron2.utils.logger import setup_logger

from panoptic_ocr import setup_cfg
from panoptic_ocr.engine.arguments import add_weight_arguments, weight_overrides
from panoptic_ocr.engine.exported_evaluation import evaluate_exported, format_results
from panoptic_ocr.export import RUNTIMES, default_runtime
from panoptic_ocr.export.runtimes import OPENVINO_PRECISIONS
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--exported", required=True, metavar="FILE", help=".onnx, .xml or .ts")
    parser.add_argument("--runtime", choices=RUNTIMES, help="default: by the file's format")
    parser.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")
    parser.add_argument(
        "--openvino-precision",
        choices=OPENVINO_PRECISIONS,
        default="f32",
        help="OpenVINO's inference precision hint (bf16 runs as such only on CPUs with "
        "AVX512-BF16/AMX)",
    )
    add_config_overrides(parser)
    add_weight_arguments(parser)
    args = parse_args_with_overrides(parser, argv)
    setup_logger(name="panoptic_ocr")
    setup_logger(name="detectron2")
    cfg = setup_cfg(args.config_file, list(args.opts) + weight_overrides(args))
    try:
        results = evaluate_exported(
            cfg,
            args.exported,
            args.runtime,
            threads=args.threads,
            openvino_precision=args.openvino_precision,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"evaluate_exported: {e}", file=sys.stderr)
        return 2
    print(
        format_results(
            results, f"{args.exported} ({args.runtime or default_runtime(args.exported)})"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
