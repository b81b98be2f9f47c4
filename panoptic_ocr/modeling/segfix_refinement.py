"""A semantic model's predictions refined by a trained SegFix model (``MODEL.SEGFIX.WEIGHTS``
and ``MODEL.SEGFIX.CONFIG`` on the semantic model's config): every boundary pixel that SegFix
finds takes the logits of the pixel ``MODEL.SEGFIX.SCALE`` steps along its predicted direction
(:mod:`panoptic_ocr.segfix.refine`). The inference builder applies it, so evaluation, TTA
evaluation, the demo and the submission writers all see the refined predictions; on a
Panoptic-FPN the semantic branch is refined and the panoptic output merged again from it."""

import logging
from typing import Dict, List, Optional

import torch
from detectron2.config import CfgNode
from detectron2.modeling import PanopticFPN, build_model
from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
from torch import nn

from ..checkpoint.checkpointer import load_inference_weights
from ..config import setup_cfg
from ..segfix.refine import refine_logits, segfix_offsets
from .meta_arch.segfix_model import SegFixModel

__all__ = [
    "SegFixRefinement",
    "build_segfix_model",
    "panoptic_combine_options",
    "wants_segfix",
]

logger = logging.getLogger(__name__)


def wants_segfix(cfg: CfgNode) -> bool:
    """Whether ``cfg`` asks for SegFix refinement: ``MODEL.SEGFIX.WEIGHTS`` set on a model that is
    not itself a SegFix model."""
    return bool(cfg.MODEL.SEGFIX.WEIGHTS) and cfg.MODEL.META_ARCHITECTURE != "SegFixModel"


def build_segfix_model(cfg: CfgNode) -> SegFixModel:
    """The eval-mode SegFix model of ``MODEL.SEGFIX.CONFIG`` with ``MODEL.SEGFIX.WEIGHTS``, on
    ``cfg``'s device. The weights must fill it (``load_inference_weights``;
    ``MODEL.WEIGHTS_TRUSTED`` applies to this file too).

    Raises:
        ValueError: ``MODEL.SEGFIX.CONFIG`` is empty or is not a SegFix model's config.
    """
    node = cfg.MODEL.SEGFIX
    if not node.CONFIG:
        raise ValueError(
            f"MODEL.SEGFIX.WEIGHTS is {node.WEIGHTS!r} but MODEL.SEGFIX.CONFIG is empty: give the "
            "config the SegFix model was trained with"
        )
    segfix_cfg = setup_cfg(
        node.CONFIG, ["MODEL.WEIGHTS", node.WEIGHTS, "MODEL.DEVICE", cfg.MODEL.DEVICE]
    )
    if segfix_cfg.MODEL.META_ARCHITECTURE != "SegFixModel":
        raise ValueError(
            f"MODEL.SEGFIX.CONFIG {node.CONFIG!r} is a {segfix_cfg.MODEL.META_ARCHITECTURE} "
            "config, not a SegFixModel one"
        )
    model = build_model(segfix_cfg).eval()
    load_inference_weights(model, node.WEIGHTS, trusted=bool(cfg.MODEL.WEIGHTS_TRUSTED))
    model.input_format = segfix_cfg.INPUT.FORMAT
    logger.info("SegFix refinement: %s (%s)", node.WEIGHTS, node.CONFIG)
    return model


def panoptic_combine_options(model: PanopticFPN) -> Dict[str, float]:
    """The arguments of Detectron2's ``combine_semantic_and_instance_outputs`` that ``model``
    merges its outputs with."""
    return {
        "overlap_threshold": model.combine_overlap_thresh,
        "stuff_area_thresh": model.combine_stuff_area_thresh,
        "instances_score_thresh": model.combine_instances_score_thresh,
    }


class SegFixRefinement(nn.Module):
    """``model`` (any semantic model: a segmentor, or the TTA wrapper around one; or a
    Panoptic-FPN) whose ``sem_seg`` logits ``[K, H, W]`` are refined by ``segfix``'s offsets on
    the same inputs.

    ``input_format`` is ``model``'s ``INPUT.FORMAT``; when SegFix was trained on the other
    channel order (RGB / BGR), its input images are flipped. ``combine``
    (:func:`panoptic_combine_options`): for a Panoptic-FPN, its ``panoptic_seg`` (when it has
    one) is merged again from its instances and the refined semantic map, as Detectron2's
    ``PanopticFPN`` merges them (instances are not refined). Extra call arguments (e.g.
    ``sliding_window``) go to ``model``.
    """

    def __init__(
        self,
        model: nn.Module,
        segfix: SegFixModel,
        *,
        scale: int = 2,
        threshold: float = 0.5,
        input_format: str = "RGB",
        combine: Optional[Dict[str, float]] = None,
    ):
        super().__init__()
        self.model = model
        self.segfix = segfix
        self.scale = int(scale)
        self.threshold = float(threshold)
        self.combine = combine
        segfix_format = getattr(segfix, "input_format", input_format)
        self.flip_channels = {input_format, segfix_format} == {"RGB", "BGR"}

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict], **kwargs) -> List[Dict]:
        outputs = self.model(batched_inputs, **kwargs)
        segfix_inputs = [
            {**x, "image": x["image"].flip(0) if self.flip_channels else x["image"]}
            for x in batched_inputs
        ]
        fixes = self.segfix(segfix_inputs)
        refined = []
        for output, fix in zip(outputs, fixes):
            logits = output["sem_seg"]
            offsets = segfix_offsets(
                fix["segfix_boundary"].to(logits.device),
                fix["segfix_direction"].to(logits.device),
                self.scale,
                self.threshold,
            )
            result = {**output, "sem_seg": refine_logits(logits, offsets)}
            if self.combine is not None and "panoptic_seg" in output:
                result["panoptic_seg"] = combine_semantic_and_instance_outputs(
                    output["instances"],
                    result["sem_seg"].argmax(dim=0),
                    self.combine["overlap_threshold"],
                    self.combine["stuff_area_thresh"],
                    self.combine["instances_score_thresh"],
                )
            refined.append(result)
        return refined
