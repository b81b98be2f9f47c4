#!/usr/bin/env python
"""mIoU of the majority-class baseline: predict the most frequent training class everywhere.

    .venv/bin/python tools/majority_baseline.py \\
        --train toy_scenes_sem_seg_train --test toy_scenes_sem_seg_val

Scored with Detectron2's SemSegEvaluator, the evaluator the models are scored with, so the
numbers compare directly with a model's (:func:`majority_baseline`;
``tests/engine/test_training.py`` runs it).
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import json
from typing import Dict

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from PIL import Image

from panoptic_ocr.data import ensure_dataset_available


def class_histogram(dataset_name: str, num_classes: int) -> np.ndarray:
    """Pixel count of each class over the dataset's label files (ignore label excluded):
    int64 ``[num_classes]``."""
    counts = np.zeros(num_classes, np.int64)
    for record in DatasetCatalog.get(dataset_name):
        label = np.asarray(Image.open(record["sem_seg_file_name"]), dtype=np.int64)
        valid = label[label < num_classes].ravel()
        counts += np.bincount(valid, minlength=num_classes)[:num_classes]
    return counts


def majority_baseline(train_name: str, test_name: str) -> Dict:
    """Evaluate the constant prediction of ``train_name``'s most frequent class on ``test_name``
    (``[K, H, W]`` one-hot logits per image).

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


def main() -> None:
    """Parse the command line and print the baseline's scores as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", default="toy_scenes_sem_seg_train")
    parser.add_argument("--test", default="toy_scenes_sem_seg_val")
    args = parser.parse_args()
    print(json.dumps(majority_baseline(args.train, args.test), indent=2))


if __name__ == "__main__":
    main()
