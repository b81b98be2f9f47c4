"""Loaders shared by the semantic-segmentation registrations.

Detectron2's ``load_sem_seg`` pairs an image folder with a label folder by their intersection and
only warns when they differ. The releases registered here keep several splits' images in one
folder (VOC2010 ``JPEGImages``, COCO-Stuff-10K ``images``), so these loaders start from the label
files instead and name any image that is missing.
"""

import logging
import os
from typing import Dict, List, Sequence

from detectron2.utils.file_io import PathManager

__all__ = ["load_sem_seg_from_labels", "load_images_without_labels"]

logger = logging.getLogger(__name__)


def load_sem_seg_from_labels(
    gt_root: str, image_root: str, image_ext: str = ".jpg", gt_ext: str = ".png"
) -> List[Dict]:
    """One record per label file ``<gt_root>/<stem><gt_ext>``, with the image
    ``<image_root>/<stem><image_ext>``.

    Returns:
        records with ``file_name``, ``sem_seg_file_name`` and ``image_id`` (the stem), sorted.
    Raises:
        FileNotFoundError: ``gt_root`` has no label file, or a label's image is missing.
    """
    stems = sorted(f[: -len(gt_ext)] for f in PathManager.ls(gt_root) if f.endswith(gt_ext))
    if not stems:
        raise FileNotFoundError(f"No '*{gt_ext}' label files in '{gt_root}'")
    records = []
    for stem in stems:
        image = os.path.join(image_root, stem + image_ext)
        records.append(
            {
                "file_name": image,
                "sem_seg_file_name": os.path.join(gt_root, stem + gt_ext),
                "image_id": stem,
            }
        )
    missing = [r["file_name"] for r in records if not PathManager.isfile(r["file_name"])]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} label(s) in '{gt_root}' have no image, "
            f"e.g. '{missing[0]}' does not exist"
        )
    logger.info("Loaded %d images with labels from %s", len(records), gt_root)
    return records


def load_images_without_labels(
    image_root: str, suffixes: Sequence[str] = (".jpg", ".png"), recursive: bool = False
) -> List[Dict]:
    """Records (``file_name``, ``image_id`` = file stem) of a test split without public labels.

    Args:
        recursive: also look one level down (Cityscapes keeps images in per-city folders).
    Raises:
        FileNotFoundError: no image found.
    """
    files = []
    for name in sorted(PathManager.ls(image_root)):
        path = os.path.join(image_root, name)
        if recursive and PathManager.isdir(path):
            files.extend(
                os.path.join(path, f)
                for f in sorted(PathManager.ls(path))
                if f.endswith(tuple(suffixes))
            )
        elif name.endswith(tuple(suffixes)):
            files.append(path)
    if not files:
        raise FileNotFoundError(f"No image ({', '.join(suffixes)}) found in '{image_root}'")
    logger.info("Loaded %d images without labels from %s", len(files), image_root)
    return [{"file_name": f, "image_id": os.path.splitext(os.path.basename(f))[0]} for f in files]
