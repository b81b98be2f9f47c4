"""The base of evaluators that score each output against its dataset's label file and sum
integer counts over the dataset (boundary IoU, SegFix's boundary and direction scores)."""

from typing import Dict, Optional

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils.comm import all_gather, is_main_process, synchronize

from ..data.dataset_mappers.semantic_dataset_mapper import read_semantic_label

__all__ = ["LabelFileEvaluator"]


class LabelFileEvaluator(DatasetEvaluator):
    """Holds the dataset's classes (``stuff_classes``), ``ignore_label`` and image -> label file
    map; :meth:`label_of` reads (and checks) an input's label, :meth:`summed` adds the counts
    of every process."""

    def __init__(self, dataset_name: str, distributed: bool = True):
        self._dataset_name = dataset_name
        meta = MetadataCatalog.get(dataset_name)
        self._classes = list(meta.stuff_classes)
        self._ignore_label = meta.get("ignore_label", 255)
        self._distributed = distributed
        self._labels = {
            d["file_name"]: d["sem_seg_file_name"] for d in DatasetCatalog.get(dataset_name)
        }

    def label_of(self, record: Dict) -> np.ndarray:
        """The ``[H, W]`` int64 label of an input (class ids or ``ignore_label``).

        Raises:
            ValueError: the image has no label in the dataset, or the label holds other values.
        """
        label_file = self._labels.get(record["file_name"])
        if label_file is None:
            raise ValueError(
                f"Image '{record['file_name']}' has no label in dataset '{self._dataset_name}'"
            )
        label = read_semantic_label(label_file, len(self._classes), self._ignore_label)
        return label.astype(np.int64)

    def summed(self, counts: np.ndarray) -> Optional[np.ndarray]:
        """``counts`` summed over the processes (None off the main process)."""
        if not self._distributed:
            return counts
        synchronize()
        gathered = all_gather(counts)
        return np.sum(gathered, axis=0) if is_main_process() else None
