#!/usr/bin/env python
"""Mixed precision on CPU: bfloat16 autocast training (SOLVER.AMP.ENABLED) against float32.

Trains the same short run twice from the same seed and prints seconds per iteration (median and
min of the steady iterations), the speed-up, the final loss and the mIoU after training. The
logic is :mod:`panoptic_ocr.benchmarks.amp`; results are recorded in docs/trust.md.

    .venv/bin/python tools/benchmark_amp.py                       # the quick start, 30 iterations
    .venv/bin/python tools/benchmark_amp.py --iterations 100 --threads 2 SOLVER.IMS_PER_BATCH 4
"""
import argparse
import logging
import sys
from pathlib import Path

import torch

from panoptic_ocr.benchmarks.amp import format_amp_table, run_amp_benchmark

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--output-dir", default="output/benchmark_amp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    results = run_amp_benchmark(args.config_file, args.opts, args.iterations, args.output_dir, args.seed)
    print(format_amp_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
