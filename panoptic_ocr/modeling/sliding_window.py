"""Sliding-window inference (``TEST.SLIDING_WINDOW``): an image is segmented in overlapping
windows whose logits are averaged, so memory stays bounded on large images.

The window is a value (:class:`SlidingWindow`), not model state: a segmentor is built with the
config's window and any call may pass another one (``model(inputs, sliding_window=...)``), so
nothing mutates a built model per call.
"""

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from detectron2.config import CfgNode
from torch import Tensor
from torch.nn import functional as F

__all__ = ["SlidingWindow", "window_starts", "sliding_window_logits"]


@dataclass(frozen=True)
class SlidingWindow:
    """Windows of ``size`` ``(h, w)`` placed every ``stride`` ``(h, w)`` pixels (the last one
    flush with the border), ``batch_size`` of them per forward.

    Raises:
        ValueError: a size or stride that is not two values >= 1, a batch size < 1, or a stride
            larger than the window (gaps between windows); the message names TEST.SLIDING_WINDOW.
    """

    size: Tuple[int, int]
    stride: Tuple[int, int]
    batch_size: int = 1

    def __post_init__(self):
        size, stride, batch_size = tuple(self.size), tuple(self.stride), self.batch_size
        if len(size) != 2 or len(stride) != 2 or min(*size, *stride, batch_size) < 1:
            raise ValueError(
                "TEST.SLIDING_WINDOW needs SIZE and STRIDE as (h, w) >= 1 and BATCH_SIZE >= 1, "
                f"got {list(size)}, {list(stride)}, {batch_size}"
            )
        if any(s > w for s, w in zip(stride, size)):
            raise ValueError(
                f"TEST.SLIDING_WINDOW.STRIDE {list(stride)} leaves gaps between windows "
                f"{list(size)}"
            )
        object.__setattr__(self, "size", tuple(int(v) for v in size))
        object.__setattr__(self, "stride", tuple(int(v) for v in stride))
        object.__setattr__(self, "batch_size", int(batch_size))

    @classmethod
    def of(cls, value: Union["SlidingWindow", Sequence, None]) -> Optional["SlidingWindow"]:
        """``value`` as a window: a ``SlidingWindow``, ``(size, stride, batch_size)`` or None."""
        if value is None or isinstance(value, cls):
            return value
        return cls(*value)

    @classmethod
    def from_config(cls, cfg: CfgNode, *, always: bool = False) -> Optional["SlidingWindow"]:
        """``TEST.SLIDING_WINDOW``'s window; None when ``ENABLED`` is False, unless ``always``."""
        node = cfg.TEST.SLIDING_WINDOW
        if not (node.ENABLED or always):
            return None
        return cls(tuple(node.SIZE), tuple(node.STRIDE), int(node.BATCH_SIZE))


def window_starts(size: int, window: int, stride: int) -> List[int]:
    """Offsets of windows covering ``[0, size)`` (``size >= window``); the last ends at ``size``."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def sliding_window_logits(
    segment: Callable[[List[Tensor], Optional[List[Tensor]]], Tensor],
    image: Tensor,
    window: SlidingWindow,
    target: Optional[Tensor] = None,
    ignore_value: int = 255,
) -> Tensor:
    """Logits ``[K, H, W]`` of one normalised image ``[3, H, W]``: the mean, at each pixel, of the
    logits of the windows covering it. An image smaller than a window is zero-padded to it.

    ``segment(crops, crop_targets)`` returns float logits ``[B, K, h', w']`` (``h' >= h``,
    ``w' >= w``) of ``B`` crops ``[3, h, w]`` (and their labels ``[h, w]``, or None).
    """
    (wh, ww), (sh, sw) = window.size, window.stride
    h, w = image.shape[-2:]
    ph, pw = max(h, wh), max(w, ww)
    image = F.pad(image, (0, pw - w, 0, ph - h))
    if target is not None:
        target = F.pad(target, (0, pw - w, 0, ph - h), value=ignore_value)
    corners = [(y, x) for y in window_starts(ph, wh, sh) for x in window_starts(pw, ww, sw)]
    total, count = None, torch.zeros((1, ph, pw), device=image.device)
    for start in range(0, len(corners), window.batch_size):
        chunk = corners[start : start + window.batch_size]
        crops = [image[:, y : y + wh, x : x + ww] for y, x in chunk]
        crop_targets = (
            None if target is None else [target[y : y + wh, x : x + ww] for y, x in chunk]
        )
        logits = segment(crops, crop_targets)[:, :, :wh, :ww]
        if total is None:
            total = torch.zeros((logits.shape[1], ph, pw), device=image.device)
        for (y, x), window_logits in zip(chunk, logits):
            total[:, y : y + wh, x : x + ww] += window_logits
            count[:, y : y + wh, x : x + ww] += 1
    return (total / count)[:, :h, :w]
