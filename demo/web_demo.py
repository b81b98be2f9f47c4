#!/usr/bin/env python
"""A local web demo: drop an image in the browser, pick a config and weights, see the overlay,
OCR's soft object regions and the class legend (needs the [web] extra: pip install -e ".[web]").

    .venv/bin/python demo/web_demo.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --weights output/quickstart/ocr_R18_os16_toy_scenes_600it/model_final.pth

then open http://127.0.0.1:7860. Several --config-file are offered in a list; KEY VALUE pairs
(at the end or after --opts) apply to every config.
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import os
import sys

from detectron2.utils.logger import setup_logger

from panoptic_ocr.engine.web_demo import WebDemo, serve
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", action="append", required=True, metavar="FILE")
    parser.add_argument("--weights", default="", help="the weights shown first in the page")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-size", type=int, default=2048, help="as demo/demo.py's")
    add_config_overrides(parser)
    args = parse_args_with_overrides(parser, argv)
    setup_logger(name="panoptic_ocr")
    missing = [c for c in args.config_file if not os.path.isfile(c)]
    if missing:
        print(f"web_demo: no such config file: {missing}", file=sys.stderr)
        return 2
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('web_demo: needs Gradio: pip install -e ".[web]"', file=sys.stderr)
        return 2
    configs = {os.path.splitext(os.path.basename(c))[0]: c for c in args.config_file}
    demo = WebDemo(configs, args.opts, max_size=args.max_size)
    serve(demo, default_weights=args.weights, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
