"""Detectron2's ``DatasetMapper`` whose training instances come from a panoptic annotation.

A record of a panoptic dataset (``pan_seg_file_name``, ``segments_info`` with ``isthing`` and
contiguous ``category_id``, as Detectron2's COCO panoptic and this project's Cityscapes panoptic
records are) has no ``annotations``; this mapper reads the panoptic PNG and makes one
annotation per thing segment (an RLE mask, its box, ``iscrowd``) before Detectron2's mapper
transforms them, so Panoptic-FPN's instance branch trains on exactly the thing segments PQ is
measured against. Records that have ``annotations`` are mapped as by ``DatasetMapper``.
"""

from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.structures import BoxMode

from ..datasets.register_coco_panoptic import check_panoptic_ids, read_panoptic_png

__all__ = ["PanopticInstancesDatasetMapper", "annotations_from_panoptic"]


def annotations_from_panoptic(
    panoptic_ids: np.ndarray, segments_info: List[Dict], png_path: str = "<panoptic PNG>"
) -> List[Dict]:
    """One Detectron2 annotation per thing segment of a panoptic id map ``[H, W]``:
    ``category_id`` (contiguous, from ``segments_info``), ``iscrowd``, ``bbox`` (XYXY_ABS,
    exclusive right/bottom) and ``segmentation`` (COCO RLE).

    Raises:
        ValueError: (a ``LabelConversionError``) the map's ids and ``segments_info`` disagree
            (names ``png_path``).
    """
    check_panoptic_ids(np.unique(panoptic_ids), segments_info, png_path)
    annotations = []
    for segment in segments_info:
        if not segment["isthing"]:
            continue
        mask = np.asfortranarray(panoptic_ids == segment["id"], dtype=np.uint8)
        rle = mask_util.encode(mask)
        x, y, w, h = mask_util.toBbox(rle).tolist()
        annotations.append(
            {
                "category_id": int(segment["category_id"]),
                "iscrowd": int(segment.get("iscrowd", 0)),
                "bbox": [x, y, x + w, y + h],
                "bbox_mode": BoxMode.XYXY_ABS,
                "segmentation": rle,
            }
        )
    return annotations


class PanopticInstancesDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (``INPUT.DATASET_MAPPER_NAME "panoptic_instances"``) that, in training,
    gives a record without ``annotations`` those of its panoptic annotation
    (:func:`annotations_from_panoptic`). Needs ``INPUT.MASK_FORMAT "bitmask"`` (RLE masks).
    In inference it is Detectron2's mapper (the evaluators read the ground truth themselves)."""

    @configurable
    def __init__(self, is_train: bool = True, **kwargs):
        super().__init__(is_train, **kwargs)
        if self.instance_mask_format != "bitmask":
            raise ValueError(
                "INPUT.DATASET_MAPPER_NAME 'panoptic_instances' makes RLE masks: set "
                f"INPUT.MASK_FORMAT 'bitmask' (got {self.instance_mask_format!r})"
            )

    def __call__(self, dataset_dict: Dict) -> Dict:
        from_panoptic = "annotations" not in dataset_dict and "pan_seg_file_name" in dataset_dict
        if self.is_train and from_panoptic:
            png = dataset_dict["pan_seg_file_name"]
            annotations = annotations_from_panoptic(
                read_panoptic_png(png), dataset_dict["segments_info"], png
            )
            dataset_dict = dict(dataset_dict, annotations=annotations)
        return super().__call__(dataset_dict)
