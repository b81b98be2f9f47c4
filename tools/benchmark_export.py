#!/usr/bin/env python
"""Exported model vs eager PyTorch on CPU, side by side: eager float32, traced TorchScript,
onnxruntime without and with its graph optimisations (same thread count, interleaved rounds).

    python tools/benchmark_export.py --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \
        --sizes 256x256 512x512 --runs 5 MODEL.WEIGHTS ""

Random weights are fine: speed does not depend on them. Prints a table (docs/export.md).
"""
import argparse
import os

import torch

from panoptic_ocr import setup_cfg
from panoptic_ocr.export.benchmark import benchmark_export, format_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--sizes", nargs="+", default=["256x256", "512x512"], help="HxW input sizes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: PyTorch's default)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    cfg = setup_cfg(args.config_file, args.opts)
    rows = benchmark_export(cfg, sizes, runs=args.runs, warmup=args.warmup)
    print(f"load average (1, 5, 15 min): {os.getloadavg()}; threads: {rows[0]['threads']}")
    print(format_benchmark(rows))


if __name__ == "__main__":
    main()
