"""Prediction overlays with Detectron2's ``Visualizer``."""
import os
from itertools import islice
from typing import Dict, List

import numpy as np
import torch
from PIL import Image
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_prediction", "save_prediction_overlays"]


def draw_prediction(image: np.ndarray, output: Dict, metadata) -> np.ndarray:
    """Overlay one model output on ``image`` (``[H, W, 3]`` uint8 RGB) with Detectron2's
    ``Visualizer``: the panoptic segmentation when the output has ``"panoptic_seg"``
    (Panoptic-FPN), else the argmax of ``"sem_seg"`` (``[K, H, W]`` scores)."""
    visualizer = Visualizer(image, metadata)
    if "panoptic_seg" in output:
        panoptic_seg, segments_info = output["panoptic_seg"]
        return visualizer.draw_panoptic_seg(panoptic_seg.cpu(), segments_info, alpha=0.5).get_image()
    return visualizer.draw_sem_seg(output["sem_seg"].argmax(dim=0).cpu(), alpha=0.5).get_image()


@torch.no_grad()
def save_prediction_overlays(model, data_loader, dataset_name: str, output_dir: str, num_images: int) -> List[str]:
    """Run ``model`` on the first ``num_images`` inputs of ``data_loader`` and save, per image,
    the input beside its predicted segmentation (PNG; panoptic or semantic, see
    :func:`draw_prediction`). Returns the written paths."""
    metadata = MetadataCatalog.get(dataset_name)
    PathManager.mkdirs(output_dir)
    was_training = model.training
    model.eval()
    written = []
    try:
        for inputs in islice(data_loader, num_images):
            for record, output in zip(inputs, model(inputs)):
                image = utils.read_image(record["file_name"], format="RGB")
                overlay = draw_prediction(image, output, metadata)
                side_by_side = np.concatenate([image, overlay], axis=1)
                name = os.path.splitext(os.path.basename(record["file_name"]))[0] + "_overlay.png"
                path = os.path.join(output_dir, name)
                Image.fromarray(side_by_side).save(path)
                written.append(path)
                if len(written) >= num_images:
                    return written
    finally:
        model.train(was_training)
    return written
