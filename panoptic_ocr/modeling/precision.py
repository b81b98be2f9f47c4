"""Inference precision primitives: the autocast dtype of ``MODEL.INFERENCE_DTYPE``, autocast
itself, an inference copy of a model (folded BatchNorm, channels-last, reduced-precision conv
weights) and a wrapper that runs any model under autocast with float32 outputs.

A leaf module: it imports nothing of this package above ``modeling/fuse.py``, so the
meta-architectures, test-time augmentation and the inference builder
(:func:`panoptic_ocr.modeling.inference.build_inference_model`) can all import it.

Measured on this project's AMX/AVX512-BF16 CPU (``tools/benchmark_precision.py``, table in
docs/ocr_variants.md): bfloat16 autocast alone speeds the paper-size OCR module up about 2.4x;
with channels-last weights (oneDNN's native layout), bfloat16 conv weights and folded BN, the
inference copy of :func:`prepare_for_inference`, about 4.5-5x.
"""

import contextlib
import copy
import functools
import logging
from typing import Any, ContextManager, Optional

import torch
from detectron2.structures import Boxes, Instances
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .fuse import fold_batchnorm

__all__ = [
    "INFERENCE_DTYPES",
    "resolve_inference_dtype",
    "inference_autocast",
    "prepare_for_inference",
    "to_float32",
    "AutocastInference",
]

logger = logging.getLogger(__name__)

INFERENCE_DTYPES = ("float32", "bfloat16", "float16", "auto")


def _cpu_supports_bfloat16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=None)
def resolve_inference_dtype(name: str, device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype of ``MODEL.INFERENCE_DTYPE`` on ``device_type``; None: float32.

    ``"auto"`` is bfloat16 on a CPU whose oneDNN has native bfloat16 kernels (AVX512-BF16 or
    AMX; otherwise float32, since emulated bfloat16 is slower), float16 on CUDA, float32 on
    any other device.
    """
    if name not in INFERENCE_DTYPES:
        raise ValueError(f"MODEL.INFERENCE_DTYPE must be one of {INFERENCE_DTYPES}, got {name!r}")
    if name == "float32":
        return None
    if name == "auto":
        if device_type == "cuda":
            return torch.float16
        if device_type == "cpu" and _cpu_supports_bfloat16():
            return torch.bfloat16
        logger.info(
            "MODEL.INFERENCE_DTYPE 'auto': no fast reduced precision on %s, using float32",
            device_type,
        )
        return None
    dtype = torch.bfloat16 if name == "bfloat16" else torch.float16
    if device_type == "cpu" and dtype == torch.bfloat16 and not _cpu_supports_bfloat16():
        logger.warning(
            "This CPU has no native bfloat16 kernels: bfloat16 inference may be slower than float32"
        )
    return dtype


def inference_autocast(dtype: Optional[torch.dtype], device_type: str) -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device_type``, or a no-op for None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def prepare_for_inference(
    model: nn.Module,
    *,
    fold_bn: bool = False,
    channels_last: bool = False,
    weight_dtype: Optional[torch.dtype] = None,
) -> nn.Module:
    """A model for evaluation that leaves the training model untouched.

    With no option set, ``model`` itself is returned. Otherwise a deep copy (of the wrapped
    module for DDP) is put in eval mode and

    - ``fold_bn``: its BatchNorms are folded into the convolutions (:func:`fold_batchnorm`);
    - ``channels_last``: its parameters are converted to ``torch.channels_last``;
    - ``weight_dtype``: the weights and biases of its convolutions are stored in that dtype
      (the autocast dtype of ``MODEL.INFERENCE_DTYPE``). Autocast would cast them to it on
      every call anyway, so the results are the same; the per-call casts (about a quarter of
      the bfloat16 OCR module's time at small inputs) are saved. Such a copy must run under
      that autocast, as :class:`OCRSemanticSegmentor` does at inference with that dtype.

    The copy costs one model's memory for the duration of the evaluation; the original's
    parameters, buffers, optimizer state and train/eval mode are unchanged, so training
    continues exactly as without the evaluation.
    """
    if not (fold_bn or channels_last or weight_dtype is not None):
        return model
    if isinstance(model, DistributedDataParallel):
        model = model.module
    inference_model = copy.deepcopy(model)
    for param in inference_model.parameters():
        param.grad = None
    inference_model.eval()
    if fold_bn:
        fold_batchnorm(inference_model)
    if channels_last:
        inference_model.to(memory_format=torch.channels_last)
    if weight_dtype is not None:
        for module in inference_model.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                for param in (module.weight, module.bias):
                    if param is not None:
                        param.data = param.data.to(weight_dtype)
    return inference_model


def to_float32(value: Any) -> Any:
    """``value`` with every reduced-precision floating tensor (also inside dicts, lists, tuples,
    ``Instances`` and ``Boxes``) cast to float32."""
    if isinstance(value, torch.Tensor):
        return (
            value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
        )
    if isinstance(value, Boxes):
        return Boxes(to_float32(value.tensor))
    if isinstance(value, Instances):
        out = Instances(value.image_size)
        for name, field in value.get_fields().items():
            out.set(name, to_float32(field))
        return out
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


class AutocastInference(nn.Module):
    """Runs a model whose forward has no reduced-precision path of its own (Panoptic-FPN) under
    ``torch.autocast(dtype)`` and returns its outputs in float32 (same structure: dicts,
    ``Instances``, ...)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.dtype = dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def forward(self, batched_inputs):
        with inference_autocast(self.dtype, self.model.device.type):
            outputs = self.model(batched_inputs)
        return to_float32(outputs)
