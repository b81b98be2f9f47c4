"""Prediction overlays with Detectron2's ``Visualizer``."""
import os
from itertools import islice
from typing import List

import numpy as np
import torch
from PIL import Image
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from detectron2.utils.visualizer import Visualizer

__all__ = ["save_semantic_overlays"]


@torch.no_grad()
def save_semantic_overlays(model, data_loader, dataset_name: str, output_dir: str, num_images: int) -> List[str]:
    """Run ``model`` on the first ``num_images`` inputs of ``data_loader`` and save, per image,
    the input beside its predicted segmentation (PNG). Returns the written paths."""
    metadata = MetadataCatalog.get(dataset_name)
    PathManager.mkdirs(output_dir)
    was_training = model.training
    model.eval()
    written = []
    try:
        for inputs in islice(data_loader, num_images):
            for record, output in zip(inputs, model(inputs)):
                image = utils.read_image(record["file_name"], format="RGB")
                prediction = output["sem_seg"].argmax(dim=0).cpu()
                overlay = Visualizer(image, metadata).draw_sem_seg(prediction, alpha=0.5).get_image()
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
