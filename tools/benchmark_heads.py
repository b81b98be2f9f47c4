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

The measuring is here (:func:`benchmark_head`, :func:`format_table`), with the primitives of
:mod:`panoptic_ocr.utils.measurement`.

Usage:
    .venv/bin/python tools/benchmark_heads.py \\
                                 # [1, 2048, 128, 128], all heads
    .venv/bin/python tools/benchmark_heads.py --input 1,2048,16,16 --runs 2 --heads ocr,ppm --json
    .venv/bin/python tools/benchmark_heads.py --device cuda --dtype float16 --variant compact
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import json
import sys
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

# TorchScript deprecation warnings (fvcore traces with torch.jit) say nothing about the heads.
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from panoptic_ocr.config import add_ocr_config  # noqa: E402
from panoptic_ocr.modeling.contexts import FEATURES, REGIONS, build_context  # noqa: E402
from panoptic_ocr.modeling.precision import inference_autocast, prepare_for_inference  # noqa: E402
from panoptic_ocr.utils.measurement import (  # noqa: E402
    count_macs,
    median_latency_ms,
    peak_memory_bytes,
)

HEAD_NAMES = {
    "ppm": "PPMHead",
    "aspp": "ASPPHead",
    "danet": "DANetHead",
    "cc_attention": "CCAttentionHead",
    "self_attention": "SelfAttentionHead",
    "double_attention": "DoubleAttentionHead",
    "ocr": "OCRHead",
}
# Table 4 of the paper: [1, 2048, 128, 128] on one P40 GPU, CUDA 10.0.
# params (M), memory (MB), FLOPs (G, = 2 x multiply-adds), time (ms).
PAPER_TABLE4 = {
    "ppm": (23.1, 792, 619, 99),
    "aspp": (15.5, 284, 492, 97),
    "danet": (10.6, 2339, 1110, 121),
    "cc_attention": (10.6, 427, 804, 131),
    "self_attention": (10.5, 2168, 619, 96),
    "double_attention": (10.2, 209, 338, 46),
    "ocr": (10.5, 202, 340, 45),
}
NUM_REGIONS = 19  # Cityscapes classes: OCR's soft object regions
VARIANT_ALIASES = {
    "original": "original",
    "2048": "original",
    "compact": "compact",
    "512": "compact",
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_paper_context(
    name: str, in_channels: int, variant: str, ocr_proj_layers: int
) -> nn.Module:
    """The paper-size context module registered as ``name`` (one of Table 4's rows, the keys of
    :data:`PAPER_TABLE4`), built by the context registry from the project's defaults.

    Args:
        name: e.g. ``"ocr"``, ``"ppm"``.
        in_channels: channels C of the ``[N, C, H, W]`` feature (Table 4: 2048).
        variant: DANet/CC-attention definition, ``"original"`` or ``"compact"``.
        ocr_proj_layers: 1x1 conv blocks in OCR's phi/psi (``MODEL.OCR.PROJ_LAYERS``).
    Raises:
        KeyError: ``name`` is not a Table 4 row.
    """
    if name not in PAPER_TABLE4:
        raise KeyError(f"unknown head {name!r}; choose from {list(PAPER_TABLE4)}")
    cfg = get_cfg()
    add_ocr_config(cfg)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = NUM_REGIONS
    cfg.MODEL.DANET.VARIANT = variant
    cfg.MODEL.CC_ATTENTION.VARIANT = variant
    cfg.MODEL.OCR.PROJ_LAYERS = ocr_proj_layers
    return build_context(
        cfg, name, in_channels, "BN"
    )  # the paper's norm (Detectron2's default is GN)


def context_inputs(
    context: nn.Module, shape: Sequence[int], device: torch.device
) -> Tuple[Tensor, ...]:
    """Random inputs of ``context``, by its declaration: ``(features [N, C, H, W],)``, plus
    region logits ``[N, 19, H, W]`` for a context module that consumes soft object regions."""
    n, _, h, w = shape
    features = torch.randn(*shape, device=device)
    if context.consumes == REGIONS:
        return features, torch.randn(n, NUM_REGIONS, h, w, device=device)
    if context.consumes != FEATURES:
        raise ValueError(f"{type(context).__name__} consumes {context.consumes}: not benchmarked")
    return (features,)


def benchmark_head(
    name: str,
    input_shape: Sequence[int],
    device: torch.device,
    *,
    dtype: str = "float32",
    variant: str = "original",
    ocr_proj_layers: int = 1,
    runs: int = 5,
    warmup: int = 2,
) -> Dict:
    """Parameters, multiply-adds, peak memory and median latency of one context module.

    Args:
        name: a key of :data:`HEAD_NAMES`.
        input_shape: ``(N, C, H, W)`` of the feature.
        device: where it runs.
        dtype: a key of :data:`DTYPES`; a reduced one runs the project's reduced-precision
            inference path (BN folded, channels-last weights in the dtype, autocast).
        variant: DANet/CC-attention definition (see :func:`build_paper_context`).
        ocr_proj_layers: 1x1 conv blocks in OCR's phi/psi.
        runs: timed forward passes (median).
        warmup: untimed forward passes first.
    Returns:
        ``{"name", "params", "macs", "flops", "peak_memory_mb", "resident_memory_mb",
        "latency_ms", "variant"}`` (``variant`` None for heads without one).
    """
    torch.manual_seed(0)
    module = build_paper_context(name, input_shape[1], variant, ocr_proj_layers)
    module = module.to(device).eval()
    inputs = context_inputs(module, input_shape, device)
    params = sum(p.numel() for p in module.parameters())
    resident = sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(inputs))
    macs = count_macs(module, inputs)[""]
    torch_dtype: Optional[torch.dtype] = None  # None: float32, no autocast
    if dtype != "float32":
        # The project's reduced-precision inference path (MODEL.INFERENCE_DTYPE with
        # MODEL.INFERENCE_CHANNELS_LAST and TEST.FOLD_BATCHNORM) on a bare module: an inference
        # copy with BN folded and channels-last conv weights stored in the dtype, run under
        # autocast (build_inference_model takes whole segmentors, not context modules).
        torch_dtype = DTYPES[dtype]
        module = prepare_for_inference(
            module, fold_bn=True, channels_last=True, weight_dtype=torch_dtype
        )
        inputs = tuple(t.contiguous(memory_format=torch.channels_last) for t in inputs)

    def run():
        with torch.no_grad(), inference_autocast(torch_dtype, device.type):
            out = module(*inputs)
        del out

    peak = peak_memory_bytes(run, device)
    latency = median_latency_ms(run, device, runs, warmup)
    return {
        "name": name,
        "params": params,
        "macs": macs,
        "flops": 2 * macs,
        "peak_memory_mb": peak / 2**20,
        "resident_memory_mb": resident / 2**20,
        "latency_ms": latency,
        "variant": variant if name in ("danet", "cc_attention") else None,
    }


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference else "n/a"


def _label(result: Dict) -> str:
    return result["name"] + (f"/{result['variant']}" if result["variant"] else "")


def format_table(results: List[Dict]) -> str:
    """Measured values (:func:`benchmark_head`'s) beside Table 4, then both as ratios to OCR."""
    width = max(len("ratio to OCR"), *(len(_label(r)) for r in results))
    lines = [
        f"{'head':<{width}} | {'params M':^23} | {'GMACs':>6} | {'2x MACs G':^23} | "
        f"{'peak mem MB':^13} | {'latency ms':^15}",
        f"{'':<{width}} | {'ours':>7} {'paper':>6} {'diff':>8} | {'ours':>6} | {'ours':>7} "
        f"{'paper':>6} {'diff':>8} | {'ours':>7} {'paper':>5} | {'ours':>9} {'paper':>5}",
    ]
    lines.append("-" * len(lines[0]))
    for r in results:
        p_params, p_mem, p_flops, p_time = PAPER_TABLE4[r["name"]]
        params_m, flops_g = r["params"] / 1e6, r["flops"] / 1e9
        lines.append(
            f"{_label(r):<{width}} | {params_m:7.2f} {p_params:6.1f} "
            f"{100 * (params_m / p_params - 1):+7.1f}% | {r['macs'] / 1e9:6.1f} | "
            f"{flops_g:7.1f} {p_flops:6.0f} {100 * (flops_g / p_flops - 1):+7.1f}% | "
            f"{r['peak_memory_mb']:7.0f} {p_mem:5.0f} | {r['latency_ms']:9.1f} {p_time:5.0f}"
        )
    ocr: Optional[Dict] = next((r for r in results if r["name"] == "ocr"), None)
    if ocr is None:
        lines.append("(ratios to OCR need 'ocr' in --heads)")
        return "\n".join(lines)
    p_ocr = PAPER_TABLE4["ocr"]
    lines += [
        "",
        f"{'ratio to OCR':<{width}} |"
        + "".join(f" {title:^10} |" for title in ("params", "FLOPs", "peak mem", "latency")),
        f"{'':<{width}} |" + " ours paper |" * 4,
    ]
    for r in results:
        paper = PAPER_TABLE4[r["name"]]
        ours = (
            _ratio(r["params"], ocr["params"]),
            _ratio(r["macs"], ocr["macs"]),
            _ratio(r["peak_memory_mb"], ocr["peak_memory_mb"]),
            _ratio(r["latency_ms"], ocr["latency_ms"]),
        )
        theirs = [_ratio(paper[i], p_ocr[i]) for i in (0, 2, 1, 3)]
        cells = "".join(f" {o:>4} {t:>5} |" for o, t in zip(ours, theirs))
        lines.append(f"{_label(r):<{width}} |{cells}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
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


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
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
