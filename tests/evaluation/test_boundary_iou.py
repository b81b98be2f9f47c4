"""Boundary IoU: the band of each class's contour, its counts on hand-made masks, and the
evaluator over a registered dataset."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from panoptic_ocr.evaluation.boundary_iou import (
    BoundaryIoUEvaluator,
    boundary_bands,
    boundary_iou_counts,
    boundary_width,
)


def _square(size=12, lo=3, hi=9):
    label = torch.zeros(size, size, dtype=torch.long)
    label[lo:hi, lo:hi] = 1
    return label


def test_band_is_the_contour_ring_and_the_image_border():
    bands = boundary_bands(_square(), 2, width=1)
    ring = torch.zeros(12, 12, dtype=torch.bool)
    ring[3:9, 3:9] = True
    ring[4:8, 4:8] = False
    assert torch.equal(bands[1], ring)
    # class 0 (the background around the square): its outer border and its ring around the square
    expected = torch.zeros(12, 12, dtype=torch.bool)
    expected[[0, -1], :] = expected[:, [0, -1]] = True
    expected[2:10, 2:10] = True
    expected[3:9, 3:9] = False
    assert torch.equal(bands[0], expected)
    assert boundary_width(12, 12, 0.02) == 1 and boundary_width(480, 640, 0.02) == 16


def test_counts_on_the_bands_only():
    label = _square()
    i, u = boundary_iou_counts(label, label, 2, dilation_ratio=0.0)
    assert torch.equal(i, u) and i[1] == 20  # the 6x6 square's 1-pixel ring
    # a 2x2 hole inside the square adds a false contour: its 12-pixel ring joins the union
    holed = label.clone()
    holed[5:7, 5:7] = 0
    i, u = boundary_iou_counts(holed, label, 2, dilation_ratio=0.0)
    assert (i[1], u[1]) == (20, 32)
    # a square shifted by one pixel keeps 30/42 of its area (IoU 0.71) but far less of its band
    shifted = torch.roll(label, shifts=1, dims=1)
    i, u = boundary_iou_counts(shifted, label, 2, dilation_ratio=0.0)
    assert float(i[1]) / float(u[1]) < 0.5
    ignored = label.clone()
    ignored[3] = 255  # ignored pixels leave both bands
    i, u = boundary_iou_counts(label, ignored, 2, dilation_ratio=0.0)
    assert u[1] < 20


def test_evaluator_over_a_registered_dataset(tmp_path):
    name = "boundary_iou_test_dataset"
    label = _square(24, 6, 18).numpy().astype(np.uint8)
    records = []
    for i in range(2):
        Image.fromarray(label).save(tmp_path / f"{i}.png")
        records.append(
            {"file_name": f"img{i}.jpg", "sem_seg_file_name": str(tmp_path / f"{i}.png")}
        )
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=["bg", "square"], ignore_label=255)
    try:
        evaluator = BoundaryIoUEvaluator(name, dilation_ratio=0.0, distributed=False)
        perfect = torch.nn.functional.one_hot(torch.from_numpy(label).long(), 2).permute(2, 0, 1)
        evaluator.process(records, [{"sem_seg": perfect.float()}] * 2)
        result = evaluator.evaluate()["sem_seg_boundary"]
        assert result["mBIoU"] == pytest.approx(100.0) and result["num_images"] == 2
        evaluator.reset()
        wrong = torch.zeros(2, 24, 24)
        wrong[0] = 1  # everything background
        evaluator.process(records[:1], [{"sem_seg": wrong}])
        result = evaluator.evaluate()["sem_seg_boundary"]
        assert result["BIoU-square"] == 0.0 and 0 < result["BIoU-bg"] < 100
        with pytest.raises(ValueError, match="has no label"):
            evaluator.process([{"file_name": "other.jpg"}], [{"sem_seg": wrong}])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
