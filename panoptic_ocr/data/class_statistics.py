"""Class weights from pixel counts, for ``MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS`` (docs/losses.md).

The Cityscapes weights the authors used (HRNet-OCR's ``lib/datasets/cityscapes.py``, openseg's
``ce_weight``) are facts copied into the recipe configs; this module derives weights for other
datasets from their training-set pixel counts.
"""

from typing import Optional, Sequence

import numpy as np

__all__ = ["CLASS_WEIGHT_METHODS", "class_weights_from_frequencies"]

CLASS_WEIGHT_METHODS = ("enet", "median_frequency", "inverse_frequency")


def class_weights_from_frequencies(
    pixel_counts: Sequence[float],
    method: str = "enet",
    *,
    image_pixel_totals: Optional[Sequence[float]] = None,
    enet_c: float = 1.02,
    normalize: bool = False,
) -> np.ndarray:
    """Per-class loss weights from per-class pixel counts.

    With ``f_c = n_c / sum_k n_k`` (the class's share of the labelled pixels):

    * ``"enet"``: ``w_c = 1 / ln(c + f_c)``, ``c = 1.02`` (Paszke et al., ENet 2016, sec. 5.2);
      bounded by ``1 / ln(c)`` (about 50.5) for rare classes that occur.
    * ``"median_frequency"``: median frequency balancing (Eigen & Fergus, ICCV 2015):
      ``w_c = median(freq) / freq_c`` with ``freq_c = n_c / T_c``, ``T_c`` the total pixel count
      of the images in which class ``c`` appears (``image_pixel_totals``); without it ``T_c``
      is the total labelled pixel count (then ``freq_c = f_c``). The median is over the
      classes that occur.
    * ``"inverse_frequency"``: ``w_c = 1 / f_c``.

    Classes with no pixel get weight 0 under every method: nothing was measured for them (and
    under "enet" the formula would give them the largest weight, ``1 / ln(c)``).

    Args:
        pixel_counts: ``[K]`` non-negative labelled-pixel counts per class (ignored pixels
            excluded).
        method: one of :data:`CLASS_WEIGHT_METHODS`.
        image_pixel_totals: ``[K]``, for "median_frequency" only (see above).
        enet_c: ENet's constant ``c`` (> 1).
        normalize: rescale so that the weights of the classes that occur average 1.

    Returns:
        ``[K]`` float64 weights.

    Raises:
        ValueError: unknown method, negative counts, no labelled pixel, or a bad ``enet_c``.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    if method not in CLASS_WEIGHT_METHODS:
        raise ValueError(f"method is {method!r}; allowed values: {', '.join(CLASS_WEIGHT_METHODS)}")
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("pixel_counts must be a 1-D sequence of non-negative counts")
    total = counts.sum()
    if total <= 0:
        raise ValueError("pixel_counts has no labelled pixel")
    present = counts > 0
    freq = counts / total
    weights = np.zeros_like(counts)
    if method == "enet":
        if enet_c <= 1.0:
            raise ValueError(f"enet_c must be > 1, got {enet_c}")
        weights[present] = 1.0 / np.log(enet_c + freq[present])
    elif method == "inverse_frequency":
        weights[present] = 1.0 / freq[present]
    else:
        if image_pixel_totals is not None:
            totals = np.asarray(image_pixel_totals, dtype=np.float64)
            if totals.shape != counts.shape or (totals[present] <= 0).any():
                raise ValueError(
                    "image_pixel_totals must have one positive total per class that occurs"
                )
            freq = np.where(present, counts / np.where(totals > 0, totals, 1.0), 0.0)
        weights[present] = np.median(freq[present]) / freq[present]
    if normalize:
        weights = weights / weights[present].mean()
    return weights
