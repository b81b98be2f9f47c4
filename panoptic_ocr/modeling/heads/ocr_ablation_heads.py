"""Ablations of OCR from the paper's Table 1 (sec. 3.4): object-region supervision and the
pixel-region relation scheme.

- :class:`OCRNoRegionSupervisionHead`: the soft object regions get no loss; the auxiliary loss
  moves to a separate stage-3 classifier ("w/o supervision", 77.31% in the paper).
- :class:`OCRDoubleAttentionRelationHead`: relations predicted from the pixel representation
  only, as in Double Attention ("DA scheme", 79.01%).
- :class:`OCRACFRelationHead`: relations read directly from the coarse segmentation map, as
  in ACFNet ("ACF scheme", 78.02%).

In the two relation ablations the regions are still formed as in OCR (eq. 4 over the
supervised soft object regions) and eqs. (3) and (6) are unchanged; only eq. (5) is replaced.
"""

from typing import Dict, Optional, Tuple

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn
from torch.nn import functional as F

from ..object_context import ObjectContextBlock, conv_norm_relu, gather_object_regions
from .context_head import AuxiliaryBranch, ContextHead
from .ocr_head import OCRHead

__all__ = [
    "OCRRelationSchemeContext",
    "OCRNoRegionSupervisionHead",
    "OCRDoubleAttentionRelationHead",
    "OCRACFRelationHead",
]


def _resize_to(logits: Tensor, reference: Tensor) -> Tensor:
    """Bilinear resize of ``[N, K, h', w']`` to ``reference``'s spatial size (no-op if equal)."""
    if logits.shape[2:] == reference.shape[2:]:
        return logits
    return F.interpolate(logits, size=reference.shape[2:], mode="bilinear", align_corners=False)


def _require_aux_feature(cls, ret: Dict) -> None:
    if ret["aux_in_feature"] is None:
        raise ValueError(
            f"{cls.__name__} needs MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE: its soft object regions are "
            "predicted from that feature"
        )


@SEM_SEG_HEADS_REGISTRY.register()
class OCRNoRegionSupervisionHead(OCRHead):
    """OCR without object-region supervision (paper sec. 3.4, Table 1 "w/o supervision").

    ``region_branch`` predicts the soft object regions from the auxiliary feature as in OCR, but
    no loss is applied to them: they are learnt only through the final loss. The inherited
    ``aux_branch`` becomes a plain stage-3 classifier that carries the auxiliary loss
    (``loss_sem_seg_aux``), i.e. ordinary deep supervision that does not feed the OCR module.
    Both branches have the same structure (``MODEL.SEM_SEG_HEAD.AUX_CHANNELS``/``AUX_KERNEL_SIZE``/
    ``AUX_DROPOUT``).

    Shapes as :class:`OCRHead`.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, region_branch: nn.Module, **kwargs):
        """
        Args:
            input_shape: backbone output shapes.
            region_branch: ``[N, C_aux, h', w'] -> [N, K, h', w']``, the unsupervised soft regions.
            kwargs: the arguments of :class:`ContextHead` (``aux_in_feature`` is required).
        """
        super().__init__(input_shape, **kwargs)
        if self.aux_branch is None:
            raise ValueError(f"{type(self).__name__} needs an aux_in_feature")
        self.region_branch = region_branch

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.SEM_SEG_HEAD
        ret["region_branch"] = AuxiliaryBranch(
            input_shape[ret["aux_in_feature"]].channels,
            head.NUM_CLASSES,
            head.AUX_CHANNELS,
            ret["norm"],
            head.AUX_DROPOUT,
            kernel_size=ret.get("aux_kernel_size", 3),
        )
        return ret

    def layers(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Final logits (OCR over the unsupervised regions) and the plain auxiliary logits."""
        x = features[self.in_feature]
        aux_feature = features[self.aux_in_feature]
        region_logits = _resize_to(self.region_branch(aux_feature), x)
        aux_logits = _resize_to(self.aux_branch(aux_feature), x)
        return self.predictor(self.context(x, region_logits)), aux_logits


class OCRRelationSchemeContext(nn.Module):
    """The OCR module with eq. (5) replaced by a relation scheme that does not look at the
    region representations (paper sec. 3.4, "Pixel-region relations").

    - ``"double_attention"``: ``w_i = softmax_k(W x_i + b)``, a 1x1 conv from the pixel
      representation x to K logits, softmax over the K regions.
    - ``"acf"``: ``w_i = softmax_k(M_k(i))``, the class softmax of the coarse segmentation
      (the soft-region logits) at pixel i.

    Regions (eq. 4), the context (eq. 3) and the fusion (eq. 6) are OCR's.
    Shapes: features ``[N, C_in, h, w]``, region logits ``[N, K, h, w]`` ->
    ``[N, mid_channels, h, w]``.
    """

    SCHEMES = ("double_attention", "acf")

    def __init__(
        self,
        in_channels: int,
        *,
        num_classes: int,
        scheme: str,
        mid_channels: int = 512,
        key_channels: int = 256,
        norm: str = "BN",
        dropout: float = 0.05,
    ):
        super().__init__()
        if scheme not in self.SCHEMES:
            raise ValueError(f"relation scheme must be one of {self.SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
        self.object_context = ObjectContextBlock(
            mid_channels, key_channels, mid_channels, norm=norm, dropout=dropout, learned_relations=False
        )
        self.relation_logits = None
        if scheme == "double_attention":
            self.relation_logits = Conv2d(mid_channels, num_classes, kernel_size=1)

    def relations(self, x: Tensor, region_logits: Tensor) -> Tensor:
        """``[N, H*W, K]``, each row a distribution over the K regions."""
        logits = region_logits if self.relation_logits is None else self.relation_logits(x)
        return logits.flatten(2).transpose(1, 2).softmax(dim=-1)

    def forward(self, features: Tensor, region_logits: Tensor) -> Tensor:
        x = self.conv_in(features)
        regions = gather_object_regions(x, region_logits)
        return self.object_context(x, regions, self.relations(x, region_logits))


class _OCRRelationSchemeHead(OCRHead):
    """OCR head whose context module is :class:`OCRRelationSchemeContext` with ``scheme``."""

    scheme: str = ""

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = ContextHead.base_config(cfg, input_shape)
        _require_aux_feature(cls, ret)
        ocr = cfg.MODEL.OCR
        ret["context"] = OCRRelationSchemeContext(
            input_shape[ret["in_feature"]].channels,
            num_classes=ret["num_classes"],
            scheme=cls.scheme,
            mid_channels=ocr.MID_CHANNELS,
            key_channels=ocr.KEY_CHANNELS,
            norm=ret["norm"],
            dropout=ocr.DROPOUT,
        )
        ret["context_channels"] = ocr.MID_CHANNELS
        return ret


@SEM_SEG_HEADS_REGISTRY.register()
class OCRDoubleAttentionRelationHead(_OCRRelationSchemeHead):
    """OCR with Double-Attention relations (paper Table 1, "DA scheme"): the relation of pixel
    i to the K regions is predicted from x_i alone (1x1 conv + softmax over K). Regions are
    OCR's supervised soft object regions. ``MODEL.OCR.PROJ_LAYERS`` is unused (no phi/psi).
    """

    scheme = "double_attention"


@SEM_SEG_HEADS_REGISTRY.register()
class OCRACFRelationHead(_OCRRelationSchemeHead):
    """OCR with ACFNet relations (paper Table 1, "ACF scheme"): the relation of pixel i to
    region k is the coarse segmentation's class probability ``softmax_k(M_k(i))``; nothing is
    learnt for the relations. ``MODEL.OCR.PROJ_LAYERS`` is unused (no phi/psi).
    """

    scheme = "acf"
