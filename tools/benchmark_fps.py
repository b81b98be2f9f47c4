#!/usr/bin/env python3
"""Frames per second and peak memory of whole segmentation models, side by side.

Each ``--configs`` file is built as ``train_net.py`` builds it (``panoptic_ocr.setup_cfg``:
``get_cfg``, ``add_ocr_config``, the file, ``--opts``, ``adapt_config_to_device``) with random
initialisation (``MODEL.WEIGHTS ""``, ``--seed``), ``MODEL.DEVICE`` from ``--device`` and every
``*.NORM`` "SyncBN"/"naiveSyncBN" as "BN" (one process; :func:`benchmark_cfg`). The model then
goes through the project's one inference builder, exactly as ``Trainer.test`` prepares it
(``build_inference_model``; :func:`inference_model`): ``MODEL.INFERENCE_DTYPE`` (autocast, from
``--dtype``), ``MODEL.INFERENCE_CHANNELS_LAST`` and ``TEST.FOLD_BATCHNORM`` (with reduced
precision also the conv weights in that dtype). ``--fast-path auto`` (default) turns
channels-last and BN folding on for bfloat16/float16 and leaves the config's values for float32.

One frame = ``model([{"image": uint8 [3, H, W] already on the device}])`` under
``torch.inference_mode``: normalisation, padding, backbone, head, upsampling and
post-processing to ``[K, H, W]`` float32 logits, in one forward over the whole image
(``TEST.SLIDING_WINDOW`` is turned off unless ``--sliding-window``). Latency: median (and min)
over ``--runs`` rounds after ``--warmup`` ones; the models are timed interleaved (one call of
each per round), so load from other processes hits them alike. Peak memory: of one forward
above what is held before it (weights and input excluded; reported separately). Latency, peak
memory and multiply-adds are measured as every benchmark measures them
(:mod:`panoptic_ocr.utils.measurement`; peak memory on CUDA ``torch.cuda.max_memory_allocated``,
on CPU the allocator events of ``torch.profiler``). ``--breakdown`` also times the backbone
alone on the model's preprocessed input; ``--flops`` counts multiply-adds with fvcore.

``--compare-dtype bfloat16`` measures each model in float32 and in that dtype (same weights)
and reports the speed-up and the fraction of pixels whose argmax agrees. Random weights give
nearly tied logits, which makes that agreement pessimistic; ``--calibrate`` (with ``--image``
and its ``--label``) fits only the final 1x1 classifier to the label in closed form, so that
the logits' margins are a real classifier's (:func:`fit_classifier_`; the "classifier fitted"
row of docs/benchmarks.md (b)).

``--opts`` applies to every config; ``--config-opts`` gives one string of KEY VALUE pairs per
config, to put variants of one config side by side.

The measuring is here (:class:`FpsSettings`, :func:`run_benchmark`, :func:`format_report`;
``tests/tools/test_tools_inference.py`` imports them); the library only provides the primitives.

Usage:
    .venv/bin/python tools/benchmark_fps.py --configs a.yaml b.yaml --names A B --size 512,1024
    .venv/bin/python tools/benchmark_fps.py \\
        --configs c.yaml --size 1024,2048 --compare-dtype bfloat16 \\
        --runs 3 --warmup 1 --image img.png --label label.png --calibrate
    .venv/bin/python tools/benchmark_fps.py --configs a.yaml a.yaml --names wide narrow \\
        --config-opts "" "MODEL.OCR.MID_CHANNELS 256" --flops --breakdown --json
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.config import CfgNode  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from panoptic_ocr.config import norm_keys, setup_cfg  # noqa: E402
from panoptic_ocr.modeling.inference import build_inference_model  # noqa: E402
from panoptic_ocr.modeling.precision import (  # noqa: E402
    inference_autocast,
    resolve_inference_dtype,
)
from panoptic_ocr.utils.measurement import (  # noqa: E402
    count_macs,
    peak_memory_bytes,
    time_interleaved,
)
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16")
FAST_PATH = ("auto", "on", "off")


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------
def benchmark_cfg(config_file: str, opts: Sequence[str] = (), device: str = "cpu") -> CfgNode:
    """A mutable config as ``train_net.py`` builds it (:func:`~panoptic_ocr.config.setup_cfg`),
    for a single process on ``device`` with random initialisation: ``MODEL.WEIGHTS ""`` and
    every ``*.NORM`` "SyncBN"/"naiveSyncBN" as "BN" (the same in eval mode; BN folding and
    channels-last handle plain BN best)."""
    cfg = setup_cfg(
        config_file, list(opts) + ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device], freeze=False
    )
    for node, key, _ in norm_keys(cfg):
        if node[key] in ("SyncBN", "naiveSyncBN"):
            node[key] = "BN"
    return cfg


def set_inference_options(cfg: CfgNode, dtype: str, fast_path: str = "auto") -> CfgNode:
    """A copy of ``cfg`` with ``MODEL.INFERENCE_DTYPE`` = ``dtype``; ``fast_path`` "on"/"off"
    sets ``MODEL.INFERENCE_CHANNELS_LAST`` and ``TEST.FOLD_BATCHNORM``, "auto" turns them on for
    a reduced ``dtype`` and keeps the config's values for float32."""
    if fast_path not in FAST_PATH:
        raise ValueError(f"fast_path must be one of {FAST_PATH}, got {fast_path!r}")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.INFERENCE_DTYPE = dtype
    if fast_path == "on" or (fast_path == "auto" and dtype != "float32"):
        cfg.MODEL.INFERENCE_CHANNELS_LAST = True
        cfg.TEST.FOLD_BATCHNORM = True
    elif fast_path == "off":
        cfg.MODEL.INFERENCE_CHANNELS_LAST = False
        cfg.TEST.FOLD_BATCHNORM = False
    return cfg


def inference_model(cfg: CfgNode, model: nn.Module) -> nn.Module:
    """The model ``Trainer.test`` would evaluate with ``cfg``'s inference keys, in eval mode:
    :func:`~panoptic_ocr.modeling.inference.build_inference_model`, the one inference builder
    that every benchmark goes through."""
    return build_inference_model(cfg, model).eval()


def model_gmacs(model: nn.Module, inputs: List[Dict]) -> Dict[str, float]:
    """Multiply-adds (G) of one float32 forward of a segmentor (:func:`count_macs`): ``gmacs``
    in all, ``backbone_gmacs``, ``head_gmacs``."""
    counts = count_macs(model, inputs, ("backbone", "sem_seg_head"))
    return {
        "gmacs": counts[""] / 1e9,
        "backbone_gmacs": counts["backbone"] / 1e9,
        "head_gmacs": counts["sem_seg_head"] / 1e9,
    }


def _weights_bytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


# ---------------------------------------------------------------------------------------------
# Calibration (--calibrate): a meaningful classifier on random features, in closed form
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def fit_classifier_(
    model: nn.Module,
    inputs: List[Dict],
    label: Tensor,
    *,
    ridge: float = 0.01,
    max_pixels: int = 65536,
    seed: int = 0,
) -> float:
    """Fit the head's final 1x1 classifier (``sem_seg_head.predictor``) to ``label`` by ridge
    regression onto one-hot targets, in closed form, on the classifier's float32 input features
    for ``inputs`` (one image); everything else keeps its random initialisation.

    Random weights give logits whose top two classes are nearly tied almost everywhere, so any
    rounding flips many argmaxes. With this "linear probe" the decision boundaries follow the
    label's segments, as a trained model's do, and the margins are those of a real classifier.

    Args:
        model: an eval-mode segmentor whose head has a 1x1 ``predictor`` conv with bias.
        inputs: one input dict, as the model takes it.
        label: ``[H, W]`` class indices at the input's size; values outside ``[0, K)`` are ignored.
        ridge: regularisation, relative to the mean diagonal of ``X^T X``.
        max_pixels: feature pixels sampled for the fit.
        seed: of that sampling.
    Returns:
        The fitted model's pixel accuracy on ``label`` (non-ignored pixels).
    Raises:
        ValueError: the head has no such classifier, or ``label`` has no valid pixel.
    """
    head = getattr(model, "sem_seg_head", None)
    predictor = getattr(head, "predictor", None)
    if (
        not isinstance(predictor, nn.Conv2d)
        or predictor.kernel_size != (1, 1)
        or predictor.bias is None
    ):
        raise ValueError(
            f"--calibrate needs a head with a 1x1 'predictor' conv with bias (ContextHead); "
            f"{type(head).__name__} has none"
        )
    num_classes = predictor.out_channels
    captured = []
    hook = predictor.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        model(inputs)
    finally:
        hook.remove()
    features = captured[-1][0].float()  # [C, h, w] of the padded input
    _, fh, fw = features.shape
    # The features cover the padded input: pad the label with "ignore", then nearest-sample it.
    padded = torch.full((fh * head.feature_stride, fw * head.feature_stride), -1, dtype=torch.long)
    padded[: label.shape[0], : label.shape[1]] = label
    target = (
        F.interpolate(padded[None, None].float(), size=(fh, fw), mode="nearest")[0, 0]
        .long()
        .flatten()
    )
    x = features.flatten(1).T.cpu()
    keep = (target >= 0) & (target < num_classes)
    if not keep.any():
        raise ValueError(f"--label has no pixel with a class in [0, {num_classes})")
    x, target = x[keep], target[keep]
    if len(x) > max_pixels:
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_pixels]
        x, target = x[pick], target[pick]
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    gram = x.T @ x
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    solution = torch.linalg.solve(gram, x.T @ F.one_hot(target, num_classes).double())  # [C + 1, K]
    predictor.weight.copy_(solution[:-1].T.reshape(predictor.weight.shape).to(predictor.weight))
    predictor.bias.copy_(solution[-1].to(predictor.bias))
    prediction = model(inputs)[0]["sem_seg"].argmax(0).cpu()
    valid = (label >= 0) & (label < num_classes)
    return float((prediction == label)[valid].float().mean())


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def make_image(size: Tuple[int, int], image_path: Optional[str], seed: int) -> Tensor:
    """uint8 ``[3, H, W]``: ``image_path`` resized to ``size`` (RGB), or uniform noise.

    Raises:
        FileNotFoundError: ``image_path`` cannot be read as an image.
    """
    height, width = size
    if image_path:
        image = cv2.imread(image_path, cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"--image {image_path!r} cannot be read as an image")
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def read_label(size: Tuple[int, int], label_path: str) -> Tensor:
    """``[H, W]`` int64 class indices: the single-channel label PNG, resized (nearest).

    Raises:
        ValueError: ``label_path`` is not a single-channel image.
    """
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise ValueError(f"--label {label_path!r} is not a single-channel label image")
    label = cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return torch.from_numpy(label.astype(np.int64))


def _backbone_call(model: nn.Module, inputs: List[Dict]) -> Optional[Callable]:
    """The backbone alone on the model's preprocessed input, as the model runs it; None when
    the model is not an ``OCRSemanticSegmentor``-like segmentor."""
    if not all(hasattr(model, a) for a in ("preprocess_image", "inference_dtype", "backbone")):
        return None
    x = model.preprocess_image(inputs).tensor
    if model.inference_channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = resolve_inference_dtype(model.inference_dtype, model.device.type)

    def call():
        with inference_autocast(dtype, model.device.type):
            return model.backbone(x)

    return call


def _peak_mb(call: Callable, device: torch.device) -> float:
    def run():
        with torch.inference_mode():
            out = call()
        del out

    return peak_memory_bytes(run, device) / 2**20


@torch.inference_mode()
def agreement(reference: nn.Module, other: nn.Module, inputs: List[Dict]) -> Dict[str, float]:
    """How far ``other``'s predictions follow ``reference``'s on ``inputs``: the fraction of
    pixels whose argmax agrees; the median top-2 margin of ``reference`` (top-1 minus top-2
    logit) and the median change of that margin in ``other`` (an argmax flips where the change
    exceeds the margin); the largest absolute logit difference."""
    a = reference(inputs)[0]["sem_seg"].float()
    b = other(inputs)[0]["sem_seg"].float()
    top2 = a.topk(2, dim=0)
    margin = top2.values[0] - top2.values[1]
    other_margin = b.gather(0, top2.indices[:1]) - b.gather(0, top2.indices[1:])
    return {
        "agreement": float((a.argmax(0) == b.argmax(0)).float().mean()),
        "median_top2_margin": float(margin.median()),
        "median_margin_change": float((other_margin[0] - margin).abs().median()),
        "max_abs_logit_diff": float((a - b).abs().max()),
    }


def _cpu_has_native_bfloat16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def device_description(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name and whether it has native bfloat16 kernels."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            name = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name
            )
    bf16 = "yes" if _cpu_has_native_bfloat16() else "no"
    return f"{name} (cpu, native bfloat16: {bf16})"


@dataclass
class FpsSettings:
    """What :func:`run_benchmark` measures; the fields are this script's options.

    The fields are checked when the settings are made; the messages name the command-line
    option.

    Attributes:
        configs: config files, measured side by side.
        names: one distinct label per config (None: the files' names without extension).
        config_opts: one ``[KEY, VALUE, ...]`` list per config, after ``opts`` (None: none).
        opts: ``[KEY, VALUE, ...]`` for every config.
        size: input ``(H, W)``.
        device: "cpu" or "cuda".
        dtype: ``MODEL.INFERENCE_DTYPE`` of the main rows (one of :data:`DTYPES`).
        fast_path: one of :data:`FAST_PATH` (see :func:`set_inference_options`).
        compare_dtype: also measure float32 and this dtype, with argmax agreement.
        runs, warmup: timed and untimed rounds.
        seed: of the random weights and the noise image.
        image, label: an image resized to ``size`` (default noise) and its label PNG.
        calibrate: fit the final classifier to ``label`` (:func:`fit_classifier_`).
        sliding_window: keep the configs' ``TEST.SLIDING_WINDOW``.
        breakdown: also time the backbone alone.
        no_memory: skip the peak-memory runs.
        flops: also count multiply-adds.
    """

    configs: List[str]
    names: Optional[List[str]] = None
    config_opts: Optional[List[List[str]]] = None
    opts: List[str] = field(default_factory=list)
    size: Tuple[int, int] = (512, 1024)
    device: str = "cpu"
    dtype: str = "float32"
    fast_path: str = "auto"
    compare_dtype: Optional[str] = None
    runs: int = 5
    warmup: int = 2
    seed: int = 0
    image: Optional[str] = None
    label: Optional[str] = None
    calibrate: bool = False
    sliding_window: bool = False
    breakdown: bool = False
    no_memory: bool = False
    flops: bool = False

    def __post_init__(self) -> None:
        """Fill in the defaults of ``names`` and ``config_opts``, then check every field.

        Raises:
            ValueError: naming the option that is wrong and what is wrong with it.
        """
        self.configs = list(self.configs)
        if self.names is None:
            self.names = [os.path.splitext(os.path.basename(c))[0] for c in self.configs]
        self.names = list(self.names)
        if len(self.names) != len(self.configs):
            raise ValueError(
                f"--names has {len(self.names)} labels for {len(self.configs)} --configs"
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"--names must be distinct, got {self.names}")
        for config_file in self.configs:
            if not os.path.isfile(config_file):
                raise ValueError(f"config file {config_file!r} does not exist")
        if self.runs < 1 or self.warmup < 0:
            raise ValueError(
                f"--runs must be >= 1 and --warmup >= 0, got {self.runs} and {self.warmup}"
            )
        if self.calibrate and not (self.image and self.label):
            raise ValueError("--calibrate needs --image and its --label")
        self.opts = list(self.opts)
        if len(self.opts) % 2:
            raise ValueError(f"--opts needs KEY VALUE pairs, got {self.opts}")
        if self.config_opts is None:
            self.config_opts = [[] for _ in self.configs]
        self.config_opts = [list(o) for o in self.config_opts]
        if len(self.config_opts) != len(self.configs):
            raise ValueError(
                f"--config-opts has {len(self.config_opts)} strings for "
                f"{len(self.configs)} --configs"
            )
        for opts in self.config_opts:
            if len(opts) % 2:
                raise ValueError(f"--config-opts needs KEY VALUE pairs, got {' '.join(opts)!r}")
        for name, value, choices in (
            ("--dtype", self.dtype, DTYPES),
            ("--fast-path", self.fast_path, FAST_PATH),
            ("--compare-dtype", self.compare_dtype, (None,) + DTYPES[1:]),
            ("--device", self.device, ("cpu", "cuda")),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available")


def parse_size(text: str) -> Tuple[int, int]:
    """``"H,W"`` -> ``(H, W)``, two positive integers.

    Raises:
        ValueError: naming ``--size`` and the text.
    """
    try:
        height, width = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--size needs H,W (two integers), got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"--size needs positive H,W, got {text!r}")
    return height, width


def run_benchmark(settings: FpsSettings, progress: Optional[Callable[[str], None]] = None) -> Dict:
    """Build, prepare and time every config of ``settings``.

    Args:
        settings: what to measure.
        progress: called with a short line after each model is built.
    Returns:
        ``{"environment": {...}, "results": [one row per model and dtype, settings.dtype's
        first], "comparisons": [one per model with compare_dtype]}`` (JSON-serialisable).
    """
    s = settings
    device = torch.device(s.device)
    image = make_image(s.size, s.image, s.seed).to(device)
    inputs = [{"image": image, "height": s.size[0], "width": s.size[1]}]
    label = read_label(s.size, s.label) if s.calibrate else None
    dtypes = [s.dtype]
    if s.compare_dtype:
        dtypes = list(dict.fromkeys(["float32", s.compare_dtype, s.dtype]))

    entries, calls, backbone_calls, models = [], {}, {}, {}
    for name, config_file, opts in zip(s.names, s.configs, s.config_opts):
        cfg = benchmark_cfg(config_file, list(s.opts) + list(opts), s.device)
        if not s.sliding_window:
            cfg.TEST.SLIDING_WINDOW.ENABLED = False
        torch.manual_seed(s.seed)
        base = build_model(cfg).eval()
        calibration_accuracy = None
        if s.calibrate:
            calibration_accuracy = fit_classifier_(base, inputs, label, seed=s.seed)
        macs = model_gmacs(base, inputs) if s.flops else {}
        for dtype in dtypes:
            dcfg = set_inference_options(cfg, dtype, s.fast_path)
            model = inference_model(dcfg, base)
            key = (name, dtype)
            models[key] = model
            calls[key] = lambda m=model: m(inputs)
            if s.breakdown and not getattr(model, "sliding_window", None):
                call = _backbone_call(model, inputs)
                if call is not None:
                    backbone_calls[key] = call
            entries.append(
                {
                    "name": name,
                    "config": config_file,
                    "config_opts": list(opts),
                    "dtype": dtype,
                    "channels_last": bool(dcfg.MODEL.INFERENCE_CHANNELS_LAST),
                    "fold_bn": bool(dcfg.TEST.FOLD_BATCHNORM),
                    "sliding_window": bool(cfg.TEST.SLIDING_WINDOW.ENABLED),
                    "params": sum(p.numel() for p in base.parameters()),
                    "weights_mb": _weights_bytes(model) / 2**20,
                    "calibration_pixel_accuracy": calibration_accuracy,
                    **macs,
                }
            )
        if progress is not None:
            progress(f"  built {name}")

    all_calls = dict(calls)
    all_calls.update({(k[0], k[1], "backbone"): c for k, c in backbone_calls.items()})
    times = time_interleaved(all_calls, device, s.runs, s.warmup)
    for entry in entries:
        key = (entry["name"], entry["dtype"])
        entry["latency_ms"] = statistics.median(times[key])
        entry["latency_min_ms"] = min(times[key])
        entry["fps"] = 1000.0 / entry["latency_ms"]
        if key in backbone_calls:
            entry["backbone_ms"] = statistics.median(times[key + ("backbone",)])
        if not s.no_memory:
            entry["peak_memory_mb"] = _peak_mb(calls[key], device)
    for entry in entries:
        first = next(e for e in entries if e["dtype"] == entry["dtype"])
        entry["fps_ratio"] = entry["fps"] / first["fps"]
        entry["latency_ratio"] = entry["latency_ms"] / first["latency_ms"]
        if not s.no_memory and first["peak_memory_mb"] > 0:
            entry["peak_memory_ratio"] = entry["peak_memory_mb"] / first["peak_memory_mb"]

    comparisons = []
    if s.compare_dtype:
        for name in s.names:
            ref = next(e for e in entries if e["name"] == name and e["dtype"] == "float32")
            low = next(e for e in entries if e["name"] == name and e["dtype"] == s.compare_dtype)
            comparison = {
                "name": name,
                "dtype": s.compare_dtype,
                "float32_ms": ref["latency_ms"],
                "dtype_ms": low["latency_ms"],
                "speedup": ref["latency_ms"] / low["latency_ms"],
                "speedup_min": ref["latency_min_ms"] / low["latency_min_ms"],
            }
            comparison.update(
                agreement(models[(name, "float32")], models[(name, s.compare_dtype)], inputs)
            )
            comparisons.append(comparison)

    return {
        "environment": {
            "device": device_description(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "size": list(s.size),
            "runs": s.runs,
            "warmup": s.warmup,
            "seed": s.seed,
            "calibrated": bool(s.calibrate),
            "image": s.image or "uniform noise",
            "label": s.label,
            "opts": list(s.opts),
        },
        "results": [e for e in entries if e["dtype"] == s.dtype]
        + [e for e in entries if e["dtype"] != s.dtype],
        "comparisons": comparisons,
    }


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def _path(entry: Dict) -> str:
    parts = [entry["dtype"]]
    if entry["channels_last"]:
        parts.append("channels-last")
    if entry["fold_bn"]:
        parts.append("BN folded")
    if entry["sliding_window"]:
        parts.append("sliding window")
    return ", ".join(parts)


def format_report(report: Dict) -> str:
    """:func:`run_benchmark`'s report as Markdown tables: one row per model and inference
    path, then the dtype comparison (when measured)."""
    env = report["environment"]
    lines = [
        f"device: {env['device']}; torch {env['torch']}; threads {env['threads']}; "
        f"input 1x3x{env['size'][0]}x{env['size'][1]} ({env['image']}); runs {env['runs']} "
        f"(warm-up {env['warmup']}); seed {env['seed']}",
        "",
    ]
    if env["calibrated"]:
        accuracies = ", ".join(
            f"{e['name']} {100 * e['calibration_pixel_accuracy']:.1f}%"
            for e in report["results"]
            if e["dtype"] == report["results"][0]["dtype"]
        )
        lines[-1:-1] = [f"classifier fitted to {env['label']} (pixel accuracy: {accuracies})"]
    results = report["results"]
    first = {}
    for e in results:
        first.setdefault(e["dtype"], e)

    def backbone_split(e):
        bb = e.get("backbone_ms")
        return "n/a" if bb is None else f"{bb:.1f} / {e['latency_ms'] - bb:.1f}"

    columns = [
        ("model", lambda e: e["name"]),
        ("inference path", _path),
        ("params M", lambda e: f"{e['params'] / 1e6:.2f}"),
        (
            "GMACs (backbone / head)",
            lambda e: f"{e['gmacs']:.2f} ({e['backbone_gmacs']:.2f} / {e['head_gmacs']:.2f})",
        ),
        ("latency ms (median)", lambda e: f"{e['latency_ms']:.1f}"),
        ("min ms", lambda e: f"{e['latency_min_ms']:.1f}"),
        ("FPS", lambda e: f"{e['fps']:.2f}"),
        ("backbone / head+rest ms", backbone_split),
        ("peak mem MB", lambda e: f"{e['peak_memory_mb']:.1f}"),
        ("weights MB", lambda e: f"{e['weights_mb']:.1f}"),
        ("FPS ratio (median)", lambda e: f"{e['fps_ratio']:.2f}x"),
        (
            "FPS ratio (min)",
            lambda e: f"{first[e['dtype']]['latency_min_ms'] / e['latency_min_ms']:.2f}x",
        ),
        (
            "peak mem ratio",
            lambda e: f"{e['peak_memory_ratio']:.2f}x" if "peak_memory_ratio" in e else "n/a",
        ),
    ]
    needs = {
        "GMACs (backbone / head)": "gmacs",
        "backbone / head+rest ms": "backbone_ms",
        "peak mem MB": "peak_memory_mb",
        "peak mem ratio": "peak_memory_mb",
    }
    columns = [(t, f) for t, f in columns if t not in needs or any(needs[t] in e for e in results)]
    lines += [
        "| " + " | ".join(t for t, _ in columns) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(columns))) + "|",
    ]
    for e in results:
        lines.append("| " + " | ".join(f(e) for _, f in columns) + " |")
    lines.append("(ratios: to the first model in the same inference path)")
    if report["comparisons"]:
        dtype = report["comparisons"][0]["dtype"]
        lines += [
            "",
            f"| model | float32 ms | {dtype} ms | speed-up (median) | speed-up (min) "
            "| argmax agreement | median top-2 margin | median margin change |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in report["comparisons"]:
            cells = [
                c["name"],
                f"{c['float32_ms']:.1f}",
                f"{c['dtype_ms']:.1f}",
                f"{c['speedup']:.2f}x",
                f"{c['speedup_min']:.2f}x",
                f"{100 * c['agreement']:.3f}%",
                f"{c['median_top2_margin']:.3g}",
                f"{c['median_margin_change']:.3g}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _size(text: str) -> Tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", nargs="+", required=True, help="config files, measured side by side"
    )
    parser.add_argument("--names", nargs="+", help="one label per config (default: file names)")
    parser.add_argument(
        "--size", type=_size, default=(512, 1024), help="input H,W (default 512,1024)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="MODEL.INFERENCE_DTYPE")
    parser.add_argument(
        "--fast-path",
        default="auto",
        choices=FAST_PATH,
        help="MODEL.INFERENCE_CHANNELS_LAST and TEST.FOLD_BATCHNORM: on, off, or auto (on for "
        "bfloat16/float16, the config's for float32)",
    )
    parser.add_argument(
        "--compare-dtype",
        choices=DTYPES[1:],
        help="also run every model in float32 and this dtype: speed-up and argmax agreement",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights and noise image"
    )
    parser.add_argument("--image", help="image resized to --size (default: uniform noise)")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="fit only the final 1x1 classifier to --label (closed-form ridge regression), so "
        "argmax agreement is measured on a real classifier's margins",
    )
    parser.add_argument("--label", help="label PNG of --image (class indices), for --calibrate")
    parser.add_argument(
        "--sliding-window",
        action="store_true",
        help="keep the configs' TEST.SLIDING_WINDOW (default: one forward over the whole image)",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the backbone alone (whole-image only)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--flops",
        action="store_true",
        help="also count multiply-adds (fvcore, float32): total, backbone and head",
    )
    parser.add_argument(
        "--config-opts",
        nargs="+",
        metavar="'KEY VALUE ...'",
        help="one quoted string of KEY VALUE pairs per config, after --opts ('' for none): "
        "variants of one config side by side",
    )
    add_config_overrides(parser)
    args = parse_args_with_overrides(parser, argv)
    if args.config_opts is not None:
        args.config_opts = [shlex.split(text) for text in args.config_opts]
    try:
        args.settings = FpsSettings(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(FpsSettings)}
        )
    except ValueError as e:  # the settings' checks name the option
        parser.error(str(e))
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = run_benchmark(
        args.settings, progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(json.dumps(report, indent=1) if args.json else format_report(report), flush=True)
    return report


if __name__ == "__main__":
    main()
