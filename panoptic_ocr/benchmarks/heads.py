"""Complexity of the context modules beside the OCR paper's Table 4.

Each head's context module is built at paper size from the project config (as
``MODEL.SEM_SEG_HEAD.NAME`` would build it; OCR as ``OCRContext``, by default with one-block
phi/psi, as Table 4 counts it) and run in eval mode under ``no_grad`` on a ``[N, C, H, W]``
feature (OCR also gets ``[N, 19, H, W]`` region logits, Cityscapes' K). Reported: parameters
(no classifier, no auxiliary branch: as Table 4), multiply-adds (fvcore, float32) and 2x that
(the paper's FLOPs), peak memory of one forward pass and median latency, measured by
:mod:`panoptic_ocr.benchmarks.timing`.
"""
import contextlib
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import get_cfg
from torch import Tensor, nn

from ..config import add_ocr_config
from ..modeling.contexts import FEATURES, REGIONS, build_context
from ..modeling.inference import prepare_for_inference
from .timing import count_macs, median_latency_ms, peak_memory_bytes

__all__ = [
    "DTYPES",
    "HEAD_NAMES",
    "NUM_REGIONS",
    "PAPER_TABLE4",
    "VARIANT_ALIASES",
    "benchmark_head",
    "build_paper_context",
    "context_inputs",
    "format_table",
]

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


def build_paper_context(name: str, in_channels: int, variant: str, ocr_proj_layers: int) -> nn.Module:
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
    return build_context(cfg, name, in_channels, "BN")  # the paper's norm (Detectron2's default is GN)


def context_inputs(context: nn.Module, shape: Sequence[int], device: torch.device) -> Tuple[Tensor, ...]:
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
    macs = count_macs(module, inputs)
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    if dtype != "float32":
        # The project's reduced-precision inference path (MODEL.INFERENCE_DTYPE with
        # MODEL.INFERENCE_CHANNELS_LAST and TEST.FOLD_BATCHNORM): an inference copy with BN
        # folded and channels-last conv weights stored in the dtype, run under autocast.
        torch_dtype = DTYPES[dtype]
        module = prepare_for_inference(module, fold_bn=True, channels_last=True, weight_dtype=torch_dtype)
        inputs = tuple(t.contiguous(memory_format=torch.channels_last) for t in inputs)
        autocast = lambda: torch.autocast(device.type, dtype=torch_dtype)  # noqa: E731

    def run():
        with torch.no_grad(), autocast():
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
