"""Panoptic-FPN's semantic branch with a context module before its predictor (OCR paper,
supplementary sec. C): ``OCRSemSegFPNHead``, ``PPMSemSegFPNHead``, ``ASPPSemSegFPNHead``.

Detectron2's ``SemSegFPNHead`` fuses the FPN levels into one ``CONVS_DIM``-channel map at
``COMMON_STRIDE`` and classifies it with a 1x1 conv. Here the fused map first goes through the
context module (the rest of Panoptic-FPN is Detectron2's ``PanopticFPN``). For OCR, the soft
object regions are a 1x1 classifier on the same fused map, supervised (``AUX_LOSS_WEIGHT``) by
the panoptic semantic labels: the stuff classes plus one "things" class, as in Detectron2's
``*_panoptic_separated`` data.
"""
from typing import Dict, Optional, Tuple

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from torch import Tensor, nn
from torch.nn import functional as F

from .aspp_head import ASPPContext
from .ocr_head import OCRContext
from .ppm_head import PyramidPoolingContext

__all__ = ["ContextSemSegFPNHead", "OCRSemSegFPNHead", "PPMSemSegFPNHead", "ASPPSemSegFPNHead"]


class ContextSemSegFPNHead(SemSegFPNHead):
    """``SemSegFPNHead`` whose fused ``[N, CONVS_DIM, H/s, W/s]`` map passes through ``context``
    (``-> [N, context_channels, H/s, W/s]``) before the 1x1 predictor; optionally a region
    branch (``[N, K, H/s, W/s]`` logits, loss ``loss_sem_seg_aux``) whose output the context
    module also receives. Same contract as ``SemSegFPNHead``."""

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        context: nn.Module,
        context_channels: int,
        region_branch: Optional[nn.Module] = None,
        aux_loss_weight: float = 0.4,
        **kwargs,
    ):
        super().__init__(input_shape, **kwargs)
        self.context = context
        self.region_branch = region_branch
        self.aux_loss_weight = aux_loss_weight
        num_classes = self.predictor.out_channels
        self.predictor = Conv2d(context_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret["aux_loss_weight"] = cfg.MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT
        return ret

    def fused_features(self, features: Dict[str, Tensor]) -> Tensor:
        """Sum of the per-level scale heads: ``[N, CONVS_DIM, H/s, W/s]``."""
        x = None
        for i, name in enumerate(self.in_features):
            y = self.scale_heads[i](features[name])
            x = y if x is None else x + y
        return x

    def layers_with_regions(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        x = self.fused_features(features)
        regions = self.region_branch(x) if self.region_branch is not None else None
        context = self.context(x, regions) if regions is not None else self.context(x)
        return self.predictor(context), regions

    def layers(self, features: Dict[str, Tensor]) -> Tensor:
        return self.layers_with_regions(features)[0]

    def forward(self, features: Dict[str, Tensor], targets: Optional[Tensor] = None):
        logits, regions = self.layers_with_regions(features)
        if self.training:
            losses = self.losses(logits, targets)
            if regions is not None:
                aux = F.interpolate(regions.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
                losses["loss_sem_seg_aux"] = (
                    F.cross_entropy(aux, targets, reduction="mean", ignore_index=self.ignore_value) * self.aux_loss_weight
                )
            return None, losses
        return F.interpolate(logits, scale_factor=self.common_stride, mode="bilinear", align_corners=False), {}


def _region_classifier(in_channels: int, num_classes: int) -> Conv2d:
    layer = Conv2d(in_channels, num_classes, kernel_size=1)
    nn.init.normal_(layer.weight, std=0.001)
    nn.init.zeros_(layer.bias)
    return layer


@SEM_SEG_HEADS_REGISTRY.register()
class OCRSemSegFPNHead(ContextSemSegFPNHead):
    """Panoptic-FPN + OCR: soft object regions from the fused FPN map, OCR module (``MODEL.OCR``)."""

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        head, ocr = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.OCR
        ret["region_branch"] = _region_classifier(head.CONVS_DIM, head.NUM_CLASSES)
        ret["context"] = OCRContext(
            head.CONVS_DIM, mid_channels=ocr.MID_CHANNELS, key_channels=ocr.KEY_CHANNELS,
            proj_layers=ocr.PROJ_LAYERS, norm=head.NORM, dropout=ocr.DROPOUT,
        )
        ret["context_channels"] = ocr.MID_CHANNELS
        return ret


@SEM_SEG_HEADS_REGISTRY.register()
class PPMSemSegFPNHead(ContextSemSegFPNHead):
    """Panoptic-FPN + PPM (``MODEL.PPM``) on the fused FPN map."""

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        head, ppm = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.PPM
        ret["context"] = PyramidPoolingContext(
            head.CONVS_DIM, bins=ppm.BINS, branch_channels=ppm.BRANCH_CHANNELS,
            out_channels=ppm.OUT_CHANNELS, norm=head.NORM, dropout=ppm.DROPOUT,
        )
        ret["context_channels"] = ppm.OUT_CHANNELS
        return ret


@SEM_SEG_HEADS_REGISTRY.register()
class ASPPSemSegFPNHead(ContextSemSegFPNHead):
    """Panoptic-FPN + ASPP (``MODEL.ASPP``) on the fused FPN map."""

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        head, aspp = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.ASPP
        ret["context"] = ASPPContext(
            head.CONVS_DIM, dilations=aspp.DILATIONS, channels=aspp.CHANNELS, norm=head.NORM,
            dropout=aspp.DROPOUT,
        )
        ret["context_channels"] = aspp.CHANNELS
        return ret
