"""Per-class statistics of a registered semantic-segmentation dataset (``tools/dataset_stats.py``):
pixel counts and frequencies, images containing each class, and the class weights a weighted
loss would use (:func:`~panoptic_ocr.data.class_statistics.class_weights_from_frequencies`)."""

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import tqdm
from detectron2.data import DatasetCatalog, MetadataCatalog

from .class_statistics import class_weights_from_frequencies
from .label_files import read_label_png

__all__ = ["DatasetStats", "class_weights_snippet", "dataset_stats", "format_stats"]


@dataclass
class DatasetStats:
    """``pixel_counts[c]``: labelled pixels of class c; ``image_counts[c]``: images containing
    it; ``image_pixel_totals[c]``: all pixels of those images (median-frequency balancing);
    ``ignored``: pixels with the ignore label."""

    name: str
    classes: List[str]
    pixel_counts: np.ndarray
    image_counts: np.ndarray
    image_pixel_totals: np.ndarray
    num_images: int
    ignored: int


def dataset_stats(name: str, num_classes: Optional[int] = None) -> DatasetStats:
    """Count the labels of every record of dataset ``name`` (its ``sem_seg_file_name``).

    Raises:
        ValueError: a record has no label, or a label value is neither a class index nor the
            ignore label (names the file and the values).
    """
    metadata = MetadataCatalog.get(name)
    classes = list(metadata.get("stuff_classes", None) or [])
    k = num_classes or len(classes)
    if not k:
        raise ValueError(
            f"Dataset '{name}' has no stuff_classes in its metadata: pass the class count"
        )
    classes = classes if len(classes) == k else [f"class{i}" for i in range(k)]
    ignore = int(metadata.get("ignore_label", 255))
    pixels = np.zeros(k, np.int64)
    images = np.zeros(k, np.int64)
    totals = np.zeros(k, np.int64)
    ignored = 0
    records = DatasetCatalog.get(name)
    for record in tqdm.tqdm(records, desc=name, unit="label"):
        if "sem_seg_file_name" not in record:
            raise ValueError(
                f"Dataset '{name}': record {record.get('file_name')} has no sem_seg_file_name"
            )
        label = read_label_png(record["sem_seg_file_name"])
        counts = np.bincount(label.ravel().astype(np.int64), minlength=max(k, ignore + 1))
        bad = [v for v in np.nonzero(counts)[0] if v >= k and v != ignore]
        if bad:
            raise ValueError(
                f"{record['sem_seg_file_name']}: label values {bad[:10]} are neither a class index "
                f"in [0, {k}) nor the ignore label {ignore}"
            )
        ignored += int(counts[ignore]) if ignore < len(counts) else 0
        present = counts[:k] > 0
        pixels += counts[:k]
        images += present
        totals += present * label.size
    return DatasetStats(name, classes, pixels, images, totals, len(records), ignored)


def format_stats(stats: DatasetStats, weights: Optional[np.ndarray] = None) -> str:
    """A table: class, pixels, frequency, images (and the weight)."""
    from tabulate import tabulate

    total = max(int(stats.pixel_counts.sum()), 1)
    rows = []
    for i, c in enumerate(stats.classes):
        row = [
            i,
            c,
            int(stats.pixel_counts[i]),
            f"{100 * stats.pixel_counts[i] / total:.3f}%",
            int(stats.image_counts[i]),
        ]
        if weights is not None:
            row.append(f"{weights[i]:.4f}")
        rows.append(row)
    headers = ["id", "class", "pixels", "frequency", "images"] + (
        ["weight"] if weights is not None else []
    )
    head = (
        f"{stats.name}: {stats.num_images} images, {total} labelled pixels, "
        f"{stats.ignored} ignored\n"
    )
    return head + tabulate(rows, headers=headers, tablefmt="pipe") + _absent_note(stats)


def _absent_note(stats: DatasetStats) -> str:
    absent = [f"{i}={c}" for i, c in enumerate(stats.classes) if stats.pixel_counts[i] == 0]
    if not absent:
        return ""
    return (
        f"\n{len(absent)} class(es) absent from the data get weight 0 (nothing measured): "
        + ", ".join(absent)
    )


def class_weights_snippet(
    stats: DatasetStats, method: str = "enet", normalize: bool = False
) -> str:
    """A YAML config snippet setting ``MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS`` to the weights of
    ``method`` (see :func:`class_weights_from_frequencies`)."""
    weights = class_weights_from_frequencies(
        stats.pixel_counts, method, image_pixel_totals=stats.image_pixel_totals, normalize=normalize
    )
    values = ", ".join(f"{w:.4f}" for w in weights)
    absent = [c for i, c in enumerate(stats.classes) if stats.pixel_counts[i] == 0]
    absent_line = f"# weight 0: absent from the data: {', '.join(absent)}\n" if absent else ""
    return (
        f"# Class weights of {stats.name} ({method}, from {stats.num_images} label files): "
        f"tools/dataset_stats.py\n{absent_line}"
        'MODEL:\n  SEM_SEG_HEAD:\n    LOSS_TYPE: "cross_entropy"\n    LOSS:\n'
        f"      CLASS_WEIGHTS: [{values}]\n"
    )
