"""Post-training int8 quantisation of an OpenVINO model with NNCF, calibrated on a registered
dataset's images (``tools/export_model.py --format openvino --int8-calibration DATASET``).

OCR's attention stays in floating point: the matrix products and softmaxes that form the object
region representations and the pixel-region relations (:data:`FLOAT_OPS`). Quantising them too
made the quick start's R18 + OCR agree with float32 on 93.8% of the pixels of six toy validation
images at 512x1024; keeping them float gives 99.6%, at 2.05x OpenVINO float32's speed instead of
2.14x (docs/benchmarks.md, section (d)).
"""

from typing import List

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T

from ..data.image_files import read_image
from .signal_stack import signal_stack_kept

__all__ = ["FLOAT_OPS", "calibration_images", "quantize_openvino_model"]

FLOAT_OPS = ("MatMul", "Softmax")


def calibration_images(cfg: CfgNode, dataset_name: str, count: int) -> List[np.ndarray]:
    """The first ``count`` images of ``dataset_name`` as the exported graph receives them:
    ``[1, 3, H, W]`` float32 raw pixels in ``cfg.INPUT.FORMAT``, resized as the test loader
    resizes (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` when > 0).

    Raises:
        KeyError: ``dataset_name`` is not registered (Detectron2's message lists the names).
        ValueError: ``count`` < 1 or the dataset has no image.
    """
    if count < 1:
        raise ValueError(f"calibration needs at least one image, got {count}")
    records = DatasetCatalog.get(dataset_name)[:count]
    if not records:
        raise ValueError(f"dataset {dataset_name!r} has no image to calibrate on")
    resize = None
    if cfg.INPUT.MIN_SIZE_TEST > 0:
        resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
    images = []
    for record in records:
        image = read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        if resize is not None:
            image = resize.get_transform(image).apply_image(image)
        images.append(np.ascontiguousarray(image.transpose(2, 0, 1))[None].astype(np.float32))
    return images


def quantize_openvino_model(model, images: List[np.ndarray]):
    """``model`` (an ``openvino.Model``) quantised to int8 by ``nncf.quantize`` on ``images``
    (all used for the statistics), :data:`FLOAT_OPS` left in floating point.

    Raises:
        ImportError: nncf is not installed (the ``[deploy]`` extra has it).
    """
    import nncf

    with signal_stack_kept():  # nncf compiles the model with OpenVINO's CPU plugin
        return nncf.quantize(
            model,
            nncf.Dataset(images),
            subset_size=len(images),
            ignored_scope=nncf.IgnoredScope(types=list(FLOAT_OPS), validate=False),
        )
