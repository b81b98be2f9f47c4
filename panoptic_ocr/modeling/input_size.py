"""The run-time bound on test inputs (``INPUT.MAX_INPUT_PIXELS``): an input that would grow
(scaled, padded, resized) past it is refused before anything of that size is allocated. Used by
the semantic segmentor and test-time augmentation; the config-time checks are in
:mod:`panoptic_ocr.config_checks`."""

from typing import Optional, Tuple

__all__ = ["MAX_INPUT_PIXELS_KEY", "check_input_pixels"]

MAX_INPUT_PIXELS_KEY = "INPUT.MAX_INPUT_PIXELS"


def check_input_pixels(
    height: int,
    width: int,
    limit: Optional[int],
    *,
    file_name: Optional[str] = None,
    source_size: Optional[Tuple[int, int]] = None,
    how: str = "scaled",
) -> None:
    """Refuse an input that would be ``height x width`` pixels, more than ``limit`` (no check
    when ``limit`` is None), before it is allocated.

    Args:
        height, width: the size the input would have.
        file_name: the image's file (the input's ``file_name``), named when known.
        source_size: ``(h, w)`` of the input before it is scaled, padded or resized.
        how: what makes it that size, e.g. "scaled by 40 (TEST.AUG.SCALES)".
    Raises:
        ValueError: naming the image, its size, how it grows and ``INPUT.MAX_INPUT_PIXELS``.
    """
    if limit is None or height * width <= limit:
        return
    image = f"Image '{file_name}'" if file_name else "An input image (no file_name)"
    if source_size is not None:
        image += f" of {source_size[1]}x{source_size[0]}"
    raise ValueError(
        f"{image} {how} would be {width}x{height} (WxH) = {height * width} pixels, more than "
        f"{MAX_INPUT_PIXELS_KEY} {limit}; nothing was allocated. Lower the scale (TEST.AUG.SCALES, "
        f"INPUT.MIN_SIZE_TEST/MAX_SIZE_TEST) or raise {MAX_INPUT_PIXELS_KEY} if the memory is there"
    )
