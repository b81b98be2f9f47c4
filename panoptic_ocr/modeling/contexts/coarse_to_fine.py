"""Context modules of the coarse-to-fine baselines of the OCR supplementary material, sec. A,
Table 1.

"Coarse" is a segmentation predicted from stage 3 (the auxiliary feature, ``res4``), "fine" one
predicted from stage 4 (``res5``) through the same 3x3 conv that precedes OCR (width
``MODEL.OCR.MID_CHANNELS``, paper: 2048 -> 512) with no context module:

=====================  ===========  =========  ==========================================
head (context)         coarse seg.  fine seg.  final prediction
=====================  ===========  =========  ==========================================
CoarseOnlyHead         yes          no         stage-3 classifier (paper: 73.90)
(``coarse_only``)
FineOnlyHead           no           yes        stage-4 3x3 conv + classifier (75.80)
(``fine``)
LabelEnsembleHead      yes          yes        ``(1 - w) * fine + w * coarse`` (76.20)
(``fine`` + the head's ``ensemble_weight``)
LabelRefinementHead    yes          yes        classifier over ``[stage 4, coarse]`` (77.10)
(``label_refinement``)
=====================  ===========  =========  ==========================================

In the two combined heads the coarse map comes from the auxiliary branch and is supervised by
the auxiliary loss (``loss_sem_seg_aux``, as OCR's soft regions); the final map gets the main
loss.
"""

import torch
from torch import Tensor, nn

from ..layers import conv_norm_relu
from .registry import CONTEXT_REGISTRY, REGIONS, ContextModule

__all__ = ["FineContext", "CoarseOnlyContext", "LabelRefinementContext"]


class _ConvBranch(ContextModule, nn.Sequential):
    """Conv-norm-ReLU (+ Dropout2d): ``[N, in_channels, h, w] -> [N, out_channels, h, w]``;
    with ``out_channels == 0`` no layer at all (the identity)."""

    def __init__(
        self, in_channels: int, out_channels: int, norm: str, dropout: float, kernel_size: int = 3
    ):
        layers = []
        if out_channels > 0:
            layers.append(conv_norm_relu(in_channels, out_channels, norm, kernel_size=kernel_size))
            if dropout > 0:
                layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)
        self.out_channels = out_channels if out_channels > 0 else in_channels


@CONTEXT_REGISTRY.register("fine")
class FineContext(_ConvBranch):
    """The fine branch (supplementary Table 1): 3x3 conv to ``MODEL.OCR.MID_CHANNELS``, norm,
    ReLU, Dropout2d ``MODEL.OCR.DROPOUT`` (``MODEL.OCR`` is declared by ``OCRContext``); no
    context.

    Declares ``MODEL.COARSE_TO_FINE``, which :class:`~panoptic_ocr.modeling.heads.ContextHead`
    reads to ensemble this fine prediction with the coarse one (``LabelEnsembleHead``).
    """

    # The coarse-to-fine baselines (docs/ocr_variants.md).
    CONFIG_NODE = "COARSE_TO_FINE"
    CONFIG_DEFAULTS = {
        # LabelEnsembleHead: logits = (1 - w) * fine + w * coarse, with w this weight in [0, 1].
        "ENSEMBLE_WEIGHT": 0.5,
    }

    @classmethod
    def from_config(cls, cfg, in_channels: int, norm: str) -> "FineContext":
        return cls(in_channels, cfg.MODEL.OCR.MID_CHANNELS, norm, cfg.MODEL.OCR.DROPOUT)


@CONTEXT_REGISTRY.register("coarse_only")
class CoarseOnlyContext(_ConvBranch):
    """The coarse-only baseline: reads the auxiliary feature (stage 3) through the auxiliary
    branch's structure (``AUX_KERNEL_SIZE`` conv to ``AUX_CHANNELS``, norm, ReLU, Dropout2d
    ``AUX_DROPOUT``; ``AUX_CHANNELS 0``: nothing before the classifier). The head then has no
    auxiliary branch, and the backbone need not output stage 4."""

    reads_aux_feature = True

    @classmethod
    def from_config(cls, cfg, in_channels: int, norm: str) -> "CoarseOnlyContext":
        head = cfg.MODEL.SEM_SEG_HEAD
        return cls(in_channels, head.AUX_CHANNELS, norm, head.AUX_DROPOUT, head.AUX_KERNEL_SIZE)


@CONTEXT_REGISTRY.register("label_refinement")
class LabelRefinementContext(_ConvBranch):
    """Label refinement (supplementary sec. A): the coarse segmentation, as class probabilities
    (softmax over K of the region logits), is concatenated with the stage-4 feature and the
    fine branch reads the concatenation.

    Shapes: stage 4 ``[N, C, h, w]`` and coarse ``[N, K, h, w]`` -> ``[N, C + K, h, w]`` ->
    ``[N, MID_CHANNELS, h, w]``.
    """

    consumes = REGIONS

    @classmethod
    def from_config(cls, cfg, in_channels: int, norm: str) -> "LabelRefinementContext":
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        return cls(
            in_channels + num_classes, cfg.MODEL.OCR.MID_CHANNELS, norm, cfg.MODEL.OCR.DROPOUT
        )

    def forward(self, features: Tensor, region_logits: Tensor) -> Tensor:
        return super().forward(
            torch.cat([features, region_logits.softmax(dim=1).to(features.dtype)], dim=1)
        )
