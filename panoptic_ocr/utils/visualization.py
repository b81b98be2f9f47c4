"""Prediction overlays with Detectron2's ``Visualizer``: image | ground truth | prediction."""

import logging
import os
from itertools import islice
from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..data.dataset_mappers import SemanticDatasetMapper
from ..data.image_files import read_image
from .safe_write import atomic_file

__all__ = ["browse_dataset", "draw_ground_truth", "draw_prediction", "save_prediction_overlays"]

logger = logging.getLogger(__name__)
_GROUND_TRUTH_KEYS = ("annotations", "sem_seg_file_name", "pan_seg_file_name")


def draw_prediction(image: np.ndarray, output: Dict, metadata) -> np.ndarray:
    """Overlay one model output on ``image`` (``[H, W, 3]`` uint8 RGB) with Detectron2's
    ``Visualizer``: the panoptic segmentation when the output has ``"panoptic_seg"``
    (Panoptic-FPN), else the argmax of ``"sem_seg"`` (``[K, H, W]`` scores)."""
    visualizer = Visualizer(image, metadata)
    if "panoptic_seg" in output:
        panoptic_seg, segments_info = output["panoptic_seg"]
        return visualizer.draw_panoptic_seg(
            panoptic_seg.cpu(), segments_info, alpha=0.5
        ).get_image()
    return visualizer.draw_sem_seg(output["sem_seg"].argmax(dim=0).cpu(), alpha=0.5).get_image()


def draw_ground_truth(image: np.ndarray, record: Dict, metadata) -> Optional[np.ndarray]:
    """The ground truth of a dataset dict drawn on ``image`` (``[H, W, 3]`` uint8 RGB) with
    ``Visualizer.draw_dataset_dict`` (instances of ``annotations``, ``sem_seg_file_name``,
    ``pan_seg_file_name``); None when the record has none of them."""
    if not any(key in record for key in _GROUND_TRUTH_KEYS):
        return None
    return Visualizer(image, metadata).draw_dataset_dict(record).get_image()


def _ground_truth_index(dataset_name: str) -> Dict[str, Dict]:
    """file_name -> dataset dict of the registered dataset ({} when it cannot be loaded)."""
    try:
        return {d["file_name"]: d for d in DatasetCatalog.get(dataset_name)}
    except Exception as e:  # a dataset without files here: overlays without ground truth
        logger.warning("No ground-truth panel: cannot load dataset %s (%s)", dataset_name, e)
        return {}


@torch.no_grad()
def save_prediction_overlays(
    model, data_loader, dataset_name: str, output_dir: str, num_images: int
) -> List[str]:
    """Run ``model`` on the first ``num_images`` inputs of ``data_loader`` and save, per image,
    a PNG of panels side by side: the input, its ground truth when the dataset has one
    (:func:`draw_ground_truth` of the dataset dict of the same ``file_name``), and the
    predicted segmentation (panoptic or semantic, see :func:`draw_prediction`). Returns the
    written paths."""
    metadata = MetadataCatalog.get(dataset_name)
    index = _ground_truth_index(dataset_name)
    PathManager.mkdirs(output_dir)
    was_training = model.training
    model.eval()
    written = []
    try:
        for inputs in islice(data_loader, num_images):
            for record, output in zip(inputs, model(inputs)):
                image = read_image(record["file_name"], format="RGB")
                overlay = draw_prediction(image, output, metadata)
                record_gt = index.get(record["file_name"], record)
                truth = draw_ground_truth(image, record_gt, metadata)
                panels = [image, overlay] if truth is None else [image, truth, overlay]
                side_by_side = np.concatenate(panels, axis=1)
                name = os.path.splitext(os.path.basename(record["file_name"]))[0] + "_overlay.png"
                path = os.path.join(output_dir, name)
                Image.fromarray(side_by_side).save(path)
                written.append(path)
                if len(written) >= num_images:
                    return written
    finally:
        model.train(was_training)
    return written


def browse_dataset(
    cfg,
    output_dir: str,
    *,
    dataset_name: Optional[str] = None,
    source: str = "annotation",
    num_images: int = 8,
    overwrite: bool = False,
) -> List[str]:
    """Detectron2's ``tools/visualize_data.py`` for semantic datasets: the ground truth drawn on
    the images, as stored (``source="annotation"``: ``Visualizer.draw_dataset_dict``) or as the
    model is trained on them (``"dataloader"``: after the training augmentations of the
    project's :class:`~panoptic_ocr.data.SemanticDatasetMapper`, through Detectron2's
    ``build_detection_train_loader``). Writes ``<image stem>.png`` (dataloader:
    ``<stem>_<n>.png``, the n-th sample) into ``output_dir``; returns the paths.

    Raises:
        ValueError: an unknown ``source``.
        OutputExistsError: a PNG exists and ``overwrite`` is False.
    """
    if source not in ("annotation", "dataloader"):
        raise ValueError(f"--source must be 'annotation' or 'dataloader', got {source!r}")
    name = dataset_name or cfg.DATASETS.TRAIN[0]
    metadata = MetadataCatalog.get(name)
    os.makedirs(output_dir, exist_ok=True)
    written: List[str] = []

    def save(array: np.ndarray, stem: str) -> None:
        path = os.path.join(output_dir, stem + ".png")
        with atomic_file(path, overwrite=overwrite) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
        written.append(path)

    if source == "annotation":
        for record in DatasetCatalog.get(name)[:num_images]:
            image = read_image(record["file_name"], format="RGB")
            save(
                Visualizer(image, metadata).draw_dataset_dict(record).get_image(),
                _stem(record["file_name"]),
            )
        return written
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    mapper = SemanticDatasetMapper(cfg, is_train=True)
    loader = build_detection_train_loader(cfg, mapper=mapper, total_batch_size=1)
    for n, batch in enumerate(islice(loader, num_images)):
        sample = batch[0]
        image = utils.convert_image_to_rgb(
            sample["image"].permute(1, 2, 0).numpy(), cfg.INPUT.FORMAT
        )
        drawn = (
            Visualizer(image, metadata)
            .draw_sem_seg(sample["sem_seg"].numpy(), alpha=0.5)
            .get_image()
        )
        save(drawn, f"{_stem(sample['file_name'])}_{n}")
    return written


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
