"""Write the cached SegFix targets (:mod:`panoptic_ocr.segfix.target_files`) of every label of
registered semantic datasets: the logic of ``datasets/prepare_segfix_targets.py``."""

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from tqdm import tqdm

from ..data.label_files import read_label_png
from ..utils.safe_write import atomic_file
from .target_files import PathLike, target_file_path, targets_of_label

__all__ = ["write_dataset_targets"]


def _up_to_date(label_file: str, path: str) -> bool:
    try:
        return os.path.getmtime(path) >= os.path.getmtime(label_file)
    except OSError:
        return False


def _write_one(job: Tuple[str, str, int, int]) -> str:
    """Compute and atomically write the targets of one label; returns the target path."""
    label_file, path, ignore_label, max_distance = job
    label = read_label_png(label_file)
    if label.ndim != 2 or label.dtype.kind not in "iub":
        raise ValueError(
            f"Label file '{label_file}' must be a single-channel integer image, got "
            f"{label.dtype} {label.shape}"
        )
    packed = targets_of_label(label, ignore_label, max_distance)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        Image.fromarray(packed).save(tmp, format="PNG")
    return path


def write_dataset_targets(
    dataset_names: Sequence[str],
    max_distance: int = 5,
    targets_dir: Optional[PathLike] = None,
    overwrite: bool = False,
    workers: int = 1,
) -> Dict[str, Dict[str, int]]:
    """Cache the SegFix targets of every label of the registered semantic datasets
    ``dataset_names`` (their records' ``sem_seg_file_name``, the metadata's ``ignore_label``,
    default 255) at :func:`target_file_path`. Re-runnable: a target file not older than its
    label is kept unless ``overwrite``; each file is written atomically, so an interrupted run
    leaves only complete files.

    Returns:
        per dataset, ``{"written": n, "up_to_date": n}``.
    Raises:
        KeyError: a dataset is not registered (the message lists the registered ones).
        ValueError: a dataset has no record with a label, or a label is not a single-channel
            integer image.
    """
    plans: List[Tuple[str, List[Tuple[str, str, int, int]], int]] = []
    for name in dataset_names:
        if name not in DatasetCatalog.list():
            raise KeyError(
                f"Dataset '{name}' is not registered; registered semantic datasets include "
                f"{sorted(n for n in DatasetCatalog.list() if 'sem_seg' in n)[:20]}"
            )
        ignore_label = int(MetadataCatalog.get(name).get("ignore_label", 255))
        records = DatasetCatalog.get(name)
        labels = [r["sem_seg_file_name"] for r in records if "sem_seg_file_name" in r]
        if not labels:
            raise ValueError(f"Dataset '{name}' has no record with a 'sem_seg_file_name'")
        jobs, kept = [], 0
        for label_file in dict.fromkeys(labels):  # unique, in order
            path = target_file_path(label_file, max_distance, targets_dir)
            if not overwrite and _up_to_date(label_file, path):
                kept += 1
            else:
                jobs.append((label_file, path, ignore_label, max_distance))
        plans.append((name, jobs, kept))
    counts = {}
    for name, jobs, kept in plans:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                # map() forks the workers at once; the progress bar (and tqdm's monitor thread)
                # comes after, so no child inherits a thread or a lock held mid-way.
                written = pool.map(_write_one, jobs, chunksize=4)
                with tqdm(total=len(jobs), desc=name, unit="label", dynamic_ncols=True) as bar:
                    for _ in written:
                        bar.update()
        else:
            with tqdm(total=len(jobs), desc=name, unit="label", dynamic_ncols=True) as bar:
                for job in jobs:
                    _write_one(job)
                    bar.update()
        counts[name] = {"written": len(jobs), "up_to_date": kept}
    return counts
