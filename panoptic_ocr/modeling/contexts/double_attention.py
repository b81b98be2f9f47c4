"""Double-attention (A2-Net) context module (Chen et al., NeurIPS 2018; OCR paper sec. 4.3,
Tables 3-4, with 64 regions)."""

import torch
from detectron2.layers import Conv2d
from torch import Tensor, nn

from ..layers import conv_norm_relu
from .registry import CONTEXT_REGISTRY, ContextModule

__all__ = ["DoubleAttentionContext"]


@CONTEXT_REGISTRY.register("double_attention")
class DoubleAttentionContext(ContextModule, nn.Module):
    """A 3x3 conv-norm-ReLU to ``mid_channels`` (x), then A2-Net's double attention:

    1. gather: ``num_regions`` attention maps ``B`` (1x1 conv, softmax over the pixels) pool
       the features ``A`` (1x1 conv to ``key_channels``) into global descriptors
       ``G = A softmax(B)^T``, ``[N, key, num_regions]``;
    2. distribute: attention vectors ``V`` (1x1 conv, softmax over the regions) give each pixel
       ``z_i = G softmax(V)_i``;

    then a 1x1 conv-norm-ReLU back to ``mid_channels``, the fuse ``g([x, z])`` (1x1
    conv-norm-ReLU, as OCR's) and Dropout2d. Unlike OCR, the regions are learned without
    supervision. Memory is ``O(h*w*num_regions)``.

    Shapes: ``[N, C_in, h, w] -> [N, mid_channels, h, w]``.
    Paper size (2048 -> 512, key 256, 64 regions): 10.29M parameters, 338 GFLOPs at 128 x 128.
    """

    # DoubleAttentionHead (A2-Net gather-distribute); paper-size defaults.
    CONFIG_NODE = "DOUBLE_ATTENTION"
    CONFIG_DEFAULTS = {
        # Channels after the 3x3 input conv and of the output (paper: 512).
        "MID_CHANNELS": 512,
        # Channels of the gathered features, A2-Net's c_m (256).
        "KEY_CHANNELS": 256,
        # Number of gathering/distribution attention maps, A2-Net's c_n (paper's best: 64).
        "NUM_REGIONS": 64,
        # Dropout2d rate after the fuse conv (as OCR: 0.05).
        "DROPOUT": 0.05,
    }
    CONFIG_KEYS = {
        "mid_channels": "MID_CHANNELS",
        "key_channels": "KEY_CHANNELS",
        "num_regions": "NUM_REGIONS",
        "dropout": "DROPOUT",
    }

    def __init__(
        self,
        in_channels: int,
        *,
        mid_channels: int = 512,
        key_channels: int = 256,
        num_regions: int = 64,
        norm: str = "BN",
        dropout: float = 0.05,
    ):
        super().__init__()
        self.out_channels = mid_channels
        if num_regions < 1:
            raise ValueError(f"Double attention needs num_regions >= 1, got {num_regions}")
        self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
        self.features = Conv2d(mid_channels, key_channels, kernel_size=1)
        self.gather_maps = Conv2d(mid_channels, num_regions, kernel_size=1)
        self.distribute_maps = Conv2d(mid_channels, num_regions, kernel_size=1)
        self.reconstruct = conv_norm_relu(key_channels, mid_channels, norm)
        self.g = conv_norm_relu(2 * mid_channels, mid_channels, norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def attention(self, x: Tensor) -> Tensor:
        """``[N, mid, h, w] -> [N, key, h, w]``: gathered-then-distributed features."""
        n, _, h, w = x.shape
        features = self.features(x).flatten(2)  # [N, key, hw]
        gather = self.gather_maps(x).flatten(2).softmax(dim=2)  # [N, regions, hw]
        descriptors = torch.bmm(features, gather.transpose(1, 2).to(features.dtype))  # [N, key, R]
        distribute = self.distribute_maps(x).flatten(2).softmax(dim=1)  # [N, regions, hw]
        z = torch.bmm(descriptors, distribute.to(descriptors.dtype))  # [N, key, hw]
        return z.reshape(n, -1, h, w)

    def forward(self, features: Tensor) -> Tensor:
        x = self.conv_in(features)
        z = self.reconstruct(self.attention(x))
        return self.dropout(self.g(torch.cat([x, z], dim=1)))
