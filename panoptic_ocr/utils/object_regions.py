"""OCR's soft object regions as heat maps: per chosen class, the region beside the prediction
(the library behind ``tools/visualize_object_regions.py``).

The soft object regions M_k are the auxiliary branch's logits at the feature resolution
(paper sec. 3.3). OCR turns each into pixel weights by a softmax over all pixels and averages
the pixel representations with them (eq. 4): that spatial softmax is what the "region" panel
shows, min-max normalised per class (it is usually concentrated on a few confident pixels of
the class). The "p(class)" panel shows the same logits as an ordinary per-pixel class
probability (softmax over the K classes): the coarse segmentation the regions come from.

For every input image and chosen class one PNG is written,
``<image name>_<class index>_<class name>.png``: three panels side by side, each of the
image's size: the predicted segmentation (Detectron2's ``Visualizer``), the soft object
region and the class probability (cv2 JET colormap blended over the image).

Works with the OCR heads whose context module receives predicted region logits: ``OCRHead``,
``OCRDoubleAttentionRelationHead``, ``OCRACFRelationHead`` and
``OCRNoRegionSupervisionHead`` (its unsupervised ``region_branch``). Class names and colors
come from the config's first test dataset.
"""

import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from torch import Tensor, nn
from torch.nn import functional as F

from ..checkpoint.checkpointer import load_inference_weights, weight_options
from ..data.class_counts import check_model_matches_datasets
from ..data.image_files import read_image
from ..modeling.contexts import REGIONS
from ..modeling.inference import build_inference_model
from ..modeling.meta_arch import OCRSemanticSegmentor
from .visualization import LegibleVisualizer, titled_side_by_side

__all__ = [
    "class_names",
    "heat_overlay",
    "largest_classes",
    "predict_with_regions",
    "region_context",
    "region_maps",
    "resolve_classes",
    "visualize",
    "visualize_object_regions",
]

# The tool's name, as in its log lines.
logger = logging.getLogger("panoptic_ocr.visualize_object_regions")


def region_context(model: nn.Module) -> nn.Module:
    """The module of ``model``'s head that receives the soft object regions.

    Raises:
        ValueError: the head has none (no OCR head, or OCR* whose regions are the labels).
    """
    head = getattr(model, "sem_seg_head", None)
    context = getattr(head, "context", None)
    # Context modules that consume regions get the predicted soft object regions [N, K, h, w].
    if getattr(context, "consumes", None) != REGIONS:
        raise ValueError(
            f"{type(head).__name__} has no predicted soft object regions to show: use an OCR head "
            "whose auxiliary branch predicts them (MODEL.SEM_SEG_HEAD.NAME OCRHead, "
            "OCRDoubleAttentionRelationHead, OCRACFRelationHead, OCRNoRegionSupervisionHead, "
            "or any head whose context consumes regions)"
        )
    return context


@torch.no_grad()
def predict_output_with_regions(model: nn.Module, inputs: Dict) -> Tuple[Dict, Tensor]:
    """Run ``model`` on one input dict; returns its whole output dict (a semantic segmentor's
    ``sem_seg``; Panoptic-FPN's ``sem_seg``, ``instances`` and ``panoptic_seg``) and the soft
    object region logits ``[K, h, w]`` that the OCR module received (feature resolution of the
    padded input), in one whole-image forward: OCR forms its regions over all pixels, so a
    semantic segmentor runs without its sliding window."""
    whole_image = {"sliding_window": None} if isinstance(model, OCRSemanticSegmentor) else {}
    captured = []
    hook = region_context(model).register_forward_pre_hook(
        lambda module, args: captured.append(args[1])
    )
    try:
        output = model([inputs], **whole_image)[0]
    finally:
        hook.remove()
    return output, captured[-1][0].float().cpu()


def predict_with_regions(model: nn.Module, inputs: Dict) -> Tuple[Tensor, Tensor]:
    """The ``sem_seg`` logits ``[K, height, width]`` and the region logits ``[K, h, w]`` of
    :func:`predict_output_with_regions`."""
    output, regions = predict_output_with_regions(model, inputs)
    return output["sem_seg"].float().cpu(), regions


def region_maps(
    region_logits: Tensor, stride: int, image_size: Tuple[int, int], output_size: Tuple[int, int]
):
    """Spatial softmax (eq. 4's weights) and per-pixel class probability of ``[K, h, w]``
    region logits, each ``[K, H, W]`` at ``output_size``, min-max normalised per class.

    The logits cover the padded input (``h * stride`` x ``w * stride``); the network's input
    occupied its top-left ``image_size``, which is cropped and resized to ``output_size``.
    """
    k, h, w = region_logits.shape
    spatial = region_logits.flatten(1).softmax(dim=1).view(k, h, w)
    probability = region_logits.softmax(dim=0)
    maps = []
    for m in (spatial, probability):
        m = F.interpolate(
            m[None], size=(h * stride, w * stride), mode="bilinear", align_corners=False
        )
        m = m[:, :, : image_size[0], : image_size[1]]
        m = F.interpolate(m, size=output_size, mode="bilinear", align_corners=False)[0]
        low = m.flatten(1).min(dim=1).values[:, None, None]
        high = m.flatten(1).max(dim=1).values[:, None, None]
        maps.append((m - low) / (high - low).clamp_min(1e-12))
    return maps[0], maps[1]


def heat_overlay(image_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``heat`` in [0, 1] as a cv2 JET colormap blended over the RGB image (uint8 RGB)."""
    colored = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)[:, :, ::-1]
    return cv2.addWeighted(image_rgb, 1 - alpha, colored, alpha, 0)


def class_names(cfg) -> Tuple[List[str], object]:
    """Class names and metadata of the config's first test dataset; "class<i>" names (and
    Visualizer's default colors) when it has none or a different number of classes."""
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if cfg.DATASETS.TEST:
        metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        names = list(metadata.get("stuff_classes", None) or [])
        if len(names) == num_classes:
            return names, metadata
        logger.warning(
            "Metadata of %s has %d classes, the model %d: using class indices as names",
            cfg.DATASETS.TEST[0],
            len(names),
            num_classes,
        )
    names = [f"class{i}" for i in range(num_classes)]
    metadata = MetadataCatalog.get(f"__visualize_object_regions_{num_classes}_classes")
    if not metadata.get("stuff_classes", None):
        metadata.set(stuff_classes=names)
    return names, metadata


def resolve_classes(
    requested: Optional[Sequence[str]], names: List[str], flag: str = "--classes"
) -> Optional[List[int]]:
    """Class indices from names (case-insensitive) or indices; None when nothing is requested.
    ``flag``: the command-line option named in the error.

    Raises:
        ValueError: naming an unknown class and listing the valid ones.
    """
    if not requested:
        return None
    lowered = {n.lower(): i for i, n in enumerate(names)}
    indices = []
    for item in requested:
        if item.lower() in lowered:
            indices.append(lowered[item.lower()])
        elif item.isdigit() and int(item) < len(names):
            indices.append(int(item))
        else:
            raise ValueError(
                f"{flag}: unknown class {item!r}; use a name or an index in [0, {len(names)}): "
                + ", ".join(f"{i}={n}" for i, n in enumerate(names))
            )
    return list(dict.fromkeys(indices))


def largest_classes(prediction: np.ndarray, count: int) -> List[int]:
    """The ``count`` classes covering most pixels of ``prediction`` (largest first)."""
    classes, areas = np.unique(prediction, return_counts=True)
    return [int(c) for c in classes[np.argsort(-areas, kind="stable")][:count]]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "class"


def visualize(
    cfg,
    model: nn.Module,
    image_path: str,
    output_dir: str,
    classes: Optional[List[int]],
    top_k: int,
) -> List[str]:
    """Write the PNGs of one image (see the module docstring); returns their paths."""
    names, metadata = class_names(cfg)
    image = read_image(image_path, format=cfg.INPUT.FORMAT)
    rgb = utils.convert_image_to_rgb(image, cfg.INPUT.FORMAT)
    height, width = image.shape[:2]
    if cfg.INPUT.MIN_SIZE_TEST > 0:  # the test-time resize of the project's mapper
        image = (
            T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
            .get_transform(image)
            .apply_image(image)
        )
    tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    logits, region_logits = predict_with_regions(
        model, {"image": tensor, "height": height, "width": width}
    )
    prediction = logits.argmax(dim=0).numpy()
    spatial, probability = region_maps(
        region_logits, model.sem_seg_head.feature_stride, image.shape[:2], (height, width)
    )

    overlay = LegibleVisualizer(rgb, metadata).draw_sem_seg(prediction, alpha=0.5).get_image()
    chosen = classes if classes is not None else largest_classes(prediction, top_k)
    stem = os.path.splitext(os.path.basename(image_path))[0]
    written = []
    for k in chosen:
        panels = titled_side_by_side(
            [
                ("prediction", overlay),
                (f"region: {names[k]}", heat_overlay(rgb, spatial[k].numpy())),
                (f"p({names[k]})", heat_overlay(rgb, probability[k].numpy())),
            ]
        )
        path = os.path.join(output_dir, f"{stem}_{k}_{_safe(names[k])}.png")
        if not cv2.imwrite(path, panels[:, :, ::-1]):
            raise OSError(f"cannot write {path!r}")
        written.append(path)
    return written


def visualize_object_regions(
    cfg: CfgNode,
    image_paths: Sequence[str],
    output_dir: str,
    *,
    weights: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    top_k: int = 3,
) -> List[str]:
    """Build the model of ``cfg`` (one forward over the whole image: ``TEST.SLIDING_WINDOW``
    off, since OCR forms its regions over all pixels), load ``weights`` and write the PNGs of
    every image (:func:`visualize`) into ``output_dir`` (created).

    Args:
        cfg: the model's config.
        image_paths: images to show.
        output_dir: folder of the PNGs.
        weights: checkpoint; None: random initialisation (warned).
        classes: class names (case-insensitive) or indices; None: the ``top_k`` classes
            covering most of each prediction.
        top_k: classes shown per image when ``classes`` is None.
    Returns:
        The written paths.
    Raises:
        ValueError: the head has no predicted soft object regions, or an unknown class
            (both before anything is written).
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.SLIDING_WINDOW.ENABLED = False
    model = build_model(cfg).eval()
    region_context(model)  # fail before any work when the head has no regions
    check_model_matches_datasets(cfg, lists=("DATASETS.TEST",))
    load_inference_weights(model, weights or "", **weight_options(cfg))
    # INFERENCE_DTYPE, FOLD_BATCHNORM as in evaluation; the regions are the model's own (no SegFix)
    model = build_inference_model(cfg, model, refine=False)
    names, _ = class_names(cfg)
    indices = resolve_classes(classes, names)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for path in image_paths:
        written += visualize(cfg, model, path, output_dir, indices, top_k)
    return written
