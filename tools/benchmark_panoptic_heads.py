#!/usr/bin/env python3
"""Cost of Panoptic-FPN's semantic branch with and without a context module (supplementary
sec. C: "our OCR is also more efficient than both PPM and ASPP").

Builds the semantic head of each ``configs/coco/panoptic/panoptic_fpn[_<context>]_R_50_3x.yaml``
(exactly as ``PanopticFPN`` builds it: ``build_sem_seg_head`` on the FPN's output shapes) and
runs its inference path (``layers``: fuse p2..p5, context module, predictor) in eval mode under
``no_grad`` on random FPN features of one COCO-sized image. It reports, per head and for the
context module alone (the head minus Detectron2's plain ``SemSegFPNHead``): parameters,
multiply-adds (fvcore), peak memory of one forward pass and median latency. Peak memory and
latency are measured as in ``tools/benchmark_heads.py``. All heads are measured in one run,
so the ratios compare like with like.

Usage:
    python tools/benchmark_panoptic_heads.py                    # 800 x 1216 image, CPU
    python tools/benchmark_panoptic_heads.py --image 512,768 --runs 3 --device cuda
"""

import argparse
import os
import sys
from typing import Dict, List, Sequence

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import build_sem_seg_head  # noqa: E402

from panoptic_ocr import add_ocr_config  # noqa: E402
from tools.benchmark_heads import count_macs, median_latency_ms, peak_memory_bytes  # noqa: E402

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "coco", "panoptic")
VARIANTS = {"Panoptic-FPN": "", "+ PPM": "ppm_", "+ ASPP": "aspp_", "+ OCR": "ocr_"}
FPN_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


class _SemanticBranch(nn.Module):
    """The head's inference path with positional inputs (p2, p3, p4, p5), for fvcore tracing."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, *levels: torch.Tensor) -> torch.Tensor:
        return self.head.layers(dict(zip(FPN_STRIDES, levels)))


def build_semantic_branch(variant_prefix: str, depth: int = 50) -> nn.Module:
    """The semantic head of ``panoptic_fpn_<variant>R_<depth>_3x.yaml``, in eval mode."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_ocr_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIG_DIR, f"panoptic_fpn_{variant_prefix}R_{depth}_3x.yaml"))
    shapes = {name: ShapeSpec(channels=cfg.MODEL.FPN.OUT_CHANNELS, stride=s) for name, s in FPN_STRIDES.items()}
    return _SemanticBranch(build_sem_seg_head(cfg, shapes)).eval()


def fpn_features(image_hw: Sequence[int], channels: int = 256, device: str = "cpu") -> List[torch.Tensor]:
    """Random ``[1, channels, ceil(H/s), ceil(W/s)]`` features for s = 4, 8, 16, 32."""
    h, w = image_hw
    return [torch.randn(1, channels, -(-h // s), -(-w // s), device=device) for s in FPN_STRIDES.values()]


def benchmark(image_hw: Sequence[int], device: torch.device, runs: int, warmup: int) -> List[Dict]:
    results = []
    inputs = fpn_features(image_hw, device=device)
    for label, prefix in VARIANTS.items():
        torch.manual_seed(0)
        branch = build_semantic_branch(prefix).to(device)

        def run(branch=branch):
            with torch.no_grad():
                out = branch(*inputs)
            del out

        results.append({
            "head": label,
            "name": type(branch.head).__name__,
            "params": sum(p.numel() for p in branch.parameters()),
            "macs": count_macs(branch, tuple(inputs)),
            "peak_memory_mb": peak_memory_bytes(run, device) / 2**20,
            "latency_ms": median_latency_ms(run, device, runs, warmup),
        })
    return results


def format_table(results: List[Dict]) -> str:
    """Whole semantic branch, then the context module alone (branch minus the plain one)."""
    plain = results[0]
    ocr = next(r for r in results if r["head"] == "+ OCR")
    extra = {r["head"]: {k: r[k] - plain[k] for k in ("params", "macs", "peak_memory_mb", "latency_ms")} for r in results}
    lines = [
        "| semantic branch | params M | GMACs | peak mem MB | latency ms | context: params M | context: GMACs "
        "| context: latency ms | context GMACs / OCR's |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e = extra[r["head"]]
        ratio = "-" if r is plain else f"{e['macs'] / extra[ocr['head']]['macs']:.2f}"
        lines.append(
            f"| {r['head']} ({r['name']}) | {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.1f} | {r['peak_memory_mb']:.0f} "
            f"| {r['latency_ms']:.0f} | {e['params'] / 1e6:.2f} | {e['macs'] / 1e9:.1f} | {e['latency_ms']:.0f} | {ratio} |"
        )
    return "\n".join(lines)


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
    results = benchmark(args.image, device, args.runs, args.warmup)
    print(f"Semantic branch of Panoptic-FPN R50 at {args.image[0]}x{args.image[1]}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.runs} runs:")
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
