"""Offline SegFix: refine a folder of label PNGs written by any model (this project's demo
``--raw`` output, mmseg's, a user's) with a trained SegFix model run on their images
(``tools/segfix_refine.py`` parses the command line).

A prediction is matched to its image by name: ``<image stem><suffix>.png`` in the predictions
folder. Label values are copied, never interpreted, so any id space works (train ids, a
dataset's own ids, 16-bit labels). Every output path is checked before anything runs (an
existing file is kept unless ``overwrite``); each refined PNG is written to a temporary sibling
and renamed into place, so an interrupted run leaves no partial file.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from PIL import Image

from ..checkpoint.checkpointer import load_inference_weights, weight_options
from ..data.image_files import read_image
from ..data.label_files import read_label_png
from ..segfix.refine import refine_with_offsets, segfix_offsets
from ..utils.safe_write import atomic_file, check_writable

__all__ = ["RefineSummary", "pair_predictions", "refine_folder"]

logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class RefineSummary:
    """What a run wrote: the refined files and, per file, the share of pixels it changed."""

    written: List[str] = field(default_factory=list)
    changed: List[float] = field(default_factory=list)

    def __str__(self) -> str:
        mean = 100.0 * float(np.mean(self.changed)) if self.changed else 0.0
        return f"refined {len(self.written)} prediction(s); {mean:.3f}% of their pixels changed"


def _images_of(dataset: Optional[str], images: Optional[str]) -> List[str]:
    if (dataset is None) == (images is None):
        raise ValueError("give exactly one of a dataset name and an images folder")
    if dataset is not None:
        return [d["file_name"] for d in DatasetCatalog.get(dataset)]
    if not os.path.isdir(images):
        raise FileNotFoundError(f"images folder {images!r} does not exist")
    return sorted(
        os.path.join(images, f) for f in os.listdir(images) if f.lower().endswith(IMAGE_EXTENSIONS)
    )


def pair_predictions(
    image_files: Sequence[str], predictions: str, suffix: str = ""
) -> List[Tuple[str, str]]:
    """``(image, prediction PNG)`` for every image, the PNG being
    ``predictions/<image stem><suffix>.png``.

    Raises:
        FileNotFoundError: the folder, or some image's prediction, is missing (names the first
            ones and how many).
    """
    if not os.path.isdir(predictions):
        raise FileNotFoundError(f"predictions folder {predictions!r} does not exist")
    pairs, missing = [], []
    for image in image_files:
        stem = os.path.splitext(os.path.basename(image))[0]
        png = os.path.join(predictions, f"{stem}{suffix}.png")
        (pairs if os.path.isfile(png) else missing).append((image, png))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(image_files)} images have no prediction in {predictions!r}, "
            f"e.g. {missing[0][1]!r} for {missing[0][0]!r} (expected <image stem>{suffix}.png)"
        )
    return pairs


def _write_label(label: np.ndarray, path: str, overwrite: bool) -> None:
    with atomic_file(path, overwrite=overwrite) as tmp:
        Image.fromarray(label).save(tmp, format="PNG")


def refine_folder(
    segfix_cfg: CfgNode,
    predictions: str,
    output: str,
    *,
    dataset: Optional[str] = None,
    images: Optional[str] = None,
    suffix: str = "",
    overwrite: bool = False,
) -> RefineSummary:
    """Refine every prediction of ``predictions`` (see the module docstring) into ``output``
    with the SegFix model of ``segfix_cfg`` (``MODEL.WEIGHTS`` must fill it;
    ``MODEL.SEGFIX.SCALE`` / ``THRESHOLD`` as in the pipeline).

    Raises:
        ValueError: not a SegFix config; a prediction whose size differs from its image's.
        FileNotFoundError: as :func:`pair_predictions`.
        OutputExistsError: an output exists and not ``overwrite`` (nothing is written).
    """
    if segfix_cfg.MODEL.META_ARCHITECTURE != "SegFixModel":
        raise ValueError(
            f"the config is a {segfix_cfg.MODEL.META_ARCHITECTURE} config: give a SegFixModel one"
        )
    pairs = pair_predictions(_images_of(dataset, images), predictions, suffix)
    targets: Dict[str, str] = {}
    for image, png in pairs:
        target = os.path.join(output, os.path.basename(png))
        if os.path.abspath(target) == os.path.abspath(png):
            raise ValueError(f"output {output!r} is the predictions folder: give another one")
        check_writable(target, overwrite=overwrite)
        targets[png] = target
    model = build_model(segfix_cfg).eval()
    load_inference_weights(model, segfix_cfg.MODEL.WEIGHTS, **weight_options(segfix_cfg))
    os.makedirs(output, exist_ok=True)
    scale, threshold = segfix_cfg.MODEL.SEGFIX.SCALE, segfix_cfg.MODEL.SEGFIX.THRESHOLD
    summary = RefineSummary()
    for image_file, png in pairs:
        label = read_label_png(png)
        image = read_image(image_file, format=segfix_cfg.INPUT.FORMAT)
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"prediction {png!r} is {label.shape[1]}x{label.shape[0]} but its image "
                f"{image_file!r} is {image.shape[1]}x{image.shape[0]} (WxH)"
            )
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        with torch.no_grad():
            (fix,) = model([{"image": tensor, "height": label.shape[0], "width": label.shape[1]}])
        offsets = segfix_offsets(fix["segfix_boundary"], fix["segfix_direction"], scale, threshold)
        refined = refine_with_offsets(torch.from_numpy(label.astype(np.int64)), offsets.cpu())
        refined = refined.numpy().astype(label.dtype)
        _write_label(refined, targets[png], overwrite)
        summary.written.append(targets[png])
        summary.changed.append(float((refined != label).mean()))
    logger.info("%s -> %s: %s", predictions, output, summary)
    return summary
