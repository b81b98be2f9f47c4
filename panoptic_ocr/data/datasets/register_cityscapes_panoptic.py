"""Cityscapes panoptic for Panoptic-FPN: instances of the 8 thing classes + "separated" labels.

Names (beside Detectron2's ``cityscapes_fine_panoptic_{train,val}``, left untouched, whose 19
merged classes are Panoptic-DeepLab's form):

* ``cityscapes_fine_panoptic_separated_{train,val}``: records in the form of Detectron2's
  ``load_cityscapes_panoptic`` (``pan_seg_file_name``, ``segments_info``; the panoptic PNG + JSON
  that cityscapesScripts' ``createPanopticImgs`` makes from ``*_gtFine_instanceIds.png``), with
  each segment's ``category_id`` made contiguous and ``isthing`` added, and ``sem_seg_file_name``
  the separated label (0 = things, 1..11 = the 11 stuff classes, 255 = void). The instances are
  the panoptic annotation's thing segments: the ``panoptic_instances`` mapper
  (:mod:`panoptic_ocr.data.dataset_mappers.panoptic_instances_dataset_mapper`) reads them from the
  panoptic PNG, so the training instances are the PQ ground truth (no ``*_polygons.json``
  needed). ``evaluator_type`` "cityscapes_panoptic_seg": PQ, the semantic branch's mIoU, the
  merged output's 19-class mIoU and Cityscapes instance AP.
* ``cityscapes_fine_panoptic_separated_test_submission``: the 1525 test images without labels,
  written as a panoptic submission (COCO panoptic format, Cityscapes label ids).

Files under ``$DETECTRON2_DATASETS/cityscapes/gtFine`` (``datasets/prepare_cityscapes_panoptic.py``
writes the last three): ``<split>/<city>/*_gtFine_{labelIds,instanceIds}.png`` (the release),
``cityscapes_panoptic_<split>.json``, ``cityscapes_panoptic_<split>/*_gtFine_panoptic.png`` and
``cityscapes_panoptic_stuff_<split>/*_gtFine_panoptic.png`` (the separated labels).
"""

import functools
import glob
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES

from ..label_files import LabelConversionError
from .register_coco_panoptic import check_panoptic_segments, read_panoptic_json
from .sem_seg_loaders import load_images_without_labels

__all__ = [
    "CITYSCAPES_PANOPTIC_SPLITS",
    "cityscapes_image_id",
    "get_cityscapes_panoptic_separated_meta",
    "load_cityscapes_panoptic_separated",
    "load_cityscapes_panoptic_test_images",
    "panoptic_paths",
    "register_cityscapes_panoptic",
]

PREPARE_COMMAND = ".venv/bin/python datasets/prepare_cityscapes_panoptic.py"
IGNORE_LABEL = 255
LABEL_DIVISOR = 1000  # Cityscapes instance ids: label id * 1000 + instance
CITYSCAPES_PANOPTIC_SPLITS = ("train", "val")
# The "things" class of the separated labels: COCO's separated colour in Detectron2's metadata.
_THINGS_COLOR = [82, 18, 128]


def _categories(isthing: int) -> List[Dict]:
    chosen = [c for c in CITYSCAPES_CATEGORIES if c["isthing"] == isthing]
    return sorted(chosen, key=lambda c: c["trainId"])


def get_cityscapes_panoptic_separated_meta() -> Dict:
    """Class metadata in Detectron2's separated form (as its ``coco_panoptic_separated``), made
    from Detectron2's ``CITYSCAPES_CATEGORIES``: 8 things (contiguous 0..7, by train id) and
    ``"things"`` + 11 stuff classes (contiguous 0..11); dataset ids are Cityscapes label ids, and
    stuff id 0 is the ``"things"`` placeholder."""
    things, stuff = _categories(1), _categories(0)
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_colors": [list(c["color"]) for c in things],
        "stuff_classes": ["things"] + [c["name"] for c in stuff],
        "stuff_colors": [_THINGS_COLOR] + [list(c["color"]) for c in stuff],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "stuff_dataset_id_to_contiguous_id": dict(
            [(0, 0)] + [(c["id"], i + 1) for i, c in enumerate(stuff)]
        ),
    }


def cityscapes_image_id(file_name: str) -> str:
    """``<city>_<sequence>_<frame>`` of a Cityscapes file, the image id of the panoptic JSON."""
    return "_".join(os.path.basename(file_name).split("_")[:3])


def panoptic_paths(gt_root: str, split: str) -> Dict[str, str]:
    """The files of one split under ``gt_root`` (``.../cityscapes/gtFine``): ``gt_dir``,
    ``panoptic_json``, ``panoptic_root`` and ``sem_seg_root`` (the separated labels)."""
    return {
        "gt_dir": os.path.join(gt_root, split),
        "panoptic_json": os.path.join(gt_root, f"cityscapes_panoptic_{split}.json"),
        "panoptic_root": os.path.join(gt_root, f"cityscapes_panoptic_{split}"),
        "sem_seg_root": os.path.join(gt_root, f"cityscapes_panoptic_stuff_{split}"),
    }


def load_cityscapes_panoptic_separated(
    image_dir: str, panoptic_root: str, panoptic_json: str, sem_seg_root: str, metadata: Dict
) -> List[Dict]:
    """Records in the form of Detectron2's ``load_cityscapes_panoptic`` (``file_name``,
    ``image_id``, ``pan_seg_file_name``, ``segments_info``) with contiguous segment categories,
    ``isthing``, ``height``/``width`` (from the JSON) and the separated ``sem_seg_file_name``.

    Detectron2's loader itself is not called: it asserts that a ``*_labelTrainIds.png`` exists
    (a path it derives by cutting the image path at its first ".", so a dotted dataset root
    breaks it) and reports missing files with bare asserts.

    Raises:
        FileNotFoundError: the JSON, an image, a panoptic PNG or a separated label is missing, or
            an image of ``image_dir`` has no annotation (each names the file and the command
            that creates it).
        ValueError: (a ``LabelConversionError``) a segment's category is unknown or an id repeats.
    """
    hint = f"Create the panoptic files with: {PREPARE_COMMAND} (see datasets/README.md)"
    if not os.path.isfile(panoptic_json):
        raise FileNotFoundError(f"Panoptic JSON '{panoptic_json}' does not exist. {hint}")
    data = read_panoptic_json(panoptic_json)
    check_panoptic_segments(data, panoptic_json, metadata)
    images = sorted(glob.glob(os.path.join(image_dir, "*", "*_leftImg8bit.png")))
    annotated = {ann["image_id"] for ann in data["annotations"]}
    unannotated = [f for f in images if cityscapes_image_id(f) not in annotated]
    if unannotated or not images:
        example = unannotated[0] if unannotated else f"{image_dir}/<city>/*_leftImg8bit.png"
        raise FileNotFoundError(
            f"{len(unannotated) or 'No'} image(s) of '{image_dir}' have no annotation in "
            f"'{panoptic_json}', e.g. '{example}'. {hint} (--overwrite after adding images)"
        )
    things = metadata["thing_dataset_id_to_contiguous_id"]
    stuff = metadata["stuff_dataset_id_to_contiguous_id"]
    image_of = {cityscapes_image_id(f): f for f in images}
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    records = []
    for ann in data["annotations"]:
        image_id = ann["image_id"]
        if image_id not in image_of:
            raise FileNotFoundError(
                f"'{panoptic_json}' annotates '{image_id}', which has no image "
                f"'{image_dir}/<city>/{image_id}_leftImg8bit.png'"
            )
        if image_id not in sizes:
            raise LabelConversionError(
                f"'{panoptic_json}' has an annotation but no image entry for '{image_id}'"
            )
        pan_seg = os.path.join(panoptic_root, ann["file_name"])
        sem_seg = os.path.join(sem_seg_root, ann["file_name"])
        for path, what in ((pan_seg, "Panoptic PNG"), (sem_seg, "Separated label")):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{what} '{path}' does not exist. {hint}")
        segments = []
        for s in ann["segments_info"]:
            isthing = s["category_id"] in things
            category = (things if isthing else stuff)[s["category_id"]]
            segments.append(dict(s, category_id=category, isthing=isthing))
        height, width = sizes[image_id]
        records.append(
            {
                "file_name": image_of[image_id],
                "image_id": image_id,
                "height": height,
                "width": width,
                "sem_seg_file_name": sem_seg,
                "pan_seg_file_name": pan_seg,
                "segments_info": segments,
            }
        )
    return records


def load_cityscapes_panoptic_test_images(image_dir: str) -> List[Dict]:
    """Label-free records of ``<image_dir>/<city>/*_leftImg8bit.png`` whose ``image_id`` is the
    panoptic JSON's ``<city>_<sequence>_<frame>``."""
    records = load_images_without_labels(image_dir, suffixes=("_leftImg8bit.png",), recursive=True)
    for record in records:
        record["image_id"] = cityscapes_image_id(record["file_name"])
    return records


def register_cityscapes_panoptic(root: str, prefix: str = "cityscapes") -> None:
    """Register ``{prefix}_fine_panoptic_separated_{train,val}`` and
    ``{prefix}_fine_panoptic_separated_test_submission`` on ``<root>/cityscapes``; nothing is
    read until a dataset is loaded."""
    base = os.path.join(root, "cityscapes")
    meta = get_cityscapes_panoptic_separated_meta()
    for split in CITYSCAPES_PANOPTIC_SPLITS:
        image_dir = os.path.join(base, "leftImg8bit", split)
        paths = panoptic_paths(os.path.join(base, "gtFine"), split)
        name = f"{prefix}_fine_panoptic_separated_{split}"
        DatasetCatalog.register(
            name,
            functools.partial(
                load_cityscapes_panoptic_separated,
                image_dir,
                paths["panoptic_root"],
                paths["panoptic_json"],
                paths["sem_seg_root"],
                meta,
            ),
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir,
            image_dir=image_dir,
            evaluator_type="cityscapes_panoptic_seg",
            ignore_label=IGNORE_LABEL,
            label_divisor=LABEL_DIVISOR,
            prepare_command=PREPARE_COMMAND,
            **paths,
            **meta,
        )
    image_dir = os.path.join(base, "leftImg8bit", "test")
    name = f"{prefix}_fine_panoptic_separated_test_submission"
    DatasetCatalog.register(
        name, functools.partial(load_cityscapes_panoptic_test_images, image_dir)
    )
    MetadataCatalog.get(name).set(
        image_root=image_dir,
        evaluator_type="cityscapes_panoptic_submission",
        submission_split="cityscapes_test",
        ignore_label=IGNORE_LABEL,
        label_divisor=LABEL_DIVISOR,
        prepare_command="unzip leftImg8bit_trainvaltest.zip -d $DETECTRON2_DATASETS/cityscapes",
        **meta,
    )
