"""Importing panoptic_ocr and building its Trainer leave Detectron2's global state untouched."""

import json
import subprocess
import sys

from conftest import REPO_ROOT

# Runs in a fresh interpreter: this test process imported panoptic_ocr long ago.
_SNAPSHOT_SCRIPT = r"""
import copy, json
from detectron2.data import DatasetCatalog, MetadataCatalog
import detectron2.data.datasets  # noqa: F401  (Detectron2's builtin registrations)

loaders = {name: DatasetCatalog[name] for name in DatasetCatalog.list()}
metadata = {name: MetadataCatalog.get(name) for name in MetadataCatalog.list()}
values = {name: copy.deepcopy(m.as_dict()) for name, m in metadata.items()}

import panoptic_ocr  # noqa: F401

report = {
    "builtin": sorted(loaders),
    "loader_changed": [
        n for n, f in loaders.items() if n not in DatasetCatalog or DatasetCatalog[n] is not f
    ],
    "metadata_replaced": [n for n, m in metadata.items() if MetadataCatalog.get(n) is not m],
    "metadata_changed": [n for n, v in values.items() if MetadataCatalog.get(n).as_dict() != v],
    "added": sorted(set(DatasetCatalog.list()) - set(loaders)),
}
print("REPORT" + json.dumps(report))
"""


def test_import_leaves_every_detectron2_registration_untouched():
    out = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT_SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(
        next(line for line in out.stdout.splitlines() if line.startswith("REPORT"))[6:]
    )
    # The snapshot saw Detectron2's datasets, among them those the project has checked twins of.
    assert {
        "coco_2017_val_panoptic_separated",
        "cityscapes_fine_sem_seg_val",
        "ade20k_sem_seg_val",
    } <= set(report["builtin"])
    assert report["loader_changed"] == []
    assert report["metadata_replaced"] == []
    assert report["metadata_changed"] == []
    assert {
        "coco_2017_train_panoptic_separated_checked",
        "coco_2017_val_panoptic_separated_checked",
        "coco_2017_val_100_panoptic_separated_checked",
        "cityscapes_fine_sem_seg_train_checked",
        "cityscapes_fine_sem_seg_val_checked",
        "cityscapes_fine_sem_seg_test_checked",
        "ade20k_sem_seg_train_checked",
        "ade20k_sem_seg_val_checked",
        "toy_scenes_sem_seg_train",
    } <= set(report["added"])
    assert not set(report["added"]) & set(report["builtin"])
