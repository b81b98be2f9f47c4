"""CCNet's recurrent criss-cross attention as a context module (Huang et al., ICCV 2019; OCR
paper sec. 4.3, Tables 3-4).

Table 4's CC-Attention row (10.6M parameters, 804 GFLOPs) fits no single definition, so both
are here (``variant``):

- ``"original"`` (default): CCNet's RCCA module. 3x3 conv-norm-ReLU 2048 -> 512, criss-cross
  attention ``recurrence`` times (shared weights), 3x3 conv-norm-ReLU 512 -> 512, and a 3x3
  conv-norm-ReLU bottleneck over ``[2048-channel input, context]`` -> 512. 23.92M parameters and
  804 GFLOPs at 128 x 128: Table 4's FLOPs.
- ``"compact"``: the same with everything after the first conv at 512 channels and 1x1: 1x1
  conv-norm-ReLU 512 -> 512 after the attention and a 1x1 fuse of ``[x, context]``. 10.56M
  parameters (Table 4's 10.6M) and 366 GFLOPs.
"""

import torch
from detectron2.layers import Conv2d
from torch import Tensor, nn

from ..layers import conv_norm_relu
from .registry import CONTEXT_REGISTRY, ContextModule

__all__ = ["CrissCrossAttention", "CCAttentionContext"]

CC_VARIANTS = ("original", "compact")


class CrissCrossAttention(nn.Module):
    """Criss-cross attention: each pixel attends to the ``h + w - 1`` pixels of its row and
    column, ``out_i = gamma * sum_{j in row(i) u col(i)} softmax_j(q_i . k_j) v_j + x_i``;
    1x1 convs for q, k (``qk_channels``) and v (``channels``), ``gamma`` initialised to 0.

    Column and row affinities are batched matrix products over the ``N*w`` columns and the
    ``N*h`` rows, so memory is ``O(h*w*(h+w))``: no ``(h*w)^2`` matrix is formed. The pixel
    itself is masked out of its column and counted once, in its row.
    Shapes: ``[N, C, h, w] -> [N, C, h, w]``.
    """

    def __init__(self, channels: int, qk_channels: int):
        super().__init__()
        self.query = Conv2d(channels, qk_channels, kernel_size=1)
        self.key = Conv2d(channels, qk_channels, kernel_size=1)
        self.value = Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _columns(t: Tensor) -> Tensor:
        """``[N, C, h, w] -> [N*w, h, C]``: one sequence per column."""
        n, c, h, w = t.shape
        return t.permute(0, 3, 2, 1).reshape(n * w, h, c)

    @staticmethod
    def _rows(t: Tensor) -> Tensor:
        """``[N, C, h, w] -> [N*h, w, C]``: one sequence per row."""
        n, c, h, w = t.shape
        return t.permute(0, 2, 3, 1).reshape(n * h, w, c)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        query, key, value = self.query(x), self.key(x), self.value(x)
        # Affinities [N, h, w, h] (column) and [N, h, w, w] (row), softmax-normalised together.
        column = torch.bmm(self._columns(query), self._columns(key).transpose(1, 2))
        column = column.view(n, w, h, h).permute(0, 2, 1, 3)
        self_mask = torch.eye(h, dtype=torch.bool, device=x.device).unsqueeze(1)  # [h, 1, h]
        column = column.masked_fill(self_mask, float("-inf"))
        row = torch.bmm(self._rows(query), self._rows(key).transpose(1, 2)).view(n, h, w, w)
        weights = torch.cat([column, row], dim=3).softmax(dim=3)
        column_weights = weights[..., :h].permute(0, 2, 1, 3).reshape(n * w, h, h)
        row_weights = weights[..., h:].reshape(n * h, w, w)
        value_columns, value_rows = self._columns(value), self._rows(value)
        out_column = torch.bmm(column_weights.to(value.dtype), value_columns)  # [N*w, h, C]
        out_row = torch.bmm(row_weights.to(value.dtype), value_rows)  # [N*h, w, C]
        out_column = out_column.view(n, w, h, c).permute(0, 3, 2, 1)
        out_row = out_row.view(n, h, w, c).permute(0, 3, 1, 2)
        return self.gamma * (out_column + out_row) + x


@CONTEXT_REGISTRY.register("cc_attention")
class CCAttentionContext(ContextModule, nn.Module):
    """Recurrent criss-cross attention (RCCA) on ``mid_channels``, laid out as the ``variant``
    says (module docstring), then Dropout2d. ``recurrence = 2`` lets every pixel reach every
    other.

    Shapes: ``[N, C_in, h, w] -> [N, mid_channels, h, w]``.
    """

    # CCAttentionHead (CCNet criss-cross attention); paper-size defaults.
    CONFIG_NODE = "CC_ATTENTION"
    CONFIG_DEFAULTS = {
        # "original": CCNet's RCCA module, 3x3 convs and a 3x3 bottleneck over [2048 input,
        # context] (23.9M params, Table 4's 804 GFLOPs); "compact": 1x1 convs and a 1x1 fuse
        # over [x, context] at 512 channels (10.56M params, Table 4's 10.6M; ~366 GFLOPs).
        "VARIANT": "original",
        # Channels of the criss-cross attention and of the output (CCNet: input / 4 = 512).
        "MID_CHANNELS": 512,
        # Query/key channels (CCNet: MID_CHANNELS / 8 = 64).
        "QK_CHANNELS": 64,
        # Times the (weight-shared) criss-cross attention is applied (CCNet: 2 covers all
        # pixels).
        "RECURRENCE": 2,
        # Dropout2d rate on the output (CCNet: 0.1).
        "DROPOUT": 0.1,
    }
    CONFIG_KEYS = {
        "mid_channels": "MID_CHANNELS",
        "qk_channels": "QK_CHANNELS",
        "recurrence": "RECURRENCE",
        "variant": "VARIANT",
        "dropout": "DROPOUT",
    }

    def __init__(
        self,
        in_channels: int,
        *,
        mid_channels: int = 512,
        qk_channels: int = 64,
        recurrence: int = 2,
        variant: str = "original",
        norm: str = "BN",
        dropout: float = 0.1,
    ):
        super().__init__()
        self.out_channels = mid_channels
        if variant not in CC_VARIANTS:
            raise ValueError(f"CC-attention variant must be one of {CC_VARIANTS}, got {variant!r}")
        if recurrence < 1:
            raise ValueError(f"CC-attention recurrence must be >= 1, got {recurrence}")
        self.variant = variant
        self.recurrence = recurrence
        kernel_size = 3 if variant == "original" else 1
        fuse_in = in_channels if variant == "original" else mid_channels
        self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
        self.attention = CrissCrossAttention(mid_channels, qk_channels)
        self.conv_out = conv_norm_relu(mid_channels, mid_channels, norm, kernel_size=kernel_size)
        self.fuse = conv_norm_relu(
            fuse_in + mid_channels, mid_channels, norm, kernel_size=kernel_size
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, features: Tensor) -> Tensor:
        x = self.conv_in(features)
        context = x
        for _ in range(self.recurrence):
            context = self.attention(context)
        context = self.conv_out(context)
        skip = features if self.variant == "original" else x
        return self.dropout(self.fuse(torch.cat([skip, context], dim=1)))
