"""Panoptic-FPN's semantic branch with a context module before its predictor (OCR paper,
supplementary sec. C): ``ContextSemSegFPNHead`` and its aliases ``OCRSemSegFPNHead``,
``PPMSemSegFPNHead``, ``ASPPSemSegFPNHead``.

Detectron2's ``SemSegFPNHead`` fuses the FPN levels into one ``CONVS_DIM``-channel map at
``COMMON_STRIDE`` and classifies it with a 1x1 conv. Here the fused map first goes through any
registered context module (the rest of Panoptic-FPN is Detectron2's ``PanopticFPN``). A context
that consumes soft object regions gets them from a 1x1 classifier on the same fused map,
supervised (``AUX_LOSS_WEIGHT``) by the panoptic semantic labels: the stuff classes plus one
"things" class, as in Detectron2's ``*_panoptic_separated`` data.
"""

from typing import Dict, Optional, Tuple

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from torch import Tensor, nn
from torch.nn import functional as F

from ..contexts import FEATURES, REGIONS, build_context, context_class
from ..layers import classifier
from ..losses import CrossEntropyLoss, build_sem_seg_loss
from .context_head import context_name_of, register_head_alias

__all__ = ["ContextSemSegFPNHead", "OCRSemSegFPNHead", "PPMSemSegFPNHead", "ASPPSemSegFPNHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class ContextSemSegFPNHead(SemSegFPNHead):
    """``SemSegFPNHead`` whose fused ``[N, CONVS_DIM, H/s, W/s]`` map passes through ``context``
    (``-> [N, context.out_channels, H/s, W/s]``) before the 1x1 predictor; for a context that
    consumes regions, a region classifier (``[N, K, H/s, W/s]`` logits, loss
    ``loss_sem_seg_aux``) whose output the context receives. Same contract as ``SemSegFPNHead``;
    the context is ``MODEL.SEM_SEG_HEAD.CONTEXT`` (fixed by the aliases)."""

    CONTEXT = ""

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        context: nn.Module,
        region_branch: Optional[nn.Module] = None,
        aux_loss_weight: float = 0.4,
        loss: Optional[nn.Module] = None,
        aux_loss: Optional[nn.Module] = None,
        **kwargs,
    ):
        super().__init__(input_shape, **kwargs)
        name = type(self).__name__
        if context.consumes not in (FEATURES, REGIONS) or context.reads_aux_feature:
            raise ValueError(
                f"{name}: the context {type(context).__name__} needs "
                f"""{
                    "the labels at inference"
                    if context.consumes not in (FEATURES, REGIONS)
                    else "a stage-3 feature"
                }, """
                "which Panoptic-FPN's semantic branch does not have"
            )
        if context.consumes == REGIONS and region_branch is None:
            raise ValueError(
                f"{name}: the context {type(context).__name__} consumes soft object regions: "
                "pass region_branch"
            )
        self.context = context
        self.region_branch = region_branch
        self.aux_loss_weight = aux_loss_weight
        self.predictor = classifier(context.out_channels, self.predictor.out_channels)
        self.loss = loss if loss is not None else CrossEntropyLoss(ignore_value=self.ignore_value)
        self.aux_loss = (
            aux_loss if aux_loss is not None else CrossEntropyLoss(ignore_value=self.ignore_value)
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict:
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.SEM_SEG_HEAD
        name = context_name_of(cls, cfg)
        if context_class(name).consumes == REGIONS:
            # Built before the context so that one seed gives earlier versions' initial weights.
            ret["region_branch"] = classifier(head.CONVS_DIM, head.NUM_CLASSES)
        ret["context"] = build_context(cfg, name, head.CONVS_DIM, head.NORM)
        ret["aux_loss_weight"] = head.AUX_LOSS_WEIGHT
        ret["loss"] = build_sem_seg_loss(cfg, "main")
        ret["aux_loss"] = build_sem_seg_loss(cfg, "aux")
        return ret

    @property
    def feature_stride(self) -> int:
        """Stride of the fused features the context module sees (its regions' stride)."""
        return self.common_stride

    def fused_features(self, features: Dict[str, Tensor]) -> Tensor:
        """Sum of the per-level scale heads: ``[N, CONVS_DIM, H/s, W/s]``."""
        x = None
        for i, name in enumerate(self.in_features):
            y = self.scale_heads[i](features[name])
            x = y if x is None else x + y
        return x

    def layers_with_regions(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Logits and region logits (None without a region branch), ``[N, K, H/s, W/s]``."""
        x = self.fused_features(features)
        if self.region_branch is None:
            return self.predictor(self.context(x)), None
        regions = self.region_branch(x)
        return self.predictor(self.context(x, regions)), regions

    def layers(self, features: Dict[str, Tensor]) -> Tensor:
        return self.layers_with_regions(features)[0]

    def forward(self, features: Dict[str, Tensor], targets: Optional[Tensor] = None):
        logits, regions = self.layers_with_regions(features)
        if self.training:
            return None, self.context_losses(logits, regions, targets)
        return F.interpolate(
            logits, scale_factor=self.common_stride, mode="bilinear", align_corners=False
        ), {}

    def context_losses(
        self, logits: Tensor, regions: Optional[Tensor], targets: Tensor
    ) -> Dict[str, Tensor]:
        """``loss_sem_seg`` and, with regions, ``loss_sem_seg_aux``, through the loss seam."""
        main = F.interpolate(
            logits.float(), scale_factor=self.common_stride, mode="bilinear", align_corners=False
        )
        losses = {"loss_sem_seg": self.loss(main, targets) * self.loss_weight}
        if regions is not None:
            aux = F.interpolate(
                regions.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False
            )
            losses["loss_sem_seg_aux"] = self.aux_loss(aux, targets) * self.aux_loss_weight
        return losses


OCRSemSegFPNHead = register_head_alias(
    ContextSemSegFPNHead,
    "OCRSemSegFPNHead",
    "ocr",
    "Panoptic-FPN + OCR: soft object regions from the fused FPN map, OCR module (``MODEL.OCR``).",
)
PPMSemSegFPNHead = register_head_alias(
    ContextSemSegFPNHead,
    "PPMSemSegFPNHead",
    "ppm",
    "Panoptic-FPN + PPM (``MODEL.PPM``) on the fused FPN map.",
)
ASPPSemSegFPNHead = register_head_alias(
    ContextSemSegFPNHead,
    "ASPPSemSegFPNHead",
    "aspp",
    "Panoptic-FPN + ASPP (``MODEL.ASPP``) on the fused FPN map.",
)
