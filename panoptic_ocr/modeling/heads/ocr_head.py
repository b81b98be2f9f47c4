"""The OCR semantic-segmentation head (paper sec. 3.3, Figure 3)."""
from typing import Dict, Optional

from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn

from ..object_context import ObjectContextBlock, conv_norm_relu, gather_object_regions
from .context_head import ContextHead

__all__ = ["OCRContext", "OCRHead"]


class OCRContext(nn.Module):
    """The OCR module: 3x3 conv to ``mid_channels`` (x), object region representations
    (eq. 4), pixel-region relations (eq. 5), object contextual representation (eq. 3) and the
    augmented representation (eq. 6).

    Shapes: features ``[N, C_in, h, w]``, region logits ``[N, K, h, w]`` ->
    ``[N, mid_channels, h, w]``.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        mid_channels: int = 512,
        key_channels: int = 256,
        proj_layers: int = 2,
        norm: str = "BN",
        dropout: float = 0.05,
    ):
        super().__init__()
        self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
        self.object_context = ObjectContextBlock(
            mid_channels, key_channels, mid_channels, proj_layers=proj_layers, norm=norm, dropout=dropout
        )

    def forward(self, features: Tensor, region_logits: Tensor) -> Tensor:
        x = self.conv_in(features)
        regions = gather_object_regions(x, region_logits)
        return self.object_context(x, regions)


@SEM_SEG_HEADS_REGISTRY.register()
class OCRHead(ContextHead):
    """OCR: the auxiliary branch predicts the soft object regions (supervised by the ground
    truth with ``aux_loss_weight``), the OCR module augments every pixel with the regions'
    representations, and a 1x1 classifier predicts the final segmentation.

    Config: ``MODEL.SEM_SEG_HEAD`` (features, auxiliary branch, norm, losses) and ``MODEL.OCR``.
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = cls.base_config(cfg, input_shape)
        if ret["aux_in_feature"] is None:
            raise ValueError(
                "OCRHead needs MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE: its soft object regions are "
                "predicted from that feature"
            )
        ocr = cfg.MODEL.OCR
        ret["context"] = OCRContext(
            input_shape[ret["in_feature"]].channels,
            mid_channels=ocr.MID_CHANNELS,
            key_channels=ocr.KEY_CHANNELS,
            proj_layers=ocr.PROJ_LAYERS,
            norm=ret["norm"],
            dropout=ocr.DROPOUT,
        )
        ret["context_channels"] = ocr.MID_CHANNELS
        return ret

    def forward_context(self, x: Tensor, aux_logits: Optional[Tensor]) -> Tensor:
        return self.context(x, aux_logits)
