"""The project's semantic segmentor: Detectron2's ``SemanticSegmentor`` with exact padding,
reduced-precision and sliding-window inference."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList
from torch.nn import functional as F

from ...config_checks import check_input_pixels
from ..inference import INFERENCE_DTYPES, inference_autocast, resolve_inference_dtype

__all__ = ["OCRSemanticSegmentor", "postprocess_logits"]


@META_ARCH_REGISTRY.register()
class OCRSemanticSegmentor(SemanticSegmentor):
    """Backbone + any registered semantic head (OCR, PPM, ASPP, ...).

    Detectron2's ``SemanticSegmentor`` pads a batch to the backbone's ``size_divisibility``,
    which is 0 for ResNets: an image whose size is not a multiple of the output stride then
    gets logits that are shifted against its pixels after upsampling. This class pads every
    batch to a multiple of ``size_divisibility`` (default: the largest backbone stride), so the
    head's ``stride``-times upsampled logits cover the padded input exactly.

    Input: Detectron2's list of dicts (``image`` ``[3, H, W]``, optional ``sem_seg`` ``[H, W]``,
    ``height``, ``width``). Output: training, a dict of losses; inference, one dict per image
    with ``sem_seg`` logits ``[K, height, width]`` (float32 whatever the inference dtype).

    Inference only (training is unaffected): ``inference_dtype`` runs backbone and head under
    ``torch.autocast`` (``MODEL.INFERENCE_DTYPE``) and ``inference_channels_last`` feeds the
    image batch in ``torch.channels_last`` (``MODEL.INFERENCE_CHANNELS_LAST``). A head whose
    class sets ``uses_targets_at_inference = True`` (the OCR* oracle) gets the inputs' labels
    in evaluation too; every input must then carry ``sem_seg``. With ``sliding_window``
    ``(window, stride, batch_size)`` (``TEST.SLIDING_WINDOW``) each image is segmented in
    overlapping windows whose logits are averaged, so memory stays bounded on large images.
    With ``max_input_pixels`` (``INPUT.MAX_INPUT_PIXELS``), an inference input whose padded size or
    requested output size (``height x width``) exceeds it raises ``ValueError`` naming its
    ``file_name`` before anything of that size is allocated.
    """

    @configurable
    def __init__(
        self,
        *,
        size_divisibility: int,
        inference_dtype: str = "float32",
        inference_channels_last: bool = False,
        sliding_window: Optional[Tuple[Sequence[int], Sequence[int], int]] = None,
        max_input_pixels: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if sliding_window is not None:
            window, stride, batch_size = sliding_window
            if len(window) != 2 or len(stride) != 2 or min(*window, *stride, batch_size) < 1:
                raise ValueError(
                    f"TEST.SLIDING_WINDOW needs SIZE and STRIDE as (h, w) >= 1 and BATCH_SIZE >= 1, got "
                    f"{list(window)}, {list(stride)}, {batch_size}"
                )
            if any(s > w for s, w in zip(stride, window)):
                raise ValueError(f"TEST.SLIDING_WINDOW.STRIDE {list(stride)} leaves gaps between windows {list(window)}")
            sliding_window = (tuple(window), tuple(stride), int(batch_size))
        self.sliding_window = sliding_window
        self.max_input_pixels = max_input_pixels
        if size_divisibility < 0:
            size_divisibility = max(s.stride for s in self.backbone.output_shape().values())
        self.size_divisibility = max(size_divisibility, self.backbone.size_divisibility)
        if inference_dtype not in INFERENCE_DTYPES:
            raise ValueError(f"MODEL.INFERENCE_DTYPE must be one of {INFERENCE_DTYPES}, got {inference_dtype!r}")
        self.inference_dtype = inference_dtype
        self.inference_channels_last = inference_channels_last

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["size_divisibility"] = cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY
        ret["inference_dtype"] = cfg.MODEL.INFERENCE_DTYPE
        ret["inference_channels_last"] = cfg.MODEL.INFERENCE_CHANNELS_LAST
        sw = cfg.TEST.SLIDING_WINDOW
        ret["sliding_window"] = (sw.SIZE, sw.STRIDE, sw.BATCH_SIZE) if sw.ENABLED else None
        ret["max_input_pixels"] = cfg.INPUT.MAX_INPUT_PIXELS
        return ret

    def pad(self, tensors: List[torch.Tensor], pad_value: float = 0.0) -> ImageList:
        """Batch ``[C, H_i, W_i]`` (or ``[H_i, W_i]``) tensors, padded with ``pad_value`` to a
        common size that is a multiple of ``size_divisibility``."""
        return ImageList.from_tensors(
            tensors, self.size_divisibility, pad_value, padding_constraints=self.backbone.padding_constraints
        )

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalised (``(image - PIXEL_MEAN) / PIXEL_STD``) and padded batch of the inputs'
        ``image`` ``[3, H, W]``: an ``ImageList`` of ``[N, 3, H', W']``."""
        return self.pad([(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs])

    def check_input_sizes(self, batched_inputs: List[Dict]) -> None:
        """Refuse (``ValueError``) an input whose padded image or ``height x width`` output would
        exceed ``max_input_pixels``; nothing is checked when it is None, or while tracing (export)."""
        if self.max_input_pixels is None or torch.jit.is_tracing():
            return
        d = max(self.size_divisibility, 1)
        for inp in batched_inputs:
            h, w = inp["image"].shape[-2:]
            common = {"file_name": inp.get("file_name"), "source_size": (h, w)}
            padded = [(-(-h // d) * d, -(-w // d) * d, f"padded to a multiple of {d}")]
            if self.sliding_window is not None:
                (wh, ww), _, _ = self.sliding_window
                padded.append((max(h, wh), max(w, ww), f"padded to the sliding window {wh}x{ww}"))
            for ph, pw, how in padded:
                check_input_pixels(ph, pw, self.max_input_pixels, how=how, **common)
            height, width = inp.get("height", h), inp.get("width", w)
            check_input_pixels(height, width, self.max_input_pixels, how="resized to its output height x width", **common)

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            self.check_input_sizes(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        targets = None
        if all("sem_seg" in x for x in batched_inputs):
            targets = [x["sem_seg"].to(self.device) for x in batched_inputs]
            targets = self.pad(targets, self.sem_seg_head.ignore_value).tensor
        elif not self.training and getattr(self.sem_seg_head, "uses_targets_at_inference", False):
            raise ValueError(
                f"{type(self.sem_seg_head).__name__} uses the ground truth at inference: every input "
                "needs 'sem_seg' (for the test loader set INPUT.LOAD_SEM_SEG_IN_TEST True)"
            )

        if self.training:
            _, losses = self.sem_seg_head(self.backbone(images.tensor), targets)
            return losses

        if self.sliding_window is not None:
            return self._sliding_window_inference(batched_inputs, targets)
        results = self._segment(images.tensor, targets)
        processed = []
        for result, input_per_image, image_size in zip(results, batched_inputs, images.image_sizes):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            processed.append({"sem_seg": postprocess_logits(result, image_size, height, width)})
        return processed

    def _segment(self, x: torch.Tensor, targets: Optional[torch.Tensor]) -> torch.Tensor:
        """Float32 logits ``[N, K, h, w]`` of a normalised batch padded to ``size_divisibility``."""
        if self.inference_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = resolve_inference_dtype(self.inference_dtype, self.device.type)
        with inference_autocast(dtype, self.device.type):
            results, _ = self.sem_seg_head(self.backbone(x), targets)
        return results.float()

    def _sliding_window_inference(self, batched_inputs: List[Dict], targets: Optional[torch.Tensor]) -> List[Dict]:
        processed = []
        for i, inp in enumerate(batched_inputs):
            image = (inp["image"].to(self.device) - self.pixel_mean) / self.pixel_std
            h, w = image.shape[-2:]
            target = None if targets is None else targets[i, :h, :w]
            logits = self.sliding_window_logits(image, target)
            processed.append({"sem_seg": postprocess_logits(logits, (h, w), inp.get("height", h), inp.get("width", w))})
        return processed

    def sliding_window_logits(self, image: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits ``[K, H, W]`` of one normalised image ``[3, H, W]``: the mean over the
        overlapping ``window``-sized crops (placed every ``stride`` pixels, the last one flush
        with the border) that cover each pixel. Images smaller than a window are padded."""
        (wh, ww), (sh, sw), batch_size = self.sliding_window
        h, w = image.shape[-2:]
        ph, pw = max(h, wh), max(w, ww)
        image = F.pad(image, (0, pw - w, 0, ph - h))
        if target is not None:
            target = F.pad(target, (0, pw - w, 0, ph - h), value=self.sem_seg_head.ignore_value)
        ys = _window_starts(ph, wh, sh)
        xs = _window_starts(pw, ww, sw)
        corners = [(y, x) for y in ys for x in xs]
        total, count = None, torch.zeros((1, ph, pw), device=image.device)
        for start in range(0, len(corners), batch_size):
            chunk = corners[start : start + batch_size]
            crops = self.pad([image[:, y : y + wh, x : x + ww] for y, x in chunk]).tensor
            crop_targets = None
            if target is not None:
                crop_targets = self.pad(
                    [target[y : y + wh, x : x + ww] for y, x in chunk], self.sem_seg_head.ignore_value
                ).tensor
            logits = self._segment(crops, crop_targets)[:, :, :wh, :ww]
            if total is None:
                total = torch.zeros((logits.shape[1], ph, pw), device=image.device)
            for (y, x), window_logits in zip(chunk, logits):
                total[:, y : y + wh, x : x + ww] += window_logits
                count[:, y : y + wh, x : x + ww] += 1
        return (total / count)[:, :h, :w]


def postprocess_logits(logits: torch.Tensor, image_size: Tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Detectron2's ``sem_seg_postprocess`` (crop the padding ``[K, H', W'] -> [K, h, w]``, then
    bilinear resize to ``[K, height, width]``), without the resize when the sizes already match:
    a same-size bilinear resize is the identity, so the result is the same, one full-resolution
    pass cheaper (the usual case: evaluation at the loaded size)."""
    if tuple(image_size) == (height, width):
        return logits[:, :height, :width]
    return sem_seg_postprocess(logits, image_size, height, width)


def _window_starts(size: int, window: int, stride: int) -> List[int]:
    """Offsets of windows covering ``[0, size)``; the last window ends at ``size``."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts
