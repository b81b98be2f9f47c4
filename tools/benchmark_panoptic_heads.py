#!/usr/bin/env python3
"""Cost of Panoptic-FPN's semantic branch with and without a context module (supplementary
sec. C: "our OCR is also more efficient than both PPM and ASPP").

Builds the semantic head of each ``configs/coco/panoptic/panoptic_fpn[_<context>]_R_50_3x.yaml``
(exactly as ``PanopticFPN`` builds it: ``build_sem_seg_head`` on the FPN's output shapes) and
runs its inference path (``layers``: fuse p2..p5, context module, predictor) in eval mode under
``no_grad`` on random FPN features of one COCO-sized image. It reports, per head and for the
context module alone (the head minus Detectron2's plain ``SemSegFPNHead``): parameters,
multiply-adds (fvcore), peak memory of one forward pass and median latency. Peak memory and
latency are measured as in ``tools/benchmark_heads.py`` (``panoptic_ocr.benchmarks.timing``).
All heads are measured in one run, so the ratios compare like with like. The measuring is
:mod:`panoptic_ocr.benchmarks.panoptic_heads`; this script parses the command line and prints.

Usage:
    python tools/benchmark_panoptic_heads.py                    # 800 x 1216 image, CPU
    python tools/benchmark_panoptic_heads.py --image 512,768 --runs 3 --device cuda
"""

import argparse
import os
from typing import Dict, List

import torch

from panoptic_ocr.benchmarks.panoptic_heads import benchmark, format_table

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "coco", "panoptic")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="800,1216", help="image height,width (default: COCO's 800 x 1216)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        args.image = tuple(int(v) for v in args.image.split(","))
        if len(args.image) != 2 or min(args.image) < 32:
            raise ValueError
    except ValueError:
        parser.error(f"--image must be 'height,width' of at least 32 pixels, got {args.image!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    return args


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    results = benchmark(args.image, device, args.runs, args.warmup, config_dir=CONFIG_DIR)
    print(f"Semantic branch of Panoptic-FPN R50 at {args.image[0]}x{args.image[1]}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.runs} runs:")
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
