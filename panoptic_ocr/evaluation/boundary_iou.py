"""Boundary IoU of semantic segmentations (Cheng, Girshick, Dollar, Berg & Kirillov, CVPR 2021):
the IoU of each class measured only on the band of pixels within ``d`` of its mask's contour, so
that it scores where boundaries are placed (plain IoU of a large region is dominated by its
interior, which hides a misplaced boundary).

For one class with ground-truth mask G and predicted mask P, ``G_d`` are the pixels of G within
``d`` (Chebyshev distance, ``d`` = ``dilation_ratio`` x the image diagonal, at least 1 pixel) of
G's contour, the image border counting as contour (as in the authors' reference code), ``P_d``
likewise; the class's boundary IoU over a dataset is ``sum |G_d & P_d| / sum |G_d | P_d|`` over
its images. Pixels labelled ``ignore_label`` count in neither band. ``mBIoU`` is the mean over the
classes whose union is not empty.
"""

import math
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor

from .label_file_evaluator import LabelFileEvaluator

__all__ = [
    "BoundaryIoUEvaluator",
    "boundary_bands",
    "boundary_iou_counts",
    "boundary_width",
    "mean_boundary_iou",
]


def boundary_width(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """``d`` in pixels: ``round(dilation_ratio * sqrt(height^2 + width^2))``, at least 1."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def boundary_bands(labels: Tensor, num_classes: int, width: int) -> Tensor:
    """Per class, the pixels of its mask within ``width`` of the mask's contour: ``[H, W]``
    integer labels -> ``[K, H, W]`` bool (a pixel of class k whose ``(2 width + 1)^2``
    neighbourhood leaves the mask or the image). One chessboard distance transform per class
    present (OpenCV, linear in the pixels), so any ``width`` costs the same."""
    array = labels.cpu().numpy()
    bands = np.zeros((num_classes,) + array.shape, dtype=bool)
    for k in np.unique(array):
        if not 0 <= k < num_classes:
            continue
        mask = np.pad((array == k).astype(np.uint8), 1)  # the image border counts as contour
        distance = cv2.distanceTransform(mask, cv2.DIST_C, 3)[1:-1, 1:-1]
        bands[k] = (distance > 0) & (distance <= width)
    return torch.from_numpy(bands)


def boundary_iou_counts(
    prediction: Tensor,
    label: Tensor,
    num_classes: int,
    ignore_label: int = 255,
    dilation_ratio: float = 0.02,
) -> Tuple[Tensor, Tensor]:
    """Per-class intersection and union (``[K]`` int64) of the boundary bands of one image's
    ``prediction`` and ``label`` (``[H, W]`` class ids; ``ignore_label`` pixels excluded)."""
    if prediction.shape != label.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in size"
        )
    width = boundary_width(*label.shape, dilation_ratio)
    valid = label != ignore_label
    gt = boundary_bands(label, num_classes, width) & valid
    pred = boundary_bands(prediction, num_classes, width) & valid
    return (gt & pred).flatten(1).sum(1), (gt | pred).flatten(1).sum(1)


def mean_boundary_iou(intersection: Tensor, union: Tensor) -> Tuple[float, List[float]]:
    """``(mBIoU, per-class BIoU)`` in percent; a class with an empty union is NaN and left out of
    the mean."""
    per_class = [
        float("nan") if u == 0 else 100.0 * float(i) / float(u)
        for i, u in zip(intersection.tolist(), union.tolist())
    ]
    present = [v for v in per_class if not math.isnan(v)]
    return (sum(present) / len(present) if present else float("nan")), per_class


class BoundaryIoUEvaluator(LabelFileEvaluator):
    """Boundary IoU over a registered semantic dataset (``sem_seg_file_name`` labels, the
    metadata's ``stuff_classes`` and ``ignore_label``), from outputs ``{"sem_seg": [K, H, W]}``.

    ``evaluate()`` returns ``{"sem_seg_boundary": {"mBIoU", "BIoU-<class>"..., "num_images"}}``
    (None off the main process).
    """

    def __init__(self, dataset_name: str, dilation_ratio: float = 0.02, distributed: bool = True):
        super().__init__(dataset_name, distributed)
        self._dilation_ratio = dilation_ratio
        self.reset()

    def reset(self) -> None:
        # per class: intersection, union; then the number of images
        self._counts = np.zeros(2 * len(self._classes) + 1, dtype=np.int64)

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        k = len(self._classes)
        for record, output in zip(inputs, outputs):
            label = torch.from_numpy(self.label_of(record))
            prediction = output["sem_seg"].argmax(dim=0).cpu()
            i, u = boundary_iou_counts(
                prediction, label, k, self._ignore_label, self._dilation_ratio
            )
            self._counts[:k] += i.numpy()
            self._counts[k : 2 * k] += u.numpy()
            self._counts[-1] += 1

    def evaluate(self) -> Optional[Dict]:
        counts = self.summed(self._counts)
        if counts is None:
            return None
        k = len(self._classes)
        mean, per_class = mean_boundary_iou(
            torch.from_numpy(counts[:k]), torch.from_numpy(counts[k : 2 * k])
        )
        result = {"mBIoU": mean, "num_images": int(counts[-1])}
        result.update({f"BIoU-{name}": v for name, v in zip(self._classes, per_class)})
        return {"sem_seg_boundary": result}
