"""The semantic mapper plus SegFix's targets, computed in the loader's workers from the
augmented label (``INPUT.DATASET_MAPPER_NAME "segfix"``)."""

from typing import Dict

import torch
from detectron2.config import configurable

from ...segfix.targets import segfix_targets
from .semantic_dataset_mapper import SemanticDatasetMapper

__all__ = ["SegFixDatasetMapper"]


class SegFixDatasetMapper(SemanticDatasetMapper):
    """:class:`SemanticDatasetMapper` whose records with a label also carry
    ``segfix_boundary`` (``[H, W]`` uint8: 1 boundary, 0 not, ``ignore_label``) and
    ``segfix_direction`` (``[H, W]`` uint8: direction bin 0..7 on boundary pixels,
    ``ignore_label`` elsewhere) of :func:`~panoptic_ocr.segfix.targets.segfix_targets`, at the
    augmented (cropped, rescaled) label's pixels."""

    @configurable
    def __init__(self, is_train: bool, *, max_distance: int = 5, **kwargs):
        """``max_distance``: ``MODEL.SEGFIX.MAX_DISTANCE``; the rest as the semantic mapper's."""
        super().__init__(is_train, **kwargs)
        self.max_distance = max_distance

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["max_distance"] = cfg.MODEL.SEGFIX.MAX_DISTANCE
        return ret

    def __call__(self, dataset_dict: Dict) -> Dict:
        record = super().__call__(dataset_dict)
        if "sem_seg" in record:
            boundary, direction, _ = segfix_targets(
                record["sem_seg"].numpy(), self.ignore_label, self.max_distance
            )
            record["segfix_boundary"] = torch.from_numpy(boundary)
            record["segfix_direction"] = torch.from_numpy(direction)
        return record
