"""Stuff-only semantic labels for Panoptic-FPN, made from COCO panoptic annotations.

Each panoptic PNG (RGB, id = R + 256 G + 256^2 B, 0 = void) and its ``segments_info`` become a
single-channel ("L") PNG: every thing segment -> 0, a stuff segment -> its contiguous id
(``stuff_dataset_id_to_contiguous_id`` of the separated metadata: 1..53 for COCO), void -> 255.
These are the ``coco/panoptic_stuff_{train,val}2017`` folders that Detectron2's
``coco_2017_*_panoptic_separated`` datasets read.

Every PNG is checked against its ``segments_info`` and every category against the metadata. Each
output folder is written into a temporary sibling folder and renamed into place only when every
split converted (:mod:`panoptic_ocr.utils.safe_write`), so a failed run leaves earlier outputs as
they were.
"""

import multiprocessing
import os
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..utils.safe_write import PendingOutputs
from .datasets.register_coco_panoptic import (
    IGNORE_LABEL,
    VOID_ID,
    check_panoptic_ids,
    check_panoptic_segments,
    get_coco_panoptic_separated_meta,
    read_panoptic_json,
    read_panoptic_png,
)
from .label_files import _OVERWRITE_HINT, LabelConversionError, check_outputs_absent

__all__ = ["PanopticStuffSplit", "panoptic_to_stuff", "write_panoptic_stuff_labels"]

THINGS_LABEL = 0


class PanopticStuffSplit(NamedTuple):
    """One split to convert: its panoptic JSON and PNG folder, and the output folder."""

    panoptic_json: str
    panoptic_root: str
    output_dir: str


def _category_to_label(metadata) -> Dict[int, int]:
    """Dataset category id -> stuff-only label (0 for every thing)."""
    things = metadata.get("thing_dataset_id_to_contiguous_id")
    stuff = metadata.get("stuff_dataset_id_to_contiguous_id")
    labels = {cat: THINGS_LABEL for cat in things}
    for cat, contiguous in stuff.items():
        if cat != VOID_ID and cat not in things:
            if not 0 < contiguous < IGNORE_LABEL:
                raise ValueError(f"Stuff category {cat} maps to {contiguous}, outside 1..254")
            labels[cat] = contiguous
    return labels


def panoptic_to_stuff(
    panoptic_ids: np.ndarray,
    segments_info: List[Dict],
    category_to_label: Mapping[int, int],
    png_path: str,
) -> np.ndarray:
    """The ``[H, W]`` uint8 stuff-only label of one panoptic id map, after checking that its ids
    and ``segments_info`` agree (errors name ``png_path``)."""
    values, inverse = np.unique(panoptic_ids, return_inverse=True)
    check_panoptic_ids(values, segments_info, png_path)
    label_of_segment = {s["id"]: category_to_label[s["category_id"]] for s in segments_info}
    label_of_segment[VOID_ID] = IGNORE_LABEL
    labels = np.array([label_of_segment[int(v)] for v in values], dtype=np.uint8)
    return labels[inverse].reshape(panoptic_ids.shape)


def _convert_one(
    job: Tuple[str, str, List[Dict], Optional[Tuple[int, int]], Mapping[int, int]],
) -> None:
    png_path, output_path, segments_info, height_width, category_to_label = job
    ids = read_panoptic_png(png_path)
    if height_width is not None and ids.shape != tuple(height_width):
        raise LabelConversionError(
            f"Panoptic PNG '{png_path}' is {ids.shape[1]}x{ids.shape[0]} "
            "but the JSON gives its image "
            f"as {height_width[1]}x{height_width[0]} (WxH)"
        )
    stuff = panoptic_to_stuff(ids, segments_info, category_to_label, png_path)
    Image.fromarray(stuff).save(output_path, format="PNG")


def _split_jobs(split: PanopticStuffSplit, temp_dir: str, metadata) -> List[Tuple]:
    data = read_panoptic_json(split.panoptic_json)
    if not data["annotations"]:
        raise LabelConversionError(f"Panoptic JSON '{split.panoptic_json}' has no annotation")
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"] if "height" in im}
    check_panoptic_segments(
        data, split.panoptic_json, metadata, {im["id"] for im in data["images"]}
    )
    category_to_label = _category_to_label(metadata)
    jobs = []
    for ann in data["annotations"]:
        png_path = os.path.join(split.panoptic_root, ann["file_name"])
        output_path = os.path.join(temp_dir, os.path.splitext(ann["file_name"])[0] + ".png")
        jobs.append(
            (
                png_path,
                output_path,
                ann["segments_info"],
                sizes.get(ann["image_id"]),
                category_to_label,
            )
        )
    return jobs


def write_panoptic_stuff_labels(
    splits: Sequence[PanopticStuffSplit],
    metadata=None,
    overwrite: bool = False,
    workers: int = 1,
) -> Dict[str, int]:
    """Write the stuff-only label PNGs of every split, named as the panoptic PNGs.

    Args:
        splits: what to convert; each ``output_dir`` is created (its parent must exist).
        metadata: separated class metadata (dict or ``Metadata``); default: COCO's, from Detectron2.
        overwrite: replace existing non-empty output folders.
        workers: processes converting PNGs (1 = in this process).
    Returns:
        ``{output_dir: number of labels written}``.
    Raises:
        OutputExistsError: (a ``FileExistsError``) an output folder exists and is not empty, and
            ``overwrite`` is False.
        FileNotFoundError: a JSON or a panoptic PNG is missing.
        ValueError: (a ``LabelConversionError``) a PNG disagrees with its ``segments_info``, or a
            category is unknown; the message names the file.
    """
    metadata = metadata if metadata is not None else get_coco_panoptic_separated_meta()
    check_outputs_absent([s.output_dir for s in splits], overwrite)
    for split in splits:
        parent = os.path.dirname(os.path.abspath(split.output_dir))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"Folder '{parent}' (for '{split.output_dir}') does not exist")
    with PendingOutputs(overwrite=overwrite, hint=_OVERWRITE_HINT) as pending:
        # Every JSON is read and checked before the first PNG is converted.
        jobs_per_split = [
            _split_jobs(split, pending.directory(split.output_dir), metadata) for split in splits
        ]
        counts = {}
        for split, jobs in zip(splits, jobs_per_split):
            progress = dict(
                total=len(jobs),
                desc=os.path.basename(split.output_dir),
                unit="label",
                dynamic_ncols=True,
            )
            if workers > 1:
                with multiprocessing.Pool(workers) as pool:
                    for _ in tqdm(
                        pool.imap_unordered(_convert_one, jobs, chunksize=16), **progress
                    ):
                        pass
            else:
                for job in tqdm(jobs, **progress):
                    _convert_one(job)
            counts[split.output_dir] = len(jobs)
    return counts
