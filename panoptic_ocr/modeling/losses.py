"""Semantic-segmentation losses, selected by config: the one seam through which every head
(:class:`~panoptic_ocr.modeling.heads.ContextHead`, the Panoptic-FPN context heads) computes
its final and auxiliary losses (docs/losses.md).

Contract of a loss module: ``loss(logits, targets)`` with ``logits`` ``[N, K, H, W]`` (float,
already at the labels' resolution) and ``targets`` ``[N, H, W]`` (int64, ``ignore_value`` for
ignored pixels) returns an unweighted scalar; the head applies its loss weight. When every pixel
is ignored each loss returns a zero that keeps the graph (``logits.sum() * 0``: finite, zero
gradients) instead of NaN.

Registered names (``MODEL.SEM_SEG_HEAD.LOSS_TYPE`` for the final output,
``MODEL.SEM_SEG_HEAD.AUX_LOSS_TYPE`` for the auxiliary branch); their options live in one node,
``MODEL.SEM_SEG_HEAD.LOSS``, shared by both branches:

* ``cross_entropy``: (class-weighted) mean cross-entropy.
* ``ohem_cross_entropy``: HRNet-OCR's ``OhemCrossEntropy``.
* ``ohem_cross_entropy_openseg``: openseg's ``FSOhemCELoss``.
* ``hard_pixel_mining``: Detectron2's DeepLab loss (``DeepLabCE``, top-k fraction of losses).
* ``rmi``: region mutual information (Zhao et al., NeurIPS 2019) as in openseg.
* ``lovasz_softmax``: Lovasz-softmax (Berman et al., CVPR 2018).

Distributed training: every loss is computed on the process's own batch (as in the authors'
code, which does not gather logits across GPUs). In particular OHEM's ``OHEM_MIN_KEPT`` counts
pixels per process, i.e. per GPU batch, and Lovasz with ``LOVASZ_PER_IMAGE: False`` sorts the
pixels of the per-GPU batch.
"""

from typing import Optional, Sequence, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.projects.deeplab.loss import DeepLabCE
from torch import Tensor, nn
from torch.nn import functional as F

from .named_registry import NamedRegistry

__all__ = [
    "SEM_SEG_LOSS_REGISTRY",
    "LOSS_TYPE_KEYS",
    "build_sem_seg_loss",
    "registered_loss_types",
    "CrossEntropyLoss",
    "OhemCrossEntropyLoss",
    "HardPixelMiningLoss",
    "RMILoss",
    "LovaszSoftmaxLoss",
    "ohem_keep_mask",
    "lovasz_softmax_flat",
    "rmi_lower_bound",
]

SEM_SEG_LOSS_REGISTRY = NamedRegistry("SEM_SEG_LOSS")
SEM_SEG_LOSS_REGISTRY.__doc__ = """Semantic-segmentation losses, by the name used in
``MODEL.SEM_SEG_HEAD.LOSS_TYPE`` (final output) and ``MODEL.SEM_SEG_HEAD.AUX_LOSS_TYPE``
(auxiliary branch). A registered object is called as ``obj.from_config(cfg, branch)`` and
returns a module with the contract of this file's docstring."""

# Which config key selects the loss of each branch.
LOSS_TYPE_KEYS = {"main": "LOSS_TYPE", "aux": "AUX_LOSS_TYPE"}

RMI_POOL_TYPES = ("max", "avg", "interpolate")
LOVASZ_CLASS_MODES = ("present", "all")


def _zero(logits: Tensor) -> Tensor:
    """A scalar zero connected to ``logits`` (finite, zero gradients)."""
    return logits.sum() * 0.0


def _class_weights(cfg: CfgNode) -> Optional[Tensor]:
    """``MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS`` as a float tensor ``[K]``, or None if empty."""
    weights = list(cfg.MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS)
    if not weights:
        return None
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if len(weights) != num_classes:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS has {len(weights)} values; "
            "allowed: [] (unweighted) "
            f"or exactly MODEL.SEM_SEG_HEAD.NUM_CLASSES = {num_classes} non-negative floats"
        )
    if any(w < 0 for w in weights):
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS must be non-negative, got {weights}"
        )
    return torch.tensor(weights, dtype=torch.float32)


class _WeightedLoss(nn.Module):
    """Holds optional class weights ``[K]`` as a buffer (moves with the model, not saved)."""

    def __init__(self, ignore_value: int, class_weights: Optional[Sequence[float]]):
        super().__init__()
        self.ignore_value = ignore_value
        w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", w, persistent=False)

    def _weight(self, logits: Tensor) -> Optional[Tensor]:
        return None if self.class_weights is None else self.class_weights.to(logits.dtype)


@SEM_SEG_LOSS_REGISTRY.register("cross_entropy")
class CrossEntropyLoss(_WeightedLoss):
    """Mean pixel-wise cross-entropy over the pixels that are not ``ignore_value``.

    With class weights ``w`` (``MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS``, as HRNet-OCR's
    ``CrossEntropy`` and openseg's ``FSCELoss`` with ``ce_weight``) it is the weighted mean
    ``sum_i w[y_i] * -log p_i(y_i) / sum_i w[y_i]`` over valid pixels ``i`` (PyTorch's
    ``F.cross_entropy(weight=w)``); without, the plain mean. Numerically identical to
    ``F.cross_entropy(logits, targets, weight, ignore_index=ignore_value)`` except that all
    pixels ignored gives a graph-keeping zero instead of NaN.

    Args:
        logits: ``[N, K, H, W]``.
        targets: ``[N, H, W]`` int64.

    Returns:
        Scalar loss.
    """

    def __init__(self, *, ignore_value: int = 255, class_weights: Optional[Sequence[float]] = None):
        super().__init__(ignore_value, class_weights)

    @classmethod
    def from_config(cls, cfg: CfgNode, branch: str) -> "CrossEntropyLoss":
        return cls(
            ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE, class_weights=_class_weights(cfg)
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        loss = F.cross_entropy(
            logits, targets, weight=self._weight(logits), ignore_index=self.ignore_value
        )
        # torch.where instead of an `if`: no host synchronisation on GPUs.
        return torch.where((targets != self.ignore_value).any(), loss, _zero(logits))


def ohem_keep_mask(
    true_class_prob: Tensor, valid: Tensor, thresh: float, min_kept: int, force_first: bool = False
) -> Tensor:
    """The pixels OHEM keeps (HRNet-OCR ``OhemCrossEntropy``, openseg ``FSOhemCELoss``).

    Among the candidate pixels (``valid``; with ``force_first`` also pixel 0 of the flattened
    batch, openseg's ``mask[0] = 1``), sort the true-class probabilities ascending,
    ``p_(0) <= p_(1) <= ...``; with ``n`` candidates the threshold is
    ``t = max(thresh, p_(min(min_kept, n - 1)))`` (0-based index) and the kept pixels are the
    candidates with ``p < t`` (strict: pixels tied with ``t`` are dropped, so ties or ``n <=
    min_kept`` can keep fewer than ``min_kept``; with ``n <= min_kept`` the easiest pixels are
    dropped when their probability exceeds ``thresh``). Implemented with ``kthvalue`` (the
    same order statistic as the authors' full sort).

    Args:
        true_class_prob: ``[P]`` softmax probability of each pixel's label (any value where
            not a candidate).
        valid: ``[P]`` bool, pixels that are not ignored.
        thresh: ``OHEM_THRESH``.
        min_kept: ``OHEM_MIN_KEPT`` (>= 1), counted over the tensors given, i.e. per process.
        force_first: openseg's quirk of always making pixel 0 a candidate.

    Returns:
        ``[P]`` bool mask of kept pixels (all False when there is no candidate).
    """
    candidates = valid.clone()
    if force_first and candidates.numel() > 0:
        candidates[0] = True
    probs = true_class_prob[candidates]
    n = probs.numel()
    if n == 0:
        return candidates
    k = min(max(1, min_kept), n - 1)
    kth = torch.kthvalue(probs.detach().float(), k + 1).values
    threshold = torch.clamp(kth, min=thresh)
    return candidates & (true_class_prob.detach().float() < threshold)


@SEM_SEG_LOSS_REGISTRY.register("ohem_cross_entropy")
class OhemCrossEntropyLoss(_WeightedLoss):
    """Online hard example mining cross-entropy, HRNet-OCR's ``OhemCrossEntropy``.

    Per-pixel cross-entropy ``l_i = w[y_i] * -log p_i(y_i)`` (``w`` = class weights, 1 if
    none) averaged over the pixels kept by :func:`ohem_keep_mask`: valid pixels whose softmax
    probability of the true class is below ``max(OHEM_THRESH, p_(OHEM_MIN_KEPT))``. The mean
    divides by the number of kept pixels, not by their weights (unlike weighted
    :class:`CrossEntropyLoss`), as in both authors' codes. ``OHEM_MIN_KEPT`` is per process
    (per GPU batch), as in the authors' code. HRNet-OCR's Cityscapes config: thresh 0.9,
    min kept 131072 (``USE_OHEM: false`` for its train->val numbers); class default 0.7/100000.

    With ``openseg=True`` it is openseg's ``FSOhemCELoss``: the same rule, except that pixel 0
    of the flattened batch is always a candidate (``mask[0] = 1``, to avoid an empty sort);
    when that pixel is ignored it enters with its class-0 probability and a zero loss.

    Args:
        logits: ``[N, K, H, W]``.
        targets: ``[N, H, W]`` int64.

    Returns:
        Scalar loss (a graph-keeping zero when no pixel is kept).
    """

    def __init__(
        self,
        *,
        ignore_value: int = 255,
        thresh: float = 0.7,
        min_kept: int = 100000,
        class_weights: Optional[Sequence[float]] = None,
        openseg: bool = False,
    ):
        super().__init__(ignore_value, class_weights)
        if min_kept < 1:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT must be an integer >= 1, got {min_kept}"
            )
        if not 0.0 <= thresh <= 1.0:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.LOSS.OHEM_THRESH must be in [0, 1], got {thresh}")
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.openseg = openseg

    @classmethod
    def from_config(cls, cfg: CfgNode, branch: str) -> "OhemCrossEntropyLoss":
        opts = cfg.MODEL.SEM_SEG_HEAD.LOSS
        return cls(
            ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            thresh=opts.OHEM_THRESH,
            min_kept=opts.OHEM_MIN_KEPT,
            class_weights=_class_weights(cfg),
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        pixel_losses = F.cross_entropy(
            logits,
            targets,
            weight=self._weight(logits),
            ignore_index=self.ignore_value,
            reduction="none",
        ).reshape(-1)
        flat_targets = targets.reshape(-1)
        valid = flat_targets != self.ignore_value
        with torch.no_grad():
            safe = torch.where(valid, flat_targets, torch.zeros_like(flat_targets))
            prob = F.softmax(logits.detach().float(), dim=1).gather(
                1, safe.view(targets.shape).unsqueeze(1)
            )
        keep = ohem_keep_mask(
            prob.reshape(-1), valid, self.thresh, self.min_kept, force_first=self.openseg
        )
        kept = pixel_losses[keep]
        if kept.numel() == 0:
            return _zero(logits)
        return kept.mean()


class _OpensegOhem:
    """Registry entry for openseg's formulation (same class, ``openseg=True``)."""

    @staticmethod
    def from_config(cfg: CfgNode, branch: str) -> OhemCrossEntropyLoss:
        loss = OhemCrossEntropyLoss.from_config(cfg, branch)
        loss.openseg = True
        return loss


SEM_SEG_LOSS_REGISTRY.register("ohem_cross_entropy_openseg")(_OpensegOhem)


@SEM_SEG_LOSS_REGISTRY.register("hard_pixel_mining")
class HardPixelMiningLoss(nn.Module):
    """Detectron2's DeepLab hard pixel mining (:class:`detectron2.projects.deeplab.loss.DeepLabCE`).

    The mean of the largest ``int(top_k * N*H*W)`` per-pixel (class-weighted) losses, where the
    count includes ignored pixels (their loss is 0); with ``top_k = 1`` the mean over all
    ``N*H*W`` pixels, ignored ones included (so not :class:`CrossEntropyLoss`). ``top_k`` is
    ``MODEL.SEM_SEG_HEAD.LOSS.HARD_PIXEL_TOP_K`` (Detectron2's DeepLab heads hard-code 0.2).

    Args:
        logits: ``[N, K, H, W]``.
        targets: ``[N, H, W]`` int64.

    Returns:
        Scalar loss (a graph-keeping zero when fewer than one pixel would be kept).
    """

    def __init__(
        self,
        *,
        ignore_value: int = 255,
        top_k: float = 0.2,
        class_weights: Optional[Sequence[float]] = None,
    ):
        super().__init__()
        if not 0.0 < top_k <= 1.0:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS.HARD_PIXEL_TOP_K must be in (0, 1], got {top_k}"
            )
        w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.deeplab_ce = DeepLabCE(ignore_label=ignore_value, top_k_percent_pixels=top_k, weight=w)
        self.top_k = top_k

    @classmethod
    def from_config(cls, cfg: CfgNode, branch: str) -> "HardPixelMiningLoss":
        return cls(
            ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            top_k=cfg.MODEL.SEM_SEG_HEAD.LOSS.HARD_PIXEL_TOP_K,
            class_weights=_class_weights(cfg),
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.top_k < 1.0 and int(self.top_k * targets.numel()) < 1:
            return _zero(logits)
        return self.deeplab_ce(logits, targets)


def _neighbour_vectors(x: Tensor, radius: int) -> Tensor:
    """``[N, C, H, W] -> [N, C, radius**2, (H - radius + 1) * (W - radius + 1)]``: the
    ``radius x radius`` window at each position (no padding), row-major offsets."""
    n, c, h, w = x.shape
    nh, nw = h - radius + 1, w - radius + 1
    parts = [x[:, :, dy : dy + nh, dx : dx + nw] for dy in range(radius) for dx in range(radius)]
    return torch.stack(parts, dim=2).reshape(n, c, radius * radius, nh * nw)


def rmi_lower_bound(labels: Tensor, probs: Tensor, radius: int, pos_alpha: float = 1e-3) -> Tensor:
    """Per-image, per-class RMI term ``0.5 * log det(M + alpha I)`` (Zhao et al. 2019, eq. 13).

    With ``Y`` (labels) and ``P`` (probabilities) the ``d = radius**2``-dimensional window
    vectors at all positions, centred: ``M = Y Y^T - (Y P^T)(P P^T + alpha I)^{-1}(Y P^T)^T``,
    the (unnormalised, as openseg: no division by the number of positions) covariance of ``Y``
    given ``P``. Computed in float64; the log-det through a Cholesky factor
    (``2 * sum log(diag(L) + 1e-8)``, openseg's form).

    Args:
        labels: ``[N, K, H, W]`` one-hot labels (zero at ignored pixels).
        probs: ``[N, K, H, W]`` probabilities.
        radius: window side (openseg: 3).
        pos_alpha: the ``alpha`` added to both matrices (openseg's ``_POS_ALPHA`` = 1e-3).

    Returns:
        ``[N, K]`` float64.
    """
    d = radius * radius
    y = _neighbour_vectors(labels, radius).double()
    p = _neighbour_vectors(probs, radius).double()
    y = y - y.mean(dim=3, keepdim=True)
    p = p - p.mean(dim=3, keepdim=True)
    eye = torch.eye(d, dtype=torch.float64, device=y.device)
    cov_y = y @ y.transpose(2, 3)
    cov_p = p @ p.transpose(2, 3) + pos_alpha * eye
    cov_yp = y @ p.transpose(2, 3)
    chol_p = torch.linalg.cholesky(cov_p)
    cond = cov_y - cov_yp @ torch.cholesky_solve(cov_yp.transpose(2, 3), chol_p)
    cond = 0.5 * (cond + cond.transpose(2, 3)) + pos_alpha * eye
    chol = torch.linalg.cholesky(cond)
    return torch.log(torch.diagonal(chol, dim1=-2, dim2=-1) + 1e-8).sum(-1)  # = 0.5 * logdet


@SEM_SEG_LOSS_REGISTRY.register("rmi")
class RMILoss(nn.Module):
    """Region mutual information loss (Zhao, Wang, Cai, Sun, NeurIPS 2019), as openseg's
    ``RMILoss.forward_sigmoid`` (branch pytorch-1.7), the loss of its OCR+RMI numbers.

    On per-class sigmoid probabilities (``use_sigmoid`` is ignored there: the sigmoid path is
    the one run), with ``valid`` the non-ignored pixels and ``Y`` the one-hot labels (0 at
    ignored pixels):

    * ``bce = sum_{valid i, c} BCEWithLogits(logits[c, i], Y[c, i]) / (#valid + 1)``;
    * probabilities ``sigmoid(logits) * valid + 1e-6`` and ``Y`` are downsampled
      (``RMI_POOL_TYPE`` "max"/"avg": kernel = stride = ``RMI_POOL_STRIDE``, padding
      stride // 2; "interpolate": to ``(H // s, W // s)``, nearest for labels, bilinear
      ``align_corners=True`` for probabilities; stride 1: none);
    * ``rmi = sum_c mean_n rmi_lower_bound(Y, P, RMI_RADIUS)[n, c] / RMI_RADIUS**2``;
    * loss ``= RMI_LAMBDA * bce + (1 - RMI_LAMBDA) * rmi`` (openseg ``lambda_way: 1``,
      ``loss_weight_lambda: 0.5``).

    The RMI term can be negative (a log-det); only its gradient matters. When the downsampled
    map is smaller than the window the RMI term is 0 (the BCE term remains). Class weights are
    not used (openseg's RMI takes none).

    Args:
        logits: ``[N, K, H, W]``.
        targets: ``[N, H, W]`` int64.

    Returns:
        Scalar loss.
    """

    def __init__(
        self,
        *,
        ignore_value: int = 255,
        radius: int = 3,
        pool_stride: int = 3,
        pool_type: str = "max",
        bce_lambda: float = 0.5,
        pos_alpha: float = 1e-3,
    ):
        super().__init__()
        if not (isinstance(radius, int) and 1 <= radius <= 10):
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS.RMI_RADIUS must be an integer in 1..10, got {radius!r}"
            )
        if not (isinstance(pool_stride, int) and pool_stride >= 1):
            raise ValueError(
                "MODEL.SEM_SEG_HEAD.LOSS.RMI_POOL_STRIDE must be an integer >= 1, "
                f"got {pool_stride!r}"
            )
        if pool_type not in RMI_POOL_TYPES:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS.RMI_POOL_TYPE is {pool_type!r}; "
                f"allowed values: {', '.join(RMI_POOL_TYPES)}"
            )
        if not 0.0 <= bce_lambda <= 1.0:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS.RMI_LAMBDA must be in [0, 1], got {bce_lambda}"
            )
        self.ignore_value = ignore_value
        self.radius = radius
        self.pool_stride = pool_stride
        self.pool_type = pool_type
        self.bce_lambda = bce_lambda
        self.pos_alpha = pos_alpha

    @classmethod
    def from_config(cls, cfg: CfgNode, branch: str) -> "RMILoss":
        opts = cfg.MODEL.SEM_SEG_HEAD.LOSS
        return cls(
            ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            radius=opts.RMI_RADIUS,
            pool_stride=opts.RMI_POOL_STRIDE,
            pool_type=opts.RMI_POOL_TYPE,
            bce_lambda=opts.RMI_LAMBDA,
        )

    def _downsample(self, labels: Tensor, probs: Tensor) -> Tuple[Tensor, Tensor]:
        s = self.pool_stride
        if s == 1:
            return labels, probs
        if self.pool_type == "max":
            return (F.max_pool2d(labels, s, s, s // 2), F.max_pool2d(probs, s, s, s // 2))
        if self.pool_type == "avg":
            return (F.avg_pool2d(labels, s, s, s // 2), F.avg_pool2d(probs, s, s, s // 2))
        size = (max(1, labels.shape[2] // s), max(1, labels.shape[3] // s))
        return (
            F.interpolate(labels, size=size, mode="nearest"),
            F.interpolate(probs, size=size, mode="bilinear", align_corners=True),
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        k = logits.shape[1]
        valid = (targets != self.ignore_value) & (targets >= 0) & (targets < k)
        mask = valid.unsqueeze(1).to(logits.dtype)
        onehot = F.one_hot(torch.where(valid, targets, torch.zeros_like(targets)), k).permute(
            0, 3, 1, 2
        )
        onehot = onehot.to(logits.dtype) * mask
        bce = (F.binary_cross_entropy_with_logits(logits, onehot, reduction="none") * mask).sum()
        bce = bce / (valid.sum() + 1.0)
        probs = torch.sigmoid(logits) * mask + 1e-6
        labels, probs = self._downsample(onehot, probs)
        if labels.shape[2] < self.radius or labels.shape[3] < self.radius:
            rmi = _zero(logits)
        else:
            per_image_class = rmi_lower_bound(labels, probs, self.radius, self.pos_alpha)  # [N, K]
            rmi = (per_image_class.mean(dim=0) / (self.radius * self.radius)).sum().to(logits.dtype)
        loss = self.bce_lambda * bce + (1.0 - self.bce_lambda) * rmi
        return torch.where(valid.any(), loss, _zero(logits))


def lovasz_softmax_flat(probs: Tensor, labels: Tensor, classes: str = "present") -> Tensor:
    """Lovasz-softmax of flattened pixels (Berman, Rannen Triki, Blaschko, CVPR 2018, eq. 12).

    For each class ``c``: errors ``m_i = |[y_i = c] - p_i(c)|`` sorted descending, and the
    loss ``sum_i m_(i) g_i`` with ``g`` the increments of the Jaccard loss
    ``Delta(S) = |S| / |{y = c} u S|`` along the sorted order (Lovasz extension of the Jaccard
    loss, Algorithm 1); the mean over the classes present in ``labels`` (``classes="present"``)
    or over all classes (``"all"``; an absent class contributes ``max_i p_i(c)``).

    Args:
        probs: ``[P, K]`` class probabilities of the valid pixels.
        labels: ``[P]`` int64 in ``[0, K)``.
        classes: "present" or "all".

    Returns:
        Scalar; a graph-keeping zero with no pixel (or no class to average).
    """
    if probs.numel() == 0:
        return probs.sum() * 0.0
    k = probs.shape[1]
    fg = F.one_hot(labels, k).t().to(probs.dtype)  # [K, P]
    errors = (fg - probs.t()).abs()
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    fg_sorted = torch.gather(fg, 1, order)
    gts = fg_sorted.sum(dim=1, keepdim=True)
    intersection = gts - fg_sorted.cumsum(dim=1)
    union = gts + (1.0 - fg_sorted).cumsum(dim=1)
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    per_class = (errors_sorted * grad).sum(dim=1)  # [K]
    if classes == "present":
        present = gts.squeeze(1) > 0
        if not bool(present.any()):
            return probs.sum() * 0.0
        return per_class[present].mean()
    return per_class.mean()


@SEM_SEG_LOSS_REGISTRY.register("lovasz_softmax")
class LovaszSoftmaxLoss(nn.Module):
    """Lovasz-softmax loss on softmax probabilities (Berman et al., CVPR 2018), the surrogate of
    the per-class Jaccard index; :func:`lovasz_softmax_flat` on the non-ignored pixels.

    ``LOVASZ_PER_IMAGE: False`` sorts all valid pixels of the (per-process) batch together;
    ``True`` averages per-image losses over the images (an image without valid pixels
    contributes 0, as in Berman's reference code). ``LOVASZ_CLASSES``: "present" or "all".
    Class weights are not used.

    Args:
        logits: ``[N, K, H, W]``.
        targets: ``[N, H, W]`` int64.

    Returns:
        Scalar loss.
    """

    def __init__(
        self, *, ignore_value: int = 255, per_image: bool = False, classes: str = "present"
    ):
        super().__init__()
        if classes not in LOVASZ_CLASS_MODES:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS.LOVASZ_CLASSES is {classes!r}; "
                f"allowed values: {', '.join(LOVASZ_CLASS_MODES)}"
            )
        self.ignore_value = ignore_value
        self.per_image = per_image
        self.classes = classes

    @classmethod
    def from_config(cls, cfg: CfgNode, branch: str) -> "LovaszSoftmaxLoss":
        opts = cfg.MODEL.SEM_SEG_HEAD.LOSS
        return cls(
            ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            per_image=bool(opts.LOVASZ_PER_IMAGE),
            classes=opts.LOVASZ_CLASSES,
        )

    def _flat(self, logits: Tensor, targets: Tensor) -> Tensor:
        k = logits.shape[1]
        probs = F.softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, k)
        labels = targets.reshape(-1)
        valid = labels != self.ignore_value
        return lovasz_softmax_flat(probs[valid], labels[valid], self.classes) + _zero(logits)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.per_image:
            return torch.stack(
                [self._flat(logits[i : i + 1], targets[i : i + 1]) for i in range(logits.shape[0])]
            ).mean()
        return self._flat(logits, targets)


def registered_loss_types() -> Tuple[str, ...]:
    """The loss names of :data:`SEM_SEG_LOSS_REGISTRY`, sorted."""
    return SEM_SEG_LOSS_REGISTRY.names()


def build_sem_seg_loss(cfg: CfgNode, branch: str = "main") -> nn.Module:
    """The loss of ``branch`` ("main" or "aux") named by its config key (:data:`LOSS_TYPE_KEYS`).

    Raises:
        ValueError: unknown branch, or a loss name that is not registered (the message names
            the key and the allowed values), or an invalid option of ``MODEL.SEM_SEG_HEAD.LOSS``.
    """
    if branch not in LOSS_TYPE_KEYS:
        raise ValueError(f"loss branch must be one of {sorted(LOSS_TYPE_KEYS)}, got {branch!r}")
    key = LOSS_TYPE_KEYS[branch]
    name = cfg.MODEL.SEM_SEG_HEAD.get(key, "cross_entropy")
    if name not in SEM_SEG_LOSS_REGISTRY:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.{key} is {name!r}; "
            f"allowed values: {', '.join(registered_loss_types())}"
        )
    return SEM_SEG_LOSS_REGISTRY.get(name).from_config(cfg, branch)
