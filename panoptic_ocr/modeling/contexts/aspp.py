"""DeepLabv3's atrous spatial pyramid pooling as a context module (Chen et al., 2017; OCR paper
Table 2 and eq. 1)."""

from typing import Sequence

from detectron2.layers import ASPP
from torch import Tensor, nn
from torch.nn import functional as F

from .registry import CONTEXT_REGISTRY, ContextModule

__all__ = ["ASPPContext"]


@CONTEXT_REGISTRY.register("aspp")
class ASPPContext(ContextModule, nn.Module):
    """ASPP (Detectron2's :class:`~detectron2.layers.ASPP`): a 1x1 branch, three 3x3 branches
    dilated by ``dilations`` and a global image-pooling branch, concatenated and fused by a 1x1
    conv to ``channels``, then dropout.

    The image pooling is global (``pool_kernel_size=None``), so any input size works.
    Shapes: ``[N, C_in, h, w] -> [N, channels, h, w]``.
    Paper size (2048 -> 256, dilations 12/24/36): 15.53M parameters, 492 GFLOPs at 128 x 128.
    """

    # ASPPHead (DeepLabv3 atrous spatial pyramid pooling); paper-size defaults.
    CONFIG_NODE = "ASPP"
    CONFIG_DEFAULTS = {
        # Dilations of the three 3x3 branches (DeepLabv3 at output stride 8: 12, 24, 36).
        "DILATIONS": (12, 24, 36),
        # Channels of every branch and of the 1x1 fuse (DeepLabv3: 256).
        "CHANNELS": 256,
        # Dropout rate after the 1x1 fuse (DeepLab: 0.1).
        "DROPOUT": 0.1,
    }
    CONFIG_KEYS = {
        "dilations": "DILATIONS",
        "channels": "CHANNELS",
        "dropout": "DROPOUT",
    }

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
        self.out_channels = channels
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
