"""SegFix (Yuan, Xie, Chen & Wang, ECCV 2020): boundary and direction ground truth, and the
offset-based refinement of a segmentation."""

from .refine import refine_labels, refine_logits, refine_with_offsets, segfix_offsets
from .targets import (
    DIRECTION_VECTORS,
    GRADIENT_KERNEL_SIZE,
    MIN_CLASS_AREA,
    NUM_DIRECTIONS,
    direction_offsets,
    gradient_kernels,
    segfix_targets,
)
