"""Ablations of OCR's pixel-region relations from the paper's Table 1 (sec. 3.4), as context
modules (the third ablation, "w/o supervision", is OCR with unsupervised regions: a head option,
see :class:`~panoptic_ocr.modeling.heads.ContextHead`):

- ``"ocr_da_relations"``: relations predicted from the pixel representation only, as in Double
  Attention ("DA scheme", 79.01% in the paper).
- ``"ocr_acf_relations"``: relations read directly from the coarse segmentation map, as in
  ACFNet ("ACF scheme", 78.02%).

The regions are still formed as in OCR (eq. 4 over the supervised soft object regions) and
eqs. (3) and (6) are unchanged; only eq. (5) is replaced.
"""

from detectron2.layers import Conv2d
from torch import Tensor, nn

from ..layers import conv_norm_relu
from ..object_context import ObjectContextBlock, gather_object_regions
from .ocr import OCRContext
from .registry import CONTEXT_REGISTRY, REGIONS, ContextModule

__all__ = ["OCRRelationSchemeContext", "OCRDoubleAttentionRelationContext", "OCRACFRelationContext"]


class OCRRelationSchemeContext(ContextModule, nn.Module):
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
    consumes = REGIONS
    CONFIG_NODE = "OCR"
    CONFIG_DEFAULTS = OCRContext.CONFIG_DEFAULTS  # OCR's node, declared in ocr.py
    CONFIG_KEYS = {
        "num_classes": "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        "mid_channels": "MID_CHANNELS",
        "key_channels": "KEY_CHANNELS",
        "dropout": "DROPOUT",
    }

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
        self.out_channels = mid_channels
        if scheme not in self.SCHEMES:
            raise ValueError(f"relation scheme must be one of {self.SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self.conv_in = conv_norm_relu(in_channels, mid_channels, norm, kernel_size=3)
        self.object_context = ObjectContextBlock(
            mid_channels,
            key_channels,
            mid_channels,
            norm=norm,
            dropout=dropout,
            learned_relations=False,
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

    @classmethod
    def from_config(cls, cfg, in_channels: int, norm: str) -> "OCRRelationSchemeContext":
        """``MODEL.OCR`` widths (``PROJ_LAYERS`` unused: no phi/psi) and the class's ``scheme``."""
        return cls(in_channels, norm=norm, scheme=cls.scheme, **cls.config_kwargs(cfg))


@CONTEXT_REGISTRY.register("ocr_da_relations")
class OCRDoubleAttentionRelationContext(OCRRelationSchemeContext):
    """OCR with Double-Attention relations (Table 1, "DA scheme"): the relation of pixel i to the
    K regions is predicted from x_i alone (1x1 conv + softmax over K)."""

    scheme = "double_attention"


@CONTEXT_REGISTRY.register("ocr_acf_relations")
class OCRACFRelationContext(OCRRelationSchemeContext):
    """OCR with ACFNet relations (Table 1, "ACF scheme"): the relation of pixel i to region k is
    the coarse segmentation's class probability ``softmax_k(M_k(i))``; nothing is learnt."""

    scheme = "acf"
