"""Config values that cannot work, refused when the config is loaded (:func:`check_config_values`,
called by :func:`panoptic_ocr.config.setup_cfg`), instead of failing later in a convolution, after
a full evaluation, or in an allocation of many gigabytes.

A key is checked whenever it holds a value, even where its feature is off (``TEST.AUG.SCALES``
with ``TEST.AUG.ENABLED False``, ``TEST.SLIDING_WINDOW.*`` with ``ENABLED False``): their defaults
are valid, so a bad value is a mistake, and turning the feature on later (e.g. on an
``--eval-only`` command line) must not be the moment it is found. Only ``INPUT.CROP.SIZE`` is
checked only when ``INPUT.CROP.ENABLED``, since Detectron2 reads it as fractions for other crop
types. ``INPUT.MAX_INPUT_PIXELS`` also bounds every test input at run time
(:func:`check_input_pixels`, in the TTA wrapper and the semantic segmentor).
"""

from typing import Optional

from detectron2.config import CfgNode

from .modeling.input_size import MAX_INPUT_PIXELS_KEY, check_input_pixels
from .modeling.multi_scale_attention import check_scales

__all__ = ["COMPILE_MODES", "MAX_INPUT_PIXELS_KEY", "check_config_values", "check_input_pixels"]

# torch.compile's modes (TEST.COMPILE.MODE).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _get(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _error(key: str, value, why: str) -> ValueError:
    return ValueError(f"{key} is {_show(value)}: {why}")


def _show(value) -> str:
    return repr(list(value)) if isinstance(value, (list, tuple)) else repr(value)


def _positive_numbers(
    cfg: CfgNode, key: str, *, length: Optional[int] = None, allow_empty: bool = False
) -> None:
    value = _get(cfg, key)
    entries = value if isinstance(value, (list, tuple)) else [value]
    if not entries and not allow_empty:
        raise _error(key, value, "it must not be empty")
    if length is not None and len(entries) != length:
        raise _error(key, value, f"it needs {length} entries")
    bad = [
        v for v in entries if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
    ]
    if bad:
        raise _error(key, value, f"every entry must be a number > 0, got {bad[0]!r}")


def _non_negative(cfg: CfgNode, key: str) -> None:
    value = _get(cfg, key)
    entries = value if isinstance(value, (list, tuple)) else [value]
    bad = [v for v in entries if v < 0]
    if bad:
        raise _error(key, value, f"sizes must be >= 0 (0 disables the resize), got {bad[0]!r}")


def check_config_values(cfg: CfgNode) -> None:
    """Refuse values that cannot work.

    Checked: ``INPUT.CROP.SIZE`` (entries > 0, when ``INPUT.CROP.ENABLED``), ``TEST.AUG.SCALES``
    (not empty, > 0), ``MODEL.HMSA.TRAIN_SCALES``/``TEST_SCALES`` (> 0, no repeats, 1.0 among
    them), ``INPUT.MIN_SIZE_TRAIN``/``MAX_SIZE_TRAIN``/``MIN_SIZE_TEST``/
    ``MAX_SIZE_TEST`` (>= 0), ``SOLVER.MAX_ITER`` and ``SOLVER.IMS_PER_BATCH`` (> 0),
    ``TEST.SLIDING_WINDOW.SIZE``/``STRIDE`` (two entries > 0), ``INPUT.MAX_INPUT_PIXELS`` (> 0),
    ``TEST.COMPILE.MODE`` (one of :data:`COMPILE_MODES`), and that the largest test input,
    ``(MAX_SIZE_TEST * max(TEST.AUG.SCALES))**2`` pixels (scale 1
    without ``TEST.AUG.ENABLED``; times ``max(MODEL.HMSA.TEST_SCALES)`` for the multi-scale
    attention model), stays within ``INPUT.MAX_INPUT_PIXELS`` when
    ``MAX_SIZE_TEST > 0``.

    Raises:
        ValueError: naming the key and its value (``"KEY is VALUE: why"``).
    """
    if cfg.INPUT.CROP.ENABLED:
        _positive_numbers(cfg, "INPUT.CROP.SIZE")
    _positive_numbers(cfg, "TEST.AUG.SCALES")
    for key in ("MODEL.HMSA.TRAIN_SCALES", "MODEL.HMSA.TEST_SCALES"):
        check_scales(_get(cfg, key), key)
    for key in (
        "INPUT.MIN_SIZE_TRAIN",
        "INPUT.MAX_SIZE_TRAIN",
        "INPUT.MIN_SIZE_TEST",
        "INPUT.MAX_SIZE_TEST",
    ):
        _non_negative(cfg, key)
    for key in ("SOLVER.MAX_ITER", "SOLVER.IMS_PER_BATCH"):
        value = _get(cfg, key)
        if value <= 0:
            raise _error(key, value, "it must be > 0")
    for key in ("TEST.SLIDING_WINDOW.SIZE", "TEST.SLIDING_WINDOW.STRIDE"):
        _positive_numbers(cfg, key, length=2)
    if cfg.TEST.COMPILE.MODE not in COMPILE_MODES:
        raise _error(
            "TEST.COMPILE.MODE", cfg.TEST.COMPILE.MODE, f"it must be one of {COMPILE_MODES}"
        )
    limit = cfg.INPUT.MAX_INPUT_PIXELS
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise _error(
            MAX_INPUT_PIXELS_KEY,
            limit,
            "it must be a pixel count > 0 (default 8192 * 8192 = 67108864)",
        )
    max_size = cfg.INPUT.MAX_SIZE_TEST
    scale = max(cfg.TEST.AUG.SCALES) if cfg.TEST.AUG.ENABLED else 1.0
    scales = f"max(TEST.AUG.SCALES) {scale:g}"
    if cfg.MODEL.META_ARCHITECTURE == "HMSASemanticSegmentor":
        scale *= max(cfg.MODEL.HMSA.TEST_SCALES)
        scales += f" x max(MODEL.HMSA.TEST_SCALES) {max(cfg.MODEL.HMSA.TEST_SCALES):g}"
    side = int(round(max_size * scale))
    if max_size > 0 and side * side > limit:
        raise ValueError(
            f"INPUT.MAX_SIZE_TEST {max_size} x {scales} lets a test input "
            f"reach {side}x{side} = {side * side} pixels, more than "
            f"{MAX_INPUT_PIXELS_KEY} {limit}: "
            f"lower TEST.AUG.SCALES or INPUT.MAX_SIZE_TEST, or raise {MAX_INPUT_PIXELS_KEY} if the "
            "memory is there"
        )
