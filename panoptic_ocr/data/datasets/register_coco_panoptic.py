"""COCO panoptic, "separated" (Panoptic-FPN), with input validation, under the project's names.

Names: ``coco_2017_{train,val,val_100}_panoptic_separated_checked``, beside Detectron2's
``coco_2017_*_panoptic_separated`` (left untouched). Their records are those of Detectron2's
datasets: instances from ``coco/annotations/instances_*2017.json`` merged with the stuff-only
labels of ``coco/panoptic_stuff_*2017`` (things 0, stuff 1..53, void 255; written by
``datasets/prepare_coco_panoptic_fpn.py``), read by a loader that first checks the panoptic JSON
(every listed image exists, every segment's category is known). The metadata is Detectron2's
(same class tables, same files under ``$DETECTRON2_DATASETS``) plus ``prepare_command``.
"""

import json
import os
from typing import Dict, Iterable, List, Mapping, Optional, Set

import numpy as np
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.data.datasets.coco_panoptic import merge_to_panoptic
from detectron2.utils.file_io import PathManager

from ..label_files import LabelConversionError
from .sem_seg_loaders import load_sem_seg_paired

__all__ = [
    "COCO_PANOPTIC_SEPARATED_SPLITS",
    "check_panoptic_annotations",
    "check_panoptic_ids",
    "check_panoptic_png",
    "check_panoptic_segments",
    "get_coco_panoptic_separated_meta",
    "known_category_ids",
    "load_coco_panoptic_separated",
    "read_panoptic_json",
    "read_panoptic_png",
    "register_all_coco_panoptic",
    "register_coco_panoptic_separated",
]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_coco_panoptic_fpn.py"
IGNORE_LABEL = 255
VOID_ID = 0  # panoptic PNG id of unlabelled pixels

CHECKED_SUFFIX = "_checked"

# The project's names -> their files, relative to $DETECTRON2_DATASETS (the files of Detectron2's
# coco_2017_<split>_panoptic_separated, as in its builtin.py).
COCO_PANOPTIC_SEPARATED_SPLITS: Dict[str, Dict[str, str]] = {
    f"coco_2017_{split}_panoptic_separated{CHECKED_SUFFIX}": {
        "image_root": f"coco/{images}",
        "panoptic_root": f"coco/panoptic_{folder}",
        "panoptic_json": f"coco/annotations/panoptic_{folder}.json",
        "sem_seg_root": f"coco/panoptic_stuff_{folder}",
        "json_file": f"coco/annotations/instances_{folder}.json",
    }
    for split, images, folder in (
        ("train", "train2017", "train2017"),
        ("val", "val2017", "val2017"),
        ("val_100", "val2017", "val2017_100"),
    )
}


def get_coco_panoptic_separated_meta() -> Dict:
    """Detectron2's class metadata of the separated datasets (80 things; "things" + 53 stuff)."""
    return _get_builtin_metadata("coco_panoptic_separated")


def known_category_ids(metadata) -> Set[int]:
    """Dataset category ids of ``metadata`` (a dict or a Detectron2 ``Metadata``): the keys of its
    thing and stuff id maps. Stuff id 0, the "things" placeholder of separated metadata, is no
    category (COCO ids start at 1)."""
    things = metadata.get("thing_dataset_id_to_contiguous_id", None) or {}
    stuff = metadata.get("stuff_dataset_id_to_contiguous_id", None) or {}
    return (set(things) | set(stuff)) - {VOID_ID}


def read_panoptic_json(panoptic_json: str) -> Dict:
    """The parsed COCO panoptic JSON, with a clear error when it is missing or malformed."""
    if not PathManager.isfile(panoptic_json):
        raise FileNotFoundError(f"Panoptic JSON '{panoptic_json}' does not exist")
    with PathManager.open(panoptic_json) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise LabelConversionError(
                f"Panoptic JSON '{panoptic_json}' is not valid JSON: {e}"
            ) from e
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise LabelConversionError(f"Panoptic JSON '{panoptic_json}' has no '{key}' list")
    return data


def _files_in(folder: str) -> Set[str]:
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def check_panoptic_annotations(panoptic_json: str, image_root: str, metadata) -> None:
    """Cheap checks of a COCO panoptic JSON (no PNG is read).

    Every image listed exists under ``image_root``; every annotation refers to a listed image;
    segment ids are unique per image; every segment's ``category_id`` is a category of
    ``metadata`` (its thing or stuff dataset id maps).

    Raises:
        FileNotFoundError: the JSON or an image is missing (names the image file, its id and the JSON).
        ValueError: (a ``LabelConversionError``) a bad annotation, naming the JSON, the image, the
            segment id and the category id.
    """
    data = read_panoptic_json(panoptic_json)
    present = _files_in(image_root)
    image_ids = set()
    for image in data["images"]:
        file_name = image["file_name"]
        if file_name not in present and not os.path.isfile(os.path.join(image_root, file_name)):
            raise FileNotFoundError(
                f"Image '{os.path.join(image_root, file_name)}' (image id {image['id']}) listed in "
                f"'{panoptic_json}' does not exist"
            )
        image_ids.add(image["id"])

    check_panoptic_segments(data, panoptic_json, metadata, image_ids)


def check_panoptic_segments(
    data: Dict, panoptic_json: str, metadata, image_ids: Optional[Set[int]] = None
) -> None:
    """Check the ``annotations`` of a parsed panoptic JSON: segment ids are unique per image and
    every ``category_id`` is a category of ``metadata``; with ``image_ids``, every annotation's
    image is one of them.

    Raises:
        ValueError: (a ``LabelConversionError``) naming the JSON, the image id and file name, the
            segment id and the category id.
    """
    known = known_category_ids(metadata)
    for ann in data["annotations"]:
        where = f"'{panoptic_json}', image id {ann.get('image_id')} ('{ann.get('file_name')}')"
        if image_ids is not None and ann.get("image_id") not in image_ids:
            raise LabelConversionError(f"{where}: the image id is not in the JSON's 'images'")
        seen = set()
        for segment in ann["segments_info"]:
            if segment["id"] in seen:
                raise LabelConversionError(f"{where}: segment id {segment['id']} occurs twice")
            seen.add(segment["id"])
            if segment["category_id"] not in known:
                raise LabelConversionError(
                    f"{where}, segment id {segment['id']}: category id {segment['category_id']} is "
                    f"not a category of the dataset ({len(known)} known ids, "
                    f"{min(known, default=None)}..{max(known, default=None)})"
                )


def read_panoptic_png(png_path: str) -> np.ndarray:
    """Segment ids ``[H, W]`` (int32) of a COCO panoptic PNG (RGB, id = R + 256 G + 256^2 B)."""
    from panopticapi.utils import rgb2id

    try:
        with PathManager.open(png_path, "rb") as f, Image.open(f) as im:
            rgb = np.asarray(im)
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises several types; the file name is what the user needs
        raise LabelConversionError(f"Cannot read panoptic PNG '{png_path}': {e}") from e
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise LabelConversionError(
            f"Panoptic PNG '{png_path}' must be RGB (id = R + 256 G + 256^2 B), got shape {rgb.shape}"
        )
    return rgb2id(rgb).astype(np.int32)


def _ids_text(ids: Iterable[int], limit: int = 10) -> str:
    ids = sorted(int(i) for i in ids)
    more = f" (and {len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(str(i) for i in ids[:limit]) + more


def check_panoptic_ids(
    present_ids: Iterable[int], segments_info: List[Dict], png_path: str
) -> None:
    """Check that the ids found in a panoptic PNG (``present_ids``) and ``segments_info`` agree.

    Raises:
        ValueError: (a ``LabelConversionError``) naming ``png_path`` and the offending ids.
    """
    present = {int(i) for i in present_ids} - {VOID_ID}
    listed = {int(s["id"]) for s in segments_info}
    unlisted = present - listed
    if unlisted:
        raise LabelConversionError(
            f"Panoptic PNG '{png_path}' holds segment id(s) {_ids_text(unlisted)} that its "
            f"segments_info does not list"
        )
    absent = listed - present
    if absent:
        raise LabelConversionError(
            f"Panoptic PNG '{png_path}' does not contain segment id(s) {_ids_text(absent)} listed "
            f"in its segments_info"
        )


def check_panoptic_png(png_path: str, segments_info: List[Dict]) -> None:
    """Read a panoptic PNG and check that its ids (void 0 aside) are exactly those of
    ``segments_info``.

    Raises:
        ValueError: (a ``LabelConversionError``) naming the PNG file and the offending id(s).
    """
    check_panoptic_ids(np.unique(read_panoptic_png(png_path)), segments_info, png_path)


def load_coco_panoptic_separated(
    dataset_name: str,
    image_root: str,
    panoptic_json: str,
    sem_seg_root: str,
    instances_json: str,
    metadata,
) -> List[Dict]:
    """Detectron2's "separated" records (instances + stuff-only ``sem_seg_file_name``), after
    :func:`check_panoptic_annotations` and a check that every image has its stuff label."""
    check_panoptic_annotations(panoptic_json, image_root, metadata)
    if not os.path.isdir(sem_seg_root):
        raise FileNotFoundError(
            f"Stuff labels '{sem_seg_root}' do not exist. Create them with: {PREPARE_COMMAND}"
        )
    instances = load_coco_json(instances_json, image_root, dataset_name)
    # val_100's labels pair with 100 of val2017's images: the instances JSON lists the split's
    # images (each needs its label, below); every label needs its image.
    stuff = load_sem_seg_paired(sem_seg_root, image_root, images_of_other_splits=True)
    with_stuff = {r["file_name"] for r in stuff}
    missing = [r["file_name"] for r in instances if r["file_name"] not in with_stuff]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) of '{instances_json}' have no stuff label in '{sem_seg_root}', "
            f"e.g. '{missing[0]}'. Create the labels with: {PREPARE_COMMAND} (--overwrite)"
        )
    return merge_to_panoptic(instances, stuff)


def register_coco_panoptic_separated(
    name: str,
    metadata: Mapping,
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    sem_seg_root: str,
    instances_json: str,
) -> None:
    """Register ``name`` (the full dataset name) like Detectron2's ``*_panoptic_separated``
    datasets, with the validating loader :func:`load_coco_panoptic_separated`.

    ``metadata`` is the class metadata (e.g. :func:`get_coco_panoptic_separated_meta`). Nothing is
    read until the dataset is loaded.
    """
    DatasetCatalog.register(
        name,
        lambda: load_coco_panoptic_separated(
            name, image_root, panoptic_json, sem_seg_root, instances_json, metadata
        ),
    )
    MetadataCatalog.get(name).set(
        panoptic_root=panoptic_root,
        panoptic_json=panoptic_json,
        sem_seg_root=sem_seg_root,
        json_file=instances_json,
        image_root=image_root,
        evaluator_type="coco_panoptic_seg",
        ignore_label=IGNORE_LABEL,
        prepare_command=PREPARE_COMMAND,
        **metadata,
    )


def register_all_coco_panoptic(root: str) -> None:
    """Register ``coco_2017_{train,val,val_100}_panoptic_separated_checked`` on the files under
    ``root`` (``$DETECTRON2_DATASETS``). Names already registered are left as they are; no
    Detectron2 registration is read or changed."""
    registered = set(DatasetCatalog.list())
    for name, relative_paths in COCO_PANOPTIC_SEPARATED_SPLITS.items():
        if name in registered:
            continue
        paths = {key: os.path.join(root, rel) for key, rel in relative_paths.items()}
        register_coco_panoptic_separated(
            name,
            get_coco_panoptic_separated_meta(),
            paths["image_root"],
            paths["panoptic_root"],
            paths["panoptic_json"],
            paths["sem_seg_root"],
            paths["json_file"],
        )
