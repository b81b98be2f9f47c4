"""Coarse-to-fine baselines of the OCR supplementary material, sec. A, Table 1.

"Coarse" is a segmentation predicted from stage 3 (the auxiliary feature, ``res4``), "fine" one
predicted from stage 4 (``res5``) through the same 3x3 conv that precedes OCR (width
``MODEL.OCR.MID_CHANNELS``, paper: 2048 -> 512) with no context module:

=====================  ===========  =========  ==========================================
head                   coarse seg.  fine seg.  final prediction
=====================  ===========  =========  ==========================================
CoarseOnlyHead         yes          no         stage-3 classifier (paper: 73.90)
FineOnlyHead           no           yes        stage-4 3x3 conv + classifier (75.80)
LabelEnsembleHead      yes          yes        ``(1 - w) * fine + w * coarse`` (76.20)
LabelRefinementHead    yes          yes        classifier over ``[stage 4, coarse]`` (77.10)
=====================  ===========  =========  ==========================================

In the two combined heads the coarse map comes from the auxiliary branch and is supervised by
the auxiliary loss (``loss_sem_seg_aux``, as OCR's soft regions); the final map gets the main
loss.
"""

from typing import Dict, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn

from ..object_context import conv_norm_relu
from .context_head import ContextHead

__all__ = ["CoarseOnlyHead", "FineOnlyHead", "LabelEnsembleHead", "LabelRefinementHead", "fine_branch"]


def fine_branch(in_channels: int, out_channels: int, norm: str, dropout: float, kernel_size: int = 3) -> nn.Sequential:
    """Conv-norm-ReLU (+ Dropout2d): ``[N, in_channels, h, w] -> [N, out_channels, h, w]``."""
    layers = [conv_norm_relu(in_channels, out_channels, norm, kernel_size=kernel_size)]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


def _require_aux_feature(cls, ret: Dict) -> None:
    if ret["aux_in_feature"] is None:
        raise ValueError(
            f"{cls.__name__} needs MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE: its coarse segmentation is "
            "predicted from that feature (stage 3)"
        )


@SEM_SEG_HEADS_REGISTRY.register()
class CoarseOnlyHead(ContextHead):
    """Prediction from stage 3 only (supplementary Table 1, first baseline).

    Reads ``MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE`` (not ``IN_FEATURES``) through the auxiliary
    branch's structure (``AUX_KERNEL_SIZE`` conv to ``AUX_CHANNELS``, norm, ReLU, Dropout2d ``AUX_DROPOUT``,
    1x1 classifier; ``AUX_CHANNELS 0``: the 1x1 classifier alone) with the main loss and no
    auxiliary loss. The backbone need not output stage 4 (``MODEL.RESNETS.OUT_FEATURES
    ["res4"]`` saves its compute).
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        head = cfg.MODEL.SEM_SEG_HEAD
        if not head.AUX_IN_FEATURE:
            raise ValueError("CoarseOnlyHead reads MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE (stage 3); it is empty")
        if head.AUX_IN_FEATURE not in input_shape:
            raise ValueError(
                f"CoarseOnlyHead: MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE {head.AUX_IN_FEATURE!r} is not "
                f"produced by the backbone, which outputs {sorted(input_shape)}"
            )
        ret = cls.base_config(cfg, input_shape)
        # IN_FEATURES is not read: it may name a stage the backbone does not output.
        ret["in_feature"] = head.AUX_IN_FEATURE
        ret["aux_in_feature"] = None
        channels = input_shape[head.AUX_IN_FEATURE].channels
        if head.AUX_CHANNELS > 0:
            ret["context"] = fine_branch(
                channels, head.AUX_CHANNELS, ret["norm"], head.AUX_DROPOUT, ret.get("aux_kernel_size", 3)
            )
            ret["context_channels"] = head.AUX_CHANNELS
        else:
            ret["context"] = nn.Identity()
            ret["context_channels"] = channels
        return ret


def _fine_config(cls, cfg, input_shape: Dict[str, ShapeSpec], extra_in_channels: int = 0) -> Dict:
    ret = cls.base_config(cfg, input_shape)
    ocr = cfg.MODEL.OCR
    ret["context"] = fine_branch(
        input_shape[ret["in_feature"]].channels + extra_in_channels, ocr.MID_CHANNELS, ret["norm"], ocr.DROPOUT
    )
    ret["context_channels"] = ocr.MID_CHANNELS
    return ret


@SEM_SEG_HEADS_REGISTRY.register()
class FineOnlyHead(ContextHead):
    """Prediction from stage 4 only (supplementary Table 1, second baseline): 3x3 conv to
    ``MODEL.OCR.MID_CHANNELS`` (paper: 2048 -> 512), norm, ReLU, Dropout2d
    ``MODEL.OCR.DROPOUT``, 1x1 classifier; no context module.

    An auxiliary branch is used only if ``MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE`` is set (the
    table's row has no coarse segmentation: set it to "").
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        return _fine_config(cls, cfg, input_shape)


@SEM_SEG_HEADS_REGISTRY.register()
class LabelEnsembleHead(ContextHead):
    """Label ensemble (supplementary sec. A): the weighted sum of the coarse (stage-3) and the
    fine (stage-4) segmentation logits, ``(1 - w) * fine + w * coarse`` with
    ``w = ensemble_weight`` (``MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT``). The sum is taken on
    logits, before the softmax. Shapes as :class:`ContextHead`.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, ensemble_weight: float = 0.5, **kwargs):
        """
        Args:
            input_shape: backbone output shapes.
            ensemble_weight: weight ``w`` of the coarse map, in ``[0, 1]``.
            kwargs: the arguments of :class:`ContextHead` (``aux_in_feature`` is required).
        """
        super().__init__(input_shape, **kwargs)
        if self.aux_branch is None:
            raise ValueError(f"{type(self).__name__} needs an aux_in_feature (its coarse segmentation)")
        if not 0.0 <= ensemble_weight <= 1.0:
            raise ValueError(f"ensemble_weight must be in [0, 1], got {ensemble_weight}")
        self.ensemble_weight = ensemble_weight

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = _fine_config(cls, cfg, input_shape)
        _require_aux_feature(cls, ret)
        ret["ensemble_weight"] = cfg.MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT
        return ret

    def layers(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Ensembled and coarse logits, ``[N, K, h, w]`` each."""
        fine, coarse = super().layers(features)
        return (1.0 - self.ensemble_weight) * fine + self.ensemble_weight * coarse, coarse


@SEM_SEG_HEADS_REGISTRY.register()
class LabelRefinementHead(ContextHead):
    """Label refinement (supplementary sec. A): the coarse segmentation, as class
    probabilities (softmax over K of the auxiliary logits), is concatenated with the stage-4
    feature, and the fine head (3x3 conv to ``MODEL.OCR.MID_CHANNELS``, norm, ReLU, Dropout2d,
    1x1 classifier) predicts the refined map from the concatenation.

    Shapes: stage 4 ``[N, C, h, w]`` and coarse ``[N, K, h, w]`` -> ``[N, C + K, h, w]`` ->
    logits ``[N, K, h, w]``.
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = _fine_config(cls, cfg, input_shape, extra_in_channels=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        _require_aux_feature(cls, ret)
        return ret

    def forward_context(self, x: Tensor, aux_logits: Optional[Tensor]) -> Tensor:
        if aux_logits is None:
            raise ValueError(f"{type(self).__name__} needs the coarse (auxiliary) logits")
        return self.context(torch.cat([x, aux_logits.softmax(dim=1).to(x.dtype)], dim=1))
