"""Speed of an exported model against eager PyTorch on CPU, side by side in one run
(``tools/benchmark_export.py``): eager float32, TorchScript, and onnxruntime with its graph
optimisations off (``ORT_DISABLE_ALL``) and on (``ORT_ENABLE_ALL``), same thread count, timed
interleaved so that load from other processes hits all of them alike."""
import os
import statistics
import tempfile
from typing import Dict, List, Sequence, Tuple

import torch

from ..benchmarks.timing import time_interleaved
from .exporter import _semantic_logits, build_export_model, export_model

__all__ = ["benchmark_export", "format_benchmark"]


def benchmark_export(cfg, sizes: Sequence[Tuple[int, int]], runs: int = 5, warmup: int = 1) -> List[Dict]:
    """Median/min latency (ms) of each variant per ``(h, w)`` input size; rows of dicts."""
    import onnxruntime as ort

    model = build_export_model(cfg)
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, ts_path = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "m.ts")
        export_model(cfg, onnx_path, "onnx", model=model)
        export_model(cfg, ts_path, "torchscript", model=model)
        traced = torch.jit.load(ts_path)
        sessions = {}
        for label, level in (("onnxruntime (no graph opt.)", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                             ("onnxruntime (ORT_ENABLE_ALL)", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)):
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            options.intra_op_num_threads = threads
            sessions[label] = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        for h, w in sizes:
            image = torch.rand(1, 3, h, w) * 255
            array = image.numpy()
            calls = {
                "PyTorch eager float32": lambda: _semantic_logits(model, image),
                "TorchScript (traced)": lambda: traced(image),
            }
            for label, session in sessions.items():
                calls[label] = lambda s=session: s.run(None, {"image": array})
            times = time_interleaved(calls, torch.device("cpu"), runs, warmup)
            eager = statistics.median(times["PyTorch eager float32"])
            for name, t in times.items():
                rows.append({"size": f"{h}x{w}", "variant": name, "median_ms": statistics.median(t),
                             "min_ms": min(t), "speedup": eager / statistics.median(t), "threads": threads})
    return rows


def format_benchmark(rows: List[Dict]) -> str:
    """The rows as a pipe table."""
    from tabulate import tabulate

    table = [(r["size"], r["variant"], f"{r['median_ms']:.1f}", f"{r['min_ms']:.1f}", f"{r['speedup']:.2f}x") for r in rows]
    return tabulate(table, headers=["input", "variant", "median ms", "min ms", "vs eager (median)"], tablefmt="pipe")
