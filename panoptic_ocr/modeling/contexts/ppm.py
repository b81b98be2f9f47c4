"""PSPNet's pyramid pooling module as a context module (Zhao et al., CVPR 2017; OCR paper
Table 2)."""

from typing import Sequence

import torch
from detectron2.layers import Conv2d
from torch import Tensor, nn
from torch.nn import functional as F

from ..layers import conv_norm_relu
from .registry import CONTEXT_REGISTRY, ContextModule

__all__ = ["PyramidPoolingContext"]


@CONTEXT_REGISTRY.register("ppm")
class PyramidPoolingContext(ContextModule, nn.Module):
    """Pyramid pooling: for every bin size b, adaptive average pooling to ``b x b``, a 1x1
    conv-norm-ReLU to ``branch_channels`` and bilinear upsampling back to ``h x w``; then a
    3x3 conv-norm-ReLU bottleneck over ``[input, branches]`` and Dropout2d.

    The ``1 x 1`` branch (global pooling) has a biased conv without normalisation: batch norm
    over one value per channel fails at batch size 1 (Detectron2's ASPP does the same).

    Shapes: ``[N, C_in, h, w] -> [N, out_channels, h, w]`` for any ``h, w`` (adaptive pooling).
    Paper size (2048 -> 512, bins 1/2/3/6): 23.07M parameters, 619 GFLOPs at 128 x 128.
    """

    # PPMHead (PSPNet pyramid pooling); paper-size defaults (2048-channel input at output
    # stride 8), as every node of the context-head zoo (docs/context_heads.md).
    CONFIG_NODE = "PPM"
    CONFIG_DEFAULTS = {
        # Output sizes of the adaptive average poolings (PSPNet: 1, 2, 3, 6).
        "BINS": (1, 2, 3, 6),
        # Channels of each pooled branch's 1x1 conv (PSPNet: 512 for a 2048-channel input).
        "BRANCH_CHANNELS": 512,
        # Output channels of the 3x3 bottleneck over [input, branches] (PSPNet: 512).
        "OUT_CHANNELS": 512,
        # Dropout2d rate after the bottleneck (PSPNet: 0.1).
        "DROPOUT": 0.1,
    }
    CONFIG_KEYS = {
        "bins": "BINS",
        "branch_channels": "BRANCH_CHANNELS",
        "out_channels": "OUT_CHANNELS",
        "dropout": "DROPOUT",
    }

    def __init__(
        self,
        in_channels: int,
        *,
        bins: Sequence[int] = (1, 2, 3, 6),
        branch_channels: int = 512,
        out_channels: int = 512,
        norm: str = "BN",
        dropout: float = 0.1,
    ):
        super().__init__()
        self.out_channels = out_channels
        if not bins or min(bins) < 1:
            raise ValueError(f"PPM bins must be positive pooling sizes, got {tuple(bins)}")
        self.bins = tuple(int(b) for b in bins)
        self.branches = nn.ModuleList()
        for size in self.bins:
            if size == 1:
                conv = Conv2d(in_channels, branch_channels, kernel_size=1, activation=F.relu)
            else:
                conv = conv_norm_relu(in_channels, branch_channels, norm)
            self.branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(size), conv))
        self.bottleneck = conv_norm_relu(
            in_channels + len(self.bins) * branch_channels, out_channels, norm, kernel_size=3
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[2:]
        pyramid = [x]
        for branch in self.branches:
            pyramid.append(
                F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
            )
        return self.dropout(self.bottleneck(torch.cat(pyramid, dim=1)))
