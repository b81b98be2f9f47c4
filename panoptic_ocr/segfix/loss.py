"""SegFix's training loss (Yuan et al., ECCV 2020, Sec. 3.2; openseg-group/openseg.pytorch
``lib/loss/loss_helper.py`` ``SegFixLoss``): class-balanced cross-entropy on the boundary mask
plus class-balanced cross-entropy on the direction of the boundary pixels.

Both weight each class by ``1 - its share`` of the counted pixels of the batch (openseg's
``calc_weights``), so that the thin boundary class and rare directions are not drowned. The
direction term counts the pixels chosen by ``direction_pixels``:

- ``"ground_truth"``: the pixels that are boundary in the ground truth (the direction target
  exists only there);
- ``"ground_truth_and_predicted"``: those that the model also predicts as boundary (boundary
  probability > 0.5), which is openseg's choice restricted to where the target is defined.
"""

from typing import Dict

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["DIRECTION_PIXELS", "balanced_weights", "segfix_losses"]

DIRECTION_PIXELS = ("ground_truth", "ground_truth_and_predicted")


def balanced_weights(target: Tensor, num_classes: int, ignore_value: int = 255) -> Tensor:
    """``1 - count_c / total`` for each class c of the non-ignored entries of ``target``
    (``[num_classes]`` float32). All ones when nothing is counted or one class holds every
    entry: its weight would be 0 and the weighted mean 0 / 0."""
    valid = target[target != ignore_value]
    counts = torch.bincount(valid.flatten().long(), minlength=num_classes)[:num_classes].float()
    total = counts.sum()
    if total == 0 or bool((counts == total).any()):
        return torch.ones(num_classes, device=target.device)
    return 1.0 - counts / total


def segfix_losses(
    boundary_logits: Tensor,
    direction_logits: Tensor,
    boundary_target: Tensor,
    direction_target: Tensor,
    *,
    ignore_value: int = 255,
    direction_pixels: str = "ground_truth",
    boundary_weight: float = 1.0,
    direction_weight: float = 1.0,
) -> Dict[str, Tensor]:
    """``{"loss_segfix_boundary", "loss_segfix_direction"}`` of logits ``[N, 2, H, W]`` and
    ``[N, D, H, W]`` against targets ``[N, H, W]`` at the same size (boundary in {0, 1} or
    ``ignore_value``; direction bins or ``ignore_value`` off the boundary).

    Raises:
        ValueError: an unknown ``direction_pixels``, or sizes that differ.
    """
    if direction_pixels not in DIRECTION_PIXELS:
        raise ValueError(
            f"MODEL.SEGFIX.DIRECTION_PIXELS must be one of {DIRECTION_PIXELS}, "
            f"got {direction_pixels!r}"
        )
    if boundary_logits.shape[-2:] != boundary_target.shape[-2:] or (
        direction_logits.shape[-2:] != direction_target.shape[-2:]
    ):
        raise ValueError(
            f"logits {tuple(boundary_logits.shape)} / {tuple(direction_logits.shape)} and targets "
            f"{tuple(boundary_target.shape)} / {tuple(direction_target.shape)} differ in size"
        )
    boundary_target = boundary_target.long()
    direction_target = direction_target.long()
    boundary_loss = F.cross_entropy(
        boundary_logits,
        boundary_target,
        weight=balanced_weights(boundary_target, 2, ignore_value).to(boundary_logits.dtype),
        ignore_index=ignore_value,
    )
    if direction_pixels == "ground_truth_and_predicted":
        predicted = boundary_logits.detach().softmax(dim=1)[:, 1] > 0.5
        direction_target = torch.where(
            predicted, direction_target, torch.full_like(direction_target, ignore_value)
        )
    num_directions = direction_logits.shape[1]
    if (direction_target != ignore_value).any():
        direction_loss = F.cross_entropy(
            direction_logits,
            direction_target,
            weight=balanced_weights(direction_target, num_directions, ignore_value).to(
                direction_logits.dtype
            ),
            ignore_index=ignore_value,
        )
    else:  # no pixel to learn a direction from: a zero that keeps the graph
        direction_loss = direction_logits.sum() * 0.0
    return {
        "loss_segfix_boundary": boundary_loss * boundary_weight,
        "loss_segfix_direction": direction_loss * direction_weight,
    }
