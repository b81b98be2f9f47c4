"""The semantic mapper plus SegFix's targets (``INPUT.DATASET_MAPPER_NAME "segfix"``), either
computed in the loader's workers from the augmented label (``MODEL.SEGFIX.TARGETS "online"``)
or read from the files ``datasets/prepare_segfix_targets.py`` cached and carried through the
label's augmentations (``"cached"``)."""

from typing import Dict, Optional

import numpy as np
import torch
from detectron2.config import configurable

from ...segfix.target_files import (
    NO_TARGET,
    augment_targets,
    decode_targets,
    read_target_file,
    target_file_path,
)
from ...segfix.targets import segfix_targets
from .semantic_dataset_mapper import SemanticDatasetMapper

__all__ = ["SEGFIX_TARGET_SOURCES", "SegFixDatasetMapper"]

SEGFIX_TARGET_SOURCES = ("online", "cached")


class SegFixDatasetMapper(SemanticDatasetMapper):
    """:class:`SemanticDatasetMapper` whose records with a label also carry
    ``segfix_boundary`` (``[H, W]``: 1 boundary, 0 not, ``ignore_label``) and
    ``segfix_direction`` (``[H, W]``: direction bin 0..7 on boundary pixels, ``ignore_label``
    elsewhere), uint8 when ``ignore_label`` is 255, else int64, at the augmented (cropped,
    rescaled, flipped) label's pixels: those of
    :func:`~panoptic_ocr.segfix.targets.segfix_targets` on the augmented label ("online"), or
    the full label's cached targets augmented alike ("cached",
    :mod:`panoptic_ocr.segfix.target_files`; the label itself is then not read, and the record
    has no ``sem_seg``)."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        max_distance: int = 5,
        targets: str = "online",
        targets_dir: Optional[str] = None,
        **kwargs,
    ):
        """``max_distance``, ``targets``, ``targets_dir``: ``MODEL.SEGFIX.MAX_DISTANCE``,
        ``.TARGETS`` and ``.TARGETS_DIR``; the rest as the semantic mapper's."""
        super().__init__(is_train, **kwargs)
        if targets not in SEGFIX_TARGET_SOURCES:
            raise ValueError(
                f"MODEL.SEGFIX.TARGETS must be one of {SEGFIX_TARGET_SOURCES}, got {targets!r}"
            )
        self.max_distance = max_distance
        self.targets = targets
        self.targets_dir = targets_dir or None

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["max_distance"] = cfg.MODEL.SEGFIX.MAX_DISTANCE
        ret["targets"] = cfg.MODEL.SEGFIX.TARGETS
        ret["targets_dir"] = cfg.MODEL.SEGFIX.TARGETS_DIR
        return ret

    def __call__(self, dataset_dict: Dict) -> Dict:
        if self.targets == "cached" and self.load_sem_seg and "sem_seg_file_name" in dataset_dict:
            # The cached targets replace the label: the SegFix model learns from them alone,
            # and the prepare step has read and checked the label already.
            record, transforms, size = self.map_with_transforms(dataset_dict, read_label=False)
            label_file = dataset_dict["sem_seg_file_name"]
            path = target_file_path(label_file, self.max_distance, self.targets_dir)
            packed = augment_targets(read_target_file(path, label_file, size), transforms)
            boundary, direction = decode_targets(packed)
        else:
            record, _, _ = self.map_with_transforms(dataset_dict)
            if "sem_seg" not in record:
                return record
            boundary, direction, _ = segfix_targets(
                record["sem_seg"].numpy(), self.ignore_label, self.max_distance
            )
        record["segfix_boundary"] = self._with_ignore_label(boundary)
        record["segfix_direction"] = self._with_ignore_label(direction)
        return record

    def _with_ignore_label(self, target: np.ndarray) -> torch.Tensor:
        """A uint8 target whose "no target" is 255, as a tensor whose "no target" is
        ``ignore_label``."""
        if self.ignore_label == NO_TARGET:
            return torch.from_numpy(target)
        wide = target.astype(np.int64)
        wide[target == NO_TARGET] = self.ignore_label
        return torch.from_numpy(wide)
