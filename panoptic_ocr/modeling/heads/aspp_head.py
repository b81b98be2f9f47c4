"""DeepLabv3's atrous spatial pyramid pooling as a context head (Chen et al., 2017; OCR paper
Table 2 and eq. 1)."""

from typing import Dict, Sequence

from detectron2.layers import ASPP, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn
from torch.nn import functional as F

from .context_head import ContextHead

__all__ = ["ASPPContext", "ASPPHead"]


class ASPPContext(nn.Module):
    """ASPP (Detectron2's :class:`~detectron2.layers.ASPP`): a 1x1 branch, three 3x3 branches
    dilated by ``dilations`` and a global image-pooling branch, concatenated and fused by a 1x1
    conv to ``channels``, then dropout.

    The image pooling is global (``pool_kernel_size=None``), so any input size works.
    Shapes: ``[N, C_in, h, w] -> [N, channels, h, w]``.
    Paper size (2048 -> 256, dilations 12/24/36): 15.53M parameters, 492 GFLOPs at 128 x 128.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        dilations: Sequence[int] = (12, 24, 36),
        channels: int = 256,
        norm: str = "BN",
        dropout: float = 0.1,
    ):
        super().__init__()
        if len(dilations) != 3:
            raise ValueError(f"ASPP needs 3 dilations, got {tuple(dilations)}")
        self.aspp = ASPP(
            in_channels,
            channels,
            list(dilations),
            norm=norm,
            activation=F.relu,
            pool_kernel_size=None,
            dropout=dropout,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.aspp(x)


@SEM_SEG_HEADS_REGISTRY.register()
class ASPPHead(ContextHead):
    """DeepLabv3 head: ASPP context, then the shared 1x1 classifier and the optional auxiliary
    branch of :class:`ContextHead`.

    Config: ``MODEL.SEM_SEG_HEAD`` (features, auxiliary branch, norm, losses) and ``MODEL.ASPP``.
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = cls.base_config(cfg, input_shape)
        aspp = cfg.MODEL.ASPP
        ret["context"] = ASPPContext(
            input_shape[ret["in_feature"]].channels,
            dilations=aspp.DILATIONS,
            channels=aspp.CHANNELS,
            norm=ret["norm"],
            dropout=aspp.DROPOUT,
        )
        ret["context_channels"] = aspp.CHANNELS
        return ret
