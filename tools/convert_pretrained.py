#!/usr/bin/env python
"""Convert local ImageNet checkpoints into Detectron2 checkpoints for the project's backbones.

    python tools/convert_pretrained.py resnet resnet101-63fe2227.pth pretrained/R-101-tv.pkl
    python tools/convert_pretrained.py mobilenetv2 mobilenet_v2-b0353104.pth pretrained/mnv2.pkl
    python tools/convert_pretrained.py hrnet hrnetv2_w48_imagenet_pretrained.pth pretrained/w48.pkl

then train with ``MODEL.WEIGHTS pretrained/<file>.pkl``. Sources (nothing is downloaded):

- ``resnet``: a torchvision ResNet-18/34/50/101/152 state dict, renamed to Detectron2's ResNet
  (``stem.conv1``, ``res2.0.conv1.norm``, ``shortcut``, ...) for ``build_dilated_resnet_backbone``
  (depth >= 50: Detectron2's ``build_resnet_deeplab_backbone``). The depth is read from the
  checkpoint. torchvision puts the stride in the 3x3 conv and has a 7x7 stem: set
  ``MODEL.RESNETS.STRIDE_IN_1X1 False`` and ``STEM_TYPE "basic"``, and feed RGB images normalised
  as in training (see docs/backbones.md);
- ``mobilenetv2``: a torchvision MobileNetV2 state dict for ``build_mobilenetv2_backbone``; the
  names are already the backbone's, the 1280-channel last conv and the classifier are dropped;
- ``hrnet``: the HRNet authors' ImageNet HRNetV2 checkpoint
  (``hrnetv2_w48_imagenet_pretrained.pth``) for ``build_hrnet_backbone``; the names are already
  the backbone's, the classification-only ``incre_modules``, ``downsamp_modules``,
  ``final_layer`` and ``classifier`` are dropped. The width is read from the checkpoint.

The result is checked against the backbone built by the project's builder: a checkpoint key that
maps to no backbone parameter, or a shape mismatch, is an error listing the keys; so is a
backbone parameter left without weights, unless ``--allow-missing``. ``num_batches_tracked``
counters are dropped (PyTorch's BatchNorm fills them in when loading).

The output follows Detectron2's conventions: ``.pkl`` holds ``{"model": {name: numpy array},
"__author__": ..., "matching_heuristics": False}``, ``.pth`` the same with tensors. Names carry
``--prefix`` (default ``backbone.``, where Detectron2's meta-architectures keep the backbone;
``backbone.bottom_up.`` for an FPN), so ``DetectionCheckpointer`` loads them exactly.
"""

import argparse
import logging
import os
import pickle
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from torch import Tensor

import panoptic_ocr

__all__ = [
    "ConversionError",
    "KINDS",
    "check_against_backbone",
    "convert",
    "convert_state_dict",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger("panoptic_ocr.convert_pretrained")


class ConversionError(ValueError):
    """A checkpoint that does not fit the target backbone; the message lists the keys."""


def _format_keys(title: str, keys: List[str], limit: int = 50) -> str:
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{title} ({len(keys)}):\n  {shown}{more}"


# ------------------------------------------------------------------------------------------
# Reading and writing
# ------------------------------------------------------------------------------------------
def load_checkpoint(path: str) -> Dict[str, Tensor]:
    """The state dict of a checkpoint file: a plain state dict, or one under ``"state_dict"`` or
    ``"model"``; ``.pkl`` files may hold numpy arrays. A DataParallel ``module.`` prefix is
    removed. Loaded with ``weights_only=True``: no code in the file is run."""
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
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


def save_checkpoint(state_dict: Dict[str, Tensor], path: str, author: str) -> None:
    """Write ``state_dict`` in the format Detectron2's ``DetectionCheckpointer`` reads without
    name-matching heuristics (``.pkl``: numpy arrays; ``.pth``: tensors)."""
    if not path.endswith((".pkl", ".pth")):
        raise ValueError(f"output must end with .pkl or .pth, got {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".pkl"):
        model = {k: v.detach().cpu().numpy() for k, v in state_dict.items()}
        with open(path, "wb") as f:
            pickle.dump({"model": model, "__author__": author, "matching_heuristics": False}, f)
    else:
        model = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        torch.save({"model": model, "__author__": author, "matching_heuristics": False}, path)


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
    """Depth of a torchvision ResNet from its block counts and block type."""
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
    """Width C of HRNetV2-W``C``: the output channels of the first transition's first branch."""
    key = "transition1.0.0.weight"
    if key not in state_dict:
        raise ConversionError(f"not an HRNet checkpoint: no {key!r} (pass --width to force one)")
    return int(state_dict[key].shape[0])


def build_target_backbone(kind: str, *, depth: int = 101, width: int = 48) -> torch.nn.Module:
    """The backbone a converted checkpoint must fit, built by the project's registered builder
    with every stage present (on the meta device: only names and shapes are needed)."""
    cfg = get_cfg()
    panoptic_ocr.add_ocr_config(cfg)
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
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    with torch.device("meta"):
        return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg, ShapeSpec(channels=3))


# ------------------------------------------------------------------------------------------
# Checking and the whole conversion
# ------------------------------------------------------------------------------------------
def check_against_backbone(
    renamed: Dict[str, Tensor],
    sources: Dict[str, str],
    unmatched: List[str],
    target: Dict[str, Tensor],
    *,
    allow_missing: bool = False,
) -> None:
    """Raise :class:`ConversionError` listing every source key that matches no backbone
    parameter or buffer, every shape mismatch and (unless ``allow_missing``) every backbone
    parameter or buffer left without weights."""
    unmatched = list(unmatched) + [f"{sources[k]} (-> {k})" for k in renamed if k not in target]
    shapes = [
        f"{sources[k]} (-> {k}): checkpoint {tuple(v.shape)}, backbone {tuple(target[k].shape)}"
        for k, v in renamed.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    missing = [k for k in target if k not in renamed and not k.endswith("num_batches_tracked")]
    problems = []
    if unmatched:
        problems.append(
            _format_keys("checkpoint keys that match no backbone key", sorted(unmatched))
        )
    if shapes:
        problems.append(_format_keys("shape mismatches", shapes))
    if missing and not allow_missing:
        problems.append(
            _format_keys("backbone keys without weights (--allow-missing accepts them)", missing)
        )
    if problems:
        raise ConversionError("cannot convert the checkpoint:\n" + "\n".join(problems))
    if missing:
        logger.warning(_format_keys("backbone keys left without weights", missing))


_RENAMERS = {
    "resnet": rename_torchvision_resnet,
    "mobilenetv2": rename_torchvision_mobilenetv2,
    "hrnet": rename_hrnet,
}
KINDS = tuple(_RENAMERS)

# What the converted weights expect of the config, logged after a conversion.
_CONFIG_HINTS = {
    "resnet": (
        'MODEL.BACKBONE.NAME "build_dilated_resnet_backbone", MODEL.RESNETS.DEPTH {depth}, '
        'STEM_TYPE "basic", STEM_OUT_CHANNELS 64, RES2_OUT_CHANNELS {res2}, STRIDE_IN_1X1 False'
    ),
    "mobilenetv2": 'MODEL.BACKBONE.NAME "build_mobilenetv2_backbone"',
    "hrnet": 'MODEL.BACKBONE.NAME "build_hrnet_backbone", MODEL.HRNET.WIDTH {width}',
}
_INPUT_HINT = (
    'INPUT.FORMAT "RGB", MODEL.PIXEL_MEAN [123.675, 116.280, 103.530], '
    "MODEL.PIXEL_STD [58.395, 57.120, 57.375]"
)


def convert_state_dict(
    kind: str,
    state_dict: Dict[str, Tensor],
    *,
    depth: Optional[int] = None,
    width: Optional[int] = None,
    prefix: str = "backbone.",
    allow_missing: bool = False,
) -> Dict[str, Tensor]:
    """Rename ``state_dict`` (a ``kind`` checkpoint) for the project's backbone, check it
    against that backbone and return it with ``prefix`` on every name."""
    if kind not in _RENAMERS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if kind == "resnet":
        depth = depth or infer_resnet_depth(state_dict)
    if kind == "hrnet":
        width = width or infer_hrnet_width(state_dict)
    renamed, sources, unmatched = _RENAMERS[kind](state_dict)
    target = build_target_backbone(kind, depth=depth or 101, width=width or 48).state_dict()
    check_against_backbone(renamed, sources, unmatched, target, allow_missing=allow_missing)
    return {prefix + k: v for k, v in renamed.items()}


def convert(
    kind: str,
    source: str,
    output: str,
    *,
    depth: Optional[int] = None,
    width: Optional[int] = None,
    prefix: str = "backbone.",
    allow_missing: bool = False,
) -> Dict[str, Tensor]:
    """Read ``source``, convert it (:func:`convert_state_dict`) and write ``output``."""
    state_dict = load_checkpoint(source)
    if kind == "resnet":
        depth = depth or infer_resnet_depth(state_dict)
    if kind == "hrnet":
        width = width or infer_hrnet_width(state_dict)
    converted = convert_state_dict(
        kind, state_dict, depth=depth, width=width, prefix=prefix, allow_missing=allow_missing
    )
    author = {"resnet": "torchvision", "mobilenetv2": "torchvision", "hrnet": "HRNet"}[kind]
    save_checkpoint(converted, output, f"{author} ({os.path.basename(source)}), panoptic_ocr")
    res2 = 64 if (depth or 0) < 50 else 256
    hint = _CONFIG_HINTS[kind].format(depth=depth, res2=res2, width=width)
    logger.info(
        "wrote %d tensors to %s; use it with MODEL.WEIGHTS %s and %s; %s",
        len(converted),
        output,
        output,
        hint,
        _INPUT_HINT,
    )
    return converted


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See docs/backbones.md.",
    )
    parser.add_argument("kind", choices=KINDS, help="source checkpoint type")
    parser.add_argument("source", help="local checkpoint (.pth/.pt/.pkl)")
    parser.add_argument("output", help="converted checkpoint (.pkl or .pth)")
    parser.add_argument("--depth", type=int, help="ResNet depth (default: from the checkpoint)")
    parser.add_argument("--width", type=int, help="HRNet width (default: read from the checkpoint)")
    parser.add_argument(
        "--prefix",
        default="backbone.",
        help="prefix of every converted name: where the model keeps the backbone "
        "(default 'backbone.'; 'backbone.bottom_up.' for an FPN)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="accept backbone parameters that the checkpoint does not provide (left at init)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        convert(
            args.kind,
            args.source,
            args.output,
            depth=args.depth,
            width=args.width,
            prefix=args.prefix,
            allow_missing=args.allow_missing,
        )
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
