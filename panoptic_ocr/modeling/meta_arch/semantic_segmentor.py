"""The project's semantic segmentor: Detectron2's ``SemanticSegmentor`` with exact padding."""
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList

from ..inference import INFERENCE_DTYPES, inference_autocast, resolve_inference_dtype

__all__ = ["OCRSemanticSegmentor"]


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
    in evaluation too; every input must then carry ``sem_seg``.
    """

    @configurable
    def __init__(
        self,
        *,
        size_divisibility: int,
        inference_dtype: str = "float32",
        inference_channels_last: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        return ret

    def _pad(self, tensors: List[torch.Tensor], pad_value: float = 0.0) -> ImageList:
        return ImageList.from_tensors(
            tensors, self.size_divisibility, pad_value, padding_constraints=self.backbone.padding_constraints
        )

    def forward(self, batched_inputs: List[Dict]):
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        images = self._pad(images)
        targets = None
        if all("sem_seg" in x for x in batched_inputs):
            targets = [x["sem_seg"].to(self.device) for x in batched_inputs]
            targets = self._pad(targets, self.sem_seg_head.ignore_value).tensor
        elif not self.training and getattr(self.sem_seg_head, "uses_targets_at_inference", False):
            raise ValueError(
                f"{type(self.sem_seg_head).__name__} uses the ground truth at inference: every input "
                "needs 'sem_seg' (for the test loader set INPUT.LOAD_SEM_SEG_IN_TEST True)"
            )

        if self.training:
            _, losses = self.sem_seg_head(self.backbone(images.tensor), targets)
            return losses

        x = images.tensor
        if self.inference_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = resolve_inference_dtype(self.inference_dtype, self.device.type)
        with inference_autocast(dtype, self.device.type):
            results, _ = self.sem_seg_head(self.backbone(x), targets)
        results = results.float()
        processed = []
        for result, input_per_image, image_size in zip(results, batched_inputs, images.image_sizes):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            processed.append({"sem_seg": sem_seg_postprocess(result, image_size, height, width)})
        return processed
