"""Latency, peak memory and multiply-add counts: the measurement primitives that every benchmark
of the project (``tools/benchmark_*.py``) shares, and nothing else.

- Latency: wall time around a call, with the CUDA stream synchronised before and after.
- Peak memory of one call above what is held before it (weights and inputs are not included):
  on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on CPU the
  running sum of the allocation (+) and free (-) events that ``torch.profiler`` records
  (``profile_memory=True``) for PyTorch's CPU allocator, whose maximum is the peak.
- Multiply-adds: fvcore's ``FlopCountAnalysis`` (one per multiply-add of convs, matmuls and
  einsums; elementwise ops, softmax and interpolation count 0), traced in float32.
"""

import contextlib
import logging
import os
import statistics
import sys
import time
import warnings
from typing import Callable, Dict, Hashable, Iterator, List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = [
    "count_macs",
    "median_latency_ms",
    "peak_memory_bytes",
    "time_interleaved",
]


# ---------------------------------------------------------------------------------------------
# Multiply-adds
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """No fvcore log lines (unsupported ops, uncalled modules) or tracer warnings, no grad."""
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            yield
    finally:
        fvcore_logger.setLevel(level)


def count_macs(
    model: nn.Module,
    inputs: Union[Tuple[Tensor, ...], List[Dict]],
    submodules: Sequence[str] = (),
) -> Dict[str, int]:
    """Multiply-adds of one float32 forward, as fvcore's ``FlopCountAnalysis`` counts them.

    Args:
        model: a module taking positional tensors, or a Detectron2 meta-architecture (e.g.
            ``OCRSemanticSegmentor``) taking a list of dicts.
        inputs: a tuple of tensors, e.g. ``([N, C, H, W],)``, called as ``model(*inputs)``; or
            ``[{"image": uint8 [3, H, W], ...}]``, traced through Detectron2's
            ``FlopCountAnalysis`` (a ``TracingAdapter`` around the model).
        submodules: names of ``model``'s submodules to count separately (e.g. ``"backbone"``).
    Returns:
        ``{"": total, name: count for each of submodules}`` (0 for a submodule never called).
    """
    if isinstance(inputs, list):
        from detectron2.utils.analysis import FlopCountAnalysis

        prefix = "model."  # Detectron2's analysis wraps the model: "model.<name>"
    else:
        from fvcore.nn import FlopCountAnalysis

        inputs, prefix = tuple(inputs), ""
    with _quiet_tracing():
        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_module = analysis.by_module()
        counts = {"": int(analysis.total())}
    counts.update({name: int(by_module.get(prefix + name, 0)) for name in submodules})
    return counts


# ---------------------------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (Kineto logs its start/stop there from C++)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _cpu_peak_bytes(run: Callable[[], object]) -> int:
    """Peak bytes held by PyTorch's CPU allocator during ``run()``, above the level before it,
    from the allocation (+) and free (-) events of ``torch.profiler``'s memory profiling."""
    from torch.profiler import ProfilerActivity, profile

    with (
        _quiet_native_stderr(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        run()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
    ]
    held = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        held += event.nbytes()
        peak = max(peak, held)
    return peak


def peak_memory_bytes(run: Callable[[], object], device: torch.device) -> int:
    """Peak memory of one ``run()`` above what was allocated before it, in bytes.

    Args:
        run: the call to measure; what it returns should be dropped inside it.
        device: where it allocates (``cuda``: the CUDA allocator; otherwise the CPU's).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    return _cpu_peak_bytes(run)


# ---------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _elapsed_ms(run: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return (time.perf_counter() - start) * 1000.0


def median_latency_ms(
    run: Callable[[], object], device: torch.device, runs: int, warmup: int
) -> float:
    """Median wall time (ms) of ``runs`` calls of ``run()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    return statistics.median(_elapsed_ms(run, device) for _ in range(runs))


def time_interleaved(
    calls: Dict[Hashable, Callable[[], object]],
    device: torch.device,
    runs: int,
    warmup: int,
    *,
    inference: bool = True,
) -> Dict[Hashable, List[float]]:
    """Wall times (ms) of several calls measured in rounds, one call of each per round, so
    that load from other processes hits all of them alike.

    Args:
        calls: name -> call; the result keeps their order.
        device: where the calls run (CUDA is synchronised around each).
        runs: timed rounds.
        warmup: untimed rounds first.
        inference: run under ``torch.inference_mode`` (False for calls that need autograd,
            e.g. a loss's backward).
    Returns:
        name -> ``runs`` times in ms.
    """
    times: Dict[Hashable, List[float]] = {name: [] for name in calls}
    with torch.inference_mode() if inference else contextlib.nullcontext():
        for _ in range(warmup):
            for call in calls.values():
                call()
        for _ in range(runs):
            for name, call in calls.items():
                times[name].append(_elapsed_ms(call, device))
    return times


def machine_line() -> str:
    """CPU model, native bfloat16 (oneDNN), threads and ``uptime``'s load averages."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    return (
        f"CPU: {model}; native bfloat16 (mkldnn): {bf16}; torch {torch.__version__}; "
        f"threads {torch.get_num_threads()}; uptime load average (1, 5, 15 min): {load}"
    )
