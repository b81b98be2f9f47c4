#!/usr/bin/env python3
"""Complexity of the context modules beside the OCR paper's Table 4.

Builds each head's context module at paper size from the project config (as
``MODEL.SEM_SEG_HEAD.NAME`` would; OCR as ``OCRContext`` with one-block phi/psi, as Table 4
counts it), runs it in eval mode under ``no_grad`` on a ``[N, C, H, W]`` feature (OCR also gets
``[N, 19, H, W]`` region logits, Cityscapes' K) and reports:

- parameters of the context module (no classifier, no auxiliary branch: as Table 4);
- multiply-adds counted by ``fvcore.nn.FlopCountAnalysis`` (traced in float32) and 2x that,
  which is how the paper counts FLOPs;
- peak memory of one forward pass above what is held before it (weights and inputs are not
  included): on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on
  CPU the running sum of the allocation/free events that ``torch.profiler`` records
  (``profile_memory=True``) for PyTorch's CPU allocator, whose maximum is the peak;
- median latency of ``--runs`` forward passes after ``--warmup`` ones.

The measuring is :mod:`panoptic_ocr.benchmarks.heads` (with :mod:`panoptic_ocr.benchmarks.timing`);
this script parses the command line and prints.

Usage:
    python tools/benchmark_heads.py                          # [1, 2048, 128, 128], all heads
    python tools/benchmark_heads.py --input 1,2048,16,16 --runs 2 --heads ocr,ppm --json
    python tools/benchmark_heads.py --device cuda --dtype float16 --variant compact
"""

import argparse
import json
import sys
import warnings
from typing import Dict, List

# TorchScript deprecation warnings (fvcore traces with torch.jit) say nothing about the heads.
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402

from panoptic_ocr.benchmarks.heads import (  # noqa: E402
    DTYPES,
    HEAD_NAMES,
    VARIANT_ALIASES,
    benchmark_head,
    format_table,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--input",
        type=lambda s: tuple(int(v) for v in s.split(",")),
        default=(1, 2048, 128, 128),
        help="feature size N,C,H,W (default: Table 4's 1,2048,128,128)",
    )
    parser.add_argument(
        "--heads",
        default=",".join(HEAD_NAMES),
        help=f"comma-separated subset of {','.join(HEAD_NAMES)}",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=tuple(DTYPES),
        help="float32, or the project's reduced-precision inference path (autocast, channels-last "
        "weights in that dtype, BN folded): bfloat16 on CPU, float16 on CUDA",
    )
    parser.add_argument(
        "--variant",
        default="original",
        choices=tuple(VARIANT_ALIASES),
        help="DANet/CC-attention definition: original (=2048: Table 4's FLOPs) or compact "
        "(=512: Table 4's parameters)",
    )
    parser.add_argument(
        "--ocr-proj-layers",
        type=int,
        default=1,
        help="1x1 conv blocks in OCR's phi/psi: 1 as Table 4 counts, 2 as the released code",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed forward passes (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forward passes first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of tables")
    args = parser.parse_args(argv)
    if len(args.input) != 4:
        parser.error(f"--input needs N,C,H,W, got {args.input}")
    args.heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = sorted(set(args.heads) - set(HEAD_NAMES))
    if unknown:
        parser.error(f"unknown heads {unknown}; choose from {list(HEAD_NAMES)}")
    args.variant = VARIANT_ALIASES[args.variant]
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    return args


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    header = (
        f"device: {device_name}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"input {list(args.input)}, dtype {args.dtype}, runs {args.runs} (warmup {args.warmup}), "
        f"DANet/CC variant {args.variant}, OCR phi/psi blocks {args.ocr_proj_layers}"
    )
    # With --json, stdout carries only the JSON list.
    print(header, file=sys.stderr if args.json else sys.stdout, flush=True)
    results = []
    for name in args.heads:
        results.append(
            benchmark_head(
                name,
                args.input,
                device,
                dtype=args.dtype,
                variant=args.variant,
                ocr_proj_layers=args.ocr_proj_layers,
                runs=args.runs,
                warmup=args.warmup,
            )
        )
        if not args.json:
            print(f"  measured {name}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(format_table(results))
    return results


if __name__ == "__main__":
    main()
