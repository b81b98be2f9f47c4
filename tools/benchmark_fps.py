#!/usr/bin/env python3
"""Frames per second and peak memory of whole segmentation models, side by side.

Each ``--configs`` file is built as ``train_net.py`` builds it (``get_cfg``, ``add_ocr_config``,
the file, ``--opts``, ``adapt_config_to_device``) with random initialisation
(``MODEL.WEIGHTS ""``, ``--seed``), ``MODEL.DEVICE`` from ``--device`` and every ``*.NORM``
"SyncBN"/"naiveSyncBN" as "BN" (one process). The model then goes through the project's own
inference path, exactly as ``Trainer.test`` prepares it: ``MODEL.INFERENCE_DTYPE`` (autocast,
from ``--dtype``), ``MODEL.INFERENCE_CHANNELS_LAST`` and ``TEST.FOLD_BATCHNORM`` via
``prepare_for_inference`` (with reduced precision also the conv weights in that dtype).
``--fast-path auto`` (default) turns channels-last and BN folding on for bfloat16/float16 and
leaves the config's values for float32.

One frame = ``model([{"image": uint8 [3, H, W] already on the device}])`` under
``torch.inference_mode``: normalisation, padding, backbone, head, upsampling and
post-processing to ``[K, H, W]`` float32 logits, in one forward over the whole image
(``TEST.SLIDING_WINDOW`` is turned off unless ``--sliding-window``). Latency: median (and min)
over ``--runs`` rounds after ``--warmup`` ones; the models are timed interleaved (one call of
each per round), so load from other processes hits them alike. Peak memory: of one forward
above what is held before it (weights and input excluded; reported separately), measured as
``tools/benchmark_heads.py`` does (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the
allocator events of ``torch.profiler``). ``--breakdown`` also times the backbone alone on the
model's preprocessed input; ``--flops`` counts multiply-adds with fvcore.

``--compare-dtype bfloat16`` measures each model in float32 and in that dtype (same weights)
and reports the speed-up and the fraction of pixels whose argmax agrees. Random weights give
nearly tied logits, which makes that agreement pessimistic; ``--calibrate`` (with ``--image``
and its ``--label``) fits only the final 1x1 classifier to the label in closed form, so that
the logits' margins are a real classifier's (see :func:`fit_classifier_`).

``--opts`` applies to every config; ``--config-opts`` gives one string of KEY VALUE pairs per
config, to put variants of one config side by side.

Usage:
    python tools/benchmark_fps.py --configs a.yaml b.yaml --names A B --size 512,1024
    python tools/benchmark_fps.py --configs c.yaml --size 1024,2048 --compare-dtype bfloat16 \\
        --runs 3 --warmup 1 --image img.png --label label.png --calibrate
    python tools/benchmark_fps.py --configs a.yaml a.yaml --names wide narrow \
        --config-opts "" "MODEL.OCR.MID_CHANNELS 256" --flops --breakdown --json
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.config import CfgNode, get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from panoptic_ocr import add_ocr_config  # noqa: E402
from panoptic_ocr.engine import adapt_config_to_device  # noqa: E402
from panoptic_ocr.modeling import inference as inference_lib  # noqa: E402
from panoptic_ocr.modeling.inference import inference_autocast, prepare_for_inference  # noqa: E402
from tools.benchmark_heads import median_latency_ms, peak_memory_bytes  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16")
FAST_PATH = ("auto", "on", "off")


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------
def _norm_nodes(cfg: CfgNode):
    for key, value in cfg.items():
        if isinstance(value, CfgNode):
            yield from _norm_nodes(value)
        elif key == "NORM" and isinstance(value, str):
            yield cfg, key


def setup_cfg(config_file: str, opts: Sequence[str] = (), device: str = "cpu") -> CfgNode:
    """A mutable config as ``train_net.py`` builds it, for a single process on ``device`` with
    random initialisation: ``MODEL.WEIGHTS ""`` and every "SyncBN"/"naiveSyncBN" norm as "BN"
    (the same in eval mode; BN folding and channels-last handle plain BN best)."""
    cfg = get_cfg()
    add_ocr_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = device
    for node, key in _norm_nodes(cfg):
        if node[key] in ("SyncBN", "naiveSyncBN"):
            node[key] = "BN"
    adapt_config_to_device(cfg)
    return cfg


def set_inference_options(cfg: CfgNode, dtype: str, fast_path: str = "auto") -> CfgNode:
    """``MODEL.INFERENCE_DTYPE`` = ``dtype``; ``fast_path`` "on"/"off" sets
    ``MODEL.INFERENCE_CHANNELS_LAST`` and ``TEST.FOLD_BATCHNORM``, "auto" turns them on for a
    reduced ``dtype`` and keeps the config's values for float32."""
    cfg = cfg.clone()
    cfg.MODEL.INFERENCE_DTYPE = dtype
    if fast_path == "on" or (fast_path == "auto" and dtype != "float32"):
        cfg.MODEL.INFERENCE_CHANNELS_LAST = True
        cfg.TEST.FOLD_BATCHNORM = True
    elif fast_path == "off":
        cfg.MODEL.INFERENCE_CHANNELS_LAST = False
        cfg.TEST.FOLD_BATCHNORM = False
    return cfg


def inference_model(model: nn.Module, cfg: CfgNode) -> nn.Module:
    """The model ``Trainer.test`` would evaluate with ``cfg``'s inference keys (a copy when any
    of them changes weights; ``model`` itself otherwise)."""
    device_type = torch.device(cfg.MODEL.DEVICE).type
    weight_dtype = None
    if hasattr(model, "inference_dtype"):
        weight_dtype = inference_lib.resolve_inference_dtype(cfg.MODEL.INFERENCE_DTYPE, device_type)
    prepared = prepare_for_inference(
        model,
        fold_bn=cfg.TEST.FOLD_BATCHNORM,
        channels_last=cfg.MODEL.INFERENCE_CHANNELS_LAST,
        weight_dtype=weight_dtype,
    )
    if hasattr(prepared, "inference_dtype"):
        prepared.inference_dtype = cfg.MODEL.INFERENCE_DTYPE
        prepared.inference_channels_last = cfg.MODEL.INFERENCE_CHANNELS_LAST
    elif cfg.MODEL.INFERENCE_DTYPE != "float32":
        raise ValueError(
            f"{type(model).__name__} has no inference dtype (MODEL.INFERENCE_DTYPE "
            f"{cfg.MODEL.INFERENCE_DTYPE!r}): use MODEL.META_ARCHITECTURE OCRSemanticSegmentor"
        )
    return prepared.eval()


def count_macs(model: nn.Module, inputs: List[Dict]) -> Dict[str, float]:
    """Multiply-adds (G) of one float32 forward, as fvcore counts them (Detectron2's
    ``FlopCountAnalysis``; convs, matmuls, einsums; elementwise ops, softmax and interpolation
    count 0): ``gmacs`` in all, ``backbone_gmacs``, ``head_gmacs``."""
    from detectron2.utils.analysis import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_module = analysis.by_module()
    # Detectron2's analysis wraps the model: its modules are named "model.<name>".
    return {
        "gmacs": analysis.total() / 1e9,
        "backbone_gmacs": by_module.get("model.backbone", 0) / 1e9,
        "head_gmacs": by_module.get("model.sem_seg_head", 0) / 1e9,
    }


def _weights_bytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


# ---------------------------------------------------------------------------------------------
# Calibration: a meaningful classifier on random features, in closed form
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
    """uint8 ``[3, H, W]``: ``image_path`` resized to ``size`` (RGB), or uniform noise."""
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
    """``[H, W]`` int64 class indices: the single-channel label PNG, resized (nearest)."""
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise ValueError(f"--label {label_path!r} is not a single-channel label image")
    label = cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return torch.from_numpy(label.astype(np.int64))


def _backbone_call(model: nn.Module, inputs: List[Dict]) -> Optional[Callable]:
    """The backbone alone on the model's preprocessed input, as the model runs it; None when
    the model is not an ``OCRSemanticSegmentor``-like segmentor."""
    if not all(hasattr(model, a) for a in ("_pad", "inference_dtype", "backbone")):
        return None
    x = model._pad(
        [(i["image"].to(model.device) - model.pixel_mean) / model.pixel_std for i in inputs]
    ).tensor
    if model.inference_channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = inference_lib.resolve_inference_dtype(model.inference_dtype, model.device.type)

    def call():
        with inference_autocast(dtype, model.device.type):
            return model.backbone(x)

    return call


def time_interleaved(
    calls: Dict[Tuple, Callable], device: torch.device, runs: int, warmup: int
) -> Dict[Tuple, List[float]]:
    """``runs`` rounds of one call each (ms), after ``warmup`` rounds, under inference_mode."""
    times = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(warmup):
            for call in calls.values():
                call()
        for _ in range(runs):
            for name, call in calls.items():
                times[name].append(median_latency_ms(call, device, runs=1, warmup=0))
    return times


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


def _device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            name = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name
            )
    bf16 = "yes" if inference_lib._cpu_supports_bfloat16() else "no"
    return f"{name} (cpu, native bfloat16: {bf16})"


def run_benchmark(args) -> Dict:
    device = torch.device(args.device)
    image = make_image(args.size, args.image, args.seed).to(device)
    inputs = [{"image": image, "height": args.size[0], "width": args.size[1]}]
    label = read_label(args.size, args.label) if args.calibrate else None
    dtypes = [args.dtype]
    if args.compare_dtype:
        dtypes = list(dict.fromkeys(["float32", args.compare_dtype, args.dtype]))

    entries, calls, backbone_calls, models = [], {}, {}, {}
    for name, config_file, config_opts in zip(args.names, args.configs, args.config_opts):
        cfg = setup_cfg(config_file, list(args.opts) + config_opts, args.device)
        if not args.sliding_window:
            cfg.TEST.SLIDING_WINDOW.ENABLED = False
        torch.manual_seed(args.seed)
        base = build_model(cfg).eval()
        calibration_accuracy = None
        if args.calibrate:
            calibration_accuracy = fit_classifier_(base, inputs, label, seed=args.seed)
        macs = count_macs(base, inputs) if args.flops else {}
        for dtype in dtypes:
            dcfg = set_inference_options(cfg, dtype, args.fast_path)
            model = inference_model(base, dcfg)
            key = (name, dtype)
            models[key] = model
            calls[key] = lambda m=model: m(inputs)
            if args.breakdown and not getattr(model, "sliding_window", None):
                call = _backbone_call(model, inputs)
                if call is not None:
                    backbone_calls[key] = call
            entries.append(
                {
                    "name": name,
                    "config": config_file,
                    "config_opts": config_opts,
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
        print(f"  built {name}", file=sys.stderr, flush=True)

    all_calls = dict(calls)
    all_calls.update({(k[0], k[1], "backbone"): c for k, c in backbone_calls.items()})
    times = time_interleaved(all_calls, device, args.runs, args.warmup)
    for entry in entries:
        key = (entry["name"], entry["dtype"])
        entry["latency_ms"] = statistics.median(times[key])
        entry["latency_min_ms"] = min(times[key])
        entry["fps"] = 1000.0 / entry["latency_ms"]
        if key in backbone_calls:
            entry["backbone_ms"] = statistics.median(times[key + ("backbone",)])
        if not args.no_memory:
            entry["peak_memory_mb"] = _peak_mb(calls[key], device)
    for entry in entries:
        first = next(e for e in entries if e["dtype"] == entry["dtype"])
        entry["fps_ratio"] = entry["fps"] / first["fps"]
        entry["latency_ratio"] = entry["latency_ms"] / first["latency_ms"]
        if not args.no_memory and first["peak_memory_mb"] > 0:
            entry["peak_memory_ratio"] = entry["peak_memory_mb"] / first["peak_memory_mb"]

    comparisons = []
    if args.compare_dtype:
        for name in args.names:
            ref = next(e for e in entries if e["name"] == name and e["dtype"] == "float32")
            low = next(e for e in entries if e["name"] == name and e["dtype"] == args.compare_dtype)
            comparison = {
                "name": name,
                "dtype": args.compare_dtype,
                "float32_ms": ref["latency_ms"],
                "dtype_ms": low["latency_ms"],
                "speedup": ref["latency_ms"] / low["latency_ms"],
                "speedup_min": ref["latency_min_ms"] / low["latency_min_ms"],
            }
            comparison.update(
                agreement(models[(name, "float32")], models[(name, args.compare_dtype)], inputs)
            )
            comparisons.append(comparison)

    return {
        "environment": {
            "device": _device_description(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "size": list(args.size),
            "runs": args.runs,
            "warmup": args.warmup,
            "seed": args.seed,
            "calibrated": bool(args.calibrate),
            "image": args.image or "uniform noise",
            "label": args.label,
            "opts": list(args.opts),
        },
        "results": [e for e in entries if e["dtype"] == args.dtype]
        + [e for e in entries if e["dtype"] != args.dtype],
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


def _size(text: str) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size needs H,W (two integers), got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"--size needs positive H,W, got {text!r}")
    return height, width


def parse_args(argv=None):
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
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE pairs for every config (last)",
    )
    args = parser.parse_args(argv)
    if args.names is None:
        args.names = [os.path.splitext(os.path.basename(c))[0] for c in args.configs]
    if len(args.names) != len(args.configs):
        parser.error(f"--names has {len(args.names)} labels for {len(args.configs)} --configs")
    if len(set(args.names)) != len(args.names):
        parser.error(f"--names must be distinct, got {args.names}")
    for config_file in args.configs:
        if not os.path.isfile(config_file):
            parser.error(f"config file {config_file!r} does not exist")
    if args.runs < 1 or args.warmup < 0:
        parser.error(f"--runs must be >= 1 and --warmup >= 0, got {args.runs} and {args.warmup}")
    if args.calibrate and not (args.image and args.label):
        parser.error("--calibrate needs --image and its --label")
    if len(args.opts) % 2:
        parser.error(f"--opts needs KEY VALUE pairs, got {args.opts}")
    config_opts = args.config_opts or [""] * len(args.configs)
    if len(config_opts) != len(args.configs):
        parser.error(
            f"--config-opts has {len(config_opts)} strings for {len(args.configs)} --configs"
        )
    args.config_opts = [shlex.split(text) for text in config_opts]
    for text in args.config_opts:
        if len(text) % 2:
            parser.error(f"--config-opts needs KEY VALUE pairs, got {' '.join(text)!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = run_benchmark(args)
    print(json.dumps(report, indent=1) if args.json else format_report(report), flush=True)
    return report


if __name__ == "__main__":
    main()
