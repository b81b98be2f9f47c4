#!/usr/bin/env python3
"""Loss benchmark: cost of each loss side by side, and a seeded learning check on the toy scenes
(plain CE vs class-weighted CE vs OHEM: the things classes' IoU). The logic is
:mod:`panoptic_ocr.benchmarks.losses`; this script parses the command line and prints.

Usage:
    python tools/benchmark_losses.py                           # cost table + 3 variants x 2 seeds x 150 it
    python tools/benchmark_losses.py --skip-training           # cost table only
    python tools/benchmark_losses.py --iters 150 --seeds 0,1,2 --variants cross_entropy,ohem_cross_entropy
    python tools/benchmark_losses.py --shape 8,7,192,192 --runs 5
"""
import argparse
import json
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="8,7,192,192", help="N,K,H,W of the logits of the cost table")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default="cross_entropy,weighted_cross_entropy,ohem_cross_entropy")
    parser.add_argument("--output-root", default=None, help="where the runs write (default: a temp folder)")
    parser.add_argument("--json", action="store_true", help="also print the raw rows as JSON")
    args = parser.parse_args(argv)

    import torch

    import panoptic_ocr  # noqa: F401  (registers everything)
    from panoptic_ocr.benchmarks import losses as bench

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at start: {load:.2f}, threads: {torch.get_num_threads()}")
    raw = {}
    if not args.skip_cost:
        shape = tuple(int(v) for v in args.shape.split(","))
        costs = bench.loss_cost_ms(shape, runs=args.runs, device=args.device)
        base = costs["cross_entropy"]
        print(f"\nforward + backward on logits {list(shape)} ({args.device}), median of {args.runs} interleaved rounds")
        print("| loss | ms | x cross_entropy |\n| :-- | --: | --: |")
        for name, ms in costs.items():
            print(f"| {name} | {ms:.1f} | {ms / base:.2f} |")
        raw["cost_ms"] = costs
    if not args.skip_training:
        seeds = [int(s) for s in args.seeds.split(",")]
        rows = bench.learning_check(args.variants.split(","), seeds, args.iters, args.output_root)
        print(f"\ntoy scenes val, quick-start OCR R18, {args.iters} iterations, seeds {seeds}")
        print("| variant | seed | mIoU | IoU circle | IoU rectangle | IoU triangle | things mean | s |")
        print("| :-- | --: | --: | --: | --: | --: | --: | --: |")
        for r in rows:
            print(f"| {r['variant']} | {r['seed']} | {r['mIoU']:.1f} | {r['IoU-circle']:.1f} | {r['IoU-rectangle']:.1f} "
                  f"| {r['IoU-triangle']:.1f} | {r['things']:.1f} | {r['seconds']:.0f} |")
        print("\nmean over seeds (min-max)")
        print("| variant | seeds | mIoU | circle | rectangle | triangle | things mean |\n| :-- | --: | --: | --: | --: | --: | --: |")
        for s in bench.summarise(rows):
            cells = " | ".join(f"{m:.1f} ({lo:.1f}-{hi:.1f})" for m, lo, hi in
                               (s[k] for k in ("mIoU", "IoU-circle", "IoU-rectangle", "IoU-triangle", "things")))
            print(f"| {s['variant']} | {s['seeds']} | {cells} |")
        raw["runs"] = rows
    if args.json:
        print(json.dumps(raw, indent=1))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at end: {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
