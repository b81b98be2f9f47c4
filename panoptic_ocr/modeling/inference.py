"""The one inference builder: :func:`build_inference_model` is what every evaluation, TTA run,
demo, export and benchmark uses. For each model kind the project builds
(``OCRSemanticSegmentor``, Detectron2's ``PanopticFPN``, the ``SemanticSegmentorWithTTA`` wrapper)
it honours ``MODEL.INFERENCE_DTYPE``, ``MODEL.INFERENCE_CHANNELS_LAST``, ``TEST.FOLD_BATCHNORM``
and ``TEST.SLIDING_WINDOW``, or rejects them with an error naming the key and the model.

It sits above the precision primitives (:mod:`.precision`), the meta-architectures and
test-time augmentation, which import nothing from it.
"""

import copy

import torch
from detectron2.config import CfgNode
from detectron2.modeling import PanopticFPN
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config_checks import COMPILE_MODES
from .meta_arch.semantic_segmentor import OCRSemanticSegmentor
from .precision import AutocastInference, prepare_for_inference, resolve_inference_dtype
from .segfix_refinement import (
    SegFixRefinement,
    build_segfix_model,
    panoptic_combine_options,
    wants_segfix,
)
from .test_time_augmentation import SemanticSegmentorWithTTA

__all__ = ["build_inference_model", "compile_network"]


def compile_network(segmentor: nn.Module, mode: str = "default") -> nn.Module:
    """``segmentor`` with its ``backbone`` and ``sem_seg_head`` replaced by their compiled forms
    (``torch.compile`` with ``mode``; in place, returned). The forward's Python around them
    (Detectron2's ``ImageList`` padding, which reads sizes from tensors, the crop and resize of
    the output) stays eager: compiled whole, it would break the graph there anyway."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"TEST.COMPILE.MODE must be one of {COMPILE_MODES}, got {mode!r}")
    segmentor.backbone = torch.compile(segmentor.backbone, mode=mode)
    segmentor.sem_seg_head = torch.compile(segmentor.sem_seg_head, mode=mode)
    return segmentor


def build_inference_model(cfg: CfgNode, model: nn.Module, *, refine: bool = True) -> nn.Module:
    """The model to evaluate/run ``model`` with, following the config's inference keys.

    ``model`` is an :class:`OCRSemanticSegmentor`, a ``PanopticFPN``, or a
    :class:`~panoptic_ocr.modeling.test_time_augmentation.SemanticSegmentorWithTTA` around the
    former (each possibly wrapped in DDP). With no inference option set, ``model`` itself is
    returned; otherwise an eval-mode copy (:func:`prepare_for_inference`; ``model`` is not
    modified):

    - ``MODEL.INFERENCE_DTYPE`` (autocast, conv weights stored in that dtype): semantic
      segmentors run their backbone and head under autocast; other models are wrapped in
      :class:`AutocastInference`; under TTA the wrapped segmentor gets both.
    - ``MODEL.INFERENCE_CHANNELS_LAST`` (weights; semantic segmentors also feed channels-last
      input batches), ``TEST.FOLD_BATCHNORM``: any model.
    - ``TEST.SLIDING_WINDOW.ENABLED``: only ``OCRSemanticSegmentor`` (which reads it at build
      time); any other model is an error naming the key.
    - ``TEST.COMPILE.ENABLED``: semantic segmentors, whose backbone and head are compiled
      (:func:`compile_network`); any other model is an error naming the key.
    - ``MODEL.SEGFIX.WEIGHTS`` (with ``refine``): the result, TTA included, is wrapped in
      :class:`~panoptic_ocr.modeling.segfix_refinement.SegFixRefinement`, which refines its
      ``sem_seg`` logits with that SegFix model (semantic segmentors, and Panoptic-FPN, whose
      panoptic output is then merged again from the refined semantic map).

    Raises:
        ValueError: an inference key the model cannot honour (names the key and the model).
    """
    if isinstance(model, DistributedDataParallel):
        model = model.module
    tta = model if isinstance(model, SemanticSegmentorWithTTA) else None
    inner = tta.model if tta is not None else model
    semantic = isinstance(inner, OCRSemanticSegmentor)
    kind = type(inner).__name__
    if cfg.TEST.SLIDING_WINDOW.ENABLED and not semantic:
        raise ValueError(
            f"TEST.SLIDING_WINDOW.ENABLED is True, but {kind} has no sliding-window inference "
            "(only OCRSemanticSegmentor has): set it False for this model"
        )
    if semantic and (inner.sliding_window is not None) != bool(cfg.TEST.SLIDING_WINDOW.ENABLED):
        raise ValueError(
            f"TEST.SLIDING_WINDOW.ENABLED is {cfg.TEST.SLIDING_WINDOW.ENABLED} "
            f"but the {kind} was built "
            f"{'with' if inner.sliding_window is not None else 'without'} a sliding window: "
            "build it from this config"
        )
    device_type = (
        inner.device.type if hasattr(inner, "device") else next(inner.parameters()).device.type
    )
    dtype = resolve_inference_dtype(cfg.MODEL.INFERENCE_DTYPE, device_type)
    channels_last = cfg.MODEL.INFERENCE_CHANNELS_LAST
    prepared = prepare_for_inference(
        inner, fold_bn=cfg.TEST.FOLD_BATCHNORM, channels_last=channels_last, weight_dtype=dtype
    )
    if semantic:
        # The forward of the (copied) segmentor follows cfg, whatever it was built with.
        if prepared is not inner:
            prepared.inference_dtype = cfg.MODEL.INFERENCE_DTYPE
            prepared.inference_channels_last = channels_last
        elif (
            inner.inference_dtype != cfg.MODEL.INFERENCE_DTYPE
            or inner.inference_channels_last != channels_last
        ):
            # Built with other inference flags: a copy follows cfg, the model is left as it is.
            prepared = copy.deepcopy(inner).eval()
            prepared.inference_dtype = cfg.MODEL.INFERENCE_DTYPE
            prepared.inference_channels_last = channels_last
    elif dtype is not None:
        prepared = AutocastInference(prepared, dtype)
    if cfg.TEST.COMPILE.ENABLED:
        if not semantic:
            raise ValueError(
                f"TEST.COMPILE.ENABLED is True, but {kind} is not a semantic segmentor "
                "(compiled inference is for OCRSemanticSegmentor and its subclasses): set it False"
            )
        target = prepared if prepared is not inner else copy.deepcopy(inner)
        prepared = compile_network(target, cfg.TEST.COMPILE.MODE)
        prepared.eval()
    result = prepared if tta is None else (tta if prepared is inner else tta.with_model(prepared))
    if refine and wants_segfix(cfg):
        panoptic = isinstance(inner, PanopticFPN)
        if not (semantic or panoptic):
            raise ValueError(
                f"MODEL.SEGFIX.WEIGHTS is set, but {kind} has no semantic output: SegFix "
                'refines semantic predictions (set MODEL.SEGFIX.WEIGHTS "" for this model)'
            )
        result = SegFixRefinement(
            result,
            build_segfix_model(cfg),
            scale=cfg.MODEL.SEGFIX.SCALE,
            threshold=cfg.MODEL.SEGFIX.THRESHOLD,
            input_format=cfg.INPUT.FORMAT,
            combine=panoptic_combine_options(inner) if panoptic else None,
        )
    return result
