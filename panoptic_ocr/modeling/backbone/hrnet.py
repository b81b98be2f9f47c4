"""HRNetV2 (Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition",
TPAMI 2020), the backbone of the OCR paper's strongest models (HRNetV2-W48 + OCR).

Structure of HRNetV2-W``C`` (branch widths ``C, 2C, 4C, 8C``):

- stem: two 3x3 stride-2 conv-norm-ReLU, 64 channels (stride 4);
- stage 1 (``layer1``): 4 bottleneck blocks, 64 -> 256 channels;
- stages 2/3/4: 1/4/3 high-resolution modules with 2/3/4 branches; each module runs 4 basic
  blocks per branch, then fuses the branches: every output branch is the ReLU of the sum of
  all input branches, brought to its resolution (1x1 conv-norm then bilinear upsampling from
  lower resolutions, chains of 3x3 stride-2 convs from higher ones);
- transitions before stages 2/3/4 adapt widths and open a new branch at half the resolution;
- output (the "V2" representation): the four branches upsampled to the first one (stride 4)
  and concatenated, ``15 C`` channels (720 for W48).

Parameter names follow the HRNet authors' code (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition1``, ``stage2``, ... with ``branches`` and ``fuse_layers`` inside the
modules), so their ImageNet checkpoints load after dropping the classification-only keys
(see ``tools/convert_pretrained.py``).
"""

from typing import Dict, List, Sequence

import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["HRNet", "HighResolutionModule", "build_hrnet_backbone"]

# Number of high-resolution modules in stages 2, 3 and 4 of HRNetV2 (W18/W32/W48 alike).
_MODULES_PER_STAGE = (1, 4, 3)
_BLOCKS_PER_BRANCH = 4
_STEM_CHANNELS = 64
_BOTTLENECK_EXPANSION = 4


def _conv_norm(
    in_channels: int,
    out_channels: int,
    norm: str,
    *,
    kernel_size: int = 3,
    stride: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    """``Sequential(conv, norm[, ReLU])``: the parameter layout ``.0.weight``, ``.1.*`` of the
    authors' transition and fuse layers."""
    layers = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        ),
        get_norm(norm, out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv-norm layers with an identity shortcut (HRNet's ``BASIC`` block).

    Shapes: ``[N, C_in, H, W] -> [N, C_out, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: str = "BN"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = get_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = get_norm(norm, out_channels)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = _conv_norm(in_channels, out_channels, norm, kernel_size=1, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) conv-norm layers with a shortcut (stage 1 of HRNet).

    Shapes: ``[N, C_in, H, W] -> [N, 4 * mid_channels, H, W]``.
    """

    def __init__(self, in_channels: int, mid_channels: int, *, norm: str = "BN"):
        super().__init__()
        out_channels = mid_channels * _BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = get_norm(norm, mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, padding=1, bias=False)
        self.bn2 = get_norm(norm, mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = get_norm(norm, out_channels)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = _conv_norm(in_channels, out_channels, norm, kernel_size=1, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks followed by a multi-resolution fusion.

    ``fuse_layers[i][j]`` brings branch ``j`` to branch ``i``'s resolution and width: identity
    for ``j == i``; 1x1 conv-norm then bilinear upsampling to the exact size of branch ``i`` for
    ``j > i``; ``i - j`` stride-2 3x3 conv-norm layers (ReLU between them) for ``j < i``.
    Upsampling to the exact size (not by a fixed factor) makes odd input sizes work.

    Shapes: list of ``[N, widths[b], H_b, W_b]`` -> the same list (every branch fused).
    """

    def __init__(
        self,
        widths: Sequence[int],
        *,
        num_blocks: int = 4,
        norm: str = "BN",
        align_corners: bool = False,
    ):
        super().__init__()
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(w, w, norm=norm) for _ in range(num_blocks))) for w in widths
        )
        fuse_layers = []
        for i, width_i in enumerate(widths):
            row = []
            for j, width_j in enumerate(widths):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(_conv_norm(width_j, width_i, norm, kernel_size=1, relu=False))
                else:
                    steps = [_conv_norm(width_j, width_j, norm, stride=2) for _ in range(i - j - 1)]
                    steps.append(_conv_norm(width_j, width_i, norm, stride=2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)

    def forward(self, xs: List[Tensor]) -> List[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        outputs = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:
                    z = F.interpolate(
                        z, size=xs[i].shape[-2:], mode="bilinear", align_corners=self.align_corners
                    )
                y = y + z
            outputs.append(F.relu(y))
        return outputs


class HRNet(Backbone):
    """HRNetV2 as a Detectron2 backbone.

    Outputs (any subset, via ``out_features``):

    - ``"concat"``: the four branches upsampled bilinearly to branch 1 (stride 4) and
      concatenated, ``[N, 15 * width, ceil(H / 4), ceil(W / 4)]`` (720 channels for W48);
    - ``"branch1"`` ... ``"branch4"``: the branches themselves, ``[N, width * 2^(b-1),
      ceil(H / s), ceil(W / s)]`` at stride ``s = 4 * 2^(b-1)``.

    Every stride-2 conv has padding 1, so each resolution is ``ceil`` of the previous one over
    2 and any input size works, odd sizes included.
    """

    def __init__(
        self,
        width: int = 48,
        *,
        in_channels: int = 3,
        norm: str = "BN",
        out_features: Sequence[str] = ("concat",),
        align_corners: bool = False,
        freeze_at: int = 0,
    ):
        """
        Args:
            width: width of the first branch, ``C`` in HRNetV2-W``C``; the branches have
                ``C, 2C, 4C, 8C`` channels.
            in_channels: channels of the input image.
            norm: normalisation of every conv, any name :func:`detectron2.layers.get_norm`
                accepts ("BN", "SyncBN", "naiveSyncBN", "FrozenBN", "GN", ...).
            out_features: names of the returned features (see the class docstring).
            align_corners: ``align_corners`` of every bilinear upsampling (fusion and output).
            freeze_at: 0 trains everything; 1 freezes the stem; 2 (or more) the stem and
                stage 1 (as Detectron2's ``MODEL.BACKBONE.FREEZE_AT`` for ResNets). Frozen norms
                become :class:`FrozenBatchNorm2d`.
        """
        super().__init__()
        if width <= 0:
            raise ValueError(f"HRNet width must be positive, got {width}")
        widths = [width * 2**b for b in range(4)]
        self.widths = widths
        self.align_corners = align_corners

        self.conv1 = nn.Conv2d(in_channels, _STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn1 = get_norm(norm, _STEM_CHANNELS)
        self.conv2 = nn.Conv2d(_STEM_CHANNELS, _STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn2 = get_norm(norm, _STEM_CHANNELS)
        stage1_channels = _STEM_CHANNELS * _BOTTLENECK_EXPANSION
        self.layer1 = nn.Sequential(
            *(
                Bottleneck(_STEM_CHANNELS if b == 0 else stage1_channels, _STEM_CHANNELS, norm=norm)
                for b in range(_BLOCKS_PER_BRANCH)
            )
        )

        previous = [stage1_channels]
        for stage, num_modules in enumerate(_MODULES_PER_STAGE, start=2):
            current = widths[:stage]
            self.add_module(f"transition{stage - 1}", self._transition(previous, current, norm))
            modules = [
                HighResolutionModule(
                    current, num_blocks=_BLOCKS_PER_BRANCH, norm=norm, align_corners=align_corners
                )
                for _ in range(num_modules)
            ]
            self.add_module(f"stage{stage}", nn.Sequential(*modules))
            previous = current

        self._out_feature_channels = {"concat": sum(widths)}
        self._out_feature_strides = {"concat": 4}
        for b, w in enumerate(widths):
            self._out_feature_channels[f"branch{b + 1}"] = w
            self._out_feature_strides[f"branch{b + 1}"] = 4 * 2**b
        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown or not out_features:
            raise ValueError(
                f"HRNet out_features must be a non-empty subset of "
                f"{sorted(self._out_feature_channels)}, got {list(out_features)}"
            )
        self._out_features = list(out_features)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._freeze(freeze_at)

    @staticmethod
    def _transition(previous: List[int], current: List[int], norm: str) -> nn.ModuleList:
        """Adapt the branches of the previous stage to ``current``: a 3x3 conv-norm-ReLU where a
        width changes (identity otherwise), and for a new branch, a stride-2 3x3 conv-norm-ReLU
        from the last previous branch, nested one level as in the authors' code."""
        layers = []
        for b, width in enumerate(current):
            if b < len(previous):
                if previous[b] == width:
                    layers.append(nn.Identity())
                else:
                    layers.append(_conv_norm(previous[b], width, norm))
            else:
                layers.append(nn.Sequential(_conv_norm(previous[-1], width, norm, stride=2)))
        return nn.ModuleList(layers)

    def _freeze(self, freeze_at: int) -> None:
        groups = {1: ["conv1", "bn1", "conv2", "bn2"], 2: ["layer1"]}
        for level in range(1, freeze_at + 1):
            for name in groups.get(level, []):
                module = getattr(self, name)
                for p in module.parameters():
                    p.requires_grad = False
                setattr(self, name, FrozenBatchNorm2d.convert_frozen_batchnorm(module))

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """``x``: ``[N, in_channels, H, W]`` -> dict of the requested features."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in range(2, 2 + len(_MODULES_PER_STAGE)):
            transition = getattr(self, f"transition{stage - 1}")
            # Existing branches pass through their transition, a new one grows from the last.
            xs = [layer(xs[min(b, len(xs) - 1)]) for b, layer in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)

        outputs = {f"branch{b + 1}": xs[b] for b in range(len(xs))}
        if "concat" in self._out_features:
            size = xs[0].shape[-2:]
            upsampled = [
                F.interpolate(z, size=size, mode="bilinear", align_corners=self.align_corners)
                for z in xs[1:]
            ]
            outputs["concat"] = torch.cat([xs[0]] + upsampled, dim=1)
        return {name: outputs[name] for name in self._out_features}


@BACKBONE_REGISTRY.register()
def build_hrnet_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """HRNetV2 from ``MODEL.HRNET`` (width, norm, outputs, align_corners) and
    ``MODEL.BACKBONE.FREEZE_AT``."""
    hrnet = cfg.MODEL.HRNET
    return HRNet(
        hrnet.WIDTH,
        in_channels=input_shape.channels,
        norm=hrnet.NORM,
        out_features=hrnet.OUT_FEATURES,
        align_corners=hrnet.ALIGN_CORNERS,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )
