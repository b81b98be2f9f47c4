"""Hierarchical multi-scale attention (HMSA; Tao, Sapra & Catanzaro, 2020): a per-pixel
attention that says how much the prediction of each image scale is trusted, and the rule that
combines the scales with it, from the largest scale down.

The pieces here know nothing of backbones or heads: :class:`ScaleAttentionHead` reads any
``[N, C, h, w]`` representation (for OCR, the augmented representation before the classifier),
:func:`combine_scales` combines per-scale logits given their attentions.
:class:`~panoptic_ocr.modeling.meta_arch.hmsa_segmentor.HMSASemanticSegmentor` runs a segmentor
at every scale and uses both.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import conv_norm_relu

__all__ = [
    "ScaleAttentionHead",
    "ScalePrediction",
    "check_scales",
    "combine_scales",
    "resize_image",
    "scaled_size",
]


class ScaleAttentionHead(nn.Module):
    """The attention of one scale: ``[N, C, h, w] -> [N, 1, h, w]`` in (0, 1).

    ``num_convs`` 3x3 conv-norm-ReLU layers of ``channels`` (no biases when normalised), then a
    1x1 conv to one channel without bias, then a sigmoid. NVIDIA's ``make_attn_head`` (the
    released models): 2 convs of 256 on OCR's 512 channels, BN.
    """

    def __init__(self, in_channels: int, channels: int = 256, num_convs: int = 2, norm: str = "BN"):
        super().__init__()
        if channels <= 0 or num_convs < 1:
            raise ValueError(
                f"MODEL.HMSA: ATTENTION_CHANNELS ({channels}) must be > 0 and "
                f"ATTENTION_NUM_CONVS ({num_convs}) >= 1"
            )
        layers = []
        for i in range(num_convs):
            layers.append(
                conv_norm_relu(in_channels if i == 0 else channels, channels, norm, kernel_size=3)
            )
        layers.append(nn.Conv2d(channels, 1, kernel_size=1, bias=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.layers(x))


@dataclass
class ScalePrediction:
    """What a segmentor predicts at one scale, at that scale's input size ``h_s x w_s``.

    Attributes:
        logits: ``[N, K, h_s, w_s]``.
        attention: ``[N, 1, h_s, w_s]``, the scale's attention (unused for the largest scale).
        aux_logits: ``[N, K, h_s, w_s]`` or None (only training needs them).
    """

    logits: Tensor
    attention: Tensor
    aux_logits: Optional[Tensor] = None


def check_scales(scales: Sequence[float], key: str) -> Tuple[float, ...]:
    """``scales`` as a tuple of floats, checked: not empty, > 0, no repeats, 1.0 among them.

    Raises:
        ValueError: naming ``key`` (e.g. ``MODEL.HMSA.TEST_SCALES``) and the value.
    """
    values = tuple(float(s) for s in scales)
    if not values or any(not s > 0 for s in values):
        raise ValueError(f"{key} is {list(scales)}: it needs scale factors > 0")
    if len(set(values)) != len(values):
        raise ValueError(f"{key} is {list(scales)}: a scale appears twice")
    if 1.0 not in values:
        raise ValueError(
            f"{key} is {list(scales)}: it must contain 1.0, the scale whose size the "
            "combined prediction has"
        )
    return values


def scaled_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """``(floor(height * scale), floor(width * scale))``, at least 1: the size of
    ``F.interpolate(scale_factor=scale, recompute_scale_factor=True)`` (NVIDIA's ``ResizeX``)."""
    return max(int(height * scale), 1), max(int(width * scale), 1)


def resize_image(image: Tensor, scale: float, align_corners: bool = False) -> Tensor:
    """Bilinear resize of a normalised image ``[3, H, W]`` by ``scale`` to :func:`scaled_size`;
    scale 1 returns ``image`` itself. Written with ``scale_factor`` (and the size recomputed
    from it), so that a traced or exported graph resizes inputs of any size."""
    if scale == 1.0:
        return image
    return F.interpolate(
        image[None],
        scale_factor=scale,
        mode="bilinear",
        align_corners=align_corners,
        recompute_scale_factor=True,
    )[0]


def _resize(x: Tensor, reference: Tensor, align_corners: bool) -> Tensor:
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=align_corners)


def _combine(
    pred: Tensor, logits: Tensor, attention: Tensor, scale: float, align_corners: bool
) -> Tensor:
    if scale >= 1.0:  # at this scale's size: a * p_s + (1 - a) * (pred resized to it)
        return attention * logits + (1 - attention) * _resize(pred, logits, align_corners)
    # a smaller scale, brought up to pred's size: up(a * p_s) + (1 - up(a)) * pred
    return (
        _resize(attention * logits, pred, align_corners)
        + (1 - _resize(attention, pred, align_corners)) * pred
    )


def combine_scales(
    predictions: Dict[float, ScalePrediction], align_corners: bool = False
) -> Tuple[Tensor, Optional[Tensor]]:
    """Combine the logits of several scales (1.0 among them) into ``[N, K, h_1, w_1]``, at scale
    1.0's size, on logits (not probabilities), from the largest scale down:

    - the largest scale's logits start ``pred`` (its attention is not used);
    - each next scale ``s >= 1``: ``pred = a_s * p_s + (1 - a_s) * resize(pred, p_s)``;
    - each next scale ``s < 1``: ``pred = up(a_s * p_s) + (1 - up(a_s)) * pred``, ``up`` resizing
      to ``pred``'s size.

    With the scales (0.5, 1.0) this is the two-scale rule of training,
    ``up(a_0.5 * p_0.5) + (1 - up(a_0.5)) * p_1.0``. The auxiliary logits (if every scale has
    them) are combined the same way with the same attentions.

    Returns:
        ``(logits, aux_logits or None)``.
    """
    scales = sorted(predictions, reverse=True)
    check_scales(scales, "the scales to combine")
    first = predictions[scales[0]]
    pred, aux = first.logits, first.aux_logits
    with_aux = all(p.aux_logits is not None for p in predictions.values())
    for scale in scales[1:]:
        p = predictions[scale]
        pred = _combine(pred, p.logits, p.attention, scale, align_corners)
        if with_aux:
            aux = _combine(aux, p.aux_logits, p.attention, scale, align_corners)
    return pred, aux if with_aux else None
