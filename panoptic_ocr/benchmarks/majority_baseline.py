"""mIoU of the majority-class baseline: the most frequent training class predicted everywhere,
scored with Detectron2's ``SemSegEvaluator`` (the evaluator the models are scored with, so the
numbers compare directly with a model's). Behind ``tools/majority_baseline.py``."""
from typing import Dict

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from PIL import Image

from ..data import ensure_dataset_available

__all__ = ["class_histogram", "majority_baseline"]


def class_histogram(dataset_name: str, num_classes: int) -> np.ndarray:
    """Pixel count of each class over the dataset's label files (ignore label excluded):
    int64 ``[num_classes]``."""
    counts = np.zeros(num_classes, np.int64)
    for record in DatasetCatalog.get(dataset_name):
        label = np.asarray(Image.open(record["sem_seg_file_name"]), dtype=np.int64)
        counts += np.bincount(label[label < num_classes].ravel(), minlength=num_classes)[:num_classes]
    return counts


def majority_baseline(train_name: str, test_name: str) -> Dict:
    """Evaluate the constant prediction of ``train_name``'s most frequent class on ``test_name``.

    Returns:
        ``{"majority_class": name, "mIoU": ..., "pACC": ...}`` (percent).
    """
    ensure_dataset_available(train_name)
    ensure_dataset_available(test_name)
    num_classes = len(MetadataCatalog.get(test_name).stuff_classes)
    majority = int(class_histogram(train_name, num_classes).argmax())
    evaluator = SemSegEvaluator(test_name, distributed=False)
    evaluator.reset()
    for record in DatasetCatalog.get(test_name):
        h, w = Image.open(record["file_name"]).size[::-1]
        logits = torch.zeros(num_classes, h, w)
        logits[majority] = 1.0
        evaluator.process([{"file_name": record["file_name"]}], [{"sem_seg": logits}])
    result = evaluator.evaluate()["sem_seg"]
    return {
        "majority_class": MetadataCatalog.get(test_name).stuff_classes[majority],
        "mIoU": result["mIoU"],
        "pACC": result["pACC"],
    }
