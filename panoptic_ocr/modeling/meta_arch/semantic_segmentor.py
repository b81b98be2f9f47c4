"""The project's semantic segmentor: Detectron2's ``SemanticSegmentor`` with exact padding,
reduced-precision and sliding-window inference."""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList

from ..input_size import check_input_pixels
from ..precision import INFERENCE_DTYPES, inference_autocast, resolve_inference_dtype
from ..sliding_window import SlidingWindow, sliding_window_logits

__all__ = ["OCRSemanticSegmentor", "postprocess_logits", "BUILT_WINDOW"]

# ``forward``'s default ``sliding_window``: the window the model was built with.
BUILT_WINDOW = "built"
WindowArg = Union[SlidingWindow, Tuple[Sequence[int], Sequence[int], int], None, str]


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
    in evaluation too; every input must then carry ``sem_seg``. With ``sliding_window`` (a
    :class:`~panoptic_ocr.modeling.sliding_window.SlidingWindow` or ``(window, stride,
    batch_size)``, ``TEST.SLIDING_WINDOW``) each image is segmented in overlapping windows whose
    logits are averaged, so memory stays bounded on large images; a call may pass another window
    (``model(inputs, sliding_window=...)``, None: whole images) without changing the model.
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
        sliding_window: WindowArg = None,
        max_input_pixels: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sliding_window = SlidingWindow.of(sliding_window)
        self.max_input_pixels = max_input_pixels
        if size_divisibility < 0:
            size_divisibility = max(s.stride for s in self.backbone.output_shape().values())
        self.size_divisibility = max(size_divisibility, self.backbone.size_divisibility)
        if inference_dtype not in INFERENCE_DTYPES:
            raise ValueError(
                f"MODEL.INFERENCE_DTYPE must be one of {INFERENCE_DTYPES}, got {inference_dtype!r}"
            )
        self.inference_dtype = inference_dtype
        self.inference_channels_last = inference_channels_last

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["size_divisibility"] = cfg.MODEL.SEM_SEG_HEAD.SIZE_DIVISIBILITY
        ret["inference_dtype"] = cfg.MODEL.INFERENCE_DTYPE
        ret["inference_channels_last"] = cfg.MODEL.INFERENCE_CHANNELS_LAST
        ret["sliding_window"] = SlidingWindow.from_config(cfg)
        ret["max_input_pixels"] = cfg.INPUT.MAX_INPUT_PIXELS
        return ret

    def pad(self, tensors: List[torch.Tensor], pad_value: float = 0.0) -> ImageList:
        """Batch ``[C, H_i, W_i]`` (or ``[H_i, W_i]``) tensors, padded with ``pad_value`` to a
        common size that is a multiple of ``size_divisibility``."""
        return ImageList.from_tensors(
            tensors,
            self.size_divisibility,
            pad_value,
            padding_constraints=self.backbone.padding_constraints,
        )

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalised (``(image - PIXEL_MEAN) / PIXEL_STD``) and padded batch of the inputs'
        ``image`` ``[3, H, W]``: an ``ImageList`` of ``[N, 3, H', W']``."""
        return self.pad(
            [
                (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std
                for x in batched_inputs
            ]
        )

    def _window(self, sliding_window: WindowArg) -> Optional[SlidingWindow]:
        return (
            self.sliding_window
            if sliding_window == BUILT_WINDOW
            else SlidingWindow.of(sliding_window)
        )

    def check_input_sizes(
        self, batched_inputs: List[Dict], sliding_window: WindowArg = BUILT_WINDOW
    ) -> None:
        """Refuse (``ValueError``) an input whose padded image or ``height x width`` output would
        exceed ``max_input_pixels``; nothing is checked when it is None, or while tracing
        (export)."""
        window = self._window(sliding_window)
        if self.max_input_pixels is None or torch.jit.is_tracing():
            return
        d = max(self.size_divisibility, 1)
        for inp in batched_inputs:
            h, w = inp["image"].shape[-2:]
            common = {"file_name": inp.get("file_name"), "source_size": (h, w)}
            padded = [(-(-h // d) * d, -(-w // d) * d, f"padded to a multiple of {d}")]
            if window is not None:
                wh, ww = window.size
                padded.append((max(h, wh), max(w, ww), f"padded to the sliding window {wh}x{ww}"))
            for ph, pw, how in padded:
                check_input_pixels(ph, pw, self.max_input_pixels, how=how, **common)
            height, width = inp.get("height", h), inp.get("width", w)
            check_input_pixels(
                height,
                width,
                self.max_input_pixels,
                how="resized to its output height x width",
                **common,
            )

    def forward(self, batched_inputs: List[Dict], sliding_window: WindowArg = BUILT_WINDOW):
        """Losses (training) or one ``{"sem_seg": [K, height, width]}`` per input (inference).

        ``sliding_window`` (inference only): the window of this call, None for whole images;
        default: the window the model was built with.
        """
        window = self._window(sliding_window)
        if not self.training:
            self.check_input_sizes(batched_inputs, window)
        images = self.preprocess_image(batched_inputs)
        targets = None
        if all("sem_seg" in x for x in batched_inputs):
            targets = [x["sem_seg"].to(self.device) for x in batched_inputs]
            targets = self.pad(targets, self.sem_seg_head.ignore_value).tensor
        elif not self.training and getattr(self.sem_seg_head, "uses_targets_at_inference", False):
            raise ValueError(
                f"{type(self.sem_seg_head).__name__} uses the ground truth at inference: "
                "every input needs 'sem_seg' (for the test loader set "
                "INPUT.LOAD_SEM_SEG_IN_TEST True)"
            )

        if self.training:
            _, losses = self.sem_seg_head(self.backbone(images.tensor), targets)
            return losses

        if window is not None:
            return self._sliding_window_inference(batched_inputs, targets, window)
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

    def _sliding_window_inference(
        self, batched_inputs: List[Dict], targets: Optional[torch.Tensor], window: SlidingWindow
    ) -> List[Dict]:
        processed = []
        for i, inp in enumerate(batched_inputs):
            image = (inp["image"].to(self.device) - self.pixel_mean) / self.pixel_std
            h, w = image.shape[-2:]
            target = None if targets is None else targets[i, :h, :w]
            logits = self.sliding_window_logits(image, target, window)
            processed.append(
                {
                    "sem_seg": postprocess_logits(
                        logits, (h, w), inp.get("height", h), inp.get("width", w)
                    )
                }
            )
        return processed

    def sliding_window_logits(
        self,
        image: torch.Tensor,
        target: Optional[torch.Tensor] = None,
        window: WindowArg = BUILT_WINDOW,
    ) -> torch.Tensor:
        """Logits ``[K, H, W]`` of one normalised image ``[3, H, W]`` averaged over the windows of
        ``window`` (default: the built one;
        :func:`~panoptic_ocr.modeling.sliding_window.sliding_window_logits`)."""
        window = self._window(window)
        if window is None:
            raise ValueError(
                "sliding_window_logits needs a window: the model was built without one"
            )
        ignore = self.sem_seg_head.ignore_value

        def segment(
            crops: List[torch.Tensor], crop_targets: Optional[List[torch.Tensor]]
        ) -> torch.Tensor:
            padded_targets = None if crop_targets is None else self.pad(crop_targets, ignore).tensor
            return self._segment(self.pad(crops).tensor, padded_targets)

        return sliding_window_logits(segment, image, window, target, ignore)


def postprocess_logits(
    logits: torch.Tensor, image_size: Tuple[int, int], height: int, width: int
) -> torch.Tensor:
    """Detectron2's ``sem_seg_postprocess`` (crop the padding ``[K, H', W'] -> [K, h, w]``, then
    bilinear resize to ``[K, height, width]``), without the resize when the sizes already match:
    a same-size bilinear resize is the identity, so the result is the same, one full-resolution
    pass cheaper (the usual case: evaluation at the loaded size)."""
    if tuple(image_size) == (height, width):
        return logits[:, :height, :width]
    return sem_seg_postprocess(logits, image_size, height, width)
