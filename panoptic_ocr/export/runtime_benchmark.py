"""Every CPU runtime of one semantic model side by side (``tools/benchmark_runtimes.py``): PyTorch
eager float32, the project's bfloat16 path, ``torch.compile`` (float32, bfloat16), onnxruntime
and OpenVINO (float32, bfloat16 where the CPU has it, int8 after calibration with NNCF where it
is installed), each timed interleaved in one process on one image, with its preparation time
(export, conversion, compilation), peak memory and agreement with float32 eager.

Peak memory is the growth of the process's resident set (``VmRSS``, sampled every millisecond)
during one call above its level before the call: the one measure that sees the native
allocators of onnxruntime and OpenVINO as well as PyTorch's.
"""

import contextlib
import copy
import gc
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from torch import Tensor, nn

from ..checkpoint.checkpointer import load_inference_weights, weight_options
from ..checkpoint.convert import ConversionError
from ..config import setup_cfg
from ..data.image_files import read_image
from ..modeling.inference import build_inference_model, compile_network
from ..utils.measurement import time_interleaved
from .exporter import build_export_model, export_model
from .peer_process import PEER_SETTINGS, PeerCommand, PeerError, PeerProcess, convert_peer_weights
from .quantization import quantize_openvino_model
from .runtimes import load_exported
from .signal_stack import signal_stack_kept

__all__ = [
    "PEER_VARIANTS",
    "RUNTIME_VARIANTS",
    "RuntimeResult",
    "benchmark_runtimes",
    "format_runtime_table",
    "openvino_has_bf16",
    "peak_rss_growth_bytes",
    "prepare_variant",
]

logger = logging.getLogger(__name__)

EAGER = "PyTorch eager float32"
RUNTIME_VARIANTS = (
    EAGER,
    "PyTorch bfloat16 (MODEL.INFERENCE_DTYPE)",
    "torch.compile float32",
    "torch.compile bfloat16",
    "onnxruntime float32",
    "OpenVINO float32",
    "OpenVINO bfloat16 hint",
    "OpenVINO int8 (NNCF)",
    "OpenVINO float32, static shape",
    "OpenVINO int8 (NNCF), static shape",
)
# mmsegmentation's OCRNet-HR48 in its own interpreter (``peer``); the same weights as the
# project's model where the benchmark's config has none of its own
PEER_VARIANTS = tuple(PEER_SETTINGS)


@dataclass
class RuntimeResult:
    """One row: ``times_ms`` of the timed rounds; ``prepare_s`` the export / conversion /
    compilation before the first call (compilation of ``torch.compile``: its first call minus
    an eager call); agreement with float32 eager on the benchmark image; ``note`` why a variant
    did not run."""

    name: str
    times_ms: List[float] = field(default_factory=list)
    prepare_s: float = 0.0
    peak_mb: float = float("nan")
    max_abs_diff: float = float("nan")
    agreement: float = float("nan")
    max_abs_logit: float = float("nan")
    note: str = ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_growth_bytes(run: Callable[[], object], interval_s: float = 0.001) -> int:
    """Largest growth of the resident set during ``run()`` above its level before (bytes),
    sampled every ``interval_s`` by a thread; 0 where ``/proc/self/statm`` is absent."""
    if not os.path.exists("/proc/self/statm"):
        return 0
    gc.collect()  # garbage freed by a collection during run() would hide part of its growth
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        peak[0] = max(peak[0], _rss_bytes())
        done.set()
        sampler.join()
    return max(0, peak[0] - before)


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin offers bfloat16 on this CPU (AVX512-BF16 / AMX)."""
    import openvino as ov

    with signal_stack_kept():  # loads the CPU plugin
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _bf16_cfg(cfg: CfgNode) -> CfgNode:
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.INFERENCE_DTYPE = "bfloat16"
    cfg.freeze()
    return cfg


def _pytorch_model(cfg: CfgNode) -> nn.Module:
    """The inference model of ``cfg`` as evaluation builds it (its dtype and layout keys)."""
    model = build_model(cfg).eval()
    load_inference_weights(model, cfg.MODEL.WEIGHTS, **weight_options(cfg))
    return build_inference_model(cfg, model).eval()


def _logits_call(model: nn.Module) -> Callable[[Tensor], Tensor]:
    def call(image: Tensor) -> Tensor:
        return model([{"image": image[0]}])[0]["sem_seg"][None]

    return call


def _compiled_call(model: nn.Module, image: Tensor) -> Tuple[Callable, float]:
    """The model with its network compiled as ``TEST.COMPILE`` compiles it
    (:func:`~panoptic_ocr.modeling.inference.compile_network`) and the compilation time (its
    first call minus an eager call)."""
    eager = _logits_call(model)
    with torch.inference_mode():
        start = time.perf_counter()
        eager(image)
        eager_s = time.perf_counter() - start
    call = _logits_call(compile_network(copy.deepcopy(model)).eval())
    with torch.inference_mode():
        start = time.perf_counter()
        call(image)
        first_s = time.perf_counter() - start
    return call, max(0.0, first_s - eager_s)


def _calibration_images(
    cfg: CfgNode, size: Tuple[int, int], count: int, dataset: Optional[str] = None
) -> List[np.ndarray]:
    """``count`` images of ``dataset`` (default ``cfg.DATASETS.TRAIN[0]``) resized to
    ``size``, as ``[1, 3, h, w]`` float32 raw pixels in ``INPUT.FORMAT``."""
    import cv2
    from detectron2.data import DatasetCatalog

    records = DatasetCatalog.get(dataset or cfg.DATASETS.TRAIN[0])[:count]
    images = []
    for record in records:
        image = read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        images.append(image.transpose(2, 0, 1)[None].astype(np.float32))
    return images


def _openvino_int8(
    onnx_path: str,
    calibration: List[np.ndarray],
    threads: int,
    static_size: Optional[Tuple[int, int]] = None,
) -> Callable:
    """The model quantised as ``export_model(..., int8_calibration=...)`` quantises it (with
    ``static_size``: compiled for that input size only)."""
    import openvino as ov

    core = ov.Core()
    quantized = quantize_openvino_model(core.read_model(onnx_path), calibration)
    if static_size is not None:
        quantized.reshape({quantized.inputs[0].get_any_name(): [1, 3, *static_size]})
    with signal_stack_kept():  # loads the CPU plugin
        compiled = core.compile_model(
            quantized, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        )
    output = compiled.output(0)
    return lambda image: np.asarray(compiled(image)[output])


class NotOffered(Exception):
    """A variant this machine cannot run (runtime not installed, precision not on this CPU)."""


def prepare_variant(
    name: str,
    cfg: CfgNode,
    x: Tensor,
    onnx_path: str,
    *,
    eager_model: Optional[nn.Module] = None,
    calibration_images: int = 8,
    calibration_dataset: Optional[str] = None,
) -> Tuple[Callable, float]:
    """The call of variant ``name`` on ``x`` (``[1, 3, h, w]``; onnxruntime / OpenVINO take its
    numpy array) and its preparation time in seconds (``torch.compile``: compilation, measured
    as its first call minus an eager one). ``onnx_path``: the model's ONNX export.

    Raises:
        NotOffered: the runtime is not installed or the precision not offered on this CPU.
    """
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        if name == EAGER:
            call = _logits_call(eager_model or build_export_model(cfg))
        elif name == "PyTorch bfloat16 (MODEL.INFERENCE_DTYPE)":
            call = _logits_call(_pytorch_model(_bf16_cfg(cfg)))
        elif name.startswith("torch.compile"):
            if "float32" in name:
                source = eager_model or build_export_model(cfg)
            else:
                source = _pytorch_model(_bf16_cfg(cfg))
            return _compiled_call(source, x)
        elif name == "onnxruntime float32":
            call = load_exported(onnx_path, threads=threads)[0]
        elif name == "OpenVINO float32":
            call = load_exported(onnx_path, "openvino", threads=threads)[0]
        elif name == "OpenVINO float32, static shape":
            size = (int(x.shape[-2]), int(x.shape[-1]))
            call = load_exported(onnx_path, "openvino", threads=threads, openvino_static_size=size)[
                0
            ]
        elif name == "OpenVINO bfloat16 hint":
            if not openvino_has_bf16():
                raise NotOffered("no bfloat16 on this CPU (OpenVINO would run float32)")
            call = load_exported(onnx_path, "openvino", threads=threads, openvino_precision="bf16")[
                0
            ]
        elif name.startswith("OpenVINO int8 (NNCF)"):
            size = (int(x.shape[-2]), int(x.shape[-1]))
            calibration = _calibration_images(cfg, size, calibration_images, calibration_dataset)
            static = size if name.endswith("static shape") else None
            call = _openvino_int8(onnx_path, calibration, threads, static)
        else:
            raise ValueError(f"unknown runtime variant {name!r}; known: {list(RUNTIME_VARIANTS)}")
    except ImportError as e:
        raise NotOffered(f"not installed ({e.name})") from e
    return call, time.perf_counter() - start


def _takes_numpy(name: str) -> bool:
    return name.startswith(("onnxruntime", "OpenVINO"))


def _bound(name: str, call: Callable, x: Tensor) -> Callable[[], object]:
    array = x.numpy()
    return (lambda: call(array)) if _takes_numpy(name) else (lambda: call(x))


def _as_logits(name: str, out) -> Tensor:
    return torch.as_tensor(np.asarray(out) if _takes_numpy(name) else out).float()


def _input(size: Tuple[int, int], image: Optional[np.ndarray]) -> Tensor:
    h, w = size
    if image is None:
        generator = torch.Generator().manual_seed(0)
        # whole pixel values, as images have (the peer reads uint8)
        return (torch.rand((1, 3, h, w), generator=generator) * 255).round()
    import cv2

    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))[None].float()


def _memory_in_fresh_process(
    name: str, cfg: CfgNode, size: Tuple[int, int], onnx_path: str, tmp: str
) -> float:
    """Peak RSS growth (MB) of the first call of variant ``name`` in a new Python process, above
    its resident set once the variant is prepared: no allocator cache of an earlier variant or
    call hides what the call needs."""
    config = os.path.join(tmp, f"config_{len(os.listdir(tmp))}.yaml")
    with open(config, "w") as f:
        f.write(cfg.dump())
    command = [
        sys.executable,
        "-m",
        __name__,
        "--memory-of",
        name,
        config,
        f"{size[0]}x{size[1]}",
        onnx_path,
        str(torch.get_num_threads()),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("peak_mb ")]
    if done.returncode != 0 or not lines:
        logger.warning("memory of %s not measured: %s", name, done.stderr[-2000:])
        return float("nan")
    return float(lines[-1].split()[1])


def _start_peers(
    names: Sequence[str],
    peer: Optional[PeerCommand],
    cfg: CfgNode,
    x: Tensor,
    tmp: str,
    stack: contextlib.ExitStack,
    results: Dict[str, RuntimeResult],
) -> Tuple[Dict[str, PeerProcess], CfgNode, bool]:
    """Start a peer process for each of ``names`` that this machine can run (notes on the
    others); where ``cfg`` has no weights, the first peer's are converted into it. Returns the
    peers, the config to benchmark and whether both sides run the same weights."""
    peers: Dict[str, PeerProcess] = {}
    same_weights = False
    for name in names:
        if peer is None:
            results[name].note = "needs --peer-python (mmsegmentation's interpreter)"
            continue
        setting = PEER_SETTINGS[name]
        if setting != "float32" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            results[name].note = "no bfloat16 on this CPU (autocast would be ~10x slower)"
            continue
        share = not cfg.MODEL.WEIGHTS and not peers
        weights = os.path.join(tmp, "peer_mmseg.pth") if share else None
        start = time.perf_counter()
        try:
            peers[name] = stack.enter_context(
                PeerProcess(
                    peer,
                    setting,
                    x,
                    cfg.INPUT.FORMAT,
                    torch.get_num_threads(),
                    save_weights=weights,
                )
            )
        except PeerError as e:
            results[name].note = f"peer failed: {str(e).splitlines()[0]}"
            logger.warning("%s: %s", name, e)
            continue
        results[name].prepare_s = time.perf_counter() - start
        if share:
            converted = os.path.join(tmp, "peer_weights_converted.pth")
            try:
                convert_peer_weights(weights, cfg, converted)
            except ConversionError as e:
                logger.warning("peer weights do not fit this config: %s", e)
                continue
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.WEIGHTS = converted
            cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
            cfg.freeze()
            same_weights = True
    if peers and not same_weights:
        for name in peers:
            results[name].note = "its own random weights: no agreement columns"
    return peers, cfg, same_weights


def benchmark_runtimes(
    cfg: CfgNode,
    size: Tuple[int, int],
    *,
    image: Optional[np.ndarray] = None,
    variants: Sequence[str] = RUNTIME_VARIANTS,
    runs: int = 5,
    warmup: int = 1,
    calibration_images: int = 8,
    calibration_dataset: Optional[str] = None,
    memory: bool = True,
    peer: Optional[PeerCommand] = None,
) -> List[RuntimeResult]:
    """Time every variant of ``variants`` (names of :data:`RUNTIME_VARIANTS` and
    :data:`PEER_VARIANTS`; float32 eager is always included, first) on one ``[1, 3, h, w]`` raw
    image of ``size`` (``image`` resized, or seeded noise), interleaved over ``runs`` rounds
    after ``warmup``; with ``memory``, each variant's (but ``torch.compile``'s) peak memory in a
    fresh process.

    The peer variants (mmsegmentation, started with ``peer``) run in their own processes, timed
    in the same rounds; where ``cfg.MODEL.WEIGHTS`` is empty the project's model runs the
    peer's initial weights, converted, so their agreement columns compare the two code paths.
    A variant whose runtime is not installed, or not offered on this CPU (bfloat16 without
    AVX512-BF16/AMX), is reported with a note instead of a time.
    """
    x = _input(size, image)
    wanted = [EAGER] + [v for v in variants if v != EAGER]
    unknown = [v for v in wanted if v not in RUNTIME_VARIANTS + PEER_VARIANTS]
    if unknown:
        known = list(RUNTIME_VARIANTS + PEER_VARIANTS)
        raise ValueError(f"unknown runtime variants {unknown}; known: {known}")
    results: Dict[str, RuntimeResult] = {v: RuntimeResult(v) for v in wanted}
    calls: Dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        peer_names = [v for v in wanted if v in PEER_VARIANTS]
        peers, cfg, same_weights = _start_peers(peer_names, peer, cfg, x, tmp, stack, results)
        onnx_path = os.path.join(tmp, "model.onnx")
        start = time.perf_counter()
        eager_model = build_export_model(cfg)
        export_model(cfg, onnx_path, "onnx", model=eager_model)
        onnx_s = time.perf_counter() - start
        for name in wanted:
            if name in PEER_VARIANTS:
                if name in peers:
                    calls[name] = peers[name].run
                continue
            try:
                call, prepare_s = prepare_variant(
                    name,
                    cfg,
                    x,
                    onnx_path,
                    eager_model=eager_model,
                    calibration_images=calibration_images,
                    calibration_dataset=calibration_dataset,
                )
            except NotOffered as e:
                results[name].note = str(e)
                continue
            calls[name] = _bound(name, call, x)
            # the ONNX export is part of preparing a runtime that reads it
            results[name].prepare_s = prepare_s + (onnx_s if _takes_numpy(name) else 0.0)
        with torch.inference_mode():
            reference = _as_logits(EAGER, calls[EAGER]())
            for name, call in calls.items():
                results[name].max_abs_logit = reference.abs().max().item()
                if name in peers:
                    if not same_weights:
                        continue
                    out = peers[name].logits()
                else:
                    out = _as_logits(name, call())
                results[name].max_abs_diff = (out - reference).abs().max().item()
                results[name].agreement = (
                    (out.argmax(1) == reference.argmax(1)).float().mean().item()
                )
        for name, times in time_interleaved(calls, torch.device("cpu"), runs, warmup).items():
            results[name].times_ms = times
        for name, process in peers.items():
            results[name].peak_mb = process.peak_mb
        if memory:
            for name in calls:
                if not name.startswith("torch.compile") and name not in peers:
                    results[name].peak_mb = _memory_in_fresh_process(
                        name, cfg, size, onnx_path, tmp
                    )
    return [results[v] for v in wanted]


def _measure_memory_main(argv: Sequence[str]) -> int:
    """``python -m panoptic_ocr.export.runtime_benchmark --memory-of NAME CONFIG HxW ONNX
    THREADS``: prints ``peak_mb <MB>`` of the variant's first call."""
    name, config, size, onnx_path, threads = argv
    torch.set_num_threads(int(threads))
    h, w = (int(v) for v in size.split("x"))
    cfg = setup_cfg(config, [])
    x = _input((h, w), None)
    call, _ = prepare_variant(name, cfg, x, onnx_path)
    bound = _bound(name, call, x)
    with torch.inference_mode():
        peak = peak_rss_growth_bytes(bound)
    print(f"peak_mb {peak / 2**20:.1f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--memory-of":
        sys.exit(_measure_memory_main(sys.argv[2:]))
    sys.exit(f"usage: python -m {__spec__.name} --memory-of NAME CONFIG HxW ONNX THREADS")


def format_runtime_table(results: Sequence[RuntimeResult]) -> str:
    """The results as a pipe table; speed-up against float32 eager (the first row); the logit
    difference is against eager's logits, whose largest magnitude is given in the header."""
    from tabulate import tabulate

    eager = results[0].median_ms
    rows = []
    for r in results:
        if not r.times_ms:
            rows.append((r.name, "-", "-", "-", "-", "-", "-", r.note))
            continue
        rows.append(
            (
                r.name,
                f"{r.median_ms:.1f}",
                f"{eager / r.median_ms:.2f}x",
                f"{r.prepare_s:.1f}",
                f"{r.peak_mb:.0f}" if r.peak_mb == r.peak_mb else "-",
                f"{r.max_abs_diff:.3g}" if r.max_abs_diff == r.max_abs_diff else "-",
                f"{100 * r.agreement:.2f}%" if r.agreement == r.agreement else "-",
                r.note,
            )
        )
    headers = [
        "runtime",
        "median ms",
        "vs eager fp32",
        "prepare s",
        "peak RSS growth MB",
        f"max |logit diff| (max |logit| {results[0].max_abs_logit:.3g})",
        "argmax agreement",
        "note",
    ]
    return tabulate(rows, headers=headers, tablefmt="pipe")
