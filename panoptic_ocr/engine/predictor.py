"""One-image inference (the demo's, and a user's own scripts'): Detectron2's
``DefaultPredictor`` contract on the project's inference model
(:func:`~panoptic_ocr.modeling.inference.build_inference_model`),
with an automatic sliding window for large images, OCR's soft object regions and the scale
attentions of multi-scale attention models on request."""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from torch import Tensor
from torch.nn import functional as F

from ..checkpoint.checkpointer import load_inference_weights, weight_options
from ..data.class_counts import check_model_matches_datasets
from ..export.runtimes import ExportedSemanticSegmentor
from ..modeling.inference import build_inference_model
from ..modeling.meta_arch import HMSASemanticSegmentor, OCRSemanticSegmentor
from ..modeling.segfix_refinement import SegFixRefinement
from ..modeling.sliding_window import SlidingWindow
from ..utils import object_regions

__all__ = ["Predictor", "demo_metadata"]

logger = logging.getLogger(__name__)


def demo_metadata(cfg: CfgNode):
    """Metadata (class names, colors) to draw with: the config's first test dataset's when its
    class count matches the model's semantic head, else ``class<i>`` names."""
    return object_regions.class_names(cfg)[1]


class Predictor:
    """``predictor(image) -> output dict`` for one ``[H, W, 3]`` uint8 image in
    ``cfg.INPUT.FORMAT`` (as ``detection_utils.read_image(path, format=cfg.INPUT.FORMAT)``
    returns it).

    The image is resized as the test loader does (``INPUT.MIN_SIZE_TEST`` /
    ``MAX_SIZE_TEST``, when > 0) and the output is at the original size: semantic models
    return ``{"sem_seg": [K, H, W] logits}``; Panoptic-FPN also ``instances`` and
    ``panoptic_seg``. ``MODEL.WEIGHTS`` must fill the model (:func:`load_inference_weights`; ""
    and partial weights only with ``MODEL.WEIGHTS_ALLOW_PARTIAL``, warned), and its class counts
    must match ``DATASETS.TEST``'s.

    With ``exported`` (an ONNX, OpenVINO IR or TorchScript file of a semantic model, checked to
    stand for ``cfg``'s fully loaded model), that file is run with ``runtime`` instead of
    PyTorch: whole images, no object regions or attention maps.

    Args:
        cfg: the model's config.
        max_size: semantic models segment an image (after the test resize) whose longer side
            exceeds this in overlapping windows (``TEST.SLIDING_WINDOW.SIZE/STRIDE/BATCH_SIZE``)
            so that memory stays bounded; 0 never does. ``TEST.SLIDING_WINDOW.ENABLED`` True
            windows every image.
        exported: an exported file to run instead of ``MODEL.WEIGHTS`` in PyTorch.
        runtime: its runtime (:data:`~panoptic_ocr.export.runtimes.RUNTIMES`; default by its
            format).
    """

    def __init__(
        self,
        cfg: CfgNode,
        max_size: int = 0,
        *,
        exported: Optional[str] = None,
        runtime: Optional[str] = None,
    ):
        self.cfg = cfg.clone()
        self.cfg.freeze()
        self.exported = exported
        if exported:  # the file stands for the config's fully loaded model, or is refused
            self.model = ExportedSemanticSegmentor.from_config(self.cfg, exported, runtime)
            check_model_matches_datasets(self.cfg, lists=("DATASETS.TEST",))
        else:
            check_model_matches_datasets(self.cfg, lists=("DATASETS.TEST",))
            model = build_model(self.cfg).eval()
            load_inference_weights(model, self.cfg.MODEL.WEIGHTS, **weight_options(self.cfg))
            self.model = build_inference_model(self.cfg, model).eval()
        # the segmentor itself (regions, attention maps) under a SegFix refinement
        self.segmentor = (
            self.model.model if isinstance(self.model, SegFixRefinement) else self.model
        )
        self.metadata = demo_metadata(self.cfg)
        self.input_format = self.cfg.INPUT.FORMAT
        self.semantic = isinstance(
            self.segmentor, (OCRSemanticSegmentor, ExportedSemanticSegmentor)
        )
        self.max_size = max_size
        self._window = SlidingWindow.from_config(self.cfg, always=True)
        self._always_window = bool(self.cfg.TEST.SLIDING_WINDOW.ENABLED)
        self.aug = None
        if self.cfg.INPUT.MIN_SIZE_TEST > 0:
            self.aug = T.ResizeShortestEdge(
                [self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MIN_SIZE_TEST],
                self.cfg.INPUT.MAX_SIZE_TEST,
            )

    @property
    def has_regions(self) -> bool:
        """Whether the model's head has predicted soft object regions (OCR heads)."""
        try:
            object_regions.region_context(self.segmentor)
        except ValueError:
            return False
        return True

    def _inputs(self, image: np.ndarray) -> Dict:
        height, width = image.shape[:2]
        if self.aug is not None:
            image = self.aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    def uses_window(self, image_shape: Sequence[int]) -> bool:
        """Whether an image of ``image_shape`` (network input, after the test resize) is
        segmented with the sliding window."""
        if not self.semantic or self.exported:  # exported graphs segment whole images
            return False
        return self._always_window or (self.max_size > 0 and max(image_shape[:2]) > self.max_size)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Dict:
        inputs = self._inputs(image)
        if not self.semantic or self.exported:
            return self.model([inputs])[0]
        window = self._window if self.uses_window(inputs["image"].shape[1:]) else None
        return self.model([inputs], sliding_window=window)[0]

    @torch.no_grad()
    def predict_with_regions(self, image: np.ndarray) -> Tuple[Dict, Tensor, Tuple[int, int]]:
        """Output dict, soft object region logits ``[K, h, w]`` and the network input size
        ``(H', W')`` of one image, in one whole-image forward (OCR forms its regions over all
        pixels, so no sliding window).

        Raises:
            ValueError: the head has no predicted soft object regions.
        """
        inputs = self._inputs(image)
        output, regions = object_regions.predict_output_with_regions(self.segmentor, inputs)
        return output, regions, tuple(inputs["image"].shape[1:])

    def region_maps(
        self, regions: Tensor, network_size: Tuple[int, int], output_size: Tuple[int, int]
    ) -> Tuple[Tensor, Tensor]:
        """Spatial softmax and class probability ``[K, H, W]`` of region logits at ``output_size``
        (:func:`panoptic_ocr.utils.object_regions.region_maps`)."""
        return object_regions.region_maps(
            regions, self.segmentor.sem_seg_head.feature_stride, network_size, output_size
        )

    @property
    def has_scale_attention(self) -> bool:
        """Whether the model is a multi-scale attention model (``HMSASemanticSegmentor``)."""
        return isinstance(self.segmentor, HMSASemanticSegmentor)

    @property
    def attention_scales(self) -> Tuple[float, ...]:
        """The scales whose attention the combination uses (every test scale but the largest);
        empty for a model without scale attention."""
        if not self.has_scale_attention:
            return ()
        scales = sorted(self.segmentor.test_scales)
        return tuple(scales[:-1])

    @torch.no_grad()
    def attention_maps(self, image: np.ndarray) -> Dict[float, Tensor]:
        """``{scale: attention [H, W]}`` in [0, 1] for :attr:`attention_scales`, each resized
        (bilinear) to the image's size; the same windows as :meth:`__call__`.

        Raises:
            ValueError: the model has no scale attention.
        """
        if not self.has_scale_attention:
            raise ValueError(
                f"{type(self.segmentor).__name__} has no scale attention: use a config with "
                "MODEL.META_ARCHITECTURE HMSASemanticSegmentor"
            )
        inputs = self._inputs(image)
        window = self._window if self.uses_window(inputs["image"].shape[1:]) else None
        maps = self.segmentor.attention_maps([inputs], sliding_window=window)[0]
        size = (inputs["height"], inputs["width"])
        return {
            s: F.interpolate(a[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
            for s, a in maps.items()
        }

    def class_names(self) -> List[str]:
        """Names of the semantic head's classes."""
        return object_regions.class_names(self.cfg)[0]

    def resolve_classes(
        self, requested: Optional[Sequence[str]], flag: str = "--regions"
    ) -> Optional[List[int]]:
        """Class indices of names or indices (``ValueError`` naming ``flag`` and listing the
        valid ones)."""
        return object_regions.resolve_classes(requested, self.class_names(), flag)
