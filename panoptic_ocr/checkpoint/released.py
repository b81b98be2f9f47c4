"""Released OCR segmentation checkpoints -> the project's whole model (``OCRSemanticSegmentor``
with ``OCRHead``), exactly; released SegFix checkpoints -> ``SegFixModel``.

Kinds (``tools/convert_pretrained.py hrnet_ocr|openseg|mmseg|nvidia|segfix``) and the layouts
they read (the variant is recognised from the keys; see MODEL_ZOO.md for the files):

============  ==================  ==========================================================
kind          variant             released file layout
============  ==================  ==========================================================
hrnet_ocr     ``hrnet_ocr``       HRNet/HRNet-Semantic-Segmentation (branch HRNet-OCR):
                                  ``FullModel(model, loss).state_dict()``, ``model.`` prefix,
                                  ``loss.criterion.weight`` (dropped)
openseg       ``openseg``         openseg.pytorch master, HRNet-W48 + OCR:
                                  ``{"config_dict", "state_dict"}``, ``module.`` prefix,
                                  InPlaceABNSync (no ``num_batches_tracked``, LeakyReLU head)
openseg       ``openseg_torchbn`` openseg.pytorch pytorch-1.7 branch: same wrapping, SyncBN
                                  + ReLU, head BN one level deeper (``.1.0.weight``)
openseg       ``openseg_r101``    openseg master ``spatial_ocrnet`` on
                                  ``deepbase_resnet101_dilated8`` (``backbone.resinit.*``)
mmseg         ``mmseg``           mmsegmentation OCRNet HRNetV2-W48: ``{"meta",
                                  "state_dict"}``, ``backbone.``, ``decode_head.{0,1}.``
mmseg         ``mmseg_r101``      mmsegmentation ``ocrnet_r101-d8`` (ResNetV1c deep stem,
                                  ``backbone.stem.{0..7}``)
nvidia        ``nvidia_mscale``   NVIDIA/semantic-segmentation ``HRNet_Mscale`` (HRNet-OCR +
              (19 classes),       multi-scale attention): ``{epoch, arch, num_classes,
              ``..._mapillary``   state_dict, optimizer, mean_iu, command}``, ``module.``
              (65 classes)        prefix, ``module.ocr.*``; ``module.scale_attn.*`` ->
                                  ``HMSASemanticSegmentor.scale_attention``
segfix        ``openseg_segfix``  openseg.pytorch ``SegFix_HRNet`` on HRNet-W48 (master):
                                  ``{"config_dict", "state_dict"}``, ``module.`` prefix,
                                  ``module.{mask,dir}_head.{0,1,2}`` (1x1 conv, InPlaceABNSync,
                                  1x1 conv, no biases) -> ``SegFixModel``'s
                                  ``{boundary,direction}_head``; LeakyReLU (docs/segfix.md)
segfix        ``openseg_segfix_   the same with torchsyncbn/torchbn heads: BN one level deeper
              torchbn``           (``.1.0.weight``), ReLU
============  ==================  ==========================================================

What the conversion does besides renaming (all exact in eval mode):

- a conv bias followed by BN (HRNet-OCR's ``conv3x3_ocr.0`` and ``aux_head.0``, every openseg
  head conv) is folded into that BN: ``running_mean -= bias``, in float64, stored as float32;
- the two 512-channel input halves of ``g``'s weight are swapped: the released ``g`` reads
  ``cat([context, features])``, the project's :class:`ObjectContextBlock` ``cat([x, context])``;
- ``num_batches_tracked`` is neither required nor copied (BatchNorm fills it in), ``loss.*``
  (HRNet-OCR's class weights) and the ``meta``/``config_dict`` entries are ignored.

The renamed state dict is then checked against the whole model built (on the meta device) from
the matching config: every source key must map to a model key, every model parameter and
buffer must be filled and every shape must agree, otherwise
:class:`~panoptic_ocr.checkpoint.convert.ConversionError` names the keys. The behaviour
differences (``align_corners``, LeakyReLU, input channel order and normalisation, ...) are the
released configs' business (``configs/*/semantic/released/``), not the weights'.

openseg's SegFix on an HRNet2x backbone (``hrnet2x20``/``hrnext20``, openseg's
``HighResolutionNext``: one-conv stem, ``transition0``/``stage1``, five branches) is refused with
a :class:`~panoptic_ocr.checkpoint.convert.ConversionError`: the project has no such backbone.

The R101 mappings are written from the authors' code (openseg ``lib/models/nets/ocrnet.py``
``SpatialOCRNet``, ``lib/models/backbones/resnet/resnet_models.py``; mmseg's ResNetV1c,
``FCNHead``, ``OCRHead``); no released R101 file was available to check them against.
"""

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor

from ..config import setup_cfg
from ..utils.safe_write import check_writable
from .convert import RELEASED_KINDS, Conversion, ConversionError, check_state_dict, save_checkpoint
from .weight_files import read_weight_file

__all__ = [
    "KINDS",
    "VARIANTS",
    "Variant",
    "build_target_model",
    "convert_released",
    "convert_released_checkpoint",
    "default_config",
    "detect_variant",
    "load_released",
    "rename_released",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
_RELEASED_CONFIGS = "configs/cityscapes/semantic/released"

# ------------------------------------------------------------------------------------------
# Target (project) module of each role of the OCR head (and of the SegFix heads)
# ------------------------------------------------------------------------------------------
_OCR = "sem_seg_head.context.object_context"
_TARGET_ROLES = {
    "conv_in": "sem_seg_head.context.conv_in",
    "phi.0": f"{_OCR}.phi.0",
    "phi.1": f"{_OCR}.phi.1",
    "psi.0": f"{_OCR}.psi.0",
    "psi.1": f"{_OCR}.psi.1",
    "delta": f"{_OCR}.delta",
    "rho": f"{_OCR}.rho",
    "g": f"{_OCR}.g",
    "aux": "sem_seg_head.aux_branch.layers.0",
    "aux_cls": "",  # the last layer of the auxiliary branch: resolved from the model
    "cls": "sem_seg_head.predictor",
    # HMSASemanticSegmentor's ScaleAttentionHead: conv-BN-ReLU x 2, 1x1 conv (no bias)
    "attn.0": "scale_attention.layers.0",
    "attn.1": "scale_attention.layers.1",
    "attn.out": "scale_attention.layers.2",
    # SegFixModel's boundary and direction heads: 1x1 conv-BN-activation, 1x1 conv (no bias)
    "boundary.0": "boundary_head.0",
    "boundary.out": "boundary_head.1",
    "direction.0": "direction_head.0",
    "direction.out": "direction_head.1",
}
_G_WEIGHT = f"{_OCR}.g.weight"
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")

# role -> (source conv, source BN or None)
HeadTable = Dict[str, Tuple[str, Optional[str]]]


def _ocr_block_table(block: str, bn: Callable[[str, int], str]) -> HeadTable:
    """The OCR block of HRNet-OCR / openseg (``f_pixel``, ``f_object``, ``f_down``, ``f_up``)."""
    return {
        "phi.0": (f"{block}.f_pixel.0", bn(f"{block}.f_pixel", 1)),
        "phi.1": (f"{block}.f_pixel.2", bn(f"{block}.f_pixel", 3)),
        "psi.0": (f"{block}.f_object.0", bn(f"{block}.f_object", 1)),
        "psi.1": (f"{block}.f_object.2", bn(f"{block}.f_object", 3)),
        "delta": (f"{block}.f_down.0", bn(f"{block}.f_down", 1)),
        "rho": (f"{block}.f_up.0", bn(f"{block}.f_up", 1)),
    }


def _abn(seq: str, index: int) -> str:
    """openseg master's BNReLU: one InPlaceABNSync module, ``<seq>.<index>``."""
    return f"{seq}.{index}"


def _bn_relu(seq: str, index: int) -> str:
    """``nn.Sequential(BatchNorm, ReLU)`` at ``<seq>.<index>``: the BN is ``<seq>.<index>.0``."""
    return f"{seq}.{index}.0"


def _openseg_hrnet_head(bn: Callable[[str, int], str]) -> HeadTable:
    table = {"conv_in": ("conv3x3.0", bn("conv3x3", 1))}
    table.update(_ocr_block_table("ocr_distri_head.object_context_block", bn))
    table.update(
        {
            "g": ("ocr_distri_head.conv_bn_dropout.0", bn("ocr_distri_head.conv_bn_dropout", 1)),
            "aux": ("aux_head.0", bn("aux_head", 1)),
            "aux_cls": ("aux_head.2", None),
            "cls": ("cls_head", None),
        }
    )
    return table


_HRNET_OCR_HEAD: HeadTable = {
    "conv_in": ("conv3x3_ocr.0", "conv3x3_ocr.1"),
    **_ocr_block_table("ocr_distri_head.object_context_block", _bn_relu),
    "g": ("ocr_distri_head.conv_bn_dropout.0", "ocr_distri_head.conv_bn_dropout.1.0"),
    "aux": ("aux_head.0", "aux_head.1"),
    "aux_cls": ("aux_head.3", None),
    "cls": ("cls_head", None),
}

_NVIDIA_MSCALE_HEAD: HeadTable = {
    "conv_in": ("ocr.conv3x3_ocr.0", "ocr.conv3x3_ocr.1.0"),
    **_ocr_block_table("ocr.ocr_distri_head.object_context_block", _bn_relu),
    "g": ("ocr.ocr_distri_head.conv_bn_dropout.0", "ocr.ocr_distri_head.conv_bn_dropout.1.0"),
    "aux": ("ocr.aux_head.0", "ocr.aux_head.1.0"),
    "aux_cls": ("ocr.aux_head.2", None),
    "cls": ("ocr.cls_head", None),
    "attn.0": ("scale_attn.conv0", "scale_attn.bn0"),
    "attn.1": ("scale_attn.conv1", "scale_attn.bn1"),
    "attn.out": ("scale_attn.conv2", None),
}

_OPENSEG_R101_HEAD: HeadTable = {
    "conv_in": ("conv_3x3.0", "conv_3x3.1"),
    **_ocr_block_table("spatial_ocr_head.object_context_block", _abn),
    "g": ("spatial_ocr_head.conv_bn_dropout.0", "spatial_ocr_head.conv_bn_dropout.1"),
    "aux": ("dsn_head.0", "dsn_head.1"),  # dsn_head.2 is Dropout2d
    "aux_cls": ("dsn_head.3", None),
    "cls": ("head", None),
}


def _openseg_segfix_head(bn: Callable[[str, int], str]) -> HeadTable:
    """openseg's ``SegFix_HRNet``: ``mask_head`` / ``dir_head`` = Sequential(1x1 conv, BNReLU,
    1x1 conv), no conv biases."""
    return {
        "boundary.0": ("mask_head.0", bn("mask_head", 1)),
        "boundary.out": ("mask_head.2", None),
        "direction.0": ("dir_head.0", bn("dir_head", 1)),
        "direction.out": ("dir_head.2", None),
    }


_MMSEG_BLOCK = "decode_head.1.object_context_block"
_MMSEG_HEAD: HeadTable = {
    "conv_in": ("decode_head.1.bottleneck.conv", "decode_head.1.bottleneck.bn"),
    "phi.0": (f"{_MMSEG_BLOCK}.query_project.0.conv", f"{_MMSEG_BLOCK}.query_project.0.bn"),
    "phi.1": (f"{_MMSEG_BLOCK}.query_project.1.conv", f"{_MMSEG_BLOCK}.query_project.1.bn"),
    "psi.0": (f"{_MMSEG_BLOCK}.key_project.0.conv", f"{_MMSEG_BLOCK}.key_project.0.bn"),
    "psi.1": (f"{_MMSEG_BLOCK}.key_project.1.conv", f"{_MMSEG_BLOCK}.key_project.1.bn"),
    "delta": (f"{_MMSEG_BLOCK}.value_project.conv", f"{_MMSEG_BLOCK}.value_project.bn"),
    "rho": (f"{_MMSEG_BLOCK}.out_project.conv", f"{_MMSEG_BLOCK}.out_project.bn"),
    "g": (f"{_MMSEG_BLOCK}.bottleneck.conv", f"{_MMSEG_BLOCK}.bottleneck.bn"),
    "aux": ("decode_head.0.convs.0.conv", "decode_head.0.convs.0.bn"),
    "aux_cls": ("decode_head.0.conv_seg", None),
    "cls": ("decode_head.1.conv_seg", None),
}


# ------------------------------------------------------------------------------------------
# Backbones: source name (after the wrapper prefix) -> target name, None if not a backbone key
# ------------------------------------------------------------------------------------------
_HRNET_BACKBONE = re.compile(r"(?:conv[12]|bn[12]|layer1|transition[1-3]|stage[2-4])\..+")


def _hrnet_backbone(prefix: str) -> Callable[[str], Optional[str]]:
    """HRNet keys are the project's backbone names (``backbone.`` + the authors' names)."""

    def rename(name: str) -> Optional[str]:
        if not name.startswith(prefix):
            return None
        rest = name[len(prefix) :]
        return f"backbone.{rest}" if _HRNET_BACKBONE.fullmatch(rest) else None

    return rename


_BN = r"(?P<p>weight|bias|running_mean|running_var)"
_RESNET_BLOCK_RULES = [
    (r"layer(?P<L>[1-4])\.(?P<b>\d+)\.conv(?P<c>[1-3])\.weight", "res{s}.{b}.conv{c}.weight"),
    (rf"layer(?P<L>[1-4])\.(?P<b>\d+)\.bn(?P<c>[1-3])\.{_BN}", "res{s}.{b}.conv{c}.norm.{p}"),
    (r"layer(?P<L>[1-4])\.(?P<b>\d+)\.downsample\.0\.weight", "res{s}.{b}.shortcut.weight"),
    (rf"layer(?P<L>[1-4])\.(?P<b>\d+)\.downsample\.1\.{_BN}", "res{s}.{b}.shortcut.norm.{p}"),
]
# openseg's deep base (``resinit``; ``prefix`` in older versions of the code): conv1..3, bn1..3.
_OPENSEG_STEM_RULES = [
    (r"(?:resinit|prefix)\.conv(?P<c>[1-3])\.weight", "stem.conv{c}.weight"),
    (rf"(?:resinit|prefix)\.bn(?P<c>[1-3])\.{_BN}", "stem.conv{c}.norm.{p}"),
]
# mmseg's ResNetV1c deep stem: Sequential(conv, bn, relu) x 3 -> indices 0/1, 3/4, 6/7.
_MMSEG_STEM_RULES = [
    (r"stem\.(?P<i>[036])\.weight", "stem.conv{c}.weight"),
    (rf"stem\.(?P<j>[147])\.{_BN}", "stem.conv{c}.norm.{p}"),
]


def _resnet_backbone(prefix: str, stem_rules) -> Callable[[str], Optional[str]]:
    """ResNet keys under ``prefix`` -> Detectron2's ResNet names (``stem.conv1``,
    ``res2.0.conv1.norm``)."""
    rules = [(re.compile(p), t) for p, t in stem_rules + _RESNET_BLOCK_RULES]

    def rename(name: str) -> Optional[str]:
        if not name.startswith(prefix):
            return None
        rest = name[len(prefix) :]
        for pattern, template in rules:
            m = pattern.fullmatch(rest)
            if m:
                groups = m.groupdict()
                if "L" in groups:
                    groups["s"] = int(groups["L"]) + 1
                if "i" in groups:
                    groups["c"] = int(groups["i"]) // 3 + 1
                if "j" in groups:
                    groups["c"] = (int(groups["j"]) - 1) // 3 + 1
                return "backbone." + template.format(**groups)
        return None

    return rename


# ------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One released layout.

    Attributes:
        name: the variant's name.
        kind: the converter kind that reads it.
        author: the code base, written into the converted checkpoint's ``__author__``.
        prefix: the wrapper's prefix on every network key (``model.``, ``module.``, "").
        dropped: prefixes of keys that are not network weights (ignored).
        head: role -> (source conv, source BN) of the head (OCR, or SegFix's two heads).
        backbone: source name (prefix included) -> target name for backbone keys (None otherwise).
        config: the released config (relative to the repository) the weights fit.
        biased: roles whose source conv carries a bias before its BN (required: a missing one
            would silently shift that BN).
    """

    name: str
    kind: str
    author: str
    prefix: str
    dropped: Tuple[str, ...]
    head: HeadTable
    backbone: Callable[[str], Optional[str]]
    config: str
    biased: Tuple[str, ...] = ()


_OPENSEG_BIASED = ("conv_in", "phi.0", "phi.1", "psi.0", "psi.1", "delta", "rho", "g", "aux")
VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "hrnet_ocr",
            "hrnet_ocr",
            "HRNet/HRNet-Semantic-Segmentation (HRNet-OCR)",
            "model.",
            ("loss.",),
            _HRNET_OCR_HEAD,
            _hrnet_backbone("model."),
            f"{_RELEASED_CONFIGS}/hrnet_ocr_hrnetv2_w48_cityscapes.yaml",
            ("conv_in", "aux"),
        ),
        Variant(
            "openseg",
            "openseg",
            "openseg-group/openseg.pytorch (master)",
            "module.",
            (),
            _openseg_hrnet_head(_abn),
            _hrnet_backbone("module.backbone."),
            f"{_RELEASED_CONFIGS}/openseg_hrnetv2_w48_ocr_cityscapes.yaml",
            _OPENSEG_BIASED,
        ),
        Variant(
            "openseg_torchbn",
            "openseg",
            "openseg-group/openseg.pytorch (pytorch-1.7)",
            "module.",
            (),
            _openseg_hrnet_head(_bn_relu),
            _hrnet_backbone("module.backbone."),
            f"{_RELEASED_CONFIGS}/openseg_hrnetv2_w48_ocr_rmi_torchbn_cityscapes.yaml",
            _OPENSEG_BIASED,
        ),
        Variant(
            "openseg_r101",
            "openseg",
            "openseg-group/openseg.pytorch (master)",
            "module.",
            (),
            _OPENSEG_R101_HEAD,
            _resnet_backbone("module.backbone.", _OPENSEG_STEM_RULES),
            f"{_RELEASED_CONFIGS}/openseg_ocr_deepbase_r101_d8_cityscapes.yaml",
            _OPENSEG_BIASED,
        ),
        Variant(
            "nvidia_mscale",
            "nvidia",
            "NVIDIA/semantic-segmentation (HRNet_Mscale)",
            "module.",
            (),
            _NVIDIA_MSCALE_HEAD,
            _hrnet_backbone("module.backbone."),
            f"{_RELEASED_CONFIGS}/nvidia_hmsa_hrnetv2_w48_cityscapes.yaml",
            ("conv_in", "aux"),
        ),
        Variant(
            "nvidia_mscale_mapillary",
            "nvidia",
            "NVIDIA/semantic-segmentation (HRNet_Mscale)",
            "module.",
            (),
            _NVIDIA_MSCALE_HEAD,
            _hrnet_backbone("module.backbone."),
            "configs/mapillary_vistas/semantic/released/nvidia_hmsa_hrnetv2_w48_mapillary.yaml",
            ("conv_in", "aux"),
        ),
        Variant(
            "mmseg",
            "mmseg",
            "open-mmlab/mmsegmentation",
            "",
            (),
            _MMSEG_HEAD,
            _hrnet_backbone("backbone."),
            f"{_RELEASED_CONFIGS}/mmseg_ocrnet_hr48_512x1024_cityscapes.yaml",
        ),
        Variant(
            "mmseg_r101",
            "mmseg",
            "open-mmlab/mmsegmentation",
            "",
            (),
            _MMSEG_HEAD,
            _resnet_backbone("backbone.", _MMSEG_STEM_RULES),
            f"{_RELEASED_CONFIGS}/mmseg_ocrnet_r101_d8_512x1024_cityscapes.yaml",
        ),
        Variant(
            "openseg_segfix",
            "segfix",
            "openseg-group/openseg.pytorch (SegFix_HRNet, InPlaceABNSync)",
            "module.",
            (),
            _openseg_segfix_head(_abn),
            _hrnet_backbone("module.backbone."),
            f"{_RELEASED_CONFIGS}/openseg_segfix_hrnetv2_w48_cityscapes.yaml",
        ),
        Variant(
            "openseg_segfix_torchbn",
            "segfix",
            "openseg-group/openseg.pytorch (SegFix_HRNet, torchsyncbn)",
            "module.",
            (),
            _openseg_segfix_head(_bn_relu),
            _hrnet_backbone("module.backbone."),
            f"{_RELEASED_CONFIGS}/openseg_segfix_torchbn_hrnetv2_w48_cityscapes.yaml",
        ),
    )
}
KINDS = RELEASED_KINDS


def default_config(variant: str) -> str:
    """Absolute path of the released config that ``variant``'s weights fit."""
    return str(REPO_ROOT / VARIANTS[variant].config)


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
def load_released(path: str, *, trusted: bool = False) -> Dict[str, Tensor]:
    """The flat state dict of a released file (legacy or zip format), read with
    ``torch.load(map_location="cpu", weights_only=True)`` (no code in the file runs) unless
    ``trusted`` (:func:`~panoptic_ocr.checkpoint.weight_files.read_weight_file`).

    A file is either the state dict itself (HRNet-OCR) or a dict with a ``"state_dict"`` entry
    (openseg's ``config_dict``, mmseg's ``meta`` are ignored). Prefixes are kept.

    Raises:
        ConversionError: the file holds no state dict of tensors (names the file).
    """
    data = read_weight_file(path, trusted=trusted)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise ConversionError(f"{path} holds a {type(data).__name__}, not a state dict")
    not_tensors = [k for k, v in data.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ConversionError(
            f"{path}: entries that are not tensors (not a state dict?): "
            f"{sorted(map(str, not_tensors))[:20]}"
        )
    return dict(data)


def detect_variant(kind: str, state_dict: Dict[str, Tensor]) -> str:
    """The variant of a ``kind`` state dict, read from its keys.

    Raises:
        ValueError: unknown ``kind``.
        ConversionError: the keys match no variant of ``kind`` (names the keys looked for).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    keys = set(state_dict)
    if kind == "hrnet_ocr":
        if "model.conv3x3_ocr.0.weight" not in keys:
            raise ConversionError(
                "not an HRNet-OCR checkpoint: no key 'model.conv3x3_ocr.0.weight'"
            )
        return "hrnet_ocr"
    if kind == "openseg":
        if "module.spatial_ocr_head.conv_bn_dropout.0.weight" in keys:
            return "openseg_r101"
        if "module.conv3x3.1.0.weight" in keys:
            return "openseg_torchbn"
        if "module.conv3x3.1.weight" in keys:
            return "openseg"
        raise ConversionError(
            "not an openseg OCR checkpoint: none of 'module.conv3x3.1.weight' (HRNet, InPlaceABN), "
            "'module.conv3x3.1.0.weight' (HRNet, SyncBN) or "
            "'module.spatial_ocr_head.conv_bn_dropout.0.weight' "
            "(spatial_ocrnet, ResNet-101)"
        )
    if kind == "nvidia":
        if "module.scale_attn.conv0.weight" not in keys or "module.ocr.cls_head.weight" not in keys:
            raise ConversionError(
                "not an NVIDIA HRNet_Mscale checkpoint: no keys 'module.scale_attn.conv0.weight' "
                "and 'module.ocr.cls_head.weight'"
            )
        classes = state_dict["module.ocr.cls_head.weight"].shape[0]
        return "nvidia_mscale_mapillary" if classes == 65 else "nvidia_mscale"
    if kind == "segfix":
        if "module.mask_head.1.weight" in keys:
            variant = "openseg_segfix"
        elif "module.mask_head.1.0.weight" in keys:
            variant = "openseg_segfix_torchbn"
        else:
            raise ConversionError(
                "not an openseg SegFix checkpoint: none of 'module.mask_head.1.weight' "
                "(InPlaceABNSync heads) or 'module.mask_head.1.0.weight' (SyncBN/BN + ReLU heads)"
            )
        _refuse_hrnet2x(state_dict)
        return variant
    if "backbone.stem.0.weight" in keys:
        return "mmseg_r101"
    if "backbone.conv1.weight" in keys and "decode_head.1.bottleneck.conv.weight" in keys:
        return "mmseg"
    raise ConversionError(
        "not an mmseg OCRNet checkpoint: neither 'backbone.conv1.weight' with "
        "'decode_head.1.bottleneck.conv.weight' (HRNet) nor 'backbone.stem.0.weight' (ResNetV1c)"
    )


_SEGFIX_BACKBONE = "module.backbone."
# Keys only HRNet2x has: its stem's transition and first stage, and stage 4's fifth branch.
_HRNET2X_KEY = re.compile(
    re.escape(_SEGFIX_BACKBONE) + r"(?:(?:transition0|stage1)\.|stage4\.\d+\.branches\.4\.).+"
)
_HRNETV2_KEYS = ("conv2.weight", "bn2.weight", "layer1.0.conv1.weight")


def _refuse_hrnet2x(state_dict: Dict[str, Tensor]) -> None:
    """Raise if an openseg SegFix state dict's backbone is HRNet2x (openseg's
    ``HighResolutionNext``: one-conv stem, ``transition0``/``stage1``, five branches, a head input
    of ``31 x width`` channels), which the project does not have.

    Raises:
        ConversionError: HRNet2x keys, or a ``mask_head`` input that is a multiple of 31 and not
            of 15 (names the keys found and the HRNetV2 keys missing).
    """
    hrnet2x = sorted(k for k in state_dict if _HRNET2X_KEY.fullmatch(k))
    head = state_dict.get("module.mask_head.0.weight")
    channels = int(head.shape[1]) if head is not None and head.dim() == 4 else None
    by_shape = channels is not None and channels % 15 != 0 and channels % 31 == 0
    if not hrnet2x and not by_shape:
        return
    missing = [
        _SEGFIX_BACKBONE + k for k in _HRNETV2_KEYS if _SEGFIX_BACKBONE + k not in state_dict
    ]
    evidence = []
    if hrnet2x:
        evidence.append(f"{len(hrnet2x)} HRNet2x backbone keys, e.g. {hrnet2x[:3]}")
    if by_shape:
        evidence.append(
            f"'module.mask_head.0.weight' reads {channels} channels (HRNet2x: 31 x width; "
            "HRNetV2: 15 x width, 720 for W48)"
        )
    raise ConversionError(
        "an openseg SegFix checkpoint on an HRNet2x backbone (openseg's HighResolutionNext, "
        "'hrnet2x20'/'hrnext20'; "
        + "; ".join(evidence)
        + "): HRNet2x backbones are not supported here, the project's HRNet "
        "(build_hrnet_backbone) is HRNetV2 only (two-conv stem, layer1, four branches); "
        f"HRNetV2 keys missing from the file: {missing or 'none'}"
    )


# ------------------------------------------------------------------------------------------
# Target model
# ------------------------------------------------------------------------------------------
def build_target_model(config_file: str, opts: List[str] = ()) -> Dict[str, Tensor]:
    """Names and shapes of the whole model of ``config_file`` (built on the meta device)."""
    cfg = setup_cfg(config_file, list(opts) + ["MODEL.WEIGHTS", ""])
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    return model.state_dict()


def _aux_classifier(target: Dict[str, Tensor]) -> str:
    indices = {
        int(m.group(1))
        for k in target
        for m in [re.match(r"sem_seg_head\.aux_branch\.layers\.(\d+)\.", k)]
        if m
    }
    return (
        f"sem_seg_head.aux_branch.layers.{max(indices)}"
        if indices
        else "sem_seg_head.aux_branch.layers.0"
    )


# ------------------------------------------------------------------------------------------
# Renaming
# ------------------------------------------------------------------------------------------
def rename_released(
    variant: str, state_dict: Dict[str, Tensor], target: Dict[str, Tensor]
) -> Tuple[Dict[str, Tensor], Dict[str, str], List[str]]:
    """Rename a released state dict (prefixes included) to the model's names.

    Returns:
        ``(renamed, sources, unmatched)``: target name -> tensor (biases folded, g's halves
        swapped), target name -> source name(s), source keys that map to nothing.
    Raises:
        ConversionError: a conv bias that the variant always has before a BN is missing
            (names the keys).
    """
    spec = VARIANTS[variant]
    missing_biases = [
        f"{spec.prefix}{spec.head[role][0]}.bias"
        for role in spec.biased
        if f"{spec.prefix}{spec.head[role][0]}.bias" not in state_dict
    ]
    if missing_biases:
        raise ConversionError(
            f"{variant} checkpoint without the conv biases before BN that its code always has "
            f"({len(missing_biases)}):\n  " + "\n  ".join(missing_biases)
        )
    roles = dict(_TARGET_ROLES, aux_cls=_aux_classifier(target))
    head: Dict[str, Tuple[str, str]] = {}  # source key -> (target key, how)
    for role, (conv, bn) in spec.head.items():
        module = roles[role]
        head[f"{spec.prefix}{conv}.weight"] = (f"{module}.weight", "copy")
        if f"{module}.bias" in target:
            head[f"{spec.prefix}{conv}.bias"] = (f"{module}.bias", "copy")
        else:  # a bias before BN: folded into its running mean
            head[f"{spec.prefix}{conv}.bias"] = (f"{module}.norm.running_mean", "fold")
        if bn is not None:
            for p in _BN_PARAMS:
                head[f"{spec.prefix}{bn}.{p}"] = (f"{module}.norm.{p}", "copy")

    renamed: Dict[str, Tensor] = {}
    sources: Dict[str, str] = {}
    folds: Dict[str, Tuple[str, Tensor]] = {}
    unmatched: List[str] = []
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked") or name.startswith(spec.dropped):
            continue
        if name in head:
            new, how = head[name]
            if how == "fold":
                folds[new] = (name, value)
                continue
        else:
            new = spec.backbone(name)
            if new is None:
                unmatched.append(name)
                continue
        renamed[new], sources[new] = value, name
    for new, (name, bias) in folds.items():
        if new not in renamed:
            unmatched.append(f"{name} (a bias before BN, whose {new} is missing)")
            continue
        mean = renamed[new]
        if mean.shape != bias.shape:
            unmatched.append(
                f"{name} {tuple(bias.shape)} (a bias before BN, {new} is {tuple(mean.shape)})"
            )
            continue
        renamed[new] = (mean.double() - bias.double()).to(mean.dtype)
        sources[new] = f"{sources[new]} - {name}"
    if _G_WEIGHT in renamed:
        w = renamed[_G_WEIGHT]
        half = w.shape[1] // 2
        renamed[_G_WEIGHT] = torch.cat([w[:, half:], w[:, :half]], dim=1)
        sources[_G_WEIGHT] += " (input halves swapped: [context, x] -> [x, context])"
    return renamed, sources, unmatched


def convert_released(
    kind: str,
    state_dict: Dict[str, Tensor],
    *,
    config_file: Optional[str] = None,
    opts: List[str] = (),
) -> Tuple[Dict[str, Tensor], str, str]:
    """Convert and check a released ``kind`` state dict against the whole model.

    Args:
        kind: ``hrnet_ocr``, ``openseg``, ``mmseg``, ``nvidia`` or ``segfix``.
        state_dict: as read by :func:`load_released` (prefixes kept).
        config_file: the config of the target model (default: the variant's released
            Cityscapes config).
        opts: config overrides.
    Returns:
        ``(model state dict, variant, config_file)``.
    Raises:
        ConversionError: a source key maps to nothing, a model key is left without weights,
            or shapes differ (the message names every such key).
    """
    variant = detect_variant(kind, state_dict)
    config_file = config_file or default_config(variant)
    target = build_target_model(config_file, opts)
    renamed, sources, unmatched = rename_released(variant, state_dict, target)
    conversion = Conversion(
        renamed,
        sources,
        unmatched,
        target,
        f"model of {os.path.relpath(config_file)}",
        VARIANTS[variant].author,
        f"--config-file {config_file}",
    )
    check_state_dict(conversion)
    return renamed, variant, config_file


def convert_released_checkpoint(
    kind: str,
    source: str,
    output: str,
    *,
    config_file: Optional[str] = None,
    opts: List[str] = (),
    overwrite: bool = False,
    trusted: bool = False,
) -> Dict[str, Tensor]:
    """Read ``source``, convert it (:func:`convert_released`) and write ``output`` (``.pth`` or
    ``.pkl``, Detectron2's ``{"model", "__author__", "matching_heuristics": False}``) through
    :func:`~panoptic_ocr.utils.safe_write.atomic_file`.

    Raises:
        ConversionError: as :func:`convert_released`; nothing is written.
        panoptic_ocr.utils.safe_write.OutputExistsError: ``output`` exists and not ``overwrite``.
    """
    if not output.endswith((".pkl", ".pth")):
        raise ValueError(f"output must end with .pkl or .pth, got {output!r}")
    check_writable(output, overwrite=overwrite)
    state_dict = load_released(source, trusted=trusted)
    try:
        converted, variant, config_file = convert_released(
            kind, state_dict, config_file=config_file, opts=opts
        )
    except ConversionError as e:
        raise ConversionError(f"{source}: {e}") from None
    author = f"{VARIANTS[variant].author} ({os.path.basename(source)}), panoptic_ocr"
    save_checkpoint(converted, output, author, overwrite=overwrite)
    logger.info(
        "%s (%s): wrote %d tensors to %s; evaluate with train_net.py --eval-only "
        "--config-file %s MODEL.WEIGHTS %s",
        source,
        variant,
        len(converted),
        output,
        config_file,
        output,
    )
    return converted
