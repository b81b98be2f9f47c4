"""Running exported files: onnxruntime, OpenVINO and TorchScript behind one callable, the
metadata every file carries, and :class:`ExportedSemanticSegmentor`, which makes an exported
semantic model a Detectron2 model (``model(batched_inputs) -> [{"sem_seg": ...}]``) so that the
project's data loaders, evaluators and demo run it as they run the PyTorch model.

Files and the runtimes that read them:

- ``.onnx`` (``export_model(..., "onnx")``): onnxruntime (default) or OpenVINO, which reads
  ONNX directly.
- ``.xml`` + ``.bin`` (``export_model(..., "openvino")``, OpenVINO IR): OpenVINO.
- TorchScript archives (``.ts``): ``torch.jit.load``.

Every file holds the JSON metadata that :func:`export_model` wrote (:data:`METADATA_KEY`): the
model kind, class count, input channel order, architecture, and whether the weights were fully
loaded; :func:`check_exported_matches_config` compares it with a config before a result is
produced from the file.
"""

import json
import logging
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

from ..modeling.meta_arch.semantic_segmentor import postprocess_logits
from .signal_stack import signal_stack_kept

__all__ = [
    "METADATA_KEY",
    "RUNTIMES",
    "ExportedFileError",
    "ExportedSemanticSegmentor",
    "PanopticTorchScript",
    "check_exported_matches_config",
    "default_runtime",
    "image_batch",
    "load_exported",
    "read_metadata",
]

logger = logging.getLogger(__name__)

# Metadata stored with the exported file (TorchScript extra file / ONNX metadata_props /
# OpenVINO rt_info).
METADATA_KEY = "panoptic_ocr.json"
OPENVINO_RT_INFO = ["panoptic_ocr", "metadata"]
RUNTIMES = ("onnxruntime", "openvino", "torchscript")
# OpenVINO's INFERENCE_PRECISION_HINT values offered; bf16 runs in bfloat16 only on CPUs with
# AVX512-BF16/AMX (elsewhere OpenVINO keeps float32).
OPENVINO_PRECISIONS = ("f32", "bf16")


class ExportedFileError(ValueError):
    """An exported file that cannot be run for the request (wrong kind, another model's
    metadata, incompletely loaded weights, no metadata, unknown runtime); names the file."""


def _file_kind(path: str) -> str:
    """ "torchscript", "onnx" or "openvino" from the file's content (zip archive: TorchScript) and
    extension (``.xml``: OpenVINO IR)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported file {path!r} does not exist")
    with open(path, "rb") as f:
        magic = f.read(5)
    if magic[:2] == b"PK":  # TorchScript archives are zip files
        return "torchscript"
    if path.endswith(".xml") or magic == b"<?xml":
        return "openvino"
    return "onnx"


def default_runtime(path: str) -> str:
    """The runtime a file is run with when none is asked for: onnxruntime for ONNX, OpenVINO for
    OpenVINO IR, TorchScript for TorchScript archives."""
    return {"onnx": "onnxruntime", "openvino": "openvino", "torchscript": "torchscript"}[
        _file_kind(path)
    ]


def _missing_metadata(path: str) -> ExportedFileError:
    return ExportedFileError(
        f"{path}: no {METADATA_KEY} metadata (not written by tools/export_model.py); "
        "export the model with tools/export_model.py"
    )


def read_metadata(path: str) -> Dict:
    """The metadata :func:`export_model` stored in ``path`` (any format).

    Raises:
        FileNotFoundError: no such file.
        ExportedFileError: the file has no panoptic_ocr metadata.
    """
    kind = _file_kind(path)
    if kind == "torchscript":
        extra = {METADATA_KEY: ""}
        torch.jit.load(path, map_location="cpu", _extra_files=extra)
        text = extra[METADATA_KEY]
    elif kind == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        text = props.get(METADATA_KEY, "")
    else:
        import openvino as ov

        model = ov.Core().read_model(path)
        text = model.get_rt_info(OPENVINO_RT_INFO).astype(str) if _has_rt_info(model) else ""
    if not text:
        raise _missing_metadata(path)
    return json.loads(text)


def _has_rt_info(model) -> bool:
    return model.has_rt_info(OPENVINO_RT_INFO)


def image_batch(image) -> np.ndarray:
    """One raw image as every exported callable takes it: ``[3, H, W]`` or ``[1, 3, H, W]``,
    numpy or tensor, any number type -> ``[1, 3, H, W]`` contiguous float32 numpy.

    Raises:
        ValueError: another shape (names it).
    """
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[:2] != (1, 3):
        raise ValueError(
            f"an exported model takes one image [3, H, W] or [1, 3, H, W], got {list(array.shape)}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


class PanopticTorchScript:
    """A traced Panoptic-FPN (:func:`export_model` with ``torchscript``) with the Python
    post-processing of Detectron2's ``PanopticFPN.inference``.

    ``predictor(image)`` takes one raw image ``[3, H, W]`` or ``[1, 3, H, W]`` (numpy or
    tensor, 0..255, ``INPUT.FORMAT``; :func:`image_batch`) and returns ``PanopticFPN``'s output
    dict: ``sem_seg`` ``[K, H, W]``, ``instances`` and ``panoptic_seg`` ``(ids [H, W],
    segments_info)``."""

    def __init__(self, module: torch.jit.ScriptModule, combine: Dict[str, float]):
        self.module = module
        self.combine = combine

    @torch.no_grad()
    def __call__(self, image) -> Dict:
        batch = torch.from_numpy(image_batch(image))
        h, w = int(batch.shape[-2]), int(batch.shape[-1])
        boxes, scores, classes, masks, sem_seg = self.module(batch)
        instances = Instances((h, w))
        instances.pred_boxes = Boxes(boxes)
        instances.scores = scores
        instances.pred_classes = classes
        instances.pred_masks = masks
        detector_r = detector_postprocess(instances, h, w)
        sem_seg_r = sem_seg_postprocess(sem_seg[0], (h, w), h, w)
        panoptic = combine_semantic_and_instance_outputs(
            detector_r,
            sem_seg_r.argmax(dim=0),
            self.combine["overlap_threshold"],
            self.combine["stuff_area_thresh"],
            self.combine["instances_score_thresh"],
        )
        return {"sem_seg": sem_seg_r, "instances": detector_r, "panoptic_seg": panoptic}


def _onnxruntime_session(path: str, threads: Optional[int]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run_onnx(image) -> np.ndarray:
        return session.run(None, {"image": image_batch(image)})[0]

    return run_onnx


def _openvino_model(
    path: str,
    threads: Optional[int],
    precision: str,
    static_size: Optional[Tuple[int, int]] = None,
):
    import openvino as ov

    if precision not in OPENVINO_PRECISIONS:
        raise ExportedFileError(
            f"{path}: OpenVINO precision must be one of {OPENVINO_PRECISIONS}, got {precision!r}"
        )
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    core = ov.Core()
    model = core.read_model(path)
    if static_size is not None:  # compiled for one input size: OpenVINO plans its memory once
        model.reshape({model.inputs[0].get_any_name(): [1, 3, *static_size]})
    with signal_stack_kept():  # the CPU plugin is loaded here (see signal_stack)
        compiled = core.compile_model(model, "CPU", config)
    output = compiled.output(0)

    def run_openvino(image) -> np.ndarray:
        batch = image_batch(image)
        if static_size is not None and tuple(batch.shape[2:]) != tuple(static_size):
            raise ValueError(
                f"{path} was compiled for {static_size[0]}x{static_size[1]} images "
                f"(openvino_static_size), got {batch.shape[2]}x{batch.shape[3]}"
            )
        return np.asarray(compiled(batch)[output])

    return run_openvino


def load_exported(
    path: str,
    runtime: Optional[str] = None,
    *,
    threads: Optional[int] = None,
    openvino_precision: str = "f32",
    openvino_static_size: Optional[Tuple[int, int]] = None,
) -> Tuple[Callable, Dict]:
    """A callable of an exported file and its metadata: ``(run, metadata)``.

    Every callable takes one raw image ``[3, H, W]`` or ``[1, 3, H, W]``, numpy or tensor
    (:func:`image_batch`). Semantic files: ``run(image) -> logits numpy [1, K, H, W]``.
    Panoptic-FPN (TorchScript only): ``run`` is a :class:`PanopticTorchScript` (output dict).

    Args:
        runtime: one of :data:`RUNTIMES`; default :func:`default_runtime`.
        threads: intra-op threads of onnxruntime / OpenVINO (default: the runtime's own).
        openvino_precision: OpenVINO's ``INFERENCE_PRECISION_HINT`` ("f32" or "bf16").
        openvino_static_size: ``(H, W)``: compile for that input size only (about 10% faster
            for a fixed camera resolution; other sizes are refused).
    Raises:
        FileNotFoundError: no such file.
        ExportedFileError: no panoptic_ocr metadata, an unknown runtime, or a runtime that
            cannot read this file (TorchScript is run by torch only, ONNX/IR never by torch).
    """
    kind = _file_kind(path)
    runtime = runtime or default_runtime(path)
    if runtime not in RUNTIMES:
        raise ExportedFileError(f"{path}: runtime must be one of {RUNTIMES}, got {runtime!r}")
    readable = {
        "torchscript": ("torchscript",),
        "onnx": ("onnxruntime", "openvino"),
        "openvino": ("openvino",),
    }[kind]
    if runtime not in readable:
        raise ExportedFileError(
            f"{path} is a {kind} file; it runs with {' or '.join(readable)}, not {runtime}"
        )
    meta = read_metadata(path)
    if runtime == "torchscript":
        module = torch.jit.load(path, map_location="cpu")
        if meta["kind"] == "panoptic_fpn":
            return PanopticTorchScript(module, meta["combine"]), meta

        def run_ts(image) -> np.ndarray:
            with torch.no_grad():  # traced adapters return a tuple of outputs
                return module(torch.from_numpy(image_batch(image)))[0].numpy()

        return run_ts, meta
    if runtime == "onnxruntime":
        return _onnxruntime_session(path, threads), meta
    return _openvino_model(path, threads, openvino_precision, openvino_static_size), meta


# Metadata keys that must equal the config's for a file to stand for the config's model.
def _config_values(cfg: CfgNode) -> Dict:
    return {
        "num_classes": int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES),
        "input_format": cfg.INPUT.FORMAT,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "head": cfg.MODEL.SEM_SEG_HEAD.NAME,
        "backbone": cfg.MODEL.BACKBONE.NAME,
    }


def check_exported_matches_config(
    path: str, meta: Dict, cfg: CfgNode, *, allow_partial: bool = False
) -> None:
    """Refuse to produce a result from ``path`` for ``cfg`` unless the file is a semantic
    model of the config's architecture, class count and input channel order, exported with
    fully loaded weights (``weights_complete`` in the metadata; with ``allow_partial``, a file
    exported from random or partial weights is accepted and warned about).

    Raises:
        ExportedFileError: names the file, the metadata key, its value and the config's.
    """
    if meta.get("kind") != "semantic":
        raise ExportedFileError(
            f"{path}: a {meta.get('kind')!r} model; exported files are evaluated and run by the "
            "demo for semantic models (Panoptic-FPN runs in PyTorch: train_net.py --eval-only, "
            "the demo without --exported)"
        )
    for key, expected in _config_values(cfg).items():
        if meta.get(key) != expected:
            raise ExportedFileError(
                f"{path}: exported with {key} {meta.get(key)!r}, but the config has "
                f"{expected!r}; use the config the file was exported from"
            )
    if not meta.get("weights_complete", False):
        message = (
            f"{path}: exported from weights {meta.get('weights', '<unknown>')!r} that were not "
            "all loaded (random or partial weights, or a file from before the export recorded "
            "it); its results would not be the trained model's. Re-export with a checkpoint "
            "that fills the model"
        )
        if not allow_partial:
            raise ExportedFileError(message + ", or pass --allow-partial-weights.")
        logger.warning("%s.", message)


class ExportedSemanticSegmentor(nn.Module):
    """An exported semantic model as a Detectron2 model: ``model(batched_inputs)`` takes the
    test loader's dicts (``image`` ``[3, H, W]`` raw pixels in ``INPUT.FORMAT``, optional
    ``height``/``width``) and returns one ``{"sem_seg": [K, height, width]}`` float32 logits per
    input, post-processed as ``OCRSemanticSegmentor`` does (resized to the output size).

    The file's graph holds normalisation, padding and the crop back; the exported model runs one
    image per call (batch 1). It has no parameters: ``run`` is the runtime's callable."""

    def __init__(self, run: Callable, metadata: Dict, path: str, runtime: str):
        super().__init__()
        self.run = run
        self.metadata = metadata
        self.path = path
        self.runtime = runtime

    @classmethod
    def from_config(
        cls,
        cfg: CfgNode,
        path: str,
        runtime: Optional[str] = None,
        *,
        threads: Optional[int] = None,
        openvino_precision: str = "f32",
    ) -> "ExportedSemanticSegmentor":
        """Load ``path`` with ``runtime`` and check it stands for ``cfg``'s model
        (:func:`check_exported_matches_config`, ``MODEL.WEIGHTS_ALLOW_PARTIAL`` honoured)."""
        runtime = runtime or default_runtime(path)
        run, meta = load_exported(
            path, runtime, threads=threads, openvino_precision=openvino_precision
        )
        check_exported_matches_config(
            path, meta, cfg, allow_partial=bool(cfg.MODEL.WEIGHTS_ALLOW_PARTIAL)
        )
        return cls(run, meta, path, runtime)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        processed = []
        for inp in batched_inputs:
            image = inp["image"]
            h, w = int(image.shape[-2]), int(image.shape[-1])
            logits = torch.from_numpy(np.asarray(self.run(image[None].float().numpy())))[0]
            height, width = inp.get("height", h), inp.get("width", w)
            processed.append({"sem_seg": postprocess_logits(logits, (h, w), height, width)})
        return processed
