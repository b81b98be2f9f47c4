"""Layers every head and context module shares: conv-norm-ReLU, the classifier and its
initialisation, the auxiliary (soft object region / deep supervision) branch, and resizing of
logits to a feature's resolution."""

import functools
from typing import Callable, Optional

from detectron2.layers import Conv2d, get_norm
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "head_activation",
    "conv_norm_relu",
    "classifier",
    "AuxiliaryBranch",
    "resize_to",
]

Activation = Callable[[Tensor], Tensor]

# Names of MODEL.SEM_SEG_HEAD.ACTIVATION.
ACTIVATIONS = ("relu", "leaky_relu")


def head_activation(name: str = "relu", negative_slope: float = 0.01) -> Activation:
    """The activation after every normalised conv of a head (``MODEL.SEM_SEG_HEAD.ACTIVATION``).

    ``"relu"`` is ``F.relu`` itself (the function every head used before the key existed);
    ``"leaky_relu"`` is ``F.leaky_relu`` with ``negative_slope`` (openseg's InPlaceABN default:
    0.01).

    Raises:
        ValueError: an unknown name (the message lists :data:`ACTIVATIONS`).
    """
    if name == "relu":
        return F.relu
    if name == "leaky_relu":
        return functools.partial(F.leaky_relu, negative_slope=float(negative_slope))
    raise ValueError(f"MODEL.SEM_SEG_HEAD.ACTIVATION must be one of {ACTIVATIONS}, got {name!r}")


def conv_norm_relu(
    in_channels: int,
    out_channels: int,
    norm: str,
    kernel_size: int = 1,
    *,
    activation: Activation = F.relu,
) -> Conv2d:
    """A ``kernel_size`` conv followed by ``norm`` (if any) and ``activation`` (default ReLU; see
    :func:`head_activation`); no bias when normalised. ``[N, C_in, H, W] -> [N, C_out, H, W]``."""
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=activation,
    )


def classifier(in_channels: int, num_classes: int) -> Conv2d:
    """A 1x1 conv to ``num_classes`` logits, weights N(0, 0.001^2) and zero bias."""
    layer = Conv2d(in_channels, num_classes, kernel_size=1)
    nn.init.normal_(layer.weight, std=0.001)
    nn.init.zeros_(layer.bias)
    return layer


class AuxiliaryBranch(nn.Module):
    """Coarse segmentation from an intermediate feature: the soft object regions of OCR, or the
    usual auxiliary (deep-supervision) classifier of the other heads.

    ``hidden_channels > 0``: ``kernel_size`` conv-norm-ReLU, Dropout2d, 1x1 classifier (authors'
    code: 3x3 on ResNet, 1x1 in HRNet-OCR); ``hidden_channels == 0``: a single 1x1 classifier
    (the paper's "linear function"). ``activation`` follows the hidden conv's norm (default
    ReLU). Shapes: ``[N, C_in, H, W] -> [N, K, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_channels: int,
        norm: str,
        dropout: float,
        kernel_size: int = 3,
        *,
        activation: Activation = F.relu,
    ):
        super().__init__()
        layers = []
        if hidden_channels > 0:
            layers.append(
                conv_norm_relu(
                    in_channels,
                    hidden_channels,
                    norm,
                    kernel_size=kernel_size,
                    activation=activation,
                )
            )
            if dropout > 0:
                layers.append(nn.Dropout2d(dropout))
            in_channels = hidden_channels
        layers.append(classifier(in_channels, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def resize_to(
    logits: Optional[Tensor], reference: Tensor, align_corners: bool = False
) -> Optional[Tensor]:
    """Bilinear resize of ``[N, K, h', w']`` to ``reference``'s spatial size (no-op if equal)."""
    if logits is None or logits.shape[2:] == reference.shape[2:]:
        return logits
    return F.interpolate(
        logits, size=reference.shape[2:], mode="bilinear", align_corners=align_corners
    )
