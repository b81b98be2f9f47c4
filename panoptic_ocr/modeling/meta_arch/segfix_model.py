"""The SegFix network (Yuan, Xie, Chen & Wang, ECCV 2020): from an image, which pixels lie on
a boundary and, for those, the direction towards the interior of their region
(:mod:`panoptic_ocr.segfix`). Its predictions refine any segmentation after the fact."""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList
from torch import Tensor, nn
from torch.nn import functional as F

from ...segfix.loss import DIRECTION_PIXELS, segfix_losses
from ...segfix.targets import NUM_DIRECTIONS, segfix_targets
from ..layers import Activation, conv_norm_relu, head_activation

__all__ = ["SegFixModel", "segfix_head"]


def segfix_head(
    in_channels: int,
    mid_channels: int,
    out_channels: int,
    norm: str,
    activation: Activation = F.relu,
) -> nn.Sequential:
    """1x1 conv-norm-activation to ``mid_channels``, then a 1x1 conv (no bias) to
    ``out_channels`` (openseg's ``mask_head`` / ``dir_head``):
    ``[N, C, h, w] -> [N, out_channels, h, w]``."""
    return nn.Sequential(
        conv_norm_relu(in_channels, mid_channels, norm, kernel_size=1, activation=activation),
        Conv2d(mid_channels, out_channels, kernel_size=1, bias=False),
    )


@META_ARCH_REGISTRY.register()
class SegFixModel(nn.Module):
    """Backbone -> its ``in_features`` resized to the first one's resolution and concatenated
    (for HRNetV2, ``"concat"``: the four branches at stride 4) -> a boundary head (2 logits) and a
    direction head (8 logits), ``MODEL.SEGFIX``.

    Input: Detectron2's list of dicts (``image`` ``[3, H, W]``; in training the label ``sem_seg``
    ``[H, W]``, and optionally ``segfix_boundary``/``segfix_direction`` targets that the
    ``"segfix"`` dataset mapper computes in the loader's workers; without them the targets are
    computed here). Output: training, ``{"loss_segfix_boundary", "loss_segfix_direction"}``
    (:func:`~panoptic_ocr.segfix.loss.segfix_losses`, on logits upsampled to the label's size);
    inference, one ``{"segfix_boundary": [height, width] probability, "segfix_direction": [8,
    height, width] logits}`` per input (the probability is taken at the features' resolution,
    then upsampled, as openseg's tester does).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        in_features: Sequence[str],
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        mid_channels: int = 256,
        norm: str = "BN",
        activation: str = "relu",
        ignore_value: int = 255,
        max_distance: int = 5,
        direction_pixels: str = "ground_truth",
        boundary_loss_weight: float = 1.0,
        direction_loss_weight: float = 1.0,
        align_corners: bool = True,
        size_divisibility: int = -1,
    ):
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if not in_features or missing:
            raise ValueError(
                f"MODEL.SEGFIX.IN_FEATURES {list(in_features)}: "
                f"{'empty' if not in_features else f'{missing} not produced'}; the backbone "
                f"outputs {sorted(shapes)}"
            )
        if direction_pixels not in DIRECTION_PIXELS:
            raise ValueError(
                f"MODEL.SEGFIX.DIRECTION_PIXELS must be one of {DIRECTION_PIXELS}, "
                f"got {direction_pixels!r}"
            )
        self.backbone = backbone
        self.in_features = list(in_features)
        channels = sum(shapes[f].channels for f in self.in_features)
        act = head_activation(activation)
        self.boundary_head = segfix_head(channels, mid_channels, 2, norm, act)
        self.direction_head = segfix_head(channels, mid_channels, NUM_DIRECTIONS, norm, act)
        self.ignore_value = ignore_value
        self.max_distance = max_distance
        self.direction_pixels = direction_pixels
        self.boundary_loss_weight = boundary_loss_weight
        self.direction_loss_weight = direction_loss_weight
        self.align_corners = align_corners
        if size_divisibility < 0:
            size_divisibility = max(s.stride for s in shapes.values())
        self.size_divisibility = max(size_divisibility, backbone.size_divisibility)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        node = cfg.MODEL.SEGFIX
        return {
            "backbone": build_backbone(cfg),
            "in_features": node.IN_FEATURES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "mid_channels": node.MID_CHANNELS,
            "norm": node.NORM,
            "activation": node.ACTIVATION,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "max_distance": node.MAX_DISTANCE,
            "direction_pixels": node.DIRECTION_PIXELS,
            "boundary_loss_weight": node.BOUNDARY_LOSS_WEIGHT,
            "direction_loss_weight": node.DIRECTION_LOSS_WEIGHT,
            "align_corners": node.ALIGN_CORNERS,
            "size_divisibility": cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def predict(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """Boundary ``[N, 2, h, w]`` and direction ``[N, 8, h, w]`` logits of a normalised,
        padded batch ``[N, 3, H, W]``, at the first input feature's resolution."""
        features = self.backbone(images)
        first = features[self.in_features[0]]
        fused = torch.cat(
            [first]
            + [
                F.interpolate(
                    features[f],
                    size=first.shape[-2:],
                    mode="bilinear",
                    align_corners=self.align_corners,
                )
                for f in self.in_features[1:]
            ],
            dim=1,
        )
        return self.boundary_head(fused), self.direction_head(fused)

    def _upsample(self, logits: Tensor, size: Tuple[int, int]) -> Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def targets(self, inputs: Dict) -> Tuple[Tensor, Tensor]:
        """The boundary and direction targets ``[H, W]`` of one input: the mapper's, or computed
        from its ``sem_seg``."""
        if "segfix_boundary" in inputs and "segfix_direction" in inputs:
            return inputs["segfix_boundary"], inputs["segfix_direction"]
        label = inputs["sem_seg"].cpu().numpy().astype(np.int64)
        boundary, direction, _ = segfix_targets(label, self.ignore_value, self.max_distance)
        return torch.from_numpy(boundary), torch.from_numpy(direction)

    def forward(self, batched_inputs: List[Dict]):
        images = ImageList.from_tensors(
            [
                (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std
                for x in batched_inputs
            ],
            self.size_divisibility,
        )
        boundary, direction = self.predict(images.tensor)
        size = images.tensor.shape[-2:]
        if self.training:
            boundary, direction = self._upsample(boundary, size), self._upsample(direction, size)
            return self.losses(batched_inputs, boundary, direction)
        # inference: the boundary probability at the features' resolution, then upsampled (as
        # openseg's tester), so that its 0.5 threshold falls where openseg's does
        boundary = self._upsample(boundary.float().softmax(dim=1)[:, 1:], size)
        direction = self._upsample(direction, size)
        return [
            self._postprocess(
                b, d, image_size, x.get("height", image_size[0]), x.get("width", image_size[1])
            )
            for b, d, image_size, x in zip(boundary, direction, images.image_sizes, batched_inputs)
        ]

    def losses(
        self, batched_inputs: List[Dict], boundary: Tensor, direction: Tensor
    ) -> Dict[str, Tensor]:
        """The losses of logits at the padded input size against each input's targets (padding:
        ignored)."""
        if not all("sem_seg" in x or "segfix_boundary" in x for x in batched_inputs):
            raise ValueError("SegFixModel needs 'sem_seg' labels (or SegFix targets) in training")
        pairs = [self.targets(x) for x in batched_inputs]
        boundary_target = ImageList.from_tensors(
            [b.to(self.device).long() for b, _ in pairs], self.size_divisibility, self.ignore_value
        ).tensor
        direction_target = ImageList.from_tensors(
            [d.to(self.device).long() for _, d in pairs], self.size_divisibility, self.ignore_value
        ).tensor
        h, w = boundary_target.shape[-2:]
        return segfix_losses(
            boundary[..., :h, :w],
            direction[..., :h, :w],
            boundary_target,
            direction_target,
            ignore_value=self.ignore_value,
            direction_pixels=self.direction_pixels,
            boundary_weight=self.boundary_loss_weight,
            direction_weight=self.direction_loss_weight,
        )

    def _postprocess(
        self, boundary: Tensor, direction: Tensor, image_size, height: int, width: int
    ) -> Dict[str, Tensor]:
        h, w = image_size
        boundary, direction = boundary[None, :, :h, :w], direction[None, :, :h, :w]
        if (h, w) != (height, width):
            boundary = self._upsample(boundary, (height, width))
            direction = self._upsample(direction, (height, width))
        return {
            "segfix_boundary": boundary.float()[0, 0],
            "segfix_direction": direction.float()[0],
        }
