"""TorchScript and ONNX export of the project's models, and the check of an exported file
against the PyTorch model it came from (docs/export.md).

Semantic models (``OCRSemanticSegmentor`` with any head and backbone):

- input ``image``: one **raw** image ``[1, 3, H, W]`` float32, pixel values 0..255 in the
  config's ``INPUT.FORMAT`` channel order (RGB for the project's configs), at the size the
  network should see (any ``H``, ``W``: both axes are dynamic). Normalisation by
  ``MODEL.PIXEL_MEAN/PIXEL_STD`` and the padding to the output stride are inside the graph;
  a test-time resize (``INPUT.MIN_SIZE_TEST``) is not.
- output ``logits``: ``[1, K, H, W]`` float32 class scores (argmax = the prediction).

Both formats trace the model's own forward (normalise, pad, backbone, head, crop) through
Detectron2's :class:`~detectron2.export.TracingAdapter`, so the exported graph computes what
``model([{"image": image[0]}])[0]["sem_seg"]`` computes. ONNX uses PyTorch's TorchScript-based
exporter (``dynamo=False``, opset 17). Adaptive average pooling to sizes other than 1 (PSPNet's
bins 2, 3, 6) has no ONNX form for a dynamic input size, so the ONNX copy pools with two
averaging matrices built from the input size (:class:`MatrixAdaptiveAvgPool2d`: the same bins
as ``nn.AdaptiveAvgPool2d``).

Multi-scale attention (``HMSASemanticSegmentor``): the graph holds every scale of
``MODEL.HMSA.TEST_SCALES`` (fixed at export time, recorded in the metadata as
``hmsa_test_scales``); images are rescaled with scale factors, so both axes stay dynamic.

Panoptic-FPN: TorchScript by tracing only (:class:`PanopticTorchScript` runs it). The traced
part is the network (backbone, RPN, box and mask heads, semantic branch) on one image; it
returns ``boxes [N, 4], scores [N], classes [N], mask probabilities [N, 1, M, M]`` and the
semantic logits ``[1, K, H', W']`` of the padded input. The panoptic merge
(``combine_semantic_and_instance_outputs``: a Python loop over a data-dependent number of
instances, producing a Python list of segment dicts) cannot be traced and runs in Python on
those outputs, as do the paste of masks into the image (``detector_postprocess``).
"""

import copy
import json
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.export import TracingAdapter
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.panoptic_fpn import PanopticFPN
from detectron2.structures import Boxes
from torch import Tensor, nn

from ..checkpoint.checkpointer import load_inference_weights, weight_options
from ..data.class_counts import check_model_matches_datasets
from ..data.image_files import read_image
from ..modeling.inference import build_inference_model
from ..modeling.segfix_refinement import wants_segfix
from ..utils.safe_write import (
    PendingOutputs,
    atomic_file,
    check_writable,
    explained_write_errors,
)
from .quantization import FLOAT_OPS, calibration_images, quantize_openvino_model
from .runtimes import METADATA_KEY, OPENVINO_RT_INFO, load_exported

__all__ = [
    "EXPORT_FORMATS",
    "ExportCheck",
    "MatrixAdaptiveAvgPool2d",
    "build_export_model",
    "check_export",
    "check_images",
    "export_model",
    "format_checks",
    "make_onnx_exportable",
    "openvino_weights_path",
    "panoptic_adapter",
    "semantic_adapter",
]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "openvino", "torchscript")
ONNX_OPSET = 17
PANOPTIC_OUTPUTS = ("boxes", "scores", "classes", "masks", "sem_seg")


def build_export_model(cfg: CfgNode) -> nn.Module:
    """The eval-mode float32 CPU model that is exported: built from ``cfg``, ``MODEL.WEIGHTS``
    loaded ("" keeps the random initialisation, warned), through
    :func:`~panoptic_ocr.modeling.inference.build_inference_model` (``TEST.FOLD_BATCHNORM`` is
    honoured). Exported graphs are float32, channels-first and one forward per image: the
    config's ``MODEL.INFERENCE_DTYPE``, ``MODEL.INFERENCE_CHANNELS_LAST`` and
    ``TEST.SLIDING_WINDOW`` are overridden (logged when they were set)."""
    if wants_segfix(cfg):
        raise ValueError(
            f"MODEL.SEGFIX.WEIGHTS is {cfg.MODEL.SEGFIX.WEIGHTS!r}: the exported graph holds the "
            'segmentation model alone; export it with MODEL.SEGFIX.WEIGHTS "" and refine its '
            "predictions with tools/segfix_refine.py"
        )
    cfg = cfg.clone()
    cfg.defrost()
    overridden = {
        "MODEL.DEVICE": (cfg.MODEL.DEVICE, "cpu"),
        "MODEL.INFERENCE_DTYPE": (cfg.MODEL.INFERENCE_DTYPE, "float32"),
        "MODEL.INFERENCE_CHANNELS_LAST": (cfg.MODEL.INFERENCE_CHANNELS_LAST, False),
        "TEST.SLIDING_WINDOW.ENABLED": (cfg.TEST.SLIDING_WINDOW.ENABLED, False),
        "TEST.COMPILE.ENABLED": (cfg.TEST.COMPILE.ENABLED, False),
    }
    for key, (old, new) in overridden.items():
        if old != new:
            logger.info("Export: %s %r -> %r", key, old, new)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.INFERENCE_DTYPE = "float32"
    cfg.MODEL.INFERENCE_CHANNELS_LAST = False
    cfg.TEST.SLIDING_WINDOW.ENABLED = False
    cfg.TEST.COMPILE.ENABLED = False
    cfg.freeze()
    check_model_matches_datasets(cfg, lists=("DATASETS.TEST",))
    model = build_model(cfg).eval()
    load_inference_weights(model, cfg.MODEL.WEIGHTS, **weight_options(cfg))
    return build_inference_model(cfg, model).eval()


# ---------------------------------------------------------------------------------------------
# ONNX-friendly adaptive pooling
# ---------------------------------------------------------------------------------------------
def _pooling_matrix(size: Tensor, bins: int, like: Tensor) -> Tensor:
    """``[bins, size]`` matrix whose row ``i`` averages ``[floor(i*size/bins),
    ceil((i+1)*size/bins))``: the bins of ``nn.AdaptiveAvgPool*``."""
    rows = torch.arange(bins, device=like.device)
    start = torch.div(rows * size, bins, rounding_mode="floor")
    end = torch.div((rows + 1) * size + bins - 1, bins, rounding_mode="floor")
    cols = torch.arange(size, device=like.device)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    inside = inside.to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


class MatrixAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` as ``A_h @ x @ A_w^T`` with averaging matrices
    built from the input size, so it exports to ONNX for a dynamic input size.

    Shapes: ``[N, C, H, W] -> [N, C, out_h, out_w]``; equal to ``AdaptiveAvgPool2d`` up to
    float rounding (the same bins, summed in another order)."""

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if any(s is None for s in output_size):
            raise ValueError(
                f"MatrixAdaptiveAvgPool2d needs a fixed output size, got {output_size}"
            )
        self.output_size = tuple(int(s) for s in output_size)

    def forward(self, x: Tensor) -> Tensor:
        pool_h = _pooling_matrix(torch.as_tensor(x.shape[-2]), self.output_size[0], x)
        pool_w = _pooling_matrix(torch.as_tensor(x.shape[-1]), self.output_size[1], x)
        return torch.matmul(torch.matmul(pool_h, x), pool_w.t())


def make_onnx_exportable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.AdaptiveAvgPool2d`` layers to sizes other than 1 are
    :class:`MatrixAdaptiveAvgPool2d` (global pooling exports as it is); ``model`` itself when
    it has none."""
    targets = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))
    ]
    if not targets:
        return model
    model = copy.deepcopy(model)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, MatrixAdaptiveAvgPool2d(getattr(parent, child).output_size))
    return model


# ---------------------------------------------------------------------------------------------
# Tracing adapters
# ---------------------------------------------------------------------------------------------
def _is_panoptic(model: nn.Module) -> bool:
    return isinstance(getattr(model, "model", model), PanopticFPN) or isinstance(model, PanopticFPN)


def _semantic_logits(model: nn.Module, image: Tensor) -> Tensor:
    """``[1, 3, H, W]`` raw image -> ``[1, K, H, W]`` logits through the model's forward."""
    return model([{"image": image[0]}])[0]["sem_seg"][None]


def _panoptic_raw(model: nn.Module, image: Tensor) -> Tuple[Tensor, ...]:
    """``[1, 3, H, W]`` raw image -> the network outputs of :data:`PANOPTIC_OUTPUTS`."""
    detections, sem_seg = model.inference([{"image": image[0]}], do_postprocess=False)
    inst = detections[0]
    return inst.pred_boxes.tensor, inst.scores, inst.pred_classes, inst.pred_masks, sem_seg[:1]


def semantic_adapter(model: nn.Module, image: Tensor) -> TracingAdapter:
    """Detectron2's ``TracingAdapter`` of a semantic model called on one ``[1, 3, H, W]``
    raw image, returning ``[1, K, H, W]`` logits."""
    # eval(): the adapter is a new module (training mode) and exporters restore its mode,
    # which would switch ``model`` to training afterwards.
    return TracingAdapter(model, (image,), inference_func=_semantic_logits).eval()


def panoptic_adapter(model: nn.Module, image: Tensor) -> TracingAdapter:
    """``TracingAdapter`` of a ``PanopticFPN``'s network (no panoptic merge) on one
    ``[1, 3, H, W]`` raw image, returning the tensors of :data:`PANOPTIC_OUTPUTS`."""
    if not isinstance(model, PanopticFPN):
        raise TypeError(f"panoptic_adapter needs a PanopticFPN, got {type(model).__name__}")
    return TracingAdapter(model, (image,), inference_func=_panoptic_raw).eval()


def _metadata(cfg: CfgNode, model: nn.Module, fmt: str) -> Dict:
    meta = {
        "format": fmt,
        "kind": "panoptic_fpn" if _is_panoptic(model) else "semantic",
        "input": "image [1, 3, H, W] float32, raw pixels 0..255 in INPUT.FORMAT order",
        "input_format": cfg.INPUT.FORMAT,
        "num_classes": int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES),
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "head": cfg.MODEL.SEM_SEG_HEAD.NAME,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        # build_export_model refuses weights that do not fill the model unless
        # MODEL.WEIGHTS_ALLOW_PARTIAL: only then may the graph hold random or partial weights
        "weights": cfg.MODEL.WEIGHTS,
        "weights_complete": bool(cfg.MODEL.WEIGHTS) and not cfg.MODEL.WEIGHTS_ALLOW_PARTIAL,
    }
    if meta["kind"] == "panoptic_fpn":
        combine = cfg.MODEL.PANOPTIC_FPN.COMBINE
        meta["outputs"] = list(PANOPTIC_OUTPUTS)
        meta["combine"] = {
            "overlap_threshold": float(combine.OVERLAP_THRESH),
            "stuff_area_thresh": float(combine.STUFF_AREA_LIMIT),
            "instances_score_thresh": float(combine.INSTANCES_CONFIDENCE_THRESH),
        }
    else:
        meta["outputs"] = ["logits"]
    if cfg.MODEL.META_ARCHITECTURE == "HMSASemanticSegmentor":
        # the scales are part of the graph: a file runs the scales it was exported with
        meta["hmsa_test_scales"] = [float(s) for s in cfg.MODEL.HMSA.TEST_SCALES]
    return meta


def _trace_sample(size: Tuple[int, int]) -> Tensor:
    """A seeded raw image ``[1, 3, h, w]`` to trace with (values do not matter)."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand((1, 3, *size), generator=generator) * 255


def _export_torchscript(model: nn.Module, sample: Tensor, meta: Dict, path: str, panoptic: bool):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in Detectron2 code
        adapter = panoptic_adapter(model, sample) if panoptic else semantic_adapter(model, sample)
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
        torch.jit.save(traced, path, _extra_files={METADATA_KEY: json.dumps(meta)})


def _export_onnx(model: nn.Module, sample: Tensor, meta: Dict, path: str) -> None:
    import onnx

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        adapter = semantic_adapter(make_onnx_exportable(model), sample)
        torch.onnx.export(
            adapter,
            adapter.flattened_inputs,
            path,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={
                "image": {2: "height", 3: "width"},
                "logits": {2: "height", 3: "width"},
            },
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(proto, path)


def openvino_weights_path(xml_path: str) -> str:
    """The ``.bin`` file OpenVINO keeps beside an IR ``.xml`` (same stem)."""
    return os.path.splitext(xml_path)[0] + ".bin"


def _export_openvino(
    model: nn.Module,
    sample: Tensor,
    meta: Dict,
    output: str,
    overwrite: bool,
    int8_images: Optional[Sequence[np.ndarray]] = None,
) -> None:
    """ONNX export converted by OpenVINO's ``convert_model`` into IR (``output`` ``.xml`` and its
    ``.bin``, float32 weights; with ``int8_images``, quantised to int8 on them by
    :func:`~panoptic_ocr.export.quantization.quantize_openvino_model`), the metadata in the
    model's ``rt_info``. Both files are written beside the targets and renamed, the ``.bin``
    first."""
    import openvino as ov

    with explained_write_errors(output), PendingOutputs(overwrite=overwrite) as pending:
        tmp_bin = pending.file(openvino_weights_path(output))  # renamed first: bin, then xml
        tmp_xml = pending.file(output)
        onnx_tmp = tmp_xml + ".onnx"
        try:
            _export_onnx(model, sample, meta, onnx_tmp)
            ov_model = ov.convert_model(onnx_tmp)
            if int8_images is not None:
                ov_model = quantize_openvino_model(ov_model, list(int8_images))
        finally:
            if os.path.exists(onnx_tmp):
                os.remove(onnx_tmp)
        ov_model.set_rt_info(json.dumps(meta), OPENVINO_RT_INFO)
        scratch = tmp_xml + ".ir.xml"
        ov.save_model(ov_model, scratch, compress_to_fp16=False)
        # the .xml does not name its .bin (OpenVINO reads the same stem): renaming is safe
        os.replace(openvino_weights_path(scratch), tmp_bin)
        os.replace(scratch, tmp_xml)


def export_model(
    cfg: CfgNode,
    output: str,
    fmt: str,
    *,
    overwrite: bool = False,
    model: Optional[nn.Module] = None,
    trace_size: Tuple[int, int] = (128, 160),
    int8_calibration: Optional[str] = None,
    calibration_count: int = 16,
) -> nn.Module:
    """Export the model of ``cfg`` (or the given eval-mode ``model``) to ``output``.

    Args:
        cfg: the model's config (``MODEL.WEIGHTS``: checkpoint, "" random weights).
        output: file to write (``.onnx`` / ``.xml`` with its ``.bin`` / ``.ts``), written to a
            temporary sibling and renamed.
        fmt: "onnx", "openvino" (IR converted from the ONNX graph) or "torchscript".
        overwrite: replace an existing ``output``.
        model: the PyTorch model to export; default :func:`build_export_model`.
        trace_size: ``(h, w)`` of the image traced with (the result accepts any size).
        int8_calibration: OpenVINO only: quantise to int8, calibrated on the first
            ``calibration_count`` images of this registered dataset
            (:mod:`panoptic_ocr.export.quantization`; OCR's attention stays float). The
            metadata records ``precision`` "int8" and the calibration.
    Returns:
        The PyTorch model that was exported (for :func:`check_export`).
    Raises:
        ValueError: an unknown format, or ONNX for Panoptic-FPN.
        OutputExistsError: ``output`` exists and ``overwrite`` is False (nothing is built).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    check_writable(output, overwrite=overwrite)
    if fmt == "openvino":
        if not output.endswith(".xml"):
            raise ValueError(f"--output for --format openvino must end in .xml, got {output!r}")
        check_writable(openvino_weights_path(output), overwrite=overwrite)
    if int8_calibration and fmt != "openvino":
        raise ValueError(f"--int8-calibration is for --format openvino, not {fmt}")
    int8_images = None
    if int8_calibration:  # before the model is built: a bad dataset name fails at once
        int8_images = calibration_images(cfg, int8_calibration, calibration_count)
    if model is None:
        model = build_export_model(cfg)
    panoptic = _is_panoptic(model)
    if panoptic and fmt != "torchscript":
        raise ValueError(
            f"{cfg.MODEL.META_ARCHITECTURE}: {fmt} export is for semantic models; export "
            "Panoptic-FPN with --format torchscript (docs/export.md says why)"
        )
    meta = _metadata(cfg, model, fmt)
    meta["precision"] = "int8" if int8_images is not None else "float32"
    if int8_images is not None:
        meta["int8"] = {
            "calibration_dataset": int8_calibration,
            "calibration_images": len(int8_images),
            "float_ops": list(FLOAT_OPS),
        }
    sample = _trace_sample(trace_size)
    if fmt == "openvino":
        _export_openvino(model, sample, meta, output, overwrite, int8_images)
    else:
        with atomic_file(output, overwrite=overwrite) as tmp:
            if fmt == "torchscript":
                _export_torchscript(model, sample, meta, tmp, panoptic)
            else:
                _export_onnx(model, sample, meta, tmp)
    logger.info("Wrote %s (%s, %s, %s)", output, fmt, meta["kind"], meta["precision"])
    return model


# ---------------------------------------------------------------------------------------------
# Checking an export against PyTorch
# ---------------------------------------------------------------------------------------------
@dataclass
class ExportCheck:
    """Agreement of an exported model with PyTorch on one image.

    ``max_abs_diff``: largest absolute difference of the logits (Panoptic-FPN: of the semantic
    logits and, when both found the same instances, of boxes, scores and mask probabilities);
    ``agreement``: fraction of pixels with the same argmax class (Panoptic-FPN: the same
    panoptic segment's category); ``max_abs_logit``: largest absolute PyTorch logit, the scale
    of float32 rounding (random-weight HRNets reach 1e5)."""

    name: str
    height: int
    width: int
    max_abs_diff: float
    agreement: float
    max_abs_logit: float

    def passes(self, atol: float, min_agreement: float) -> bool:
        """``max_abs_diff <= atol * max(1, max_abs_logit)`` (absolute for logits up to 1,
        relative beyond) and ``agreement >= min_agreement``."""
        return (
            self.max_abs_diff <= atol * max(1.0, self.max_abs_logit)
            and self.agreement >= min_agreement
        )


def check_images(
    paths: Sequence[str],
    input_format: str,
    odd_sizes: Sequence[Tuple[int, int]] = ((97, 131), (61, 203)),
) -> List[Tuple[str, np.ndarray]]:
    """Images to check an export on: each of ``paths`` (read in ``input_format``, ``[H, W, 3]``
    uint8), plus every ``odd_sizes`` ``(h, w)``: a resize of the first image, or seeded noise
    when ``paths`` is empty.

    Raises:
        OSError: a path cannot be read (names it).
    """
    import cv2

    images = []
    for path in paths:
        try:
            images.append((os.path.basename(path), read_image(path, format=input_format)))
        except Exception as e:  # PIL raises several types
            raise OSError(f"cannot read check image {path!r}: {e}") from e
    rng = np.random.default_rng(0)
    for h, w in odd_sizes:
        if paths:  # resizes of the first given image
            image = cv2.resize(images[0][1], (w, h), interpolation=cv2.INTER_AREA)
            images.append((f"{images[0][0]}@{h}x{w}", image))
        else:
            images.append((f"noise@{h}x{w}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    return images


def _panoptic_category_map(output: Dict) -> Tensor:
    """Per pixel: ``category_id * 2 + isthing`` of its panoptic segment (-1 for void)."""
    ids, segments = output["panoptic_seg"]
    out = torch.full_like(ids, -1)
    for s in segments:
        out[ids == s["id"]] = int(s["category_id"]) * 2 + int(bool(s["isthing"]))
    return out


@torch.no_grad()
def check_export(
    path: str, model: nn.Module, images: Sequence[Tuple[str, np.ndarray]]
) -> List[ExportCheck]:
    """Run the exported ``path`` and the PyTorch ``model`` on every ``(name, [H, W, 3] uint8)``
    image and compare them (:class:`ExportCheck` per image)."""
    run, meta = load_exported(path)
    results = []
    for name, image in images:
        chw = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        h, w = image.shape[:2]
        if meta["kind"] == "panoptic_fpn":
            ours = run(chw.float())
            ref = model([{"image": chw}])[0]
            diffs = [(ours["sem_seg"] - ref["sem_seg"]).abs().max().item()]
            a, b = ours["instances"], ref["instances"]
            if len(a) == len(b) and len(a):
                for field in ("pred_boxes", "scores", "pred_masks"):
                    x, y = a.get(field), b.get(field)
                    x = x.tensor if isinstance(x, Boxes) else x
                    y = y.tensor if isinstance(y, Boxes) else y
                    diffs.append((x.float() - y.float()).abs().max().item())
            elif len(a) != len(b):
                diffs.append(float("inf"))
            agree = (
                (_panoptic_category_map(ours) == _panoptic_category_map(ref)).float().mean().item()
            )
            scale = ref["sem_seg"].abs().max().item()
            results.append(ExportCheck(name, h, w, max(diffs), agree, scale))
            continue
        exported = torch.as_tensor(run(chw[None].float().numpy()))
        reference = _semantic_logits(model, chw[None].float())
        if exported.shape != reference.shape:
            raise AssertionError(
                f"{path} on {name}: logits {tuple(exported.shape)}, "
                f"PyTorch {tuple(reference.shape)}"
            )
        diff = (exported - reference).abs().max().item()
        agree = (exported.argmax(dim=1) == reference.argmax(dim=1)).float().mean().item()
        results.append(ExportCheck(name, h, w, diff, agree, reference.abs().max().item()))
    return results


def format_checks(checks: Sequence[ExportCheck]) -> str:
    """The checks as a table (one row per image)."""
    from tabulate import tabulate

    rows = [
        (
            c.name,
            f"{c.height}x{c.width}",
            f"{c.max_abs_diff:.2e}",
            f"{c.max_abs_logit:.3g}",
            f"{100 * c.agreement:.4f}%",
        )
        for c in checks
    ]
    headers = ["image", "size", "max |logit diff|", "max |logit|", "argmax agreement"]
    return tabulate(rows, headers=headers, tablefmt="pipe")
