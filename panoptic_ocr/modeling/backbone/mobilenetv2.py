"""Dilated MobileNetV2 (Sandler et al., CVPR 2018) at output stride 8, the light backbone of the
OCR paper's supplementary section D.

The network is torchvision's ``mobilenet_v2`` definition (its ``features``, without the final
1x1 conv to 1280 channels and the classifier), so parameter names are torchvision's and its
ImageNet weights load as they are (see ``tools/convert_pretrained.py``). Strided stages beyond
``output_stride`` run at stride 1 with dilated depthwise convs, as DeepLab does: every block of
a stage that would have stride 16 (32) gets dilation 2 (4) at output stride 8.

Stages (``features`` indices, channels, stride at output stride 8):

==========  ========  ========  ======
name        features  channels  stride
==========  ========  ========  ======
``stage1``  0-1       16        2
``stage2``  2-3       24        4
``stage3``  4-6       32        8
``stage4``  7-13      96        8
``stage5``  14-17     320       8
==========  ========  ========  ======
"""

from typing import Dict, Sequence

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from torch import Tensor, nn
from torchvision.models import mobilenet_v2

__all__ = ["DilatedMobileNetV2", "build_mobilenetv2_backbone"]

# Last ``features`` index, channels and nominal (undilated) stride of each stage.
_STAGES = {
    "stage1": (1, 16, 2),
    "stage2": (3, 24, 4),
    "stage3": (6, 32, 8),
    "stage4": (13, 96, 16),
    "stage5": (17, 320, 32),
}


class DilatedMobileNetV2(Backbone):
    """MobileNetV2 features as a Detectron2 backbone with a configurable output stride.

    Shapes: ``[N, 3, H, W]`` -> ``{name: [N, C, ceil(H / s), ceil(W / s)]}`` for the requested
    stages (``C``, ``s`` from :meth:`output_shape`).
    """

    def __init__(
        self,
        *,
        out_features: Sequence[str] = ("stage4", "stage5"),
        output_stride: int = 8,
        norm: str = "BN",
        freeze_at: int = 0,
    ):
        """
        Args:
            out_features: stages to return, a subset of ``stage1`` ... ``stage5``; the network
                is built only up to the deepest of them.
            output_stride: 8, 16 or 32; strides beyond it become dilations.
            norm: normalisation of every conv, any name :func:`detectron2.layers.get_norm`
                accepts ("BN", "SyncBN", "naiveSyncBN", "FrozenBN", ...; torchvision: BN).
            freeze_at: 0 trains everything, ``k`` freezes stages 1..k (norms become
                :class:`FrozenBatchNorm2d`), like ``MODEL.BACKBONE.FREEZE_AT`` for ResNets.
        """
        super().__init__()
        unknown = [f for f in out_features if f not in _STAGES]
        if unknown or not out_features:
            raise ValueError(
                f"MobileNetV2 out_features must be a non-empty subset of {sorted(_STAGES)}, "
                f"got {list(out_features)}"
            )
        if output_stride not in (8, 16, 32):
            raise ValueError(f"MobileNetV2 output_stride must be 8, 16 or 32, got {output_stride}")
        if not norm:
            raise ValueError("MobileNetV2 needs a norm (torchvision's blocks have no conv bias)")
        self._out_features = list(out_features)
        last_index = max(_STAGES[f][0] for f in out_features)

        network = mobilenet_v2(weights=None, norm_layer=lambda channels: get_norm(norm, channels))
        self.features = nn.Sequential(*list(network.features)[: last_index + 1])
        self._dilate(output_stride)

        self._stage_ends = {}
        self._out_feature_channels = {}
        self._out_feature_strides = {}
        for name, (index, channels, stride) in _STAGES.items():
            if index <= last_index:
                self._stage_ends[index] = name
                self._out_feature_channels[name] = channels
                self._out_feature_strides[name] = min(stride, output_stride)
        self._freeze(freeze_at)

    def _dilate(self, output_stride: int) -> None:
        """Stride 1 and dilated depthwise convs for every block past ``output_stride``."""
        stride, dilation = 2, 1  # features[0] (the stem conv) has stride 2
        for block in self.features[1:]:
            if block.stride == 2:
                if stride < output_stride:
                    stride *= 2
                else:
                    dilation *= 2
                    block.stride = 1
                    # Stride-2 blocks change the width, so they have no residual to re-enable.
                    assert not block.use_res_connect
            if dilation > 1:
                depthwise = [
                    m for m in block.conv.modules() if isinstance(m, nn.Conv2d) and m.groups > 1
                ]
                assert len(depthwise) == 1, "InvertedResidual has one depthwise conv"
                depthwise[0].stride = (1, 1)
                depthwise[0].dilation = (dilation, dilation)
                depthwise[0].padding = (dilation, dilation)

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at <= 0:
            return
        last = _STAGES[f"stage{min(freeze_at, len(_STAGES))}"][0]
        for index in range(min(last, len(self.features) - 1) + 1):
            for p in self.features[index].parameters():
                p.requires_grad = False
            self.features[index] = FrozenBatchNorm2d.convert_frozen_batchnorm(self.features[index])

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """``x``: ``[N, 3, H, W]`` -> dict of the requested stages."""
        outputs = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            name = self._stage_ends.get(index)
            if name in self._out_features:
                outputs[name] = x
        return outputs


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Dilated MobileNetV2 from ``MODEL.MOBILENETV2`` and ``MODEL.BACKBONE.FREEZE_AT``."""
    if input_shape.channels != 3:
        raise ValueError(f"MobileNetV2 takes 3-channel images, got {input_shape.channels}")
    node = cfg.MODEL.MOBILENETV2
    return DilatedMobileNetV2(
        out_features=node.OUT_FEATURES,
        output_stride=node.OUTPUT_STRIDE,
        norm=node.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )
