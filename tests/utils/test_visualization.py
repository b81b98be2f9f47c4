"""Readable pictures: labels inside the image and never over one another, titled panels, the
panoptic ground truth drawn from its panoptic annotation."""

import numpy as np
import pytest
from conftest import QUICKSTART, make_cfg
from detectron2.data import Metadata
from detectron2.utils.visualizer import Visualizer

from panoptic_ocr.utils import visualization
from panoptic_ocr.utils.visualization import (
    LegibleVisualizer,
    browse_dataset,
    titled_side_by_side,
)

NAMES = ["grass", "water", "sky", "a-very-long-class-name-that-is-wide", "rock"]
META = Metadata(stuff_classes=NAMES, stuff_colors=[[i * 50, 100, 200 - i * 40] for i in range(5)])


def _small_label() -> np.ndarray:
    """On a 60x80 image: four thin bands whose centres are a few pixels apart, and a long name
    on a region at the right edge."""
    label = np.full((60, 80), 4, np.int64)
    label[20:24, 10:60] = 0
    label[24:28, 10:60] = 1
    label[28:32, 10:60] = 2
    label[:, 74:] = 3
    return label


def _boxes(visualizer):
    return [visualizer._box(t) for t in visualizer.output.ax.texts]


def test_labels_do_not_overprint_or_leave_the_image():
    image = np.full((60, 80, 3), 128, np.uint8)
    label = _small_label()
    plain = Visualizer(image, META)
    plain.draw_sem_seg(label)
    legible = LegibleVisualizer(image, META)
    legible.draw_sem_seg(label)

    def overlapping(boxes):
        return any(
            a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
            for i, a in enumerate(boxes)
            for b in boxes[i + 1 :]
        )

    plain_boxes = [LegibleVisualizer._box(legible, t) for t in plain.output.ax.texts]
    assert overlapping(plain_boxes)  # Detectron2's own labels collide here ("grasswater")
    boxes = _boxes(legible)
    assert boxes and not overlapping(boxes)
    for x0, y0, x1, y1 in boxes:
        assert x0 >= -0.5 and y0 >= -0.5 and x1 <= 80.5 and y1 <= 60.5
    shown = {t.get_text() for t in legible.output.ax.texts}
    assert "rock" in shown and "a-very-long-class-name-that-is-wide" not in shown  # too wide
    assert legible.output.get_image().shape == (60, 80, 3)


def test_titled_panels():
    a = np.zeros((50, 70, 3), np.uint8)
    out = titled_side_by_side([("image", a), ("ground truth", a + 10), ("prediction", a + 20)])
    strip = out.shape[0] - 50
    assert out.shape[1] == 210 and 10 <= strip <= 40
    assert out[:strip, :70].max() > 200  # white title text on the strip
    assert (out[strip:, 70:140] == 10).all()  # the panel itself is untouched


def test_panoptic_ground_truth_is_drawn_from_the_panoptic_annotation(monkeypatch):
    seen = []
    monkeypatch.setattr(
        LegibleVisualizer,
        "draw_dataset_dict",
        lambda self, record: (seen.append(dict(record)), self.output)[1],
    )
    record = {
        "file_name": "x.png",
        "sem_seg_file_name": "x_sem.png",
        "pan_seg_file_name": "x_pan.png",
        "segments_info": [],
        "annotations": [],
    }
    image = np.zeros((8, 8, 3), np.uint8)
    visualization.draw_ground_truth(image, record, META)
    assert set(seen[0]) == {"file_name", "pan_seg_file_name", "segments_info"}
    visualization.draw_ground_truth(image, {"file_name": "y", "sem_seg_file_name": "s"}, META)
    assert set(seen[1]) == {"file_name", "sem_seg_file_name"}


def test_browsing_an_unregistered_dataset_names_it_and_writes_nothing(tmp_path):
    cfg = make_cfg(QUICKSTART, ["DATASETS.TRAIN", "('my_dataset_train',)"])
    with pytest.raises(KeyError, match="'my_dataset_train' is not registered.*CUSTOM_DATASETS"):
        browse_dataset(cfg, str(tmp_path / "browse"))
    assert not (tmp_path / "browse").exists()


def test_a_label_lies_on_its_region_and_dark_colours_are_lightened():
    """A region around another (ground around a rectangle): Detectron2's median pixel falls in
    the hole, the label is drawn on the region itself; a dark class colour is lightened to a
    readable text colour on the label's black box."""
    meta = Metadata(stuff_classes=["ground", "rectangle"], stuff_colors=[[20, 30, 120], [200] * 3])
    label = np.zeros((120, 160), np.int64)
    label[30:90, 40:120] = 1  # the median pixel of the ground around it lies inside
    image = np.full((120, 160, 3), 128, np.uint8)
    plain = Visualizer(image, meta)
    plain.draw_sem_seg(label)
    legible = LegibleVisualizer(image, meta)
    legible.draw_sem_seg(label)

    def position(visualizer, text):
        x, y = next(t.get_position() for t in visualizer.output.ax.texts if t.get_text() == text)
        return int(round(y)), int(round(x))

    assert label[position(plain, "ground")] == 1  # Detectron2 puts "ground" on the rectangle
    assert label[position(legible, "ground")] == 0
    assert label[position(legible, "rectangle")] == 1
    ground = next(t for t in legible.output.ax.texts if t.get_text() == "ground")
    r, g, b = ground.get_color()
    assert 0.299 * r + 0.587 * g + 0.114 * b >= LegibleVisualizer.MIN_TEXT_LUMA - 1e-6
    assert b > r  # still blue
