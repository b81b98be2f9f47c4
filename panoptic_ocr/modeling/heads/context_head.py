"""The one semantic head of every context module (OCR, PPM, ASPP, attention variants,
ablations, baselines), and the registered names of the paper's heads as thin aliases.

All heads of the paper's comparisons differ only in the context module between the backbone
feature and the classifier; the auxiliary branch, the classifier, the losses and Detectron2's
semantic-head contract are the same, which keeps comparisons fair.
"""

from typing import Dict, Optional, Tuple

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn
from torch.nn import functional as F

from ..contexts import REGIONS, TARGETS, build_context, context_class
from ..layers import AuxiliaryBranch, classifier, head_activation, resize_to
from ..losses import CrossEntropyLoss, build_sem_seg_loss

__all__ = [
    "ContextHead",
    "context_name_of",
    "register_head_alias",
    "OCRHead",
    "PPMHead",
    "ASPPHead",
    "SelfAttentionHead",
    "DoubleAttentionHead",
    "DANetHead",
    "CCAttentionHead",
    "OCRNoRegionSupervisionHead",
    "OCRDoubleAttentionRelationHead",
    "OCRACFRelationHead",
    "OCRGroundTruthHead",
    "CoarseOnlyHead",
    "FineOnlyHead",
    "LabelEnsembleHead",
    "LabelRefinementHead",
]


def context_name_of(head_cls: type, cfg: CfgNode) -> str:
    """The context module a head class builds: its ``CONTEXT`` (aliases), else
    ``MODEL.SEM_SEG_HEAD.CONTEXT``; both set and different is an error."""
    configured = cfg.MODEL.SEM_SEG_HEAD.CONTEXT
    fixed = getattr(head_cls, "CONTEXT", "")
    if fixed and configured and configured != fixed:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.NAME {head_cls.__name__} always uses the context {fixed!r}, but "
            f"MODEL.SEM_SEG_HEAD.CONTEXT is {configured!r}: leave it empty or use the generic head "
            f"({'ContextSemSegFPNHead' if 'FPN' in head_cls.__name__ else 'ContextHead'})"
        )
    name = fixed or configured
    if not name:
        raise ValueError(
            f"{head_cls.__name__} needs MODEL.SEM_SEG_HEAD.CONTEXT (e.g. 'ocr', 'ppm', 'aspp')"
        )
    context_class(name)  # raises with the list of registered names
    return name


@SEM_SEG_HEADS_REGISTRY.register()
class ContextHead(nn.Module):
    """Backbone feature -> ``context`` module -> 1x1 classifier, plus an optional auxiliary
    branch on another feature, with Detectron2's semantic-head contract.

    ``forward(features, targets)`` returns ``(None, losses)`` in training and
    ``(logits [N, K, H_in, W_in], {})`` at inference (``H_in x W_in``: the padded input size).
    Losses (through :func:`~panoptic_ocr.modeling.losses.build_sem_seg_loss`):
    ``loss_sem_seg`` (x ``loss_weight``) and, with an auxiliary branch, ``loss_sem_seg_aux``
    (x ``aux_loss_weight``; paper: 0.4).

    The context's declaration (:class:`~panoptic_ocr.modeling.contexts.ContextModule`) decides
    what it is passed: soft object regions (the auxiliary branch's logits, or those of an
    unsupervised ``region_branch``), the targets (an oracle, in training and at inference), or
    nothing. Config: ``MODEL.SEM_SEG_HEAD`` (``CONTEXT`` names the module) and the context's own
    node (``MODEL.OCR``, ``MODEL.PPM``, ...).
    """

    CONTEXT = ""  # fixed by the aliases below; "" reads MODEL.SEM_SEG_HEAD.CONTEXT
    UNSUPERVISED_REGIONS = False
    ENSEMBLE_WITH_AUX = False

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_feature: str,
        context: nn.Module,
        aux_in_feature: Optional[str] = None,
        aux_channels: int = 512,
        aux_kernel_size: int = 3,
        aux_dropout: float = 0.05,
        norm: str = "BN",
        loss_weight: float = 1.0,
        aux_loss_weight: float = 0.4,
        ignore_value: int = 255,
        unsupervised_regions: bool = False,
        ensemble_weight: Optional[float] = None,
        loss: Optional[nn.Module] = None,
        aux_loss: Optional[nn.Module] = None,
        align_corners: bool = False,
        activation: str = "relu",
        leaky_relu_slope: float = 0.01,
    ):
        """
        Args:
            input_shape: backbone output shapes.
            num_classes: K.
            in_feature: backbone feature fed to ``context``.
            context: a registered context module, ``[N, C_in, h, w] -> [N, out_channels, h, w]``.
            aux_in_feature: feature of the auxiliary branch; None for no auxiliary branch.
            aux_channels: hidden channels of the auxiliary branch (0: a 1x1 classifier).
            aux_kernel_size: kernel of the auxiliary branch's hidden conv (3 or 1).
            aux_dropout: Dropout2d rate inside the auxiliary branch.
            norm: normalisation of the auxiliary branch's conv.
            loss_weight: weight of the final loss.
            aux_loss_weight: weight of the auxiliary loss.
            ignore_value: label ignored by the losses.
            unsupervised_regions: the context's soft object regions come from a second branch
                without a loss of its own (Table 1, "w/o supervision"); the auxiliary branch is
                then plain deep supervision.
            ensemble_weight: if set, the final logits are ``(1 - w) * predictor + w * aux``
                (the label-ensemble baseline).
            loss, aux_loss: loss modules (default: cross-entropy ignoring ``ignore_value``).
            align_corners: ``align_corners`` of every bilinear resize of logits: to the
                feature's size (auxiliary branch), to the input (inference) and to the labels
                (losses). HRNet-OCR and openseg: True; mmseg and this project's default: False.
            activation: activation after the auxiliary branch's norm, ``"relu"`` or
                ``"leaky_relu"`` (openseg's released models); the context module reads the same
                key itself.
            leaky_relu_slope: negative slope of ``"leaky_relu"``.
        """
        super().__init__()
        name = type(self).__name__
        for feature in (in_feature, aux_in_feature):
            if feature is not None and feature not in input_shape:
                raise ValueError(
                    f"{name}: input feature {feature!r} is not produced by the backbone, "
                    f"which outputs {sorted(input_shape)}"
                )
        needs_aux = {
            "its soft object regions are predicted from that feature": context.consumes == REGIONS,
            "its unsupervised regions are predicted from that feature": unsupervised_regions,
            (
                "its coarse segmentation (ensemble_weight) is predicted from that feature"
            ): ensemble_weight is not None,
        }
        for reason, needed in needs_aux.items():
            if needed and aux_in_feature is None:
                raise ValueError(f"{name} needs MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE: {reason}")
        if ensemble_weight is not None and not 0.0 <= ensemble_weight <= 1.0:
            raise ValueError(f"ensemble_weight must be in [0, 1], got {ensemble_weight}")
        self.in_feature = in_feature
        self.aux_in_feature = aux_in_feature
        self.feature_stride = input_shape[in_feature].stride
        self.loss_weight = loss_weight
        self.aux_loss_weight = aux_loss_weight
        self.ignore_value = ignore_value
        self.ensemble_weight = ensemble_weight
        self.align_corners = align_corners
        self.context = context
        act = head_activation(activation, leaky_relu_slope)

        def aux_classifier() -> AuxiliaryBranch:
            return AuxiliaryBranch(
                input_shape[aux_in_feature].channels,
                num_classes,
                aux_channels,
                norm,
                aux_dropout,
                kernel_size=aux_kernel_size,
                activation=act,
            )

        # Built in this order (region branch, auxiliary branch, classifier) and registered with
        # the region branch last, so that one seed gives the initial weights and parameter
        # order of the heads of earlier versions.
        region_branch = aux_classifier() if unsupervised_regions else None
        self.aux_branch = aux_classifier() if aux_in_feature is not None else None
        self.predictor = classifier(context.out_channels, num_classes)
        self.region_branch = region_branch
        self.loss = loss if loss is not None else CrossEntropyLoss(ignore_value=ignore_value)
        self.aux_loss = (
            aux_loss if aux_loss is not None else CrossEntropyLoss(ignore_value=ignore_value)
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        name = context_name_of(cls, cfg)
        in_feature = head.IN_FEATURES[0] if head.IN_FEATURES else "res5"
        aux_in_feature = head.AUX_IN_FEATURE or None
        if context_class(name).reads_aux_feature:
            # IN_FEATURES is not read: it may name a stage the backbone does not output.
            if aux_in_feature is None:
                raise ValueError(
                    f"{cls.__name__} (context {name!r}) reads MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE "
                    "(stage 3); it is empty"
                )
            in_feature, aux_in_feature = aux_in_feature, None
        if in_feature not in input_shape:
            raise ValueError(
                f"{cls.__name__}: input feature {in_feature!r} is not produced by the backbone, "
                f"which outputs {sorted(input_shape)}"
            )
        return {
            "input_shape": input_shape,
            "num_classes": head.NUM_CLASSES,
            "in_feature": in_feature,
            "context": build_context(cfg, name, input_shape[in_feature].channels, head.NORM),
            "aux_in_feature": aux_in_feature,
            "aux_channels": head.AUX_CHANNELS,
            "aux_kernel_size": head.AUX_KERNEL_SIZE,
            "aux_dropout": head.AUX_DROPOUT,
            "norm": head.NORM,
            "loss_weight": head.LOSS_WEIGHT,
            "aux_loss_weight": head.AUX_LOSS_WEIGHT,
            "ignore_value": head.IGNORE_VALUE,
            "unsupervised_regions": cls.UNSUPERVISED_REGIONS or head.UNSUPERVISED_REGIONS,
            "ensemble_weight": (
                cfg.MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT
                if cls.ENSEMBLE_WITH_AUX or head.ENSEMBLE_WITH_AUX
                else None
            ),
            "loss": build_sem_seg_loss(cfg, "main"),
            "aux_loss": build_sem_seg_loss(cfg, "aux"),
            "align_corners": head.ALIGN_CORNERS,
            "activation": head.ACTIVATION,
            "leaky_relu_slope": head.LEAKY_RELU_SLOPE,
        }

    @property
    def uses_targets_at_inference(self) -> bool:
        """The context is an oracle: :class:`OCRSemanticSegmentor` passes labels at inference."""
        return self.context.consumes == TARGETS

    def layers(
        self, features: Dict[str, Tensor], targets: Optional[Tensor] = None
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Final and auxiliary logits at ``in_feature``'s resolution, ``[N, K, h, w]``."""
        logits, aux_logits, _ = self.forward_features(features, targets)
        return logits, aux_logits

    def forward_features(
        self, features: Dict[str, Tensor], targets: Optional[Tensor] = None
    ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        """:meth:`layers` and the representation the classifier reads: ``(logits [N, K, h, w],
        aux logits [N, K, h, w] or None, context output [N, context.out_channels, h, w])``; for
        OCR the augmented representation (what multi-scale attention reads)."""
        x = features[self.in_feature]
        region_logits = aux_logits = None
        if self.region_branch is not None:
            region_logits = resize_to(
                self.region_branch(features[self.aux_in_feature]), x, self.align_corners
            )
        if self.aux_branch is not None:
            aux_logits = resize_to(
                self.aux_branch(features[self.aux_in_feature]), x, self.align_corners
            )
        if self.context.consumes == REGIONS:
            out = self.context(x, region_logits if region_logits is not None else aux_logits)
        elif self.context.consumes == TARGETS:
            if targets is None:
                raise ValueError(
                    f"{type(self).__name__}: its context ({type(self.context).__name__}) forms its "
                    "regions and relations from the ground truth: it needs semantic targets in "
                    "training and at inference (for evaluation set INPUT.LOAD_SEM_SEG_IN_TEST True)"
                )
            out = self.context(x, targets)
        else:
            out = self.context(x)
        logits = self.predictor(out)
        if self.ensemble_weight is not None:
            logits = (1.0 - self.ensemble_weight) * logits + self.ensemble_weight * aux_logits
        return logits, aux_logits, out

    def forward(self, features: Dict[str, Tensor], targets: Optional[Tensor] = None):
        logits, aux_logits = self.layers(features, targets)
        if self.training:
            return None, self.losses(logits, aux_logits, targets)
        return self.upsample(logits), {}

    def upsample(self, logits: Tensor) -> Tensor:
        """Bilinear upsampling by the feature stride, to the padded input resolution."""
        return F.interpolate(
            logits,
            scale_factor=self.feature_stride,
            mode="bilinear",
            align_corners=self.align_corners,
        )

    def losses(
        self, logits: Tensor, aux_logits: Optional[Tensor], targets: Optional[Tensor]
    ) -> Dict[str, Tensor]:
        """The final loss and that of the auxiliary branch (if any), on logits upsampled to the
        labels' resolution."""
        if targets is None:
            raise ValueError(f"{type(self).__name__} needs semantic targets in training")
        losses = {
            "loss_sem_seg": self.loss(self._to_labels(logits, targets), targets) * self.loss_weight
        }
        if aux_logits is not None:
            losses["loss_sem_seg_aux"] = (
                self.aux_loss(self._to_labels(aux_logits, targets), targets) * self.aux_loss_weight
            )
        return losses

    def _to_labels(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.interpolate(
            logits, size=targets.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )


# ----------------------------------------------------------------------------------------------
# The paper's heads by their registered names: each is ContextHead with its context fixed.
# ----------------------------------------------------------------------------------------------
def register_head_alias(base: type, name: str, context: str, doc: str, **options) -> type:
    """Register ``name`` in ``SEM_SEG_HEADS_REGISTRY``: ``base`` with ``CONTEXT = context`` and the
    given class options (e.g. ``UNSUPERVISED_REGIONS=True``)."""
    alias = type(
        name,
        (base,),
        {"__doc__": doc, "__module__": base.__module__, "CONTEXT": context, **options},
    )
    SEM_SEG_HEADS_REGISTRY.register(alias)
    return alias


OCRHead = register_head_alias(
    ContextHead,
    "OCRHead",
    "ocr",
    """OCR (sec. 3.3): the auxiliary branch predicts the soft object regions (supervised with
    ``aux_loss_weight``), the OCR module (``MODEL.OCR``) augments every pixel with them.""",
)
PPMHead = register_head_alias(
    ContextHead, "PPMHead", "ppm", "PSPNet head: pyramid pooling (``MODEL.PPM``)."
)
ASPPHead = register_head_alias(
    ContextHead, "ASPPHead", "aspp", "DeepLabv3 head: ASPP (``MODEL.ASPP``)."
)
SelfAttentionHead = register_head_alias(
    ContextHead,
    "SelfAttentionHead",
    "self_attention",
    "Self-attention (non-local) (``MODEL.SELF_ATTENTION``).",
)
DoubleAttentionHead = register_head_alias(
    ContextHead,
    "DoubleAttentionHead",
    "double_attention",
    "A2-Net double attention (``MODEL.DOUBLE_ATTENTION``).",
)
DANetHead = register_head_alias(
    ContextHead,
    "DANetHead",
    "danet",
    """DANet dual attention (``MODEL.DANET``; DANet's per-branch auxiliary classifiers are not
    used, so all heads share the same losses).""",
)
CCAttentionHead = register_head_alias(
    ContextHead,
    "CCAttentionHead",
    "cc_attention",
    "CCNet recurrent criss-cross attention (``MODEL.CC_ATTENTION``).",
)
OCRNoRegionSupervisionHead = register_head_alias(
    ContextHead,
    "OCRNoRegionSupervisionHead",
    "ocr",
    """OCR without object-region supervision (Table 1, "w/o supervision"): ``region_branch``
    predicts the soft object regions from the auxiliary feature with no loss of its own, and
    ``aux_branch`` (same structure) is a plain stage-3 classifier carrying the auxiliary loss.""",
    UNSUPERVISED_REGIONS=True,
)
OCRDoubleAttentionRelationHead = register_head_alias(
    ContextHead,
    "OCRDoubleAttentionRelationHead",
    "ocr_da_relations",
    'OCR with Double-Attention relations (Table 1, "DA scheme").',
)
OCRACFRelationHead = register_head_alias(
    ContextHead,
    "OCRACFRelationHead",
    "ocr_acf_relations",
    'OCR with ACFNet relations (Table 1, "ACF scheme").',
)
OCRGroundTruthHead = register_head_alias(
    ContextHead,
    "OCRGroundTruthHead",
    "ocr_gt_oracle",
    """OCR* (sec. 3.4): regions and relations from the ground truth, in training and at
    inference (set ``INPUT.LOAD_SEM_SEG_IN_TEST True``). The optional auxiliary branch is plain
    deep supervision.""",
)
CoarseOnlyHead = register_head_alias(
    ContextHead,
    "CoarseOnlyHead",
    "coarse_only",
    """Prediction from stage 3 only (supplementary Table 1): reads
    ``MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE`` with the main loss and no auxiliary loss.""",
)
FineOnlyHead = register_head_alias(
    ContextHead,
    "FineOnlyHead",
    "fine",
    """Prediction from stage 4 only (supplementary Table 1): 3x3 conv to ``MODEL.OCR.MID_CHANNELS``,
    no context. An auxiliary branch is used only if ``MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE`` """
    "is set.",
)
LabelEnsembleHead = register_head_alias(
    ContextHead,
    "LabelEnsembleHead",
    "fine",
    """Label ensemble (supplementary sec. A): ``(1 - w) * fine + w * coarse`` logits, with
    ``w = MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT`` and the coarse map from the auxiliary branch.""",
    ENSEMBLE_WITH_AUX=True,
)
LabelRefinementHead = register_head_alias(
    ContextHead,
    "LabelRefinementHead",
    "label_refinement",
    "Label refinement (supplementary sec. A): the fine branch over ``[stage 4, softmax(coarse)]``.",
)
