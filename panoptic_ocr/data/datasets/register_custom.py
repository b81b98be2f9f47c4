"""Register your own semantic-segmentation data: a folder of images and a folder of label PNGs
(docs/custom_datasets.md)."""

import functools
import os
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..label_files import LabelLUT, PendingWrites, _up_to_date, convert_pairs, read_label_png
from .colormap import voc_colormap
from .sem_seg_loaders import load_sem_seg_paired

__all__ = [
    "CUSTOM_DATASETS_ENV",
    "reduced_labels_root",
    "register_sem_seg_folder",
    "register_sem_seg_folders_from_json",
]


def _default_colors(num_classes: int) -> List[Tuple[int, int, int]]:
    return [tuple(int(v) for v in c) for c in voc_colormap(num_classes)]


def reduced_labels_root(label_root: str) -> str:
    """Where ``reduce_zero_label`` writes the converted labels of ``label_root``: a sibling
    folder ``<label_root>_reduced_zero_label``."""
    return os.path.normpath(label_root) + "_reduced_zero_label"


def reduce_zero_label_lut(num_classes: int, ignore_label: int) -> LabelLUT:
    """Source 0 -> ``ignore_label``, ``1..K`` -> ``0..K-1``, ``ignore_label`` stays; any other
    value is an error naming the file (mmsegmentation's ``reduce_zero_label``, ADE20K's raw
    labels)."""
    mapping = {0: ignore_label, ignore_label: ignore_label}
    mapping.update({v: v - 1 for v in range(1, num_classes + 1)})
    return LabelLUT.from_dict(
        mapping, 256, f"labels with 0 = ignore and 1..{num_classes} = classes"
    )


def _reduce_zero_labels(records: List[Dict], label_root: str, lut: LabelLUT) -> None:
    """Point each record at its converted label, converting those missing or older than their
    source (all written together, or none)."""
    target_root = reduced_labels_root(label_root)
    jobs = []
    for r in records:
        source = r["sem_seg_file_name"]
        target = os.path.join(target_root, os.path.relpath(source, label_root))
        target = os.path.splitext(target)[0] + ".png"
        if not _up_to_date(source, target):
            jobs.append((source, r["file_name"], target))
        r["sem_seg_file_name"] = target
    if jobs:
        with PendingWrites(overwrite=True) as writer:
            convert_pairs(jobs, read_label_png, lut, writer, desc="reduce_zero_label")


def _load(
    name: str,
    image_root: str,
    label_root: str,
    image_ext: str,
    label_ext: str,
    allow_unpaired: bool = False,
    reduce_zero: Optional[LabelLUT] = None,
) -> List[Dict]:
    """Records of :func:`.sem_seg_loaders.load_sem_seg_paired` with ``image_id`` (the stem);
    with ``reduce_zero``, their labels converted under :func:`reduced_labels_root`."""
    try:
        records = load_sem_seg_paired(
            label_root,
            image_root,
            gt_ext=label_ext,
            image_ext=image_ext,
            allow_unpaired=allow_unpaired,
        )
    except FileNotFoundError as e:
        raise type(e)(f"Dataset '{name}': {e}") from e
    for r in records:
        r["image_id"] = os.path.basename(r["file_name"])[: -len(image_ext)]
    if reduce_zero is not None:
        try:
            _reduce_zero_labels(records, label_root, reduce_zero)
        except ValueError as e:
            raise ValueError(f"Dataset '{name}' (reduce_zero_label): {e}") from e
    return records


def register_sem_seg_folder(
    name: str,
    image_root: str,
    label_root: str,
    classes: Sequence[str],
    *,
    ignore_label: int = 255,
    colors: Optional[Sequence[Sequence[int]]] = None,
    image_ext: str = ".jpg",
    label_ext: str = ".png",
    allow_unpaired: bool = False,
    reduce_zero_label: bool = False,
) -> None:
    """Register dataset ``name``: one record per image ``<image_root>/<stem><image_ext>`` with
    its label ``<label_root>/<stem><label_ext>``. Every image needs its label and every label its
    image (the dataset errors when loaded, naming the missing files), unless ``allow_unpaired``.

    Labels are single-channel PNGs of class indices ``0..len(classes)-1``, and
    ``ignore_label`` for unlabelled pixels (``tools/dataset_stats.py`` checks every value).
    Sets the metadata ``stuff_classes``, ``stuff_colors``, ``ignore_label``,
    ``evaluator_type="sem_seg"``, ``image_root`` and ``sem_seg_root``, so the dataset can be
    used in ``DATASETS.TRAIN``/``TEST``, evaluated with Detectron2's ``SemSegEvaluator`` and
    drawn by the demo and ``tools/browse_dataset.py``. The folders are read when the dataset
    is first loaded (``DatasetCatalog.get``).

    Args:
        name: the new dataset's name.
        image_root: folder of the images.
        label_root: folder of the label PNGs (same stems as the images).
        classes: class names, index = label value.
        ignore_label: label value of unlabelled pixels (0..255, not a class index).
        colors: one ``(r, g, b)`` 0..255 per class; default the PASCAL VOC palette.
        image_ext: extension of the images (with the dot).
        label_ext: extension of the labels (with the dot).
        allow_unpaired: use only the images that have a label (and the labels that have an
            image), with a warning giving how many images are used out of how many.
        reduce_zero_label: the labels use 0 for unlabelled pixels and ``1..len(classes)`` for
            the classes (mmsegmentation's ``reduce_zero_label``, ADE20K's raw labels): they are
            converted once, when the dataset is first loaded, into
            ``<label_root>_reduced_zero_label/`` (0 -> ``ignore_label``, k -> k-1; redone for a
            label newer than its conversion), and the records and ``sem_seg_root`` point there.
    Raises:
        ValueError: ``name`` is registered already, no/duplicate class names, a bad
            ``ignore_label``, or colors of the wrong number or form (each names what is wrong).
    """
    if name in DatasetCatalog.list():
        raise ValueError(
            f"register_sem_seg_folder: dataset '{name}' is already registered; pick another name"
        )
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError(f"register_sem_seg_folder('{name}'): classes is empty")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise ValueError(f"register_sem_seg_folder('{name}'): duplicate class names {duplicates}")
    if not (0 <= int(ignore_label) <= 255) or int(ignore_label) < len(classes):
        raise ValueError(
            f"register_sem_seg_folder('{name}'): ignore_label must be in [{len(classes)}, 255] "
            f"(after the {len(classes)} class indices), got {ignore_label}"
        )
    if colors is None:
        colors = _default_colors(len(classes))
    colors = [tuple(int(v) for v in c) for c in colors]
    if len(colors) != len(classes):
        raise ValueError(
            f"register_sem_seg_folder('{name}'): {len(colors)} colors for {len(classes)} classes"
        )
    bad = [c for c in colors if len(c) != 3 or not all(0 <= v <= 255 for v in c)]
    if bad:
        raise ValueError(
            f"register_sem_seg_folder('{name}'): colors must be (r, g, b) in 0..255, got {bad[0]}"
        )
    for ext, what in ((image_ext, "image_ext"), (label_ext, "label_ext")):
        if not ext.startswith("."):
            raise ValueError(
                f"register_sem_seg_folder('{name}'): {what} must start with '.', got {ext!r}"
            )
    if not isinstance(allow_unpaired, bool):
        raise ValueError(
            f"register_sem_seg_folder('{name}'): allow_unpaired must be true or false, "
            f"got {allow_unpaired!r}"
        )
    if not isinstance(reduce_zero_label, bool):
        raise ValueError(
            f"register_sem_seg_folder('{name}'): reduce_zero_label must be true or false, "
            f"got {reduce_zero_label!r}"
        )
    reduce_zero = (
        reduce_zero_label_lut(len(classes), int(ignore_label)) if reduce_zero_label else None
    )
    DatasetCatalog.register(
        name,
        functools.partial(
            _load, name, image_root, label_root, image_ext, label_ext, allow_unpaired, reduce_zero
        ),
    )
    MetadataCatalog.get(name).set(
        stuff_classes=classes,
        stuff_colors=colors,
        ignore_label=int(ignore_label),
        evaluator_type="sem_seg",
        image_root=image_root,
        sem_seg_root=reduced_labels_root(label_root) if reduce_zero_label else label_root,
    )


CUSTOM_DATASETS_ENV = "PANOPTIC_OCR_CUSTOM_DATASETS"


def register_sem_seg_folders_from_json(path: str) -> List[str]:
    """Register every dataset of a JSON file ``{name: {"image_root", "label_root", "classes",
    optional "ignore_label", "colors", "image_ext", "label_ext", "allow_unpaired",
    "reduce_zero_label"}}`` with
    :func:`register_sem_seg_folder`; relative roots are relative to the JSON file's folder.
    ``panoptic_ocr`` does this at import for the file named by the environment variable
    ``PANOPTIC_OCR_CUSTOM_DATASETS``, so ``train_net.py``, the demo and the tools see them.

    Returns:
        the registered names.
    Raises:
        FileNotFoundError / ValueError: the file is missing, not JSON, or an entry lacks a key
            (each names the file and the entry).
    """
    import json

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{CUSTOM_DATASETS_ENV}: no such file {path!r}")
    try:
        with open(path) as f:
            entries = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected an object {{dataset name: {{...}}}}")
    base = os.path.dirname(os.path.abspath(path))
    for name, entry in entries.items():
        missing = [k for k in ("image_root", "label_root", "classes") if k not in entry]
        if missing:
            raise ValueError(f"{path}: dataset '{name}' lacks {missing}")
        optional = (
            "ignore_label",
            "colors",
            "image_ext",
            "label_ext",
            "allow_unpaired",
            "reduce_zero_label",
        )
        options = {k: entry[k] for k in optional if k in entry}
        roots = [
            os.path.join(base, os.path.expandvars(entry[k])) for k in ("image_root", "label_root")
        ]
        register_sem_seg_folder(name, roots[0], roots[1], entry["classes"], **options)
    return list(entries)
