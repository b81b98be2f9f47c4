"""Convert local checkpoints into Detectron2 checkpoints for the project's models.

Each kind of source checkpoint has a converter in :data:`CONVERTERS` (kind -> function): it
renames the source's tensors to the target's names and builds the target (a backbone, or a
whole model) to check them against. :func:`check_state_dict` then lists every source key that
maps to nothing, every shape mismatch and every target tensor left without weights.

ImageNet kinds (targets: the project's backbones; nothing is downloaded):

- ``resnet``: a torchvision ResNet-18/34/50/101/152 state dict, renamed to Detectron2's ResNet
  (``stem.conv1``, ``res2.0.conv1.norm``, ``shortcut``, ...) for ``build_dilated_resnet_backbone``.
  The depth is read from the checkpoint. torchvision puts the stride in the 3x3 conv and has a
  7x7 stem: the config needs ``MODEL.RESNETS.STRIDE_IN_1X1 False`` and ``STEM_TYPE "basic"``,
  and RGB images normalised as in training (see docs/backbones.md);
- ``mobilenetv2``: a torchvision MobileNetV2 state dict for ``build_mobilenetv2_backbone``; the
  names are already the backbone's, the 1280-channel last conv and the classifier are dropped;
- ``hrnet``: the HRNet authors' ImageNet HRNetV2 checkpoint for ``build_hrnet_backbone``; the
  names are already the backbone's, the classification-only ``incre_modules``,
  ``downsamp_modules``, ``final_layer`` and ``classifier`` are dropped. The width is read from
  the checkpoint.

``num_batches_tracked`` counters are dropped (PyTorch's BatchNorm fills them in when loading).
The output follows Detectron2's conventions: ``.pkl`` holds ``{"model": {name: numpy array},
"__author__": ..., "matching_heuristics": False}``, ``.pth`` the same with tensors, written
through :func:`panoptic_ocr.utils.safe_write.atomic_file`. Names carry a prefix (ImageNet kinds:
``backbone.``, where Detectron2's meta-architectures keep the backbone; ``backbone.bottom_up.``
for an FPN), so ``DetectionCheckpointer`` loads them exactly.
"""

import logging
import os
import pickle
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from torch import Tensor

from ..config import add_ocr_config
from ..utils.safe_write import atomic_file, check_writable
from .weight_files import read_weight_file

__all__ = [
    "ALL_KINDS",
    "CONVERTERS",
    "KINDS",
    "RELEASED_KINDS",
    "Conversion",
    "ConversionError",
    "build_target_backbone",
    "check_state_dict",
    "convert_checkpoint",
    "convert_state_dict",
    "infer_hrnet_width",
    "infer_resnet_depth",
    "load_checkpoint",
    "rename_hrnet",
    "rename_torchvision_mobilenetv2",
    "rename_torchvision_resnet",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)


class ConversionError(ValueError):
    """A checkpoint that does not fit the target; the message lists the keys."""


def _format_keys(title: str, keys: List[str], limit: int = 50) -> str:
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{title} ({len(keys)}):\n  {shown}{more}"


# ------------------------------------------------------------------------------------------
# Reading and writing
# ------------------------------------------------------------------------------------------
def load_checkpoint(path: str, *, trusted: bool = False) -> Dict[str, Tensor]:
    """The state dict of a checkpoint file: a plain state dict, or one under ``"state_dict"`` or
    ``"model"``; ``.pkl`` files may hold numpy arrays. A DataParallel ``module.`` prefix is
    removed. Read by :func:`~panoptic_ocr.checkpoint.weight_files.read_weight_file`: no code in
    the file runs unless ``trusted``.

    Raises:
        WeightFileError: the file is refused (it holds other objects than arrays, dicts, numbers
            and strings), missing, truncated or not a checkpoint.
        ConversionError: the file holds no state dict.
    """
    data = read_weight_file(path, trusted=trusted)
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ConversionError(f"{path} holds a {type(data).__name__}, not a state dict")
    state_dict = {}
    for name, value in data.items():
        if not isinstance(value, Tensor):
            value = torch.as_tensor(value)
        state_dict[name[len("module.") :] if name.startswith("module.") else name] = value
    return state_dict


def save_checkpoint(
    state_dict: Dict[str, Tensor], path: str, author: str, *, overwrite: bool = False
) -> None:
    """Write ``state_dict`` in the format Detectron2's ``DetectionCheckpointer`` reads without
    name-matching heuristics (``.pkl``: numpy arrays; ``.pth``: tensors), atomically.

    Raises:
        ValueError: ``path`` ends with neither ``.pkl`` nor ``.pth``.
        panoptic_ocr.utils.safe_write.OutputExistsError: ``path`` exists and not ``overwrite``.
    """
    if not path.endswith((".pkl", ".pth")):
        raise ValueError(f"output must end with .pkl or .pth, got {path!r}")
    checkpoint = {"__author__": author, "matching_heuristics": False}
    with atomic_file(path, overwrite=overwrite) as tmp:
        if path.endswith(".pkl"):
            checkpoint["model"] = {k: v.detach().cpu().numpy() for k, v in state_dict.items()}
            with open(tmp, "wb") as f:
                pickle.dump(checkpoint, f)
        else:
            checkpoint["model"] = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
            torch.save(checkpoint, tmp)


# ------------------------------------------------------------------------------------------
# Renaming: each returns (renamed {new: tensor}, {new: source name}, unmatched source names).
# ------------------------------------------------------------------------------------------
Renamed = Tuple[Dict[str, Tensor], Dict[str, str], List[str]]

_BN = r"(?P<p>weight|bias|running_mean|running_var)"
# torchvision ResNet name pattern -> Detectron2 ResNet name; torchvision's layerL is resL+1.
_RESNET_RULES = [
    (r"conv1\.weight", "stem.conv1.weight"),
    (rf"bn1\.{_BN}", "stem.conv1.norm.{p}"),
    (r"layer(?P<L>[1-4])\.(?P<b>\d+)\.conv(?P<c>[1-3])\.weight", "res{s}.{b}.conv{c}.weight"),
    (rf"layer(?P<L>[1-4])\.(?P<b>\d+)\.bn(?P<c>[1-3])\.{_BN}", "res{s}.{b}.conv{c}.norm.{p}"),
    (r"layer(?P<L>[1-4])\.(?P<b>\d+)\.downsample\.0\.weight", "res{s}.{b}.shortcut.weight"),
    (rf"layer(?P<L>[1-4])\.(?P<b>\d+)\.downsample\.1\.{_BN}", "res{s}.{b}.shortcut.norm.{p}"),
]


def _rename_resnet_key(name: str) -> Optional[str]:
    """torchvision ResNet name -> Detectron2 ResNet name, None if no rule matches."""
    for pattern, template in _RESNET_RULES:
        m = re.fullmatch(pattern, name)
        if m:
            groups = m.groupdict()
            if "L" in groups:
                groups["s"] = int(groups["L"]) + 1
            return template.format(**groups)
    return None


def _rename(
    state_dict: Dict[str, Tensor], rename: Callable[[str], Optional[str]], dropped: Tuple[str, ...]
) -> Renamed:
    renamed, sources, unmatched = {}, {}, []
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked") or name.startswith(dropped):
            continue
        new = rename(name)
        if new is None:
            unmatched.append(name)
        else:
            renamed[new], sources[new] = value, name
    return renamed, sources, unmatched


def rename_torchvision_resnet(state_dict: Dict[str, Tensor]) -> Renamed:
    """torchvision ResNet -> Detectron2 ResNet names; the classifier ``fc`` is dropped."""
    return _rename(state_dict, _rename_resnet_key, ("fc.",))


def rename_torchvision_mobilenetv2(state_dict: Dict[str, Tensor]) -> Renamed:
    """torchvision MobileNetV2 -> the backbone's (same) names; the 1280-channel last conv
    (``features.18``) and the ``classifier`` are dropped."""
    return _rename(
        state_dict,
        lambda k: k if k.startswith("features.") else None,
        ("features.18.", "classifier."),
    )


_HRNET_CLASSIFICATION_ONLY = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


def rename_hrnet(state_dict: Dict[str, Tensor]) -> Renamed:
    """HRNet authors' ImageNet names -> the backbone's (same) names; the classification-only
    modules are dropped."""
    return _rename(state_dict, lambda k: k, _HRNET_CLASSIFICATION_ONLY)


# ------------------------------------------------------------------------------------------
# Target backbones
# ------------------------------------------------------------------------------------------
_RESNET_DEPTHS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}


def infer_resnet_depth(state_dict: Dict[str, Tensor]) -> int:
    """Depth of a torchvision ResNet from its block counts and block type.

    Raises:
        ConversionError: the blocks match no torchvision ResNet.
    """
    blocks = []
    for layer in range(1, 5):
        pattern = re.compile(rf"layer{layer}\.(\d+)\.")
        blocks.append(len({m.group(1) for m in map(pattern.match, state_dict) if m}))
    bottleneck = any(re.match(r"^layer\d\.\d+\.conv3\.", k) for k in state_dict)
    depth = _RESNET_DEPTHS.get((tuple(blocks), bottleneck))
    if depth is None:
        raise ConversionError(
            f"not a torchvision ResNet-18/34/50/101/152: blocks per layer {blocks}, "
            f"{'bottleneck' if bottleneck else 'basic'} blocks (pass --depth to force one)"
        )
    return depth


def infer_hrnet_width(state_dict: Dict[str, Tensor]) -> int:
    """Width C of HRNetV2-W``C``: the output channels of the first transition's first branch.

    Raises:
        ConversionError: the checkpoint has no such tensor.
    """
    key = "transition1.0.0.weight"
    if key not in state_dict:
        raise ConversionError(f"not an HRNet checkpoint: no {key!r} (pass --width to force one)")
    return int(state_dict[key].shape[0])


def build_target_backbone(kind: str, *, depth: int = 101, width: int = 48) -> torch.nn.Module:
    """The backbone an ImageNet checkpoint of ``kind`` must fit, built by the project's
    registered builder with every stage present (on the meta device: only names and shapes
    are needed).

    Raises:
        ValueError: ``kind`` is not an ImageNet kind.
    """
    cfg = get_cfg()
    add_ocr_config(cfg)
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    if kind == "resnet":
        cfg.MODEL.BACKBONE.NAME = "build_dilated_resnet_backbone"
        r = cfg.MODEL.RESNETS
        r.DEPTH = depth
        r.NORM = "BN"
        r.STEM_TYPE = "basic"
        r.STEM_OUT_CHANNELS = 64
        r.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
        r.STRIDE_IN_1X1 = False
        r.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    elif kind == "mobilenetv2":
        cfg.MODEL.BACKBONE.NAME = "build_mobilenetv2_backbone"
        cfg.MODEL.MOBILENETV2.NORM = "BN"
        cfg.MODEL.MOBILENETV2.OUT_FEATURES = ["stage5"]
    elif kind == "hrnet":
        cfg.MODEL.BACKBONE.NAME = "build_hrnet_backbone"
        cfg.MODEL.HRNET.WIDTH = width
        cfg.MODEL.HRNET.NORM = "BN"
    else:
        raise ValueError(f"kind must be one of resnet, mobilenetv2, hrnet, got {kind!r}")
    with torch.device("meta"):
        return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg, ShapeSpec(channels=3))


# ------------------------------------------------------------------------------------------
# Converters: kind -> function
# ------------------------------------------------------------------------------------------
@dataclass
class Conversion:
    """A renamed checkpoint and the target it must fit.

    Attributes:
        renamed: target name (without prefix) -> tensor.
        sources: target name -> the source name it came from.
        unmatched: source names that no rule renames.
        target: the target's state dict (tensors may be on the meta device: names and shapes).
        target_name: what the target is, in messages ("backbone", "model").
        author: the ``__author__`` written into the converted checkpoint.
        config_hint: the config the converted weights expect, logged after a conversion.
    """

    renamed: Dict[str, Tensor]
    sources: Dict[str, str]
    unmatched: List[str]
    target: Dict[str, Tensor]
    target_name: str
    author: str
    config_hint: str


# A converter: (state_dict, *, depth=None, width=None) -> Conversion.
Converter = Callable[..., Conversion]

# What ImageNet weights expect of the input, logged after a conversion.
_IMAGENET_INPUT_HINT = (
    'INPUT.FORMAT "RGB", MODEL.PIXEL_MEAN [123.675, 116.280, 103.530], '
    "MODEL.PIXEL_STD [58.395, 57.120, 57.375]"
)


def _backbone_conversion(
    kind: str, renamed: Renamed, author: str, hint: str, *, depth: int = 101, width: int = 48
) -> Conversion:
    tensors, sources, unmatched = renamed
    target = build_target_backbone(kind, depth=depth, width=width).state_dict()
    return Conversion(
        tensors, sources, unmatched, target, "backbone", author, f"{hint}; {_IMAGENET_INPUT_HINT}"
    )


def convert_torchvision_resnet(
    state_dict: Dict[str, Tensor], *, depth: Optional[int] = None, width: Optional[int] = None
) -> Conversion:
    """torchvision ResNet -> ``build_dilated_resnet_backbone`` (``depth`` read if None)."""
    depth = depth or infer_resnet_depth(state_dict)
    hint = (
        f'MODEL.BACKBONE.NAME "build_dilated_resnet_backbone", MODEL.RESNETS.DEPTH {depth}, '
        f'STEM_TYPE "basic", STEM_OUT_CHANNELS 64, RES2_OUT_CHANNELS {64 if depth < 50 else 256}, '
        "STRIDE_IN_1X1 False"
    )
    return _backbone_conversion(
        "resnet", rename_torchvision_resnet(state_dict), "torchvision", hint, depth=depth
    )


def convert_torchvision_mobilenetv2(
    state_dict: Dict[str, Tensor], *, depth: Optional[int] = None, width: Optional[int] = None
) -> Conversion:
    """torchvision MobileNetV2 -> ``build_mobilenetv2_backbone``."""
    hint = 'MODEL.BACKBONE.NAME "build_mobilenetv2_backbone"'
    return _backbone_conversion(
        "mobilenetv2", rename_torchvision_mobilenetv2(state_dict), "torchvision", hint
    )


def convert_hrnet_imagenet(
    state_dict: Dict[str, Tensor], *, depth: Optional[int] = None, width: Optional[int] = None
) -> Conversion:
    """HRNet authors' ImageNet HRNetV2 -> ``build_hrnet_backbone`` (``width`` read if None)."""
    width = width or infer_hrnet_width(state_dict)
    hint = f'MODEL.BACKBONE.NAME "build_hrnet_backbone", MODEL.HRNET.WIDTH {width}'
    return _backbone_conversion("hrnet", rename_hrnet(state_dict), "HRNet", hint, width=width)


# kind -> converter. Released whole-model checkpoints are further kinds of this table.
CONVERTERS: Dict[str, Converter] = {
    "resnet": convert_torchvision_resnet,
    "mobilenetv2": convert_torchvision_mobilenetv2,
    "hrnet": convert_hrnet_imagenet,
}
KINDS = tuple(CONVERTERS)
# Released whole-model OCR checkpoints (HRNet-OCR, openseg, mmseg, NVIDIA): further kinds,
# whose target is the whole model of a released config; :mod:`panoptic_ocr.checkpoint.released`
# converts them (it builds on this module, so it is imported where used).
RELEASED_KINDS = ("hrnet_ocr", "openseg", "mmseg", "nvidia", "segfix")
ALL_KINDS = KINDS + RELEASED_KINDS


# ------------------------------------------------------------------------------------------
# Checking and the whole conversion
# ------------------------------------------------------------------------------------------
def check_state_dict(conversion: Conversion, *, allow_missing: bool = False) -> None:
    """Check that ``conversion.renamed`` fits ``conversion.target`` exactly.

    Raises:
        ConversionError: listing every source key that matches no target parameter or buffer,
            every shape mismatch and (unless ``allow_missing``) every target parameter or
            buffer left without weights.
    """
    renamed, sources, target, what = (
        conversion.renamed,
        conversion.sources,
        conversion.target,
        conversion.target_name,
    )
    unmatched = list(conversion.unmatched) + [
        f"{sources[k]} (-> {k})" for k in renamed if k not in target
    ]
    shapes = [
        f"{sources[k]} (-> {k}): checkpoint {tuple(v.shape)}, {what} {tuple(target[k].shape)}"
        for k, v in renamed.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    missing = [k for k in target if k not in renamed and not k.endswith("num_batches_tracked")]
    problems = []
    if unmatched:
        problems.append(
            _format_keys(f"checkpoint keys that match no {what} key", sorted(unmatched))
        )
    if shapes:
        problems.append(_format_keys("shape mismatches", shapes))
    if missing and not allow_missing:
        problems.append(
            _format_keys(f"{what} keys without weights (--allow-missing accepts them)", missing)
        )
    if problems:
        raise ConversionError("cannot convert the checkpoint:\n" + "\n".join(problems))
    if missing:
        logger.warning(_format_keys(f"{what} keys left without weights", missing))


def _conversion(kind: str, state_dict: Dict[str, Tensor], **options) -> Conversion:
    if kind not in CONVERTERS:
        raise ValueError(f"kind must be one of {sorted(CONVERTERS)}, got {kind!r}")
    return CONVERTERS[kind](state_dict, **options)


def convert_state_dict(
    kind: str,
    state_dict: Dict[str, Tensor],
    *,
    depth: Optional[int] = None,
    width: Optional[int] = None,
    prefix: str = "backbone.",
    allow_missing: bool = False,
) -> Dict[str, Tensor]:
    """Rename ``state_dict`` (a ``kind`` checkpoint, see :data:`CONVERTERS`), check it against
    its target (:func:`check_state_dict`) and return it with ``prefix`` on every name.

    Raises:
        ValueError: unknown ``kind``.
        ConversionError: the checkpoint does not fit (the message lists the keys).
    """
    conversion = _conversion(kind, state_dict, depth=depth, width=width)
    check_state_dict(conversion, allow_missing=allow_missing)
    return {prefix + k: v for k, v in conversion.renamed.items()}


def convert_checkpoint(
    kind: str,
    source: str,
    output: str,
    *,
    depth: Optional[int] = None,
    width: Optional[int] = None,
    prefix: str = "backbone.",
    allow_missing: bool = False,
    overwrite: bool = False,
    trusted: bool = False,
) -> Dict[str, Tensor]:
    """Read ``source``, convert it as :func:`convert_state_dict` does and write ``output``
    (``.pkl`` or ``.pth``) through :func:`~panoptic_ocr.utils.safe_write.atomic_file`.

    Returns:
        The converted state dict (names with ``prefix``).
    Raises:
        ValueError: ``output`` ends with neither ``.pkl`` nor ``.pth``.
        ConversionError: the checkpoint does not fit; nothing is written.
        panoptic_ocr.utils.safe_write.OutputExistsError: ``output`` exists and not ``overwrite``.
    """
    if not output.endswith((".pkl", ".pth")):
        raise ValueError(f"output must end with .pkl or .pth, got {output!r}")
    check_writable(output, overwrite=overwrite)  # before any work; checked again when writing
    state_dict = load_checkpoint(source, trusted=trusted)
    conversion = _conversion(kind, state_dict, depth=depth, width=width)
    check_state_dict(conversion, allow_missing=allow_missing)
    converted = {prefix + k: v for k, v in conversion.renamed.items()}
    author = f"{conversion.author} ({os.path.basename(source)}), panoptic_ocr"
    save_checkpoint(converted, output, author, overwrite=overwrite)
    logger.info(
        "wrote %d tensors to %s; use it with MODEL.WEIGHTS %s and %s",
        len(converted),
        output,
        output,
        conversion.config_hint,
    )
    return converted
