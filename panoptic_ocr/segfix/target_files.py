"""SegFix targets cached as files: computed once per label at its full size by a prepare step
(``datasets/prepare_segfix_targets.py``, :mod:`panoptic_ocr.segfix.prepare_targets`), read by
the "segfix" mapper with ``MODEL.SEGFIX.TARGETS "cached"`` and carried through the same
augmentations as the label, as openseg's loader does with its precomputed ``dt_offset`` files.

One target file per label: an 8-bit PNG, :data:`NOT_BOUNDARY` (8) on labelled pixels off the
boundary, the direction bin 0..7 on boundary pixels, :data:`NO_TARGET` (255) on ignored ones
(:func:`encode_targets`). Boundary and direction therefore travel together through every
resize, crop and pad by nearest neighbour, and a flip permutes the bins
(:func:`direction_permutation`).

Cached targets are those of the full label, so they differ from the targets of an augmented
crop (``MODEL.SEGFIX.TARGETS "online"``) in two ways, both openseg's: a crop's edge is not a
boundary, and a rescale by s turns the band of ``MAX_DISTANCE`` pixels into one of about
``s * MAX_DISTANCE``.
"""

import os
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from detectron2.data import transforms as T

from ..data.image_files import read_label_file
from .targets import DIRECTION_VECTORS, NUM_DIRECTIONS, segfix_targets

PathLike = Union[str, os.PathLike]

__all__ = [
    "NOT_BOUNDARY",
    "NO_TARGET",
    "StaleTargetFile",
    "augment_targets",
    "decode_targets",
    "default_targets_dir",
    "direction_permutation",
    "encode_targets",
    "read_target_file",
    "target_file_path",
    "targets_of_label",
]

NOT_BOUNDARY = NUM_DIRECTIONS  # labelled pixel off the boundary
NO_TARGET = 255  # ignored pixel (and padding)


class StaleTargetFile(FileNotFoundError):
    """A cached target file is missing, older than its label, or of another size."""


def default_targets_dir() -> str:
    """``$DETECTRON2_DATASETS/segfix_targets`` (``datasets/segfix_targets`` when unset): a tree
    of its own, since a target file beside its label would be taken for a label by the loaders
    that list a folder's PNGs."""
    return os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "segfix_targets")


def target_file_path(
    label_file: PathLike, max_distance: int, targets_dir: Optional[PathLike] = None
) -> str:
    """Where the targets of ``label_file`` are cached: ``<stem>_segfix<max_distance>.png`` under
    ``targets_dir`` (default :func:`default_targets_dir`), at the label's path relative to
    ``$DETECTRON2_DATASETS`` when it lies there, else at its absolute path."""
    label_file = os.path.abspath(os.fspath(label_file))
    datasets_root = os.path.abspath(os.getenv("DETECTRON2_DATASETS", "datasets"))
    if label_file.startswith(datasets_root + os.sep):
        relative = os.path.relpath(label_file, datasets_root)
    else:
        relative = label_file.lstrip(os.sep)
    folder, name = os.path.split(relative)
    root = os.fspath(targets_dir) if targets_dir else default_targets_dir()
    return os.path.join(root, folder, f"{os.path.splitext(name)[0]}_segfix{max_distance}.png")


def encode_targets(boundary: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Pack :func:`~panoptic_ocr.segfix.targets.segfix_targets`'s ``boundary`` and ``direction``
    (``[H, W]`` uint8, 255 = no target) into one ``[H, W]`` uint8 map: the direction bin on
    boundary pixels, :data:`NOT_BOUNDARY` on other labelled pixels, :data:`NO_TARGET` on ignored
    ones."""
    packed = np.full(boundary.shape, NO_TARGET, dtype=np.uint8)
    packed[boundary == 0] = NOT_BOUNDARY
    on_boundary = boundary == 1
    packed[on_boundary] = direction[on_boundary]
    return packed


def _decode_tables() -> Tuple[np.ndarray, np.ndarray]:
    boundary = np.full(256, NO_TARGET, dtype=np.uint8)
    boundary[:NOT_BOUNDARY] = 1
    boundary[NOT_BOUNDARY] = 0
    direction = np.full(256, NO_TARGET, dtype=np.uint8)
    direction[:NOT_BOUNDARY] = np.arange(NOT_BOUNDARY)
    return boundary, direction


_BOUNDARY_OF, _DIRECTION_OF = _decode_tables()


def decode_targets(packed: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(boundary, direction)`` of a packed ``[H, W]`` uint8 map, as
    :func:`~panoptic_ocr.segfix.targets.segfix_targets` gives them: boundary 1/0 and the
    direction bin on boundary pixels, :data:`NO_TARGET` (255) where there is none (any value
    above :data:`NOT_BOUNDARY`, e.g. padding) and, for the direction, off the boundary."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    return cv2.LUT(packed, _BOUNDARY_OF), cv2.LUT(packed, _DIRECTION_OF)


def targets_of_label(label: np.ndarray, ignore_label: int, max_distance: int) -> np.ndarray:
    """The packed targets (``[H, W]`` uint8) of a full ``[H, W]`` label map."""
    boundary, direction, _ = segfix_targets(label, ignore_label, max_distance)
    return encode_targets(boundary, direction)


def read_target_file(path: PathLike, label_file: PathLike, shape: Tuple[int, int]) -> np.ndarray:
    """Read the packed targets cached at ``path`` for ``label_file`` of size ``shape`` (H, W).

    Raises:
        StaleTargetFile: (a ``FileNotFoundError``) the file is missing, older than the label, or
            of another size; the message says how to write it again.
    """
    hint = (
        "write the targets with 'python datasets/prepare_segfix_targets.py DATASET' (see "
        'docs/segfix.md), or set MODEL.SEGFIX.TARGETS "online"'
    )
    try:
        target_time = os.path.getmtime(path)
    except OSError:
        raise StaleTargetFile(
            f"No cached SegFix targets '{path}' for label '{label_file}': {hint}"
        ) from None
    if target_time < os.path.getmtime(label_file):
        raise StaleTargetFile(
            f"Cached SegFix targets '{path}' are older than their label '{label_file}': {hint}"
        )
    packed = read_label_file(os.fspath(path))
    if packed.shape != tuple(shape) or packed.dtype != np.uint8:
        raise StaleTargetFile(
            f"Cached SegFix targets '{path}' are {packed.dtype} {packed.shape[::-1]} (WxH) but "
            f"label '{label_file}' is {tuple(shape)[::-1]}: {hint}"
        )
    return packed


def _flip_table(axis: int) -> np.ndarray:
    """Bin -> bin of the vectors ``(dy, dx)`` with component ``axis`` (0: dy, 1: dx) negated."""
    table = np.arange(256, dtype=np.uint8)
    for i, vector in enumerate(DIRECTION_VECTORS):
        flipped = list(vector)
        flipped[axis] = -flipped[axis]
        table[i] = DIRECTION_VECTORS.index(tuple(flipped))
    return table


_FLIP_X = _flip_table(1)
_FLIP_Y = _flip_table(0)


def direction_permutation(transform: T.Transform) -> Optional[np.ndarray]:
    """How ``transform`` maps direction bins: ``None`` if it keeps every direction (a resize,
    crop, pad, a photometric change), else a 256-entry uint8 lookup table (a horizontal or
    vertical flip). Decided from its action on coordinates, so any Detectron2 transform is
    classified.

    Raises:
        ValueError: the transform rotates or shears (the directions would change angle), naming it.
    """
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # (x, y)
    try:
        mapped = np.asarray(transform.apply_coords(points.copy()), dtype=np.float64)
    except NotImplementedError:
        mapped = None
    if mapped is not None and mapped.shape == points.shape:
        ex, ey = mapped[1] - mapped[0], mapped[2] - mapped[0]
        scale = max(abs(ex).max(), abs(ey).max(), 1e-12)
        if abs(ex[1]) <= 1e-6 * scale and abs(ey[0]) <= 1e-6 * scale and ex[0] and ey[1]:
            table = None
            if ex[0] < 0:
                table = _FLIP_X
            if ey[1] < 0:
                table = _FLIP_Y if table is None else _FLIP_Y[table]
            return table
    raise ValueError(
        f"{type(transform).__name__} rotates or shears the image, so the cached SegFix "
        'directions cannot follow it; use MODEL.SEGFIX.TARGETS "online" with this augmentation'
    )


def augment_targets(packed: np.ndarray, transforms: Sequence[T.Transform]) -> np.ndarray:
    """Apply the label's augmentations to a packed target map: each transform's
    ``apply_segmentation`` (nearest neighbour; padding gets :data:`NO_TARGET`), and the
    direction bins permuted by every flip (one lookup at the end)."""
    if isinstance(transforms, T.TransformList):
        transforms = transforms.transforms
    table = None
    for t in transforms:
        flip = direction_permutation(t)
        if flip is not None:
            table = flip if table is None else flip[table]
        if isinstance(t, T.PadTransform):
            t = T.PadTransform(
                t.x0, t.y0, t.x1, t.y1, t.orig_w, t.orig_h, t.pad_value, seg_pad_value=NO_TARGET
            )
        packed = t.apply_segmentation(packed)
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    return packed if table is None else cv2.LUT(packed, table)
