#!/usr/bin/env python
"""Inference speed of OCR in float32 vs reduced precision on this machine's CPU (or GPU).

Times the OCR module (:class:`OCRContext`, paper widths: 2048 -> 512 -> 256) on
``[1, 2048, S, S]`` features for each ``--sizes`` S, and optionally (``--model``) a whole
``OCRSemanticSegmentor`` built from a config through its inference path
(``MODEL.INFERENCE_DTYPE``, ``MODEL.INFERENCE_CHANNELS_LAST``, ``TEST.FOLD_BATCHNORM``).
"inference copy" is what ``Trainer.test`` evaluates with all three set:
``prepare_for_inference(model, fold_bn=True, channels_last=True, weight_dtype=<autocast dtype>)``.
Variants are timed interleaved (one call of each per round) so that load from other processes
hits all of them alike (:func:`panoptic_ocr.utils.measurement.time_interleaved`); the table
gives the median and the min over rounds and the speed-ups of both against float32 (on a shared
machine the min is the better estimate of the cost). Random weights: speed does not depend on
them. The OCR-module variants combine autocast, channels-last, reduced-precision weights and BN
folding one by one, which only ``prepare_for_inference`` on the bare module can express; the
whole-model variants go through ``build_inference_model``.

    .venv/bin/python tools/benchmark_precision.py                       # paper size S=128 and S=32
    .venv/bin/python tools/benchmark_precision.py --sizes 64 --rounds 9
    .venv/bin/python tools/benchmark_precision.py --sizes \\
        --model configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml --image-size 512
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import copy
import statistics
import sys
from typing import Callable, Dict, List

import torch
from detectron2.modeling import build_model

from panoptic_ocr.config import setup_cfg
from panoptic_ocr.modeling.contexts import OCRContext
from panoptic_ocr.modeling.inference import build_inference_model
from panoptic_ocr.modeling.precision import (
    inference_autocast,
    prepare_for_inference,
    resolve_inference_dtype,
)
from panoptic_ocr.utils.measurement import time_interleaved

CL = torch.channels_last


def randomise_batchnorm_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics, so that BN folding is not folding
    an identity."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)


def ocr_variants(
    size: int, device: str, dtype: torch.dtype, num_classes: int
) -> Dict[str, Callable]:
    """Calls of the paper-size OCR module on ``[1, 2048, size, size]`` features and
    ``[1, num_classes, size, size]`` regions: float32 first, then ``dtype`` variants.

    Args:
        size: feature size S.
        device: "cpu" or "cuda".
        dtype: the reduced dtype, ``torch.bfloat16`` or ``torch.float16``.
        num_classes: K of the region logits.
    Returns:
        variant label -> call.
    """
    torch.manual_seed(0)
    base = OCRContext(2048, mid_channels=512, key_channels=256).to(device).eval()
    randomise_batchnorm_(base)
    x = torch.randn(1, 2048, size, size, device=device)
    regions = torch.randn(1, num_classes, size, size, device=device)
    x_cl = x.contiguous(memory_format=CL)
    m_cl = prepare_for_inference(base, channels_last=True)
    m_cl_low = prepare_for_inference(base, channels_last=True, weight_dtype=dtype)
    m_all = prepare_for_inference(base, fold_bn=True, channels_last=True, weight_dtype=dtype)
    m_low = copy.deepcopy(base).to(dtype)
    m_low_cl = copy.deepcopy(m_low).to(memory_format=CL)
    x_low, x_low_cl, r_low = x.to(dtype), x_cl.to(dtype), regions.to(dtype)
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]

    def autocast(module, inp):
        def call():
            with inference_autocast(dtype, device):
                return module(inp, regions)

        return call

    return {
        "fp32": lambda: base(x, regions),
        "fp32 channels_last": lambda: m_cl(x_cl, regions),
        f"{name} autocast": autocast(base, x),
        f"{name} autocast, channels_last input": autocast(base, x_cl),
        f"{name} autocast, channels_last": autocast(m_cl, x_cl),
        f"{name} autocast, channels_last, {name} conv weights": autocast(m_cl_low, x_cl),
        f"{name} autocast, inference copy (+ BN folded)": autocast(m_all, x_cl),
        f"{name} cast module": lambda: m_low(x_low, r_low),
        f"{name} cast module, channels_last": lambda: m_low_cl(x_low_cl, r_low),
    }


def model_variants(
    config_file: str, image_size: int, device: str, dtype_name: str
) -> Dict[str, Callable]:
    """Calls of the segmentor of ``config_file`` (random weights) on one
    ``image_size`` x ``image_size`` image: float32 first, then ``dtype_name`` variants.

    Every variant is set up by the one inference builder
    (:func:`~panoptic_ocr.modeling.inference.build_inference_model`) from the inference keys;
    the variants with float32 conv weights under autocast are float32 inference models whose
    ``inference_dtype`` is then set to ``dtype_name``.

    Args:
        config_file: a config of an ``OCRSemanticSegmentor``.
        image_size: side of the square input.
        device: "cpu" or "cuda".
        dtype_name: "bfloat16" or "float16".
    """
    cfg = setup_cfg(config_file, ["MODEL.DEVICE", device], freeze=False)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    randomise_batchnorm_(model)
    image = torch.randint(0, 256, (3, image_size, image_size), dtype=torch.uint8)
    inputs = [{"image": image, "height": image_size, "width": image_size}]

    def variant(
        dtype: str, channels_last: bool = False, fold: bool = False, weights: bool = False
    ) -> Callable:
        vcfg = cfg.clone()
        vcfg.MODEL.INFERENCE_DTYPE = dtype if weights else "float32"
        vcfg.MODEL.INFERENCE_CHANNELS_LAST = channels_last
        vcfg.TEST.FOLD_BATCHNORM = fold
        m = build_inference_model(vcfg, model).eval()
        if m is model:
            m = copy.deepcopy(model).eval()
        m.inference_dtype = dtype  # autocast, with float32 conv weights unless `weights`
        return lambda: m(inputs)

    return {
        "model fp32": variant("float32"),
        "model fp32, inference copy (channels_last, BN folded)": variant("float32", True, True),
        f"model {dtype_name} autocast": variant(dtype_name),
        f"model {dtype_name} autocast, channels_last": variant(dtype_name, True),
        f"model {dtype_name}, inference copy (+ BN folded, {dtype_name} weights)": variant(
            dtype_name, True, True, True
        ),
    }


def format_table(title: str, times: Dict[str, List[float]]) -> str:
    """``title``, then a Markdown table of ``times`` (variant -> ms per round): median, min and
    both speed-ups against the first variant."""
    ref_values = next(iter(times.values()))
    ref_median, ref_min = statistics.median(ref_values), min(ref_values)
    lines = [
        title,
        f"| {'variant':<62} | {'median ms':>9} | {'min ms':>8} | {'speed-up (median)':>17} "
        f"| {'speed-up (min)':>14} |",
        f"|{'-' * 64}|{'-' * 11}|{'-' * 10}|{'-' * 19}|{'-' * 16}|",
    ]
    for name, values in times.items():
        median, fastest = statistics.median(values), min(values)
        lines.append(
            f"| {name:<62} | {median:>9.1f} | {fastest:>8.1f} | {ref_median / median:>16.2f}x "
            f"| {ref_min / fastest:>13.2f}x |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def main() -> None:
    """Parse the command line, time the variants and print one table per size (and model)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[128, 32], help="feature sizes S of [1,2048,S,S]"
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16"])
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed calls of each variant (median reported)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: PyTorch's default)"
    )
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument(
        "--model", default="", help="also time a whole segmentor built from this config"
    )
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
        title = (
            f"OCRContext (2048 -> 512 -> 256, K={args.num_classes}) on [1, 2048, {size}, {size}]"
        )
        print("\n" + format_table(title, times))
    if args.model:
        variants = model_variants(args.model, args.image_size, device, dtype_name)
        times = time_interleaved(variants, timing_device, args.rounds, args.warmup)
        title = (
            f"OCRSemanticSegmentor from {args.model}, one {args.image_size}x{args.image_size} image"
        )
        print("\n" + format_table(title, times))


if __name__ == "__main__":
    main()
