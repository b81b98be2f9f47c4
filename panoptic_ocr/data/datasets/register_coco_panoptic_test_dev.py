"""COCO panoptic test-dev for Panoptic-FPN: images without labels, evaluated by a submission.

Name:

* ``coco_2017_test-dev_panoptic``: the 20288 test-dev images, ``coco/test2017/*.jpg``, listed by
  ``coco/annotations/image_info_test-dev2017.json`` (images and categories, no annotations).

Detectron2 registers test-dev only for instances (``coco_2017_test-dev``, thing metadata only).
This split carries the metadata of ``coco_2017_*_panoptic_separated`` (54 semantic classes,
0 = things, and both id maps), so that a Panoptic-FPN trained on those predicts it; its
``evaluator_type`` "coco_panoptic_submission" makes the trainer write the server's zip
(:class:`panoptic_ocr.evaluation.COCOPanopticSubmissionWriter`) with the file names of
``submission_split`` "test-dev2017".
"""

import functools
import json
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.utils.file_io import PathManager

__all__ = [
    "load_coco_image_info_json",
    "register_coco_panoptic_image_info",
    "register_coco_panoptic_test_dev",
]

TEST_DEV_NAME = "coco_2017_test-dev_panoptic"
PREPARE_COMMAND = (
    "unzip test2017.zip -d $DETECTRON2_DATASETS/coco && "
    "unzip image_info_test2017.zip -d $DETECTRON2_DATASETS/coco (both from cocodataset.org)"
)


def load_coco_image_info_json(json_file: str, image_root: str) -> List[Dict]:
    """Records ``{file_name, image_id, height, width}`` of the images a COCO image-info JSON
    (e.g. ``image_info_test-dev2017.json``) lists, in its order.

    Raises:
        ValueError: the JSON has no ``images`` list (naming the file).
        FileNotFoundError: a listed image is not in ``image_root`` (naming it and its id).
    """
    with PathManager.open(json_file) as f:
        info = json.load(f)
    images = info.get("images") if isinstance(info, dict) else None
    if not isinstance(images, list):
        raise ValueError(
            f"'{json_file}' is not a COCO image-info JSON: it has no 'images' list "
            "(expected e.g. annotations/image_info_test-dev2017.json)"
        )
    records = []
    for image in images:
        file_name = os.path.join(image_root, image["file_name"])
        if not PathManager.isfile(file_name):
            raise FileNotFoundError(
                f"Image '{file_name}' (image id {image['id']}), listed in '{json_file}', "
                "does not exist"
            )
        records.append(
            {
                "file_name": file_name,
                "image_id": image["id"],
                "height": image["height"],
                "width": image["width"],
            }
        )
    return records


def register_coco_panoptic_image_info(
    name: str, metadata: Dict, image_root: str, image_info_json: str, submission_split: str
) -> None:
    """Register ``name``: the images of ``image_info_json`` (loaded lazily) with ``metadata``
    plus ``image_root``, ``image_info_json``, ``submission_split`` and ``evaluator_type``
    "coco_panoptic_submission"."""
    DatasetCatalog.register(
        name, functools.partial(load_coco_image_info_json, image_info_json, image_root)
    )
    MetadataCatalog.get(name).set(
        image_root=image_root,
        image_info_json=image_info_json,
        evaluator_type="coco_panoptic_submission",
        submission_split=submission_split,
        **metadata,
    )


def register_coco_panoptic_test_dev(root: str, name: str = TEST_DEV_NAME) -> None:
    """Register ``name`` (default ``coco_2017_test-dev_panoptic``) with files under
    ``<root>/coco``; nothing is read until the dataset is loaded."""
    metadata = dict(
        _get_builtin_metadata("coco_panoptic_separated"),
        ignore_label=255,
        prepare_command=PREPARE_COMMAND,
    )
    register_coco_panoptic_image_info(
        name,
        metadata,
        image_root=os.path.join(root, "coco", "test2017"),
        image_info_json=os.path.join(root, "coco", "annotations", "image_info_test-dev2017.json"),
        submission_split="test-dev2017",
    )
