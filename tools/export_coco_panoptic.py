#!/usr/bin/env python3
"""Export a COCO panoptic submission of a Panoptic-FPN model (test-dev, or val to check it).

Runs the model over a registered dataset and writes, in ``--output-dir``:

    panoptic_<split>_<method>_results.zip    the upload: the JSON and the folder below
    panoptic_<split>_<method>_results.json   {"annotations": [{image_id, file_name, segments_info}]}
    panoptic_<split>_<method>_results/       one RGB id PNG per image (id = R + 256 G + 256^2 B)

``<split>`` is the dataset's ``submission_split`` metadata ("test-dev2017" for
``coco_2017_test-dev_panoptic``), else the dataset name. An existing submission is never
replaced without ``--overwrite``. With ``--evaluate``, a dataset that has panoptic ground
truth (``panoptic_json``/``panoptic_root`` metadata) is scored with panopticapi's
``pq_compute`` on the written files. The export is
:mod:`panoptic_ocr.engine.panoptic_export`; this script parses the command line and prints.

Usage:
    .venv/bin/python tools/export_coco_panoptic.py --config-file configs/.../panoptic_fpn.yaml \\
        --dataset coco_2017_test-dev_panoptic --output-dir output/submission \\
        --method-name my_method MODEL.WEIGHTS output/model_final.pth
    .venv/bin/python tools/export_coco_panoptic.py --config-file \\
        configs/toy_scenes/Base-Panoptic-FPN-toy-scenes.yaml --evaluate --num-gpus 2 \\
        MODEL.WEIGHTS output/toy/model_final.pth     # 2 processes; gloo on CPU-only machines
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import dataclasses
import logging
import os
import sys
import warnings

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

from detectron2.engine import launch  # noqa: E402

from panoptic_ocr.engine.arguments import (  # noqa: E402
    add_weight_arguments,
    exit_status_of_weight_errors,
    weight_overrides,
)
from panoptic_ocr.engine.panoptic_export import (  # noqa: E402
    ExportError,
    ExportOptions,
    check_export,
    export_panoptic,
    format_panoptic_quality,
)
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides  # noqa: E402


def export(options: ExportOptions) -> None:
    """One process of the export; the main one prints the score (``--evaluate``) and the zip."""
    result = export_panoptic(options)
    if result is None:
        return
    if options.evaluate:
        if result.has_ground_truth:
            print(f"Panoptic quality of {result.json_path.name} on {result.dataset}:")
            print(format_panoptic_quality(result.panoptic_quality))
        else:
            print(
                f"--evaluate: dataset '{result.dataset}' has no panoptic ground truth; not scored"
            )
    print(f"COCO panoptic submission: {result.zip_path}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--dataset", help="registered dataset (default: the config's first DATASETS.TEST)"
    )
    parser.add_argument(
        "--output-dir",
        help="folder of the submission files (default: OUTPUT_DIR/panoptic_submission/<dataset>)",
    )
    parser.add_argument(
        "--method-name", default="panoptic_ocr", help="algorithm name in the file names"
    )
    parser.add_argument(
        "--split-tag",
        help="split in the file names (default: the dataset's submission_split, else its name)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing submission")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="score the written files when the dataset has panoptic ground truth",
    )
    parser.add_argument(
        "--num-gpus", type=int, default=1, help="processes (gloo on CPU-only machines)"
    )
    parser.add_argument("--dist-url", default="auto", help="init URL of multi-process runs")
    add_config_overrides(parser)
    add_weight_arguments(parser)
    args = parse_args_with_overrides(parser, argv)
    args.opts = list(args.opts) + weight_overrides(args)
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file '{args.config_file}' does not exist")
    if args.num_gpus < 1:
        parser.error(f"--num-gpus must be >= 1, got {args.num_gpus}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fields = {f.name for f in dataclasses.fields(ExportOptions)}
    options = ExportOptions(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        check_export(options)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return exit_status_of_weight_errors(
        "export_coco_panoptic.py",
        lambda: launch(export, args.num_gpus, dist_url=args.dist_url, args=(options,)),
    )


if __name__ == "__main__":
    sys.exit(main())
