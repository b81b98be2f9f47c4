#!/usr/bin/env python
"""Exported model vs eager PyTorch on CPU, side by side: eager float32, traced TorchScript,
onnxruntime without and with its graph optimisations (same thread count, interleaved rounds).

    .venv/bin/python tools/benchmark_export.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --sizes 256x256 512x512 --runs 5 MODEL.WEIGHTS ""

The model is the one ``tools/export_model.py`` exports (``build_export_model``, through the one
inference builder ``build_inference_model``); onnxruntime runs with its graph optimisations off
(``ORT_DISABLE_ALL``) and on (``ORT_ENABLE_ALL``); all variants are timed interleaved
(:func:`panoptic_ocr.utils.measurement.time_interleaved`) so that load from other processes
hits all of them alike. Random weights are fine: speed does not depend on them, so with an
empty ``MODEL.WEIGHTS`` the random initialisation is timed (``MODEL.WEIGHTS_ALLOW_PARTIAL``;
the exporter warns). Prints a table (docs/export.md).
"""

import argparse
import os
import statistics
import tempfile
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from panoptic_ocr import setup_cfg
from panoptic_ocr.export import build_export_model, export_model
from panoptic_ocr.utils.measurement import time_interleaved
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides

EAGER = "PyTorch eager float32"


def _eager_logits(model: nn.Module, image: Tensor) -> Tensor:
    """``[1, 3, H, W]`` raw image -> ``[1, K, H, W]`` logits, as the exported graph returns."""
    return model([{"image": image[0]}])[0]["sem_seg"][None]


def benchmark_export(
    cfg, sizes: Sequence[Tuple[int, int]], runs: int = 5, warmup: int = 1
) -> List[Dict]:
    """Median/min latency (ms) of each variant per ``(h, w)`` input size; rows of dicts."""
    import onnxruntime as ort

    model = build_export_model(cfg)
    threads = torch.get_num_threads()
    levels = {
        "onnxruntime (no graph opt.)": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "onnxruntime (ORT_ENABLE_ALL)": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, ts_path = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "m.ts")
        export_model(cfg, onnx_path, "onnx", model=model)
        export_model(cfg, ts_path, "torchscript", model=model)
        traced = torch.jit.load(ts_path)
        sessions = {}
        for label, level in levels.items():
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            options.intra_op_num_threads = threads
            sessions[label] = ort.InferenceSession(
                onnx_path, options, providers=["CPUExecutionProvider"]
            )
        for h, w in sizes:
            image = torch.rand(1, 3, h, w) * 255
            array = image.numpy()
            calls = {
                EAGER: lambda: _eager_logits(model, image),
                "TorchScript (traced)": lambda: traced(image),
            }
            for label, session in sessions.items():
                calls[label] = lambda s=session: s.run(None, {"image": array})
            times = time_interleaved(calls, torch.device("cpu"), runs, warmup)
            eager = statistics.median(times[EAGER])
            for name, t in times.items():
                median = statistics.median(t)
                rows.append(
                    {
                        "size": f"{h}x{w}",
                        "variant": name,
                        "median_ms": median,
                        "min_ms": min(t),
                        "speedup": eager / median,
                        "threads": threads,
                    }
                )
    return rows


def format_benchmark(rows: List[Dict]) -> str:
    """The rows of :func:`benchmark_export` as a pipe table."""
    from tabulate import tabulate

    headers = ["input", "variant", "median ms", "min ms", "vs eager (median)"]
    table = [
        (
            r["size"],
            r["variant"],
            f"{r['median_ms']:.1f}",
            f"{r['min_ms']:.1f}",
            f"{r['speedup']:.2f}x",
        )
        for r in rows
    ]
    return tabulate(table, headers=headers, tablefmt="pipe")


def main() -> None:
    """Parse the command line, export, time and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--sizes", nargs="+", default=["256x256", "512x512"], help="HxW input sizes"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch and onnxruntime threads (0: PyTorch's default)",
    )
    add_config_overrides(parser)
    args = parse_args_with_overrides(parser)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    cfg = setup_cfg(args.config_file, args.opts, freeze=False)
    if not cfg.MODEL.WEIGHTS:  # speed does not depend on the weights: time the random ones
        cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = True  # (the exporter warns that they are random)
    cfg.freeze()
    rows = benchmark_export(cfg, sizes, runs=args.runs, warmup=args.warmup)
    print(f"load average (1, 5, 15 min): {os.getloadavg()}; threads: {rows[0]['threads']}")
    print(format_benchmark(rows))


if __name__ == "__main__":
    main()
