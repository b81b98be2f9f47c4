"""Shared skeleton of every context head (OCR, PPM, ASPP, attention variants, baselines).

All heads of the paper's comparisons differ only in the context module between the backbone
feature and the classifier; the auxiliary branch, the classifier, the losses and Detectron2's
semantic-head contract are the same, which keeps comparisons fair.
"""
from typing import Dict, Optional, Tuple

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from torch import Tensor, nn
from torch.nn import functional as F

from ..object_context import conv_norm_relu

__all__ = ["AuxiliaryBranch", "ContextHead"]


class AuxiliaryBranch(nn.Module):
    """Coarse segmentation from an intermediate feature: the soft object regions of OCR, or the
    usual auxiliary (deep-supervision) classifier of the other heads.

    ``hidden_channels > 0``: ``kernel_size`` conv-norm-ReLU, Dropout2d, 1x1 classifier (authors'
    code: 3x3 on ResNet, 1x1 in HRNet-OCR); ``hidden_channels == 0``: a single 1x1 classifier
    (the paper's "linear function"). Shapes: ``[N, C_in, H, W] -> [N, K, H, W]``.
    """

    def __init__(
        self, in_channels: int, num_classes: int, hidden_channels: int, norm: str, dropout: float,
        kernel_size: int = 3,
    ):
        super().__init__()
        layers = []
        if hidden_channels > 0:
            layers.append(conv_norm_relu(in_channels, hidden_channels, norm, kernel_size=kernel_size))
            if dropout > 0:
                layers.append(nn.Dropout2d(dropout))
            in_channels = hidden_channels
        classifier = Conv2d(in_channels, num_classes, kernel_size=1)
        nn.init.normal_(classifier.weight, std=0.001)
        nn.init.zeros_(classifier.bias)
        layers.append(classifier)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ContextHead(nn.Module):
    """Backbone feature -> ``context`` module -> 1x1 classifier, plus an optional auxiliary
    branch on another feature, with Detectron2's semantic-head contract.

    ``forward(features, targets)`` returns ``(None, losses)`` in training and
    ``(logits [N, K, H_in, W_in], {})`` at inference (``H_in x W_in``: the padded input size).
    Losses: ``loss_sem_seg`` (x ``loss_weight``) and, with an auxiliary branch,
    ``loss_sem_seg_aux`` (x ``aux_loss_weight``; paper: 0.4).

    Subclasses build ``context`` in ``from_config`` and may override :meth:`forward_context`
    (OCR feeds the auxiliary logits to its context module).
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_feature: str,
        context: nn.Module,
        context_channels: int,
        aux_in_feature: Optional[str] = None,
        aux_channels: int = 512,
        aux_kernel_size: int = 3,
        aux_dropout: float = 0.05,
        norm: str = "BN",
        loss_weight: float = 1.0,
        aux_loss_weight: float = 0.4,
        ignore_value: int = 255,
    ):
        """
        Args:
            input_shape: backbone output shapes.
            num_classes: K.
            in_feature: backbone feature fed to ``context``.
            context: module mapping ``[N, C_in, h, w]`` to ``[N, context_channels, h, w]``.
            context_channels: output channels of ``context`` (input of the classifier).
            aux_in_feature: feature of the auxiliary branch; None for no auxiliary branch.
            aux_channels: hidden channels of the auxiliary branch (0: a 1x1 classifier).
            aux_kernel_size: kernel of the auxiliary branch's hidden conv (3 or 1).
            aux_dropout: Dropout2d rate inside the auxiliary branch.
            norm: normalisation of the auxiliary branch's conv.
            loss_weight: weight of the final cross-entropy.
            aux_loss_weight: weight of the auxiliary cross-entropy.
            ignore_value: label ignored by the losses.
        """
        super().__init__()
        for name in (in_feature, aux_in_feature):
            if name is not None and name not in input_shape:
                raise ValueError(
                    f"{type(self).__name__}: input feature {name!r} is not produced by the backbone, "
                    f"which outputs {sorted(input_shape)}"
                )
        self.in_feature = in_feature
        self.aux_in_feature = aux_in_feature
        self.feature_stride = input_shape[in_feature].stride
        self.loss_weight = loss_weight
        self.aux_loss_weight = aux_loss_weight
        self.ignore_value = ignore_value
        self.context = context
        self.aux_branch = None
        if aux_in_feature is not None:
            self.aux_branch = AuxiliaryBranch(
                input_shape[aux_in_feature].channels, num_classes, aux_channels, norm, aux_dropout,
                kernel_size=aux_kernel_size,
            )
        self.predictor = Conv2d(context_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def base_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        """The arguments every context head reads the same way (``MODEL.SEM_SEG_HEAD``)."""
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": input_shape,
            "num_classes": head.NUM_CLASSES,
            "in_feature": head.IN_FEATURES[0] if head.IN_FEATURES else "res5",
            "aux_in_feature": head.AUX_IN_FEATURE or None,
            "aux_channels": head.AUX_CHANNELS,
            "aux_kernel_size": head.AUX_KERNEL_SIZE,
            "aux_dropout": head.AUX_DROPOUT,
            "norm": head.NORM,
            "loss_weight": head.LOSS_WEIGHT,
            "aux_loss_weight": head.AUX_LOSS_WEIGHT,
            "ignore_value": head.IGNORE_VALUE,
        }

    def forward_context(self, x: Tensor, aux_logits: Optional[Tensor]) -> Tensor:
        """``[N, C_in, h, w] -> [N, context_channels, h, w]``; ``aux_logits`` is unused here."""
        return self.context(x)

    def layers(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Final and auxiliary logits at ``in_feature``'s resolution, ``[N, K, h, w]``."""
        x = features[self.in_feature]
        aux_logits = None
        if self.aux_branch is not None:
            aux_logits = self.aux_branch(features[self.aux_in_feature])
            if aux_logits.shape[2:] != x.shape[2:]:
                aux_logits = F.interpolate(aux_logits, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.predictor(self.forward_context(x, aux_logits)), aux_logits

    def forward(self, features: Dict[str, Tensor], targets: Optional[Tensor] = None):
        logits, aux_logits = self.layers(features)
        if self.training:
            return None, self.losses(logits, aux_logits, targets)
        return self.upsample(logits), {}

    def upsample(self, logits: Tensor) -> Tensor:
        """Bilinear upsampling by the feature stride, to the padded input resolution."""
        return F.interpolate(logits, scale_factor=self.feature_stride, mode="bilinear", align_corners=False)

    def losses(self, logits: Tensor, aux_logits: Optional[Tensor], targets: Optional[Tensor]) -> Dict[str, Tensor]:
        """Cross-entropy of the final prediction and of the auxiliary branch (if any)."""
        if targets is None:
            raise ValueError(f"{type(self).__name__} needs semantic targets in training")
        losses = {"loss_sem_seg": self._cross_entropy(logits, targets) * self.loss_weight}
        if aux_logits is not None:
            losses["loss_sem_seg_aux"] = self._cross_entropy(aux_logits, targets) * self.aux_loss_weight
        return losses

    def _cross_entropy(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, targets, ignore_index=self.ignore_value)
