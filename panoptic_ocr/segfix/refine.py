"""SegFix refinement (Yuan, Xie, Chen & Wang, ECCV 2020, Sec. 3.3): on the pixels that the
boundary branch marks, replace a segmentation's label by the label a few pixels further along the
predicted direction, i.e. in the interior of the region, where labels are reliable:
``refined(p) = label(p + scale * v(p))``, the source pixel clamped to the image.

As in openseg-group/openseg.pytorch: ``segmentor/tester_offset.py`` keeps the pixels whose
boundary probability (softmax channel 1) exceeds 0.5 and takes the argmax direction's unit vector
(:data:`~.targets.DIRECTION_VECTORS`) there, zero elsewhere; ``scripts/cityscapes/segfix.py``
multiplies the offsets by ``--scale`` (2) and samples the label with ``padding_mode='border'``
(clamping). For integer offsets its bilinear sampling of one-hot labels is meant as this exact
gather (which it is with ``align_corners=True``; under recent PyTorch's ``False`` default its
normalisation by ``(size - 1) / 2`` samples up to half a pixel off).
"""

from typing import Tuple

import torch
from torch import Tensor

from .targets import NUM_DIRECTIONS, direction_offsets

__all__ = ["refine_labels", "refine_logits", "refine_with_offsets", "segfix_offsets"]


def segfix_offsets(
    boundary: Tensor, direction_logits: Tensor, scale: int = 2, threshold: float = 0.5
) -> Tensor:
    """Offsets from SegFix predictions: ``[N, 2, H, W]`` int64 ``(dy, dx)``, ``scale`` times the
    argmax direction's vector where the boundary probability is ``> threshold``, 0 elsewhere.

    Args:
        boundary: ``[N, H, W]`` boundary probabilities, or ``[N, 2, H, W]`` logits of
            (non-boundary, boundary), turned into probabilities by a softmax.
        direction_logits: ``[N, 8, H, W]`` scores of the direction bins.
    Unbatched inputs (``[H, W]`` or ``[2, H, W]`` with ``[8, H, W]``) give ``[2, H, W]``.
    """
    if direction_logits.dim() == 3:
        squeeze = True
        direction_logits = direction_logits.unsqueeze(0)
        boundary = boundary.unsqueeze(0)
    elif direction_logits.dim() == 4:
        squeeze = False
    else:
        raise ValueError(
            "direction_logits must be [N, 8, H, W] or [8, H, W], "
            f"got {tuple(direction_logits.shape)}"
        )
    n, k, h, w = direction_logits.shape
    if k != NUM_DIRECTIONS:
        raise ValueError(f"direction_logits have {k} channels, expected {NUM_DIRECTIONS}")
    if boundary.dim() == 4:
        if boundary.shape[1] != 2:
            raise ValueError(f"boundary logits must have 2 channels, got {tuple(boundary.shape)}")
        boundary = torch.softmax(boundary.float(), dim=1)[:, 1]
    if tuple(boundary.shape) != (n, h, w):
        raise ValueError(
            f"boundary {tuple(boundary.shape)} does not match direction_logits "
            f"{tuple(direction_logits.shape)}"
        )
    direction = direction_logits.argmax(dim=1)
    offsets = direction_offsets(direction, scale) * (boundary > threshold).unsqueeze(1)
    return offsets[0] if squeeze else offsets


def _source_index(offsets: Tensor, height: int, width: int) -> Tensor:
    """Flat index ``[N, H*W]`` of each pixel's source ``p + offset``, clamped to the image."""
    device = offsets.device
    ys = torch.arange(height, device=device).view(1, height, 1) + offsets[:, 0]
    xs = torch.arange(width, device=device).view(1, 1, width) + offsets[:, 1]
    ys = ys.clamp_(0, height - 1)
    xs = xs.clamp_(0, width - 1)
    return (ys * width + xs).flatten(1)


def _batched(x: Tensor, offsets: Tensor, dims: int, name: str) -> Tuple[Tensor, Tensor, bool]:
    """``x`` with a batch dimension (``dims`` is the batched rank), offsets checked against it."""
    if x.dim() == dims - 1:
        x, offsets, squeeze = x.unsqueeze(0), offsets.unsqueeze(0), True
    elif x.dim() == dims:
        squeeze = False
    else:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: expected {dims} or {dims - 1} dims")
    if offsets.is_floating_point() or offsets.is_complex():
        raise TypeError(f"offsets must be an integer tensor, got {offsets.dtype} (round them)")
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if tuple(offsets.shape) != (n, 2, h, w):
        raise ValueError(
            f"offsets {tuple(offsets.shape)} do not match {name} {tuple(x.shape)}: "
            f"expected {(n, 2, h, w)} (or unbatched)"
        )
    return x, offsets.long(), squeeze


def refine_with_offsets(labels: Tensor, offsets: Tensor) -> Tensor:
    """``labels`` ``[N, H, W]`` (or ``[H, W]``) with each pixel ``p`` replaced by the label at
    ``p + offsets[:, :, p]`` (``[N, 2, H, W]`` or ``[2, H, W]`` integer ``(dy, dx)``), the source
    clamped to the image; dtype and device kept."""
    x, offsets, squeeze = _batched(labels, offsets, 3, "labels")
    n, h, w = x.shape
    index = _source_index(offsets.to(x.device), h, w)
    out = x.reshape(n, h * w).gather(1, index).view(n, h, w)
    return out[0] if squeeze else out


def refine_logits(logits: Tensor, offsets: Tensor) -> Tensor:
    """The same gather on per-class scores: ``logits`` ``[N, K, H, W]`` (or ``[K, H, W]``; logits
    or probabilities) take, at each pixel, the K scores of its source pixel; ``offsets`` as in
    :func:`refine_with_offsets`. Its argmax is the refinement of the scores' argmax."""
    x, offsets, squeeze = _batched(logits, offsets, 4, "logits")
    n, k, h, w = x.shape
    index = _source_index(offsets.to(x.device), h, w).unsqueeze(1).expand(n, k, h * w)
    out = x.reshape(n, k, h * w).gather(2, index).view(n, k, h, w)
    return out[0] if squeeze else out


def refine_labels(
    labels: Tensor,
    boundary: Tensor,
    direction_logits: Tensor,
    scale: int = 2,
    threshold: float = 0.5,
) -> Tensor:
    """SegFix-refined ``labels`` (``[N, H, W]`` or ``[H, W]``) from boundary probabilities
    ``[N, H, W]`` (or logits ``[N, 2, H, W]``) and direction logits ``[N, 8, H, W]`` at the
    labels' resolution: :func:`refine_with_offsets` of :func:`segfix_offsets`."""
    return refine_with_offsets(labels, segfix_offsets(boundary, direction_logits, scale, threshold))
