"""Dilated ResNets at output stride 8 or 16, for every depth.

Detectron2's DeepLab project dilates only bottleneck ResNets (50/101/152) and Detectron2's core
ResNet-18/34 cannot be dilated at all. This module adds a dilated basic block, so ResNet-18/34 can
run at output stride 8 as in the "R18-D8" models of the semantic-segmentation literature, and
delegates the bottleneck depths to ``detectron2.projects.deeplab``.

Two options reproduce the dilated ResNets of released OCR models (both off by default, which
builds exactly Detectron2's DeepLab ResNet): ``MODEL.RESNETS.CONTRACT_DILATION`` gives the first
block of a dilated stage half the stage's dilation (openseg's ``_nostride_dilate``, mmseg's
``contract_dilation=True``) and ``MODEL.RESNETS.STEM_POOL_CEIL_MODE`` rounds the stem's max-pool
up (openseg's ``MaxPool2d(3, 2, 1, ceil_mode=True)``).
"""

from typing import List

from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
from detectron2.projects.deeplab.resnet import DeepLabStem, build_resnet_deeplab_backbone
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "DilatedBasicBlock",
    "CeilPoolDeepLabStem",
    "CeilPoolBasicStem",
    "build_dilated_resnet_backbone",
]


class CeilPoolDeepLabStem(DeepLabStem):
    """Detectron2's DeepLab stem (three 3x3 conv-norm-ReLU, the first with stride 2) whose
    3x3 stride-2 max-pool rounds up (``ceil_mode=True``).

    Shapes: ``[N, C_in, H, W] -> [N, out_channels, ceil((ceil(H / 2) - 1) / 2) + 1, ...]``.
    """

    def forward(self, x: Tensor) -> Tensor:
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.relu_(conv(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)


class CeilPoolBasicStem(BasicStem):
    """Detectron2's 7x7 stem whose max-pool rounds up (``ceil_mode=True``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)


class DilatedBasicBlock(CNNBlockBase):
    """ResNet basic block (two 3x3 convs) whose convs may be dilated.

    Shapes: ``[N, in_channels, H, W] -> [N, out_channels, H / stride, W / stride]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "BN",
    ):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                stride=stride,
                bias=False,
                norm=get_norm(norm, out_channels),
            )
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        self.conv2 = Conv2d(
            out_channels,
            out_channels,
            kernel_size=3,
            padding=dilation,
            dilation=dilation,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out + identity)


_BASIC_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
_BOTTLENECK_BLOCKS_PER_STAGE = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def _stage_dilations(
    dilation: int, num_blocks: int, multi_grid, *, res5: bool, contract: bool
) -> List[int]:
    """Dilation of each block of a stage: ``dilation`` (times ``multi_grid`` in res5); with
    ``contract`` the first block of a dilated stage gets ``dilation // 2`` instead."""
    if res5:
        dilations = [dilation * multi_grid[i % len(multi_grid)] for i in range(num_blocks)]
    else:
        dilations = [dilation] * num_blocks
    if contract and dilation > 1:
        dilations[0] = dilation // 2
    return dilations


def _build_stem(cfg, input_shape: ShapeSpec):
    norm = cfg.MODEL.RESNETS.NORM
    stem_type = cfg.MODEL.RESNETS.STEM_TYPE
    stem_channels = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
    ceil = cfg.MODEL.RESNETS.STEM_POOL_CEIL_MODE
    if stem_type == "basic":
        return (CeilPoolBasicStem if ceil else BasicStem)(
            input_shape.channels, stem_channels, norm=norm
        )
    if stem_type == "deeplab":
        return (CeilPoolDeepLabStem if ceil else DeepLabStem)(
            input_shape.channels, stem_channels, norm=norm
        )
    raise ValueError(f"MODEL.RESNETS.STEM_TYPE must be 'basic' or 'deeplab', got {stem_type!r}")


def _build_released_bottleneck_resnet(cfg, input_shape: ShapeSpec) -> Backbone:
    """Detectron2's DeepLab bottleneck ResNet (same names, blocks and strides) with
    ``CONTRACT_DILATION`` / ``STEM_POOL_CEIL_MODE`` applied (deformable convs not supported)."""
    r = cfg.MODEL.RESNETS
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "MODEL.RESNETS.CONTRACT_DILATION / STEM_POOL_CEIL_MODE do not support "
            "DEFORM_ON_PER_STAGE"
        )
    if (
        r.RES4_DILATION not in (1, 2)
        or r.RES5_DILATION not in (1, 2, 4)
        or (r.RES4_DILATION == 2 and r.RES5_DILATION != 4)
    ):
        raise ValueError(
            "MODEL.RESNETS.RES4_DILATION/RES5_DILATION must be 1/1, 1/2, 1/4 or 2/4, "
            f"got {r.RES4_DILATION}/{r.RES5_DILATION}"
        )
    blocks_per_stage = _BOTTLENECK_BLOCKS_PER_STAGE[r.DEPTH]
    max_stage = max({"res2": 2, "res3": 3, "res4": 4, "res5": 5}[f] for f in r.OUT_FEATURES)
    in_channels, out_channels = r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS
    bottleneck_channels = r.NUM_GROUPS * r.WIDTH_PER_GROUP
    stages = []
    for idx, stage_idx in enumerate(range(2, max_stage + 1)):
        dilation = {4: r.RES4_DILATION, 5: r.RES5_DILATION}.get(stage_idx, 1)
        num_blocks = blocks_per_stage[idx]
        first_stride = 1 if idx == 0 or dilation > 1 else 2
        stages.append(
            ResNet.make_stage(
                BottleneckBlock,
                num_blocks,
                in_channels=in_channels,
                out_channels=out_channels,
                bottleneck_channels=bottleneck_channels,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                dilation_per_block=_stage_dilations(
                    dilation,
                    num_blocks,
                    r.RES5_MULTI_GRID,
                    res5=stage_idx == 5,
                    contract=r.CONTRACT_DILATION,
                ),
                num_groups=r.NUM_GROUPS,
                stride_in_1x1=r.STRIDE_IN_1X1,
                norm=r.NORM,
            )
        )
        in_channels, out_channels, bottleneck_channels = (
            out_channels,
            out_channels * 2,
            bottleneck_channels * 2,
        )
    return ResNet(_build_stem(cfg, input_shape), stages, out_features=r.OUT_FEATURES).freeze(
        cfg.MODEL.BACKBONE.FREEZE_AT
    )


@BACKBONE_REGISTRY.register()
def build_dilated_resnet_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Dilated ResNet of any depth, read from the DeepLab keys of ``MODEL.RESNETS``.

    ``RES4_DILATION 2, RES5_DILATION 4`` gives output stride 8; ``RES5_DILATION 2`` gives 16.
    Depths 50/101/152 are built by Detectron2's ``build_resnet_deeplab_backbone``; depths 18/34
    use :class:`DilatedBasicBlock` (``RES5_MULTI_GRID`` multiplies the res5 dilations as there).
    ``CONTRACT_DILATION`` and ``STEM_POOL_CEIL_MODE`` (module docstring) apply to every depth.
    """
    depth = cfg.MODEL.RESNETS.DEPTH
    if depth not in _BASIC_BLOCKS_PER_STAGE:
        if cfg.MODEL.RESNETS.CONTRACT_DILATION or cfg.MODEL.RESNETS.STEM_POOL_CEIL_MODE:
            if depth not in _BOTTLENECK_BLOCKS_PER_STAGE:
                raise ValueError(
                    f"MODEL.RESNETS.DEPTH must be one of 18, 34, 50, 101, 152, got {depth}"
                )
            return _build_released_bottleneck_resnet(cfg, input_shape)
        return build_resnet_deeplab_backbone(cfg, input_shape)

    norm = cfg.MODEL.RESNETS.NORM
    res4_dilation = cfg.MODEL.RESNETS.RES4_DILATION
    res5_dilation = cfg.MODEL.RESNETS.RES5_DILATION
    multi_grid = cfg.MODEL.RESNETS.RES5_MULTI_GRID
    out_features = cfg.MODEL.RESNETS.OUT_FEATURES
    if res4_dilation not in (1, 2) or res5_dilation not in (1, 2, 4):
        raise ValueError(
            f"MODEL.RESNETS.RES4_DILATION must be 1 or 2 and RES5_DILATION 1, 2 or 4; "
            f"got {res4_dilation} and {res5_dilation}"
        )
    if res4_dilation == 2 and res5_dilation != 4:
        raise ValueError("MODEL.RESNETS.RES4_DILATION 2 requires RES5_DILATION 4 (output stride 8)")
    if cfg.MODEL.RESNETS.RES2_OUT_CHANNELS != 64 and depth in (18, 34):
        # The widths of R18/34 are fixed by their definition; a mismatch would silently build
        # a different network than the config's name says.
        raise ValueError(f"MODEL.RESNETS.RES2_OUT_CHANNELS must be 64 for ResNet-{depth}")

    stem_channels = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
    stem = _build_stem(cfg, input_shape)

    blocks_per_stage = _BASIC_BLOCKS_PER_STAGE[depth]
    max_stage = max({"res2": 2, "res3": 3, "res4": 4, "res5": 5}[f] for f in out_features)
    in_channels, out_channels = stem_channels, 64
    stages = []
    for idx, stage_idx in enumerate(range(2, max_stage + 1)):
        dilation = {4: res4_dilation, 5: res5_dilation}.get(stage_idx, 1)
        num_blocks = blocks_per_stage[idx]
        first_stride = 1 if idx == 0 or dilation > 1 else 2
        dilations = _stage_dilations(
            dilation,
            num_blocks,
            multi_grid,
            res5=stage_idx == 5,
            contract=cfg.MODEL.RESNETS.CONTRACT_DILATION,
        )
        stages.append(
            ResNet.make_stage(
                DilatedBasicBlock,
                num_blocks,
                in_channels=in_channels,
                out_channels=out_channels,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                dilation_per_block=dilations,
                norm=norm,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
