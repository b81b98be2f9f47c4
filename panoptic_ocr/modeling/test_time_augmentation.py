"""Test-time augmentation for semantic segmentation: multi-scale and flip, with the
left/right channel swap that human parsing (LIP) needs when an image is mirrored."""

import logging
from itertools import product
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.modeling import SemanticSegmentor
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from .input_size import check_input_pixels

__all__ = ["SemanticSegmentorWithTTA", "flip_channel_permutation"]

logger = logging.getLogger(__name__)


def flip_channel_permutation(num_classes: int, pairs: Sequence[Sequence[int]]) -> Tensor:
    """Index ``perm`` such that ``logits[perm]`` swaps each (left, right) class pair.

    Raises:
        ValueError: a pair is not two distinct classes in ``[0, num_classes)`` or a class repeats.
    """
    perm = list(range(num_classes))
    seen = set()
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= c < num_classes for c in pair):
            raise ValueError(
                f"TEST.AUG.FLIP_CHANNEL_PAIRS: {list(pair)} is not a pair of two classes in "
                f"[0, {num_classes})"
            )
        if seen & set(pair):
            raise ValueError(
                f"TEST.AUG.FLIP_CHANNEL_PAIRS: class of {list(pair)} appears in two pairs"
            )
        seen |= set(pair)
        a, b = pair
        perm[a], perm[b] = b, a
    return torch.tensor(perm, dtype=torch.long)


class SemanticSegmentorWithTTA(nn.Module):
    """Wraps a semantic segmentor (same call signature) and averages its class probabilities
    over image scales and, optionally, horizontal flips.

    For each input ``image`` ``[3, H, W]`` and each scale s, the image is resized to
    ``round(s*H) x round(s*W)``; the model predicts at the requested ``height x width`` (its
    postprocessing resizes back), flipped predictions are flipped back and, with
    ``flip_channel_pairs``, their left/right class channels swapped. Output: one dict per image
    with ``sem_seg`` ``[K, height, width]``, the mean of the softmax probabilities.

    ``max_input_pixels`` (``INPUT.MAX_INPUT_PIXELS``; None: no limit): an image whose largest
    scaled size exceeds it raises ``ValueError`` (naming its ``file_name``, size and scale) before
    any scaled copy is made.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        scales: Sequence[float],
        flip: bool,
        num_classes: int,
        flip_channel_pairs: Sequence[Sequence[int]] = (),
        max_input_pixels: Optional[int] = None,
    ):
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"TEST.AUG.SCALES must be positive factors, got {list(scales)}")
        self.model = model
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.max_input_pixels = max_input_pixels
        self.flip_channel_pairs = [tuple(p) for p in flip_channel_pairs]
        self.register_buffer(
            "flip_permutation",
            flip_channel_permutation(num_classes, flip_channel_pairs),
            persistent=False,
        )

    @classmethod
    def from_config(cls, cfg, model: nn.Module) -> "SemanticSegmentorWithTTA":
        """``TEST.AUG`` around a semantic segmentor.

        Raises:
            ValueError: ``model`` is not a semantic segmentor (e.g. Panoptic-FPN).
        """
        inner = model.module if isinstance(model, DistributedDataParallel) else model
        if not isinstance(inner, SemanticSegmentor):
            raise ValueError(
                "TEST.AUG.ENABLED: test-time augmentation averages semantic logits; "
                f"{type(inner).__name__} is not a semantic segmentor (set TEST.AUG.ENABLED False)"
            )
        return cls(
            model,
            scales=cfg.TEST.AUG.SCALES,
            flip=cfg.TEST.AUG.FLIP,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            flip_channel_pairs=cfg.TEST.AUG.FLIP_CHANNEL_PAIRS,
            max_input_pixels=cfg.INPUT.MAX_INPUT_PIXELS,
        )

    def with_model(self, model: nn.Module) -> "SemanticSegmentorWithTTA":
        """The same augmentation around another model (e.g. its inference copy)."""
        return type(self)(
            model,
            scales=self.scales,
            flip=self.flip,
            num_classes=self.flip_permutation.numel(),
            flip_channel_pairs=self.flip_channel_pairs,
            max_input_pixels=self.max_input_pixels,
        )

    @staticmethod
    def _scaled_size(h: int, w: int, scale: float) -> Tuple[int, int]:
        return max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)

    def _augmented_inputs(self, inp: Dict) -> List[Tuple[Dict, bool]]:
        h, w = inp["image"].shape[-2:]
        for scale in self.scales:  # before any copy: the float image is already 4 bytes a pixel
            check_input_pixels(
                *self._scaled_size(h, w, scale),
                self.max_input_pixels,
                file_name=inp.get("file_name"),
                source_size=(h, w),
                how=f"scaled by {scale:g} (TEST.AUG.SCALES)",
            )
        image = inp["image"].float()
        out = []
        for scale, flipped in product(self.scales, (False, True) if self.flip else (False,)):
            size = self._scaled_size(h, w, scale)
            scaled = (
                image
                if size == (h, w)
                else F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            )
            aug = {k: v for k, v in inp.items() if k not in ("image", "sem_seg")}
            aug["image"] = scaled.flip(-1) if flipped else scaled
            aug.setdefault("height", h)
            aug.setdefault("width", w)
            out.append((aug, flipped))
        return out

    @torch.no_grad()
    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        results = []
        for inp in batched_inputs:
            probabilities = None
            augmented = self._augmented_inputs(inp)
            for aug, flipped in augmented:
                logits = self.model([aug])[0]["sem_seg"]
                if flipped:
                    logits = logits.flip(-1)[self.flip_permutation.to(logits.device)]
                p = logits.softmax(dim=0)
                probabilities = p if probabilities is None else probabilities + p
            results.append({"sem_seg": probabilities / len(augmented)})
        return results
