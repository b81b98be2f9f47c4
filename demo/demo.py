#!/usr/bin/env python
"""Segment your own images or a video with any panoptic_ocr config (Detectron2's demo form).

    .venv/bin/python demo/demo.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --input photos/ --output vis/ \\
        --opts MODEL.WEIGHTS output/quickstart/ocr_R18_os16_toy_scenes_600it/model_final.pth
    .venv/bin/python demo/demo.py --config-file ... --input "photos/*.jpg" a.png \\
        --output vis/ --raw --regions car 3 --opts MODEL.WEIGHTS model_final.pth
    .venv/bin/python demo/demo.py \\
        --config-file configs/toy_scenes/panoptic_fpn_R18_toy_scenes_600it.yaml \\
        --video-input clip.mp4 --output clip_vis.mp4 --confidence-threshold 0.6 \\
        --opts MODEL.WEIGHTS ...

``--input``: files, globs or folders; ``--output``: a folder, or a file for one input.
``MODEL.WEIGHTS ""`` runs on random weights. What is written is listed in
demo/runner.py (and the README). An image whose outputs exist is skipped (--overwrite
replaces them), so a re-run into the same folder adds only the new images; the run ends with
the counts written / unreadable / with existing outputs. The visualisation's format follows
the --output file's extension. Config overrides: KEY VALUE pairs after --opts or at the end.
``--exported model.onnx [--runtime onnxruntime|openvino]`` runs an exported semantic model
(tools/export_model.py) instead of PyTorch, e.g. on a machine without the training set-up.
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import logging
import sys
import warnings

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.*", category=FutureWarning)

from detectron2.utils.logger import setup_logger  # noqa: E402
from runner import expand_inputs, run_images, run_video  # noqa: E402  (demo/runner.py, beside this file)

from panoptic_ocr import setup_cfg  # noqa: E402
from panoptic_ocr.engine.arguments import add_weight_arguments, weight_overrides  # noqa: E402
from panoptic_ocr.engine.predictor import Predictor  # noqa: E402
from panoptic_ocr.export import RUNTIMES  # noqa: E402
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides  # noqa: E402
from panoptic_ocr.utils.safe_write import OutputExistsError  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, glob patterns or folders")
    source.add_argument("--video-input", help="a video file (read with OpenCV)")
    parser.add_argument(
        "--output", required=True, help="output folder, or a file for a single input / the video"
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="Panoptic-FPN: minimum instance score drawn",
    )
    parser.add_argument(
        "--raw", action="store_true", help="also write label PNGs (panoptic: COCO PNG + JSON)"
    )
    parser.add_argument(
        "--regions",
        nargs="+",
        metavar="CLASS",
        help="OCR heads: soft object regions of these classes (names or indices)",
    )
    parser.add_argument(
        "--attention",
        action="store_true",
        help="multi-scale attention models: the attention map of each scale",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=2048,
        help="semantic models: longer sides above this use TEST.SLIDING_WINDOW (0: never)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--exported",
        metavar="FILE",
        help="run this exported semantic model (.onnx, OpenVINO .xml, .ts from "
        "tools/export_model.py) instead of MODEL.WEIGHTS in PyTorch",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="--exported: the runtime to run it with (default: by its format)",
    )
    add_config_overrides(parser)
    add_weight_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = parse_args_with_overrides(get_parser(), argv)
    setup_logger(name="panoptic_ocr")
    setup_logger(name="fvcore")
    logger = logging.getLogger("panoptic_ocr.demo")
    cfg = setup_cfg(args.config_file, list(args.opts) + weight_overrides(args))
    if args.runtime and not args.exported:
        print("demo: --runtime runs an exported file: give it with --exported", file=sys.stderr)
        return 2
    if args.exported and (args.regions or args.attention):
        print(
            "demo: --regions and --attention need the PyTorch model (the exported graph returns "
            "logits only): leave out --exported",
            file=sys.stderr,
        )
        return 2
    if args.input:  # a missing input is named before the model is built
        try:
            expand_inputs(args.input)
        except FileNotFoundError as e:
            print(f"demo: {e}", file=sys.stderr)
            return 2
    try:
        predictor = Predictor(
            cfg, max_size=args.max_size, exported=args.exported, runtime=args.runtime
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    try:
        if args.video_input:
            if args.raw or args.regions or args.attention:
                logger.warning(
                    "--raw, --regions and --attention apply to images only; the video gets the "
                    "drawn frames"
                )
            summary = run_video(
                predictor,
                args.video_input,
                args.output,
                confidence_threshold=args.confidence_threshold,
                overwrite=args.overwrite,
            )
        else:
            summary = run_images(
                predictor,
                args.input,
                args.output,
                raw=args.raw,
                regions=args.regions,
                attention=args.attention,
                confidence_threshold=args.confidence_threshold,
                overwrite=args.overwrite,
            )
    except (OutputExistsError, FileNotFoundError, ValueError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
