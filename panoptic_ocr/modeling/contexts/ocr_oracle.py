"""Ground-truth OCR, "ours*" of the paper's sec. 3.4 (and Figure 1): object regions and
pixel-region relations formed from the ground-truth segmentation instead of being predicted.

This is an oracle: it needs the labels in training *and* at inference, so it only measures how
much OCR could gain from perfect regions and relations.
"""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..layers import conv_norm_relu
from ..object_context import ObjectContextBlock
from .ocr import OCRContext
from .registry import CONTEXT_REGISTRY, TARGETS, ContextModule

__all__ = ["ground_truth_regions", "GroundTruthOCRContext"]


def ground_truth_regions(
    targets: Tensor, num_classes: int, size: torch.Size, ignore_value: int = 255
) -> Tensor:
    """One-hot ground-truth regions at the feature resolution.

    The labels are downsampled to ``size`` by nearest-neighbour sampling (Detectron2/PyTorch
    "nearest": feature pixel ``(i, j)`` takes label ``(floor(i * H / h), floor(j * W / w))``).
    A pixel whose label is ``ignore_value`` (or any value outside ``[0, K)``, e.g. batch
    padding) belongs to no region: its column is all zeros.

    Args:
        targets: labels ``[N, H, W]`` (integer).
        num_classes: K.
        size: ``(h, w)`` of the features.
        ignore_value: the ignore label.
    Returns:
        ``[N, K, h, w]`` float, ``1`` where the downsampled label is ``k``.
    """
    labels = F.interpolate(targets[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_value)
    onehot = F.one_hot(
        torch.where(valid, labels, torch.zeros_like(labels)), num_classes
    )  # [N, h, w, K]
    onehot = onehot * valid[..., None]
    return onehot.permute(0, 3, 1, 2).float()


@CONTEXT_REGISTRY.register("ocr_gt_oracle")
class GroundTruthOCRContext(ContextModule, nn.Module):
    """The OCR module with the ground truth's regions and relations (paper sec. 3.4, ours*).

    - Regions (eq. 4 with ground-truth M): ``m_ki = 1`` iff ``l_i == k``, spatially normalised
      to sum to 1 over the region's pixels, so ``f_k`` is the **mean** of the pixel
      representations of class k. A class absent from an image gets ``f_k = 0``; no pixel
      relates to it, so this value is never used.
    - Relations (replacing eq. 5): ``w_ik = 1`` iff ``l_i == k``, so ``y_i = rho(delta(f_{l_i}))``.
    - Ignore pixels (``ignore_value`` or outside ``[0, K)``, including batch padding) are in
      no region (they do not contribute to any ``f_k``) and have all-zero relations, so their
      object context is ``rho(0)``: they keep only their own representation through ``g``. The
      losses and the evaluators ignore those pixels anyway.

    Eqs. (3) and (6) are OCR's (``delta``, ``rho``, ``g``); there is no ``phi``/``psi``.
    Shapes: features ``[N, C_in, h, w]``, labels ``[N, H, W]`` -> ``[N, mid_channels, h, w]``.
    It consumes the targets, so the head passes the labels in training *and* at inference
    (``INPUT.LOAD_SEM_SEG_IN_TEST True`` makes the test loader read them).
    """

    consumes = TARGETS

    CONFIG_NODE = "OCR"
    CONFIG_DEFAULTS = OCRContext.CONFIG_DEFAULTS  # OCR's node, declared in ocr.py
    CONFIG_KEYS = {
        "num_classes": "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        "mid_channels": "MID_CHANNELS",
        "key_channels": "KEY_CHANNELS",
        "dropout": "DROPOUT",
        "ignore_value": "MODEL.SEM_SEG_HEAD.IGNORE_VALUE",
    }

    def __init__(
        self,
        in_channels: int,
        *,
        num_classes: int,
        mid_channels: int = 512,
        key_channels: int = 256,
        norm: str = "BN",
        dropout: float = 0.05,
        ignore_value: int = 255,
    ):
        super().__init__()
        self.out_channels = mid_channels
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
        self.object_context = ObjectContextBlock(
            mid_channels,
            key_channels,
            mid_channels,
            norm=norm,
            dropout=dropout,
            learned_relations=False,
        )

    def regions_and_relations(self, x: Tensor, targets: Tensor):
        """Ground-truth region representations ``[N, C, K, 1]`` and relations ``[N, h*w, K]``."""
        onehot = ground_truth_regions(
            targets, self.num_classes, x.shape[2:], self.ignore_value
        ).flatten(2)
        counts = onehot.sum(dim=2, keepdim=True).clamp(min=1.0)  # [N, K, 1]
        weights = (onehot / counts).to(x.dtype)  # [N, K, hw], rows sum to 1 (or 0 if absent)
        regions = torch.bmm(weights, x.flatten(2).transpose(1, 2))  # [N, K, C]
        return regions.transpose(1, 2).unsqueeze(3), onehot.transpose(1, 2)

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        x = self.conv_in(features)
        regions, relations = self.regions_and_relations(x, targets)
        return self.object_context(x, regions, relations)
