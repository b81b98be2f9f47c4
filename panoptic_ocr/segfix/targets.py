r"""Ground truth of SegFix (Yuan, Xie, Chen & Wang, "SegFix: Model-Agnostic Boundary Refinement
for Segmentation", ECCV 2020): which pixels lie on a boundary and, for those, the direction
towards the interior of their own region, from which a refinement offset is read (Sec. 3.1-3.2).

The recipe follows the authors' offline generator
(``lib/datasets/preprocess/cityscapes/dt_offset_generator.py`` in openseg-group/openseg.pytorch)
and the label conversion in ``lib/utils/helpers/offset_helper.py`` and ``lib/loss/loss_helper.py``
there:

1. Per class (the whole class mask, not its connected components), the Euclidean distance
   transform of the mask: each pixel's distance to the nearest pixel of another label. Pixels
   labelled ``ignore_label`` belong to no class, so they count as outside every region; the image
   border does not (a region touching it is not a boundary there, and a class that fills the
   image has no boundary at all: its distance is ``inf``). A class covering fewer than
   ``min_area`` pixels of the image (100, as openseg) gets no transform: its distance stays 0, so
   all its pixels are boundary pixels, with the direction of a zero gradient (below).
2. Boundary pixels: labelled pixels with ``floor(distance) <= max_distance`` (default 5). openseg
   stores the distance as ``uint8``, truncating it, so the band is ``distance < max_distance + 1``:
   on a straight edge the ``max_distance`` pixels next to it.
3. Direction: the gradient ``(gy, gx)`` of the class's distance map, taken with the 5 x 5 kernel
   ``k(dy, dx) = (dy or dx) / (dy^2 + dx^2)`` (the generator's default ``--ksize 5``; the 11 x 11
   ``Sobel.ksize`` of ``offset_helper.py`` serves other code paths), as a correlation over the
   per-class map that is zero outside the class and zero-padded at the image border (so near the
   image border the gradient also leans away from it). It points into the region. Its angle
   ``atan2(gy, gx)`` (degrees, rows growing downwards) is binned into 8 sectors of 45 degrees:
   bin ``i`` is the half-open sector ``(c - 22.5, c + 22.5]`` around ``c = -180 + 45 i``, whose
   vector ``(dy, dx)`` is :data:`DIRECTION_VECTORS` ``[i]``; these are openseg's
   ``label_to_vector_mapping[8]`` in its order, so converted openseg direction heads keep their
   channel order. A zero gradient has angle 0, bin 4, ``(0, +1)``.

Deviations from openseg, all where its result is an accident of storage or round-off: the angle
is binned exactly (openseg stores it floored to 2 degrees, which moves the sector edges by under
2 degrees); a gradient below ``1e-4 (1 + distance)`` is zero (on a ridge of the distance map,
e.g. a diagonal's middle, the true gradient vanishes and openseg's direction is float noise;
here it is bin 4); a class with no pixel outside it has distance ``inf`` (scipy's result there
is undefined).

The direction target is given on boundary pixels only by default; openseg's loss takes the
direction of every labelled pixel and keeps those that the model predicts as boundary, for which
``interior_directions=True`` gives the direction everywhere.

Speed: each class's transform and gradient are computed on its bounding box grown by one pixel,
which is exact (the nearest pixel outside a class always lies in that box) and makes small
classes cheap. On this project's machine (2 shared CPU cores, load ~2.7), a 1024 x 2048 label
takes 0.13 s: the Cityscapes val label ``frankfurt_000000_000294`` (stored at 128 x 256, 10
classes + ignore) upsampled x8; a synthetic street-like map of 16 classes + ignore (bands of
road, sidewalk, building, vegetation, sky and 1-5 boxes of each other class) 0.18 s::

    F=$(ls ../shared/data/cityscapes/gtFine/val/frankfurt/*labelTrainIds.png) \
    .venv/bin/python -m timeit -s "import os, cv2; from panoptic_ocr.segfix import segfix_targets" \
        -s "l = cv2.resize(cv2.imread(os.environ['F'], 0), (2048, 1024), interpolation=0)" \
        "segfix_targets(l)"
"""

from typing import Tuple, Union

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DIRECTION_VECTORS",
    "GRADIENT_KERNEL_SIZE",
    "MIN_CLASS_AREA",
    "NUM_DIRECTIONS",
    "direction_offsets",
    "gradient_kernels",
    "segfix_targets",
]

# (dy, dx) of each direction bin, in openseg's order (``label_to_vector_mapping[8]``): bin i is
# the angle atan2(dy, dx) = -180 + 45 i degrees, from "left" clockwise on the screen.
DIRECTION_VECTORS: Tuple[Tuple[int, int], ...] = (
    (0, -1),
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
)
NUM_DIRECTIONS = len(DIRECTION_VECTORS)
GRADIENT_KERNEL_SIZE = 5  # openseg's dt_offset_generator.py default --ksize
MIN_CLASS_AREA = 100  # openseg skips the distance transform of classes smaller than this
_FLAT_GRADIENT = 1e-4  # per unit of distance: float32 round-off of the gradient is ~1e-6


def gradient_kernels(size: int = GRADIENT_KERNEL_SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """The ``(ky, kx)`` correlation kernels (``[size, size]`` float32, odd ``size``) that estimate
    the gradient of a distance map: at offset ``(dy, dx)`` from the centre, ``dy / (dy^2 + dx^2)``
    and ``dx / (dy^2 + dx^2)``, 0 at the centre."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and at least 3, got {size}")
    r = size // 2
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
    norm = dy * dy + dx * dx
    norm[r, r] = 1.0  # the centre's numerators are 0
    return dy / norm, dx / norm


def _angle_bins(gy: np.ndarray, gx: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Direction bins (``uint8``) of gradients at pixels of the given distance: bin i holds
    angles in ``(c - 22.5, c + 22.5]`` degrees, ``c = -180 + 45 i``; the zero vector is bin 4."""
    # A gradient at round-off level (on a ridge of the distance map, where it vanishes; openseg's
    # direction there is float noise) counts as zero.
    scale = 1.0 + np.minimum(distance, np.float32(1e6))
    flat = np.hypot(gy, gx) < _FLAT_GRADIENT * scale
    # ... and is +0.0 (-0.0 would give the angle 180): angle 0, bin 4.
    gy = np.where(flat, 0.0, gy)
    gx = np.where(flat, 0.0, gx)
    angle = np.degrees(np.arctan2(gy, gx))
    step = 360.0 / NUM_DIRECTIONS
    bins = np.ceil((angle + 180.0 + step / 2) / step) - 1
    return (bins.astype(np.int64) % NUM_DIRECTIONS).astype(np.uint8)


def _class_areas(label: np.ndarray, ignore_label: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(classes, pixel counts)`` of the labels present, ``ignore_label`` left out."""
    if label.size and 0 <= label.min() and label.max() < 65536:
        counts = np.bincount(label.ravel().astype(np.intp, copy=False))
        classes = np.flatnonzero(counts)
        areas = counts[classes]
    else:
        classes, areas = np.unique(label, return_counts=True)
    keep = classes != ignore_label
    return classes[keep], areas[keep]


def segfix_targets(
    label: np.ndarray,
    ignore_label: int = 255,
    max_distance: int = 5,
    num_directions: int = NUM_DIRECTIONS,
    min_area: int = MIN_CLASS_AREA,
    kernel_size: int = GRADIENT_KERNEL_SIZE,
    interior_directions: bool = False,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SegFix targets of one label map (see the module docstring for the recipe).

    Args:
        label: ``[H, W]`` integer class ids, ``ignore_label`` for unlabelled pixels.
        ignore_label: the unlabelled id; it is outside every class and gets no target.
        max_distance: boundary pixels are those with ``floor(distance) <= max_distance``.
        num_directions: direction bins; only openseg's 8 are supported.
        min_area: classes with fewer pixels are all boundary (openseg: 100; 0 disables).
        kernel_size: side of the gradient kernel (openseg: 5).
        interior_directions: give the direction on every labelled pixel, not only on
            boundary pixels.

    Returns:
        ``(boundary, direction, distance)``: ``boundary`` ``[H, W]`` uint8, 1 on boundary pixels,
        0 elsewhere, 255 on ignored pixels; ``direction`` ``[H, W]`` uint8 bin in
        ``0..num_directions-1`` (:data:`DIRECTION_VECTORS`), 255 on ignored and (unless
        ``interior_directions``) non-boundary pixels; ``distance`` ``[H, W]`` float32 distance to
        the nearest pixel of another label (0 on ignored pixels and on classes under
        ``min_area``, ``inf`` for a class filling the image).
    """
    label = np.asarray(label)
    if label.ndim != 2 or label.dtype.kind not in "iub":
        raise ValueError(f"label must be a [H, W] integer array, got {label.dtype} {label.shape}")
    if num_directions != NUM_DIRECTIONS:
        raise ValueError(
            f"only {NUM_DIRECTIONS} direction bins are supported, not {num_directions}"
        )
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    h, w = label.shape
    ky, kx = gradient_kernels(kernel_size)
    distance = np.zeros((h, w), dtype=np.float32)
    gy = np.zeros((h, w), dtype=np.float32)
    gx = np.zeros((h, w), dtype=np.float32)

    classes, areas = _class_areas(label, ignore_label)
    for c, area in zip(classes.tolist(), areas.tolist()):
        if area < min_area:
            continue
        if area == h * w:
            distance[:] = np.inf  # nothing outside the class: no boundary, zero gradient
            continue
        mask = label == c
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        # The bounding box grown by one pixel (within the image) holds the nearest outside pixel
        # of every class pixel; beyond it the class's distance map is 0, as the zero padding.
        y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, h)
        x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, w)
        inside = mask[y0:y1, x0:x1]
        crop = np.ascontiguousarray(inside, dtype=np.uint8)
        d = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        # Squared distances are integers: rounding them makes the small ones, which decide the
        # band, exact (OpenCV gives 6 as 5.9999995).
        d = np.sqrt(np.rint(d * d))
        d_gy = cv2.filter2D(d, cv2.CV_32F, ky, borderType=cv2.BORDER_CONSTANT)
        d_gx = cv2.filter2D(d, cv2.CV_32F, kx, borderType=cv2.BORDER_CONSTANT)
        np.copyto(distance[y0:y1, x0:x1], d, where=inside)
        np.copyto(gy[y0:y1, x0:x1], d_gy, where=inside)
        np.copyto(gx[y0:y1, x0:x1], d_gx, where=inside)

    valid = label != ignore_label
    on_boundary = valid & (distance < max_distance + 1)
    boundary = np.where(valid, on_boundary, 255).astype(np.uint8)
    direction = np.full((h, w), 255, dtype=np.uint8)
    where = valid if interior_directions else on_boundary
    direction[where] = _angle_bins(gy[where], gx[where], distance[where])
    return boundary, direction, distance


def direction_offsets(
    direction: Union[Tensor, np.ndarray], scale: int = 2
) -> Union[Tensor, np.ndarray]:
    """Per-pixel offsets ``scale * DIRECTION_VECTORS[bin]`` of direction bins ``[..., H, W]``
    (tensor or array): ``[..., 2, H, W]`` int64 ``(dy, dx)``, ``(0, 0)`` where the bin is not in
    ``0..7`` (e.g. 255, no direction). ``scale`` 2 is openseg's offline refinement default."""
    if isinstance(direction, Tensor):
        table = torch.tensor(DIRECTION_VECTORS, dtype=torch.int64, device=direction.device)
        d = direction.long()
        valid = (d >= 0) & (d < NUM_DIRECTIONS)
        vectors = table[d.clamp(0, NUM_DIRECTIONS - 1)] * (valid.unsqueeze(-1) * scale)
        return vectors.movedim(-1, -3)
    table = np.asarray(DIRECTION_VECTORS, dtype=np.int64)
    d = np.asarray(direction).astype(np.int64)
    valid = (d >= 0) & (d < NUM_DIRECTIONS)
    vectors = table[np.clip(d, 0, NUM_DIRECTIONS - 1)] * (valid[..., None] * scale)
    return np.moveaxis(vectors, -1, -3)
