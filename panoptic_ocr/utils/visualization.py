"""Prediction overlays with Detectron2's ``Visualizer``: image | ground truth | prediction, in
titled panels, with labels that stay inside the image and never overprint one another
(:class:`LegibleVisualizer`)."""

import logging
import os
from itertools import islice
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import matplotlib.colors as mplc
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathManager
from detectron2.utils.visualizer import _LARGE_MASK_AREA_THRESH as _LARGE_MASK_AREA
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..data.dataset_mappers import SemanticDatasetMapper
from ..data.image_files import read_image
from .safe_write import atomic_file

__all__ = [
    "LegibleVisualizer",
    "browse_dataset",
    "draw_ground_truth",
    "draw_prediction",
    "save_prediction_overlays",
    "title_strip_height",
    "titled_side_by_side",
]

logger = logging.getLogger(__name__)
_GROUND_TRUTH_KEYS = ("annotations", "sem_seg_file_name", "pan_seg_file_name")


class LegibleVisualizer(Visualizer):
    """Detectron2's ``Visualizer`` whose text labels stay readable: a label that would cross
    the image's edge is moved inside it, and one that would overlap a label drawn before it is
    left out (on small images several class names otherwise print over one another)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._label_boxes: List[Tuple[float, float, float, float]] = []

    def _box(self, artist) -> Tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of a text artist in image pixels (y down), its bbox included."""
        renderer = self.output.fig.canvas.get_renderer()
        extent = artist.get_window_extent(renderer=renderer)
        patch = artist.get_bbox_patch()
        if patch is not None:
            artist.update_bbox_position_size(renderer)
            extent = patch.get_window_extent(renderer=renderer)
        height = self.output.height * self.output.scale
        s = self.output.scale
        return (extent.x0 / s, (height - extent.y1) / s, extent.x1 / s, (height - extent.y0) / s)

    # the dimmest text drawn on the labels' black boxes (luma, 0..1): dark class colours
    # (sky, water) are lightened towards white up to it, keeping their hue
    MIN_TEXT_LUMA = 0.55

    def draw_text(self, text, position, **kwargs):
        if "color" in kwargs:
            rgb = np.asarray(mplc.to_rgb(kwargs["color"]))
            luma = float(rgb @ (0.299, 0.587, 0.114))
            if luma < self.MIN_TEXT_LUMA:
                lift = (self.MIN_TEXT_LUMA - luma) / (1.0 - luma)
                kwargs["color"] = tuple(rgb + (1.0 - rgb) * lift)
        super().draw_text(text, position, **kwargs)
        artist = self.output.ax.texts[-1]
        x0, y0, x1, y1 = self._box(artist)
        width, height = self.output.width, self.output.height
        if x1 - x0 > width or y1 - y0 > height:
            artist.remove()  # wider than the image: no place to put it
            return self.output
        dx = max(0.0, -x0) - max(0.0, x1 - width)
        dy = max(0.0, -y0) - max(0.0, y1 - height)
        if dx or dy:
            x, y = artist.get_position()
            artist.set_position((x + dx, y + dy))
            x0, y0, x1, y1 = x0 + dx, y0 + dy, x1 + dx, y1 + dy
        if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in self._label_boxes):
            artist.remove()
            return self.output
        self._label_boxes.append((x0, y0, x1, y1))
        return self.output

    def _draw_text_in_mask(self, binary_mask, text, color):
        """As Detectron2's (the label at the median pixel of the mask's largest component and of
        every very large one), but where that pixel lies outside its component (a region around
        another, as ground around a rectangle), at the component's most interior pixel."""
        count, components, stats, _ = cv2.connectedComponentsWithStats(binary_mask, 8)
        if count < 2:
            return
        largest = int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1
        for component in range(1, count):
            if component != largest and stats[component, cv2.CC_STAT_AREA] <= _LARGE_MASK_AREA:
                continue
            inside = (components == component).astype(np.uint8)
            x, y = np.median(inside.nonzero(), axis=1)[::-1]
            if not inside[int(y), int(x)]:
                framed = np.pad(inside, 1)  # the image's edge bounds the region too
                distance = cv2.distanceTransform(framed, cv2.DIST_L2, 3)[1:-1, 1:-1]
                y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
            self.draw_text(text, (float(x), float(y)), color=color)


def _title_scale(height: int) -> float:
    return max(0.4, min(1.0, height / 600))


def title_strip_height(height: int) -> int:
    """Rows of the title strip that :func:`titled_side_by_side` puts over panels ``height``
    rows high."""
    return int(round(28 * _title_scale(height))) + 6


def titled_side_by_side(panels: Sequence[Tuple[str, np.ndarray]]) -> np.ndarray:
    """``[(title, [H, W, 3] uint8)]`` side by side, each under a strip with its title (white on
    black, sized to the panel height); returns ``[H + strip, sum(W), 3]`` uint8."""
    height = max(p.shape[0] for _, p in panels)
    scale = _title_scale(height)
    strip = title_strip_height(height)
    columns = []
    for title, panel in panels:
        panel = np.ascontiguousarray(panel)
        column = np.zeros((height + strip, panel.shape[1], 3), np.uint8)
        column[strip : strip + panel.shape[0]] = panel
        text = title
        while (
            text
            and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > panel.shape[1] - 8
        ):
            text = text[:-2] + "~" if len(text) > 2 else ""
        cv2.putText(
            column,
            text,
            (4, strip - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        columns.append(column)
    return np.concatenate(columns, axis=1)


def draw_prediction(image: np.ndarray, output: Dict, metadata) -> np.ndarray:
    """Overlay one model output on ``image`` (``[H, W, 3]`` uint8 RGB) with Detectron2's
    ``Visualizer``: the panoptic segmentation when the output has ``"panoptic_seg"``
    (Panoptic-FPN), else the argmax of ``"sem_seg"`` (``[K, H, W]`` scores)."""
    visualizer = LegibleVisualizer(image, metadata)
    if "panoptic_seg" in output:
        panoptic_seg, segments_info = output["panoptic_seg"]
        return visualizer.draw_panoptic_seg(
            panoptic_seg.cpu(), segments_info, alpha=0.5
        ).get_image()
    return visualizer.draw_sem_seg(output["sem_seg"].argmax(dim=0).cpu(), alpha=0.5).get_image()


def draw_ground_truth(image: np.ndarray, record: Dict, metadata) -> Optional[np.ndarray]:
    """The ground truth of a dataset dict drawn on ``image`` (``[H, W, 3]`` uint8 RGB) with
    ``Visualizer.draw_dataset_dict`` (instances of ``annotations``, ``sem_seg_file_name``,
    ``pan_seg_file_name``); None when the record has none of them. A panoptic record is drawn
    from its panoptic annotation alone (its separated semantic label would name every instance
    "things", and its instances would be drawn twice)."""
    if not any(key in record for key in _GROUND_TRUTH_KEYS):
        return None
    if "pan_seg_file_name" in record and "segments_info" in record:
        record = {k: v for k, v in record.items() if k not in ("annotations", "sem_seg_file_name")}
    return LegibleVisualizer(image, metadata).draw_dataset_dict(record).get_image()


def _ground_truth_index(dataset_name: str) -> Dict[str, Dict]:
    """file_name -> dataset dict of the registered dataset ({} when it cannot be loaded)."""
    try:
        return {d["file_name"]: d for d in DatasetCatalog.get(dataset_name)}
    except Exception as e:  # a dataset without files here: overlays without ground truth
        logger.warning("No ground-truth panel: cannot load dataset %s (%s)", dataset_name, e)
        return {}


@torch.no_grad()
def save_prediction_overlays(
    model, data_loader, dataset_name: str, output_dir: str, num_images: int
) -> List[str]:
    """Run ``model`` on the first ``num_images`` inputs of ``data_loader`` and save, per image,
    a PNG of panels side by side: the input, its ground truth when the dataset has one
    (:func:`draw_ground_truth` of the dataset dict of the same ``file_name``), and the
    predicted segmentation (panoptic or semantic, see :func:`draw_prediction`). Returns the
    written paths."""
    metadata = MetadataCatalog.get(dataset_name)
    index = _ground_truth_index(dataset_name)
    PathManager.mkdirs(output_dir)
    was_training = model.training
    model.eval()
    written = []
    try:
        for inputs in islice(data_loader, num_images):
            for record, output in zip(inputs, model(inputs)):
                image = read_image(record["file_name"], format="RGB")
                overlay = draw_prediction(image, output, metadata)
                record_gt = index.get(record["file_name"], record)
                truth = draw_ground_truth(image, record_gt, metadata)
                panels = [("image", image)]
                panels += [] if truth is None else [("ground truth", truth)]
                side_by_side = titled_side_by_side(panels + [("prediction", overlay)])
                name = os.path.splitext(os.path.basename(record["file_name"]))[0] + "_overlay.png"
                path = os.path.join(output_dir, name)
                Image.fromarray(side_by_side).save(path)
                written.append(path)
                if len(written) >= num_images:
                    return written
    finally:
        model.train(was_training)
    return written


def browse_dataset(
    cfg,
    output_dir: str,
    *,
    dataset_name: Optional[str] = None,
    source: str = "annotation",
    num_images: int = 8,
    overwrite: bool = False,
) -> List[str]:
    """Detectron2's ``tools/visualize_data.py`` for semantic datasets: the ground truth drawn on
    the images, as stored (``source="annotation"``: ``Visualizer.draw_dataset_dict``) or as the
    model is trained on them (``"dataloader"``: after the training augmentations of the
    project's :class:`~panoptic_ocr.data.SemanticDatasetMapper`, through Detectron2's
    ``build_detection_train_loader``). Writes ``<image stem>.png`` (dataloader:
    ``<stem>_<n>.png``, the n-th sample) into ``output_dir``; returns the paths.

    Raises:
        ValueError: an unknown ``source``.
        KeyError: the dataset is not registered (nothing is written).
        OutputExistsError: a PNG exists and ``overwrite`` is False.
    """
    if source not in ("annotation", "dataloader"):
        raise ValueError(f"--source must be 'annotation' or 'dataloader', got {source!r}")
    name = dataset_name or cfg.DATASETS.TRAIN[0]
    if name not in DatasetCatalog.list():  # before Detectron2 logs its own list, and any mkdir
        semantic = sorted(n for n in DatasetCatalog.list() if "sem_seg" in n)
        raise KeyError(
            f"Dataset '{name}' is not registered: a folder of your own is registered through "
            "PANOPTIC_OCR_CUSTOM_DATASETS (docs/custom_datasets.md); registered semantic "
            f"datasets include {', '.join(semantic[:12])}, ..."
        )
    metadata = MetadataCatalog.get(name)
    os.makedirs(output_dir, exist_ok=True)
    written: List[str] = []

    def save(array: np.ndarray, stem: str) -> None:
        path = os.path.join(output_dir, stem + ".png")
        with atomic_file(path, overwrite=overwrite) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
        written.append(path)

    if source == "annotation":
        for record in DatasetCatalog.get(name)[:num_images]:
            image = read_image(record["file_name"], format="RGB")
            drawn = draw_ground_truth(image, record, metadata)
            save(image if drawn is None else drawn, _stem(record["file_name"]))
        return written
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    mapper = SemanticDatasetMapper(cfg, is_train=True)
    loader = build_detection_train_loader(cfg, mapper=mapper, total_batch_size=1)
    for n, batch in enumerate(islice(loader, num_images)):
        sample = batch[0]
        image = utils.convert_image_to_rgb(
            sample["image"].permute(1, 2, 0).numpy(), cfg.INPUT.FORMAT
        )
        drawn = (
            LegibleVisualizer(image, metadata)
            .draw_sem_seg(sample["sem_seg"].numpy(), alpha=0.5)
            .get_image()
        )
        save(drawn, f"{_stem(sample['file_name'])}_{n}")
    return written


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
