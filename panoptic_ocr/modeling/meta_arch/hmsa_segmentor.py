"""Hierarchical multi-scale attention around any semantic head and backbone: the segmentor runs
at several image scales, an attention head on the head's final representation weighs each
scale per pixel, and the scales are combined from the largest down
(:mod:`panoptic_ocr.modeling.multi_scale_attention`)."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor
from torch.nn import functional as F

from ..input_size import check_input_pixels
from ..losses import CrossEntropyLoss
from ..multi_scale_attention import (
    ScaleAttentionHead,
    ScalePrediction,
    check_scales,
    combine_scales,
    resize_image,
    scaled_size,
)
from ..precision import inference_autocast, resolve_inference_dtype
from ..sliding_window import sliding_window_logits
from .semantic_segmentor import BUILT_WINDOW, OCRSemanticSegmentor, WindowArg, postprocess_logits

__all__ = ["HMSASemanticSegmentor"]


@META_ARCH_REGISTRY.register()
class HMSASemanticSegmentor(OCRSemanticSegmentor):
    """:class:`OCRSemanticSegmentor` with hierarchical multi-scale attention (``MODEL.HMSA``).

    At each scale s the normalised image is resized by s (``floor(H*s) x floor(W*s)``,
    bilinear), padded to ``size_divisibility`` and run through backbone and head; the head's
    logits (and auxiliary logits in training) and the attention that ``scale_attention`` reads
    from the head's final representation are upsampled to that scale's input size. The scales
    are combined by :func:`~panoptic_ocr.modeling.multi_scale_attention.combine_scales` at scale
    1.0's size: ``train_scales`` in training, ``test_scales`` at inference.

    Training loss: the head's losses of the combined logits and combined auxiliary logits
    (``loss_sem_seg``, ``loss_sem_seg_aux`` x ``AUX_LOSS_WEIGHT``: NVIDIA's ``0.4 * aux +
    main``), plus, with ``supervised_scale_weight`` w > 0, ``loss_sem_seg_<s>x`` = w x
    cross-entropy of each scale's own logits resized to scale 1.0 (NVIDIA's
    ``SUPERVISED_MSCALE_WT``).

    Inference keeps Detectron2's contract (one ``{"sem_seg": [K, height, width]}`` per input) and
    the parent's options: the inference dtype, channels-last input, and the sliding window,
    which runs at every scale on the scaled image (logits and attention averaged over windows).
    Flip test-time augmentation is ``TEST.AUG`` around this model. A head must provide
    ``forward_features`` (every :class:`~panoptic_ocr.modeling.heads.ContextHead` does) and must
    not read the labels at inference (the OCR* oracle).
    """

    @configurable
    def __init__(
        self,
        *,
        scale_attention: torch.nn.Module,
        train_scales: Sequence[float] = (0.5, 1.0),
        test_scales: Sequence[float] = (0.5, 1.0, 2.0),
        supervised_scale_weight: float = 0.0,
        **kwargs,
    ):
        """
        Args:
            scale_attention: ``[N, C, h, w] -> [N, 1, h, w]`` (sigmoid) on the head's final
                representation (:class:`ScaleAttentionHead`).
            train_scales, test_scales: image scales of training and inference; each contains 1.0.
            supervised_scale_weight: weight of the per-scale cross-entropy terms (0: none).
            kwargs: :class:`OCRSemanticSegmentor`'s arguments.
        """
        super().__init__(**kwargs)
        head_name = type(self.sem_seg_head).__name__
        if not hasattr(self.sem_seg_head, "forward_features"):
            raise ValueError(
                f"HMSASemanticSegmentor: MODEL.SEM_SEG_HEAD.NAME {head_name} has no "
                "forward_features(features) -> (logits, aux_logits, representation): use a "
                "ContextHead (OCRHead, PPMHead, ASPPHead, ...)"
            )
        if getattr(self.sem_seg_head, "uses_targets_at_inference", False):
            raise ValueError(
                f"HMSASemanticSegmentor: {head_name} reads the labels at inference; "
                "multi-scale attention does not resize labels to each scale"
            )
        if supervised_scale_weight < 0:
            raise ValueError(
                f"MODEL.HMSA.SUPERVISED_SCALE_WEIGHT must be >= 0, got {supervised_scale_weight}"
            )
        self.scale_attention = scale_attention
        self.train_scales = check_scales(train_scales, "MODEL.HMSA.TRAIN_SCALES")
        self.test_scales = check_scales(test_scales, "MODEL.HMSA.TEST_SCALES")
        self.supervised_scale_weight = float(supervised_scale_weight)
        self.scale_loss = CrossEntropyLoss(ignore_value=self.sem_seg_head.ignore_value)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        node = cfg.MODEL.HMSA
        context = getattr(ret["sem_seg_head"], "context", None)
        in_channels = getattr(context, "out_channels", None)
        if in_channels is None:
            raise ValueError(
                f"HMSASemanticSegmentor: MODEL.SEM_SEG_HEAD.NAME {cfg.MODEL.SEM_SEG_HEAD.NAME} "
                "has no context module whose out_channels the attention reads"
            )
        ret["scale_attention"] = ScaleAttentionHead(
            in_channels,
            node.ATTENTION_CHANNELS,
            node.ATTENTION_NUM_CONVS,
            node.ATTENTION_NORM or cfg.MODEL.SEM_SEG_HEAD.NORM,
        )
        ret["train_scales"] = node.TRAIN_SCALES
        ret["test_scales"] = node.TEST_SCALES
        ret["supervised_scale_weight"] = node.SUPERVISED_SCALE_WEIGHT
        return ret

    @property
    def align_corners(self) -> bool:
        """``align_corners`` of every resize (the head's ``MODEL.SEM_SEG_HEAD.ALIGN_CORNERS``)."""
        return getattr(self.sem_seg_head, "align_corners", False)

    # --------------------------------------------------------------------------------------
    # One scale
    # --------------------------------------------------------------------------------------
    def _run(self, x: Tensor, with_aux: bool) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        """Logits, auxiliary logits (or None) and attention of a padded normalised batch
        ``[N, 3, H, W]``, each upsampled to ``H x W`` (float32 at inference)."""
        inference = not self.training
        if inference and self.inference_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = (
            resolve_inference_dtype(self.inference_dtype, self.device.type) if inference else None
        )
        with inference_autocast(dtype, self.device.type):
            logits, aux, representation = self.sem_seg_head.forward_features(self.backbone(x))
            attention = self.scale_attention(representation)

        def up(t: Tensor) -> Tensor:
            t = t.float() if inference else t
            return F.interpolate(
                t, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners
            )

        return up(logits), (up(aux) if with_aux and aux is not None else None), up(attention)

    def predict_scale(
        self,
        images: List[Tensor],
        scale: float,
        *,
        with_aux: bool = False,
        window: WindowArg = None,
    ) -> List[ScalePrediction]:
        """Per image, the prediction at ``scale`` of normalised images ``[3, H_i, W_i]``, at the
        scaled size (batch dimension 1). With ``window`` (inference), each scaled image is
        segmented in overlapping windows."""
        scaled = [resize_image(image, scale, self.align_corners) for image in images]
        window = self._window(window)
        if window is None:
            logits, aux, attention = self._run(self.pad(scaled).tensor, with_aux)
            out = []
            for i, image in enumerate(scaled):
                h, w = image.shape[-2:]
                out.append(
                    ScalePrediction(
                        logits[i : i + 1, :, :h, :w],
                        attention[i : i + 1, :, :h, :w],
                        None if aux is None else aux[i : i + 1, :, :h, :w],
                    )
                )
            return out

        def segment(crops: List[Tensor], crop_targets) -> Tensor:
            logits, _, attention = self._run(self.pad(crops).tensor, with_aux=False)
            return torch.cat([logits, attention], dim=1)

        out = []
        for image in scaled:
            stacked = sliding_window_logits(segment, image, window)  # [K + 1, h, w]
            out.append(ScalePrediction(stacked[None, :-1], stacked[None, -1:]))
        return out

    def predict_scales(
        self,
        images: List[Tensor],
        scales: Sequence[float],
        *,
        with_aux: bool = False,
        window: WindowArg = None,
    ) -> List[Dict[float, ScalePrediction]]:
        """Per image, ``{scale: ScalePrediction}`` for every scale."""
        per_scale = {
            s: self.predict_scale(images, s, with_aux=with_aux, window=window) for s in scales
        }
        return [{s: per_scale[s][i] for s in scales} for i in range(len(images))]

    # --------------------------------------------------------------------------------------
    # Forward
    # --------------------------------------------------------------------------------------
    def _normalised(self, batched_inputs: List[Dict]) -> List[Tensor]:
        return [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]

    def check_input_sizes(
        self, batched_inputs: List[Dict], sliding_window: WindowArg = BUILT_WINDOW
    ) -> None:
        """The parent's checks at scale 1, and the largest of ``test_scales`` padded to
        ``size_divisibility`` within ``max_input_pixels``."""
        super().check_input_sizes(batched_inputs, sliding_window)
        if self.max_input_pixels is None or torch.jit.is_tracing():
            return
        scale, d = max(self.test_scales), max(self.size_divisibility, 1)
        for inp in batched_inputs:
            h, w = inp["image"].shape[-2:]
            sh, sw = scaled_size(h, w, scale)
            check_input_pixels(
                -(-sh // d) * d,
                -(-sw // d) * d,
                self.max_input_pixels,
                file_name=inp.get("file_name"),
                source_size=(h, w),
                how=f"scaled by {scale:g} (MODEL.HMSA.TEST_SCALES), padded to a multiple of {d}",
            )

    def forward(self, batched_inputs: List[Dict], sliding_window: WindowArg = BUILT_WINDOW):
        """Losses (training) or one ``{"sem_seg": [K, height, width]}`` per input (inference)."""
        if self.training:
            return self._losses(batched_inputs)
        window = self._window(sliding_window)
        self.check_input_sizes(batched_inputs, window)
        images = self._normalised(batched_inputs)
        processed = []
        for inp, image, predictions in zip(
            batched_inputs, images, self.predict_scales(images, self.test_scales, window=window)
        ):
            logits, _ = combine_scales(predictions, self.align_corners)
            h, w = image.shape[-2:]
            processed.append(
                {
                    "sem_seg": postprocess_logits(
                        logits[0], (h, w), inp.get("height", h), inp.get("width", w)
                    )
                }
            )
        return processed

    def _losses(self, batched_inputs: List[Dict]) -> Dict[str, Tensor]:
        if not all("sem_seg" in x for x in batched_inputs):
            raise ValueError("HMSASemanticSegmentor needs 'sem_seg' labels in training")
        head = self.sem_seg_head
        targets = self.pad(
            [x["sem_seg"].to(self.device) for x in batched_inputs], head.ignore_value
        )
        images = self._normalised(batched_inputs)
        per_image = self.predict_scales(images, self.train_scales, with_aux=True)
        combined = [combine_scales(p, self.align_corners) for p in per_image]
        logits = self.pad([c[0][0] for c in combined]).tensor
        aux = None if combined[0][1] is None else self.pad([c[1][0] for c in combined]).tensor
        losses = head.losses(logits, aux, targets.tensor)
        if self.supervised_scale_weight > 0:
            for scale in self.train_scales:
                scale_logits = self.pad(
                    [
                        F.interpolate(
                            p[scale].logits,
                            size=image.shape[-2:],
                            mode="bilinear",
                            align_corners=self.align_corners,
                        )[0]
                        for p, image in zip(per_image, images)
                    ]
                ).tensor
                losses[f"loss_sem_seg_{scale:g}x"] = (
                    self.scale_loss(scale_logits, targets.tensor) * self.supervised_scale_weight
                )
        return losses

    # --------------------------------------------------------------------------------------
    # Inspection (demo)
    # --------------------------------------------------------------------------------------
    @torch.no_grad()
    def attention_maps(
        self, batched_inputs: List[Dict], sliding_window: WindowArg = BUILT_WINDOW
    ) -> List[Dict[float, Tensor]]:
        """Per input, ``{scale: attention [h_s, w_s]}`` of every test scale but the largest (whose
        attention the combination does not use), at that scale's input size."""
        window = self._window(sliding_window)
        self.check_input_sizes(batched_inputs, window)
        largest = max(self.test_scales)
        return [
            {s: p.attention[0, 0] for s, p in predictions.items() if s != largest}
            for predictions in self.predict_scales(
                self._normalised(batched_inputs), self.test_scales, window=window
            )
        ]
