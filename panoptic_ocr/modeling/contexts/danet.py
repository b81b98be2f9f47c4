"""DANet's dual attention (position + channel) as a context module (Fu et al., CVPR 2019; OCR
paper sec. 4.3, Tables 3-4).

Table 4's DANet row (10.6M parameters, 1110 GFLOPs) fits no single definition, so both are here
(``variant``):

- ``"original"`` (default): DANet's published head. Each attention has its own branch reading
  the 2048-channel input: 3x3 conv-norm-ReLU 2048 -> 512, the attention, 3x3 conv-norm-ReLU
  512 -> 512; the two branches are summed. 23.93M parameters and 1110 GFLOPs at 128 x 128:
  Table 4's FLOPs (and its memory: the ``(h*w)^2`` position attention).
- ``"compact"``: one shared 3x3 conv-norm-ReLU 2048 -> 512 (as SA/DA/OCR), both attentions on
  those 512 channels, and a 1x1 conv-norm-ReLU fuse of ``[x, PAM(x), CAM(x)]``. 10.55M
  parameters (Table 4's 10.6M) and 672 GFLOPs.
"""

import torch
from detectron2.layers import Conv2d
from torch import Tensor, nn

from ..layers import conv_norm_relu
from .registry import CONTEXT_REGISTRY, ContextModule

__all__ = ["PositionAttention", "ChannelAttention", "DANetContext"]

DANET_VARIANTS = ("original", "compact")


class PositionAttention(nn.Module):
    """DANet's position attention module (PAM): ``out_i = gamma * sum_j s_ij v_j + x_i`` with
    ``s_ij = softmax_j(q_i . k_j)``; 1x1 convs for q, k (``qk_channels``) and v (``channels``),
    ``gamma`` a learned scalar initialised to 0.

    Memory is ``O((h*w)^2)``. Shapes: ``[N, C, h, w] -> [N, C, h, w]``.
    """

    def __init__(self, channels: int, qk_channels: int):
        super().__init__()
        self.query = Conv2d(channels, qk_channels, kernel_size=1)
        self.key = Conv2d(channels, qk_channels, kernel_size=1)
        self.value = Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        query = self.query(x).flatten(2).transpose(1, 2)  # [N, hw, qk]
        key = self.key(x).flatten(2)  # [N, qk, hw]
        value = self.value(x).flatten(2)  # [N, C, hw]
        weights = torch.bmm(query, key).softmax(dim=-1)  # [N, hw (query), hw (key)]
        out = torch.bmm(value, weights.transpose(1, 2).to(value.dtype))  # [N, C, hw]
        return self.gamma * out.view_as(x) + x


class ChannelAttention(nn.Module):
    """DANet's channel attention module (CAM): ``out_c = gamma * sum_d s_cd x_d + x_c`` with
    ``s_cd = softmax_d(max_e E_ce - E_cd)``, ``E = X X^T`` the ``[C, C]`` Gram matrix over the
    pixels (DANet's max-minus-energy form), ``gamma`` a learned scalar initialised to 0.

    No convs. Shapes: ``[N, C, h, w] -> [N, C, h, w]``.
    """

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2)  # [N, C, hw]
        energy = torch.bmm(flat, flat.transpose(1, 2))  # [N, C, C]
        energy = energy.amax(dim=-1, keepdim=True) - energy
        out = torch.bmm(energy.softmax(dim=-1).to(flat.dtype), flat)  # [N, C, hw]
        return self.gamma * out.view_as(x) + x


@CONTEXT_REGISTRY.register("danet")
class DANetContext(ContextModule, nn.Module):
    """Position and channel attention on ``mid_channels``, combined as the ``variant`` says
    (module docstring), then Dropout2d.

    Shapes: ``[N, C_in, h, w] -> [N, mid_channels, h, w]``.
    """

    # DANetHead (position + channel attention); paper-size defaults.
    CONFIG_NODE = "DANET"
    CONFIG_DEFAULTS = {
        # "original": DANet's head, two 3x3 2048->512 branches with 3x3 post-convs, summed
        # (23.9M params, Table 4's 1110 GFLOPs); "compact": one shared 3x3 2048->512 conv,
        # 1x1 fuse of [x, PAM, CAM] (10.55M params, Table 4's 10.6M; ~672 GFLOPs).
        "VARIANT": "original",
        # Channels of the attention modules and of the output (DANet: input / 4 = 512).
        "MID_CHANNELS": 512,
        # Query/key channels of the position attention (DANet: MID_CHANNELS / 8 = 64).
        "QK_CHANNELS": 64,
        # Dropout2d rate on the output (DANet: 0.1).
        "DROPOUT": 0.1,
    }
    CONFIG_KEYS = {
        "mid_channels": "MID_CHANNELS",
        "qk_channels": "QK_CHANNELS",
        "variant": "VARIANT",
        "dropout": "DROPOUT",
    }

    def __init__(
        self,
        in_channels: int,
        *,
        mid_channels: int = 512,
        qk_channels: int = 64,
        variant: str = "original",
        norm: str = "BN",
        dropout: float = 0.1,
    ):
        super().__init__()
        self.out_channels = mid_channels
        if variant not in DANET_VARIANTS:
            raise ValueError(f"DANet variant must be one of {DANET_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.pam = PositionAttention(mid_channels, qk_channels)
        self.cam = ChannelAttention()
        if variant == "original":
            self.pam_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
            self.cam_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
            self.pam_out = conv_norm_relu(mid_channels, mid_channels, norm, kernel_size=3)
            self.cam_out = conv_norm_relu(mid_channels, mid_channels, norm, kernel_size=3)
        else:
            self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
            self.fuse = conv_norm_relu(3 * mid_channels, mid_channels, norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, features: Tensor) -> Tensor:
        if self.variant == "original":
            position = self.pam_out(self.pam(self.pam_in(features)))
            channel = self.cam_out(self.cam(self.cam_in(features)))
            out = position + channel
        else:
            x = self.conv_in(features)
            out = self.fuse(torch.cat([x, self.pam(x), self.cam(x)], dim=1))
        return self.dropout(out)
