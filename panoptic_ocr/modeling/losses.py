"""Semantic-segmentation losses, selected by config: the one seam through which every head
(:class:`~panoptic_ocr.modeling.heads.ContextHead`, the Panoptic-FPN context heads) computes
its final and auxiliary losses.

Contract of a loss module: ``loss(logits, targets)`` with ``logits`` ``[N, K, H, W]`` (float,
already at the labels' resolution) and ``targets`` ``[N, H, W]`` (int64, ``ignore_value`` for
ignored pixels) returns an unweighted scalar; the head applies its loss weight.
"""
from typing import Tuple

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["SEM_SEG_LOSS_REGISTRY", "LOSS_TYPE_KEYS", "build_sem_seg_loss", "CrossEntropyLoss"]

SEM_SEG_LOSS_REGISTRY = Registry("SEM_SEG_LOSS")
SEM_SEG_LOSS_REGISTRY.__doc__ = """Semantic-segmentation losses, by the name used in
``MODEL.SEM_SEG_HEAD.LOSS_TYPE`` (final output) and ``MODEL.SEM_SEG_HEAD.AUX_LOSS_TYPE``
(auxiliary branch). A registered object is called as ``obj.from_config(cfg, branch)`` and
returns a module with the contract of this file's docstring."""

# Which config key selects the loss of each branch.
LOSS_TYPE_KEYS = {"main": "LOSS_TYPE", "aux": "AUX_LOSS_TYPE"}


@SEM_SEG_LOSS_REGISTRY.register("cross_entropy")
class CrossEntropyLoss(nn.Module):
    """Mean pixel-wise cross-entropy over the pixels that are not ``ignore_value``."""

    def __init__(self, *, ignore_value: int = 255):
        super().__init__()
        self.ignore_value = ignore_value

    @classmethod
    def from_config(cls, cfg: CfgNode, branch: str) -> "CrossEntropyLoss":
        return cls(ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits, targets, ignore_index=self.ignore_value)


def registered_loss_types() -> Tuple[str, ...]:
    return tuple(sorted(name for name, _ in SEM_SEG_LOSS_REGISTRY))


def build_sem_seg_loss(cfg: CfgNode, branch: str = "main") -> nn.Module:
    """The loss of ``branch`` ("main" or "aux") named by its config key (:data:`LOSS_TYPE_KEYS`).

    Raises:
        ValueError: unknown branch, or a loss name that is not registered (the message names
            the key and the allowed values).
    """
    if branch not in LOSS_TYPE_KEYS:
        raise ValueError(f"loss branch must be one of {sorted(LOSS_TYPE_KEYS)}, got {branch!r}")
    key = LOSS_TYPE_KEYS[branch]
    name = cfg.MODEL.SEM_SEG_HEAD.get(key, "cross_entropy")
    if name not in SEM_SEG_LOSS_REGISTRY:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.{key} is {name!r}; allowed values: {', '.join(registered_loss_types())}"
        )
    return SEM_SEG_LOSS_REGISTRY.get(name).from_config(cfg, branch)
