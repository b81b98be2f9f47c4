"""Fold BatchNorm into the preceding convolution for inference.

In eval mode a BatchNorm is a per-channel affine map, ``y = s * x + t`` with
``s = gamma / sqrt(running_var + eps)`` and ``t = beta - running_mean * s``; applied right
after a convolution it can be absorbed by the convolution itself:
``W' = s[:, None, None, None] * W``, ``b' = s * b + t``. Every Detectron2
:class:`~detectron2.layers.Conv2d` keeps its normalisation in ``conv.norm`` (applied after the
conv, before ``conv.activation``), so folding replaces ``conv.norm`` by nothing.
"""

import logging
from typing import Optional, Tuple

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import Tensor, nn

__all__ = ["fold_batchnorm"]

logger = logging.getLogger(__name__)


def _affine_of_norm(norm: nn.Module) -> Optional[Tuple[Tensor, Tensor]]:
    """``(s, t)`` of the eval-mode normalisation ``y = s * x + t``, or None if not foldable.

    Foldable: :class:`FrozenBatchNorm2d` and every ``_BatchNorm`` that tracks running
    statistics (``BatchNorm2d``, ``SyncBatchNorm``, Detectron2's ``NaiveSyncBatchNorm``).
    GroupNorm/LayerNorm depend on the input and a BN without running statistics normalises by
    the batch's own, so these are left in place.
    """
    if isinstance(norm, FrozenBatchNorm2d):
        weight, bias, eps = norm.weight, norm.bias, norm.eps
    elif isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.running_mean is not None:
        weight, bias, eps = norm.weight, norm.bias, norm.eps
    else:
        return None
    mean = norm.running_mean.detach().double()
    var = norm.running_var.detach().double()
    scale = (var + eps).rsqrt()
    if weight is not None:
        scale = scale * weight.detach().double()
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.detach().double()
    return scale, shift


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every Detectron2 ``Conv2d``'s BatchNorm (``conv.norm``) into its weight and bias,
    **in place**, and return ``model``.

    The folded model computes what the unfolded one computes in **eval mode** (running
    statistics), up to float rounding (the fold is computed in float64). It is meant for
    inference only: without its BatchNorms it no longer trains like the original, so fold a
    copy when the original must stay trainable (see
    :func:`panoptic_ocr.modeling.precision.prepare_for_inference`, used by the trainer's test
    step). Convs whose norm is not a BatchNorm (GroupNorm, ...) are left unchanged.
    """
    folded = 0
    for module in model.modules():
        if not isinstance(module, Conv2d) or module.norm is None:
            continue
        affine = _affine_of_norm(module.norm)
        if affine is None:
            continue
        scale, shift = affine
        weight = module.weight.detach()
        module.weight.copy_((weight.double() * scale.view(-1, 1, 1, 1)).to(weight.dtype))
        if module.bias is None:
            module.bias = nn.Parameter(shift.to(device=weight.device, dtype=weight.dtype))
        else:
            module.bias.copy_((module.bias.detach().double() * scale + shift).to(module.bias.dtype))
        module.norm = None
        folded += 1
    logger.info("Folded %d BatchNorm layers into their convolutions", folded)
    return model
