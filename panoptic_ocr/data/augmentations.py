"""Augmentations of the OCR paper's recipe (sec. 4.2) that Detectron2 does not ship."""

from typing import List, Tuple

import numpy as np
from detectron2.data import transforms as T

__all__ = ["RandomScale", "RandomBrightnessShift", "build_semantic_train_augmentations"]


class RandomScale(T.Augmentation):
    """Resize the image by a factor drawn uniformly from ``[min_scale, max_scale]``.

    Unlike Detectron2's ``ResizeScale`` the factor applies to the image's own size, as in
    the paper's "random scaling in the range of [0.5, 2]".
    """

    def __init__(self, min_scale: float, max_scale: float):
        super().__init__()
        if not 0 < min_scale <= max_scale:
            raise ValueError(
                f"RandomScale needs 0 < min_scale <= max_scale, got {min_scale}, {max_scale}"
            )
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        scale = np.random.uniform(self.min_scale, self.max_scale)
        new_h, new_w = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
        return T.ResizeTransform(h, w, new_h, new_w)


class RandomBrightnessShift(T.Augmentation):
    """Add one value drawn from ``[-delta, delta]`` to every pixel (paper: delta 10).

    Detectron2's ``RandomBrightness`` multiplies instead. Labels are untouched.
    """

    def __init__(self, delta: float):
        super().__init__()
        if delta < 0:
            raise ValueError(f"RandomBrightnessShift needs delta >= 0, got {delta}")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        shift = np.random.uniform(-self.delta, self.delta)

        def apply(img: np.ndarray) -> np.ndarray:
            out = img.astype(np.float32) + shift
            return np.clip(out, 0, 255).astype(img.dtype) if img.dtype == np.uint8 else out

        return T.ColorTransform(apply)


def build_semantic_train_augmentations(cfg) -> List[T.Augmentation]:
    """Random scale, crop padded with the ignore label, horizontal flip, brightness shift."""
    augs: List[T.Augmentation] = []
    min_scale, max_scale = cfg.INPUT.RANDOM_SCALE
    if (min_scale, max_scale) != (1.0, 1.0):
        augs.append(RandomScale(min_scale, max_scale))
    if (
        cfg.INPUT.MIN_SIZE_TRAIN
        and cfg.INPUT.MIN_SIZE_TRAIN[0] > 0
        and cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING != "none"
    ):
        augs.append(
            T.ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TRAIN,
                cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            )
        )
    if cfg.INPUT.CROP.ENABLED:
        crop: Tuple[int, int] = tuple(cfg.INPUT.CROP.SIZE)
        if cfg.INPUT.CROP.TYPE != "absolute":
            raise ValueError(
                "INPUT.CROP.TYPE must be 'absolute' for semantic training, "
                f"got {cfg.INPUT.CROP.TYPE!r}"
            )
        augs.append(
            T.FixedSizeCrop(
                crop, pad=True, pad_value=0.0, seg_pad_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
            )
        )
    if cfg.INPUT.RANDOM_FLIP == "horizontal":
        augs.append(T.RandomFlip(horizontal=True, vertical=False))
    elif cfg.INPUT.RANDOM_FLIP != "none":
        raise ValueError(
            f"INPUT.RANDOM_FLIP must be 'horizontal' or 'none' here, got {cfg.INPUT.RANDOM_FLIP!r}"
        )
    if cfg.INPUT.BRIGHTNESS_DELTA > 0:
        augs.append(RandomBrightnessShift(cfg.INPUT.BRIGHTNESS_DELTA))
    return augs
