#!/usr/bin/env python
"""Inference speed of OCR in float32 vs reduced precision on this machine's CPU (or GPU).

Times the OCR module (:class:`OCRContext`, paper widths: 2048 -> 512 -> 256) on
``[1, 2048, S, S]`` features for each ``--sizes`` S, and optionally (``--model``) a whole
``OCRSemanticSegmentor`` built from a config through its inference path
(``MODEL.INFERENCE_DTYPE``, ``MODEL.INFERENCE_CHANNELS_LAST``, ``TEST.FOLD_BATCHNORM``).
"inference copy" is what ``Trainer.test`` evaluates with all three set:
``prepare_for_inference(model, fold_bn=True, channels_last=True, weight_dtype=<autocast dtype>)``.
Variants are timed interleaved (one call of each per round) so that load from other processes
hits all of them alike; the table gives the median and the min over rounds and the speed-ups
of both against float32 (on a shared machine the min is the better estimate of the cost). Random weights: speed does not depend on them.
The measuring is :mod:`panoptic_ocr.benchmarks.precision`; this script parses the command line
and prints.

    python tools/benchmark_precision.py                       # paper size S=128 and S=32
    python tools/benchmark_precision.py --sizes 64 --rounds 9
    python tools/benchmark_precision.py --sizes --model configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml --image-size 512
"""

import argparse
import sys

import torch

from panoptic_ocr.benchmarks.precision import format_table, model_variants, ocr_variants
from panoptic_ocr.benchmarks.timing import time_interleaved
from panoptic_ocr.modeling.inference import resolve_inference_dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 32], help="feature sizes S of [1,2048,S,S]")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16"])
    parser.add_argument("--rounds", type=int, default=5, help="timed calls of each variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--model", default="", help="also time a whole segmentor built from this config")
    parser.add_argument("--image-size", type=int, default=512)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = resolve_inference_dtype(args.dtype, device)
    if dtype is None:
        sys.exit(f"--dtype {args.dtype}: no reduced precision on this {device}")
    dtype_name = {torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"mkldnn bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, reduced dtype {dtype_name}, "
        f"{args.rounds} rounds"
    )
    timing_device = torch.device(device)
    for size in args.sizes:
        variants = ocr_variants(size, device, dtype, args.num_classes)
        times = time_interleaved(variants, timing_device, args.rounds, args.warmup)
        title = f"OCRContext (2048 -> 512 -> 256, K={args.num_classes}) on [1, 2048, {size}, {size}]"
        print("\n" + format_table(title, times))
    if args.model:
        variants = model_variants(args.model, args.image_size, device, dtype_name)
        times = time_interleaved(variants, timing_device, args.rounds, args.warmup)
        title = f"OCRSemanticSegmentor from {args.model}, one {args.image_size}x{args.image_size} image"
        print("\n" + format_table(title, times))


if __name__ == "__main__":
    main()
