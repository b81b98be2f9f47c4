"""Self-attention (non-local) context head: pixel-pixel relations (Vaswani et al. 2017;
Wang et al., CVPR 2018; OCR paper sec. 4.3, Tables 3-4)."""

import torch
from torch import Tensor, nn

from ..layers import conv_norm_relu
from .registry import CONTEXT_REGISTRY, ContextModule

__all__ = ["SelfAttentionContext"]


@CONTEXT_REGISTRY.register("self_attention")
class SelfAttentionContext(ContextModule, nn.Module):
    """A 3x3 conv-norm-ReLU to ``mid_channels`` (x), then pixel-pixel self-attention:

        y_i = rho(sum_j softmax_j(q_i . k_j / sqrt(key_channels)) v_j),   z = g([x, y]),

    with 1x1 conv-norm-ReLU embeddings q, k, v (``mid -> key``), rho (``key -> mid``) and the
    fuse g (``2 mid -> mid``), then Dropout2d. This is OCR's module with every pixel as its own
    "region", so the two differ only in the relations (the paper counts both at 10.5M).

    Memory is ``O((h*w)^2)``: the ``[N, h*w, h*w]`` attention is formed (the point of Table 4).
    Shapes: ``[N, C_in, h, w] -> [N, mid_channels, h, w]``.
    Paper size (2048 -> 512, key 256): 10.49M parameters, 619 GFLOPs at 128 x 128.
    """

    # SelfAttentionHead (non-local, pixel-pixel relations); paper-size defaults.
    CONFIG_NODE = "SELF_ATTENTION"
    CONFIG_DEFAULTS = {
        # Channels after the 3x3 input conv and of the output (paper: 512, as OCR).
        "MID_CHANNELS": 512,
        # Channels of query, key and value; logits are scaled by KEY_CHANNELS**-0.5
        # (paper: 256).
        "KEY_CHANNELS": 256,
        # Dropout2d rate after the fuse conv (as OCR: 0.05).
        "DROPOUT": 0.05,
    }
    CONFIG_KEYS = {
        "mid_channels": "MID_CHANNELS",
        "key_channels": "KEY_CHANNELS",
        "dropout": "DROPOUT",
    }

    def __init__(
        self,
        in_channels: int,
        *,
        mid_channels: int = 512,
        key_channels: int = 256,
        norm: str = "BN",
        dropout: float = 0.05,
    ):
        super().__init__()
        self.out_channels = mid_channels
        self.key_channels = key_channels
        self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
        self.query = conv_norm_relu(mid_channels, key_channels, norm)
        self.key = conv_norm_relu(mid_channels, key_channels, norm)
        self.value = conv_norm_relu(mid_channels, key_channels, norm)
        self.rho = conv_norm_relu(key_channels, mid_channels, norm)
        self.g = conv_norm_relu(2 * mid_channels, mid_channels, norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def attention(self, x: Tensor) -> Tensor:
        """``[N, mid, h, w] -> [N, key, h, w]``: the attended values, before rho."""
        n, _, h, w = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)  # [N, hw, key]
        key = self.key(x).flatten(2)  # [N, key, hw]
        value = self.value(x).flatten(2).transpose(1, 2)  # [N, hw, key]
        weights = (torch.bmm(query, key) * self.key_channels**-0.5).softmax(dim=-1)  # [N, hw, hw]
        context = torch.bmm(weights.to(value.dtype), value)  # [N, hw, key]
        return context.transpose(1, 2).reshape(n, self.key_channels, h, w)

    def forward(self, features: Tensor) -> Tensor:
        x = self.conv_in(features)
        context = self.rho(self.attention(x))
        return self.dropout(self.g(torch.cat([x, context], dim=1)))
