"""Loaders shared by the semantic-segmentation registrations.

Detectron2's ``load_sem_seg`` pairs an image folder with a label folder by their intersection and
only warns when they differ, so a split with deleted labels was scored over the images left.
:func:`load_sem_seg_paired` gives the same records but requires the folders to pair one to one
(``allow_unpaired=True`` keeps the intersection, with a warning). The releases that keep several
splits' images in one folder (VOC2010 ``JPEGImages``, COCO-Stuff-10K ``images``) use
:func:`load_sem_seg_from_labels` instead, which starts from the label files and names any image
that is missing.
"""

import logging
import os
from typing import Dict, List, Sequence

from detectron2.utils.file_io import PathManager

__all__ = ["UnpairedDatasetError", "load_images_without_labels", "load_sem_seg_from_labels", "load_sem_seg_paired"]

logger = logging.getLogger(__name__)

# Missing files named in an UnpairedDatasetError, per side.
_NAMED_MISSING = 3


class UnpairedDatasetError(FileNotFoundError):
    """The images and labels of a dataset do not pair one to one; the message names both folders,
    how many files lack their counterpart and the first few missing paths."""


def _ending(ext: str) -> str:
    """``ext`` as a file ending: a bare extension ("png") gets its dot (".png")."""
    return "." + ext if ext.isalnum() else ext


def _stems(root: str, ending: str) -> Dict[str, str]:
    """``{stem: file name}`` of the files of ``root`` ending with ``ending``."""
    return {name[: -len(ending)]: name for name in PathManager.ls(root) if name.endswith(ending)}


def load_sem_seg_paired(
    gt_root: str,
    image_root: str,
    gt_ext: str = "png",
    image_ext: str = "jpg",
    *,
    allow_unpaired: bool = False,
    images_of_other_splits: bool = False,
) -> List[Dict]:
    """Detectron2's ``load_sem_seg`` records (``file_name``, ``sem_seg_file_name``; sorted by stem),
    with every image of ``image_root`` paired to one label of ``gt_root`` by file stem.

    Args:
        gt_ext, image_ext: the files' endings, with or without the dot ("png" or ".png").
        allow_unpaired: keep only the images that have a label (the intersection) and log a
            WARNING saying how many images will be scored out of how many, instead of raising.
        images_of_other_splits: ``image_root`` also holds images of other splits (COCO's
            ``val2017`` beside the labels of ``val2017_100``; the split's own list decides which
            are used): images without a label are left out silently, labels need their image.
    Raises:
        FileNotFoundError: ``gt_root`` or ``image_root`` is missing or holds no such file.
        UnpairedDatasetError: (a FileNotFoundError) some images have no label or some labels no
            image; names both folders, the counts and the first few missing paths.
    """
    for root, what in ((gt_root, "label"), (image_root, "image")):
        if not PathManager.isdir(root):
            raise FileNotFoundError(f"The {what} folder '{root}' does not exist")
    gt_ext, image_ext = _ending(gt_ext), _ending(image_ext)
    labels = _stems(gt_root, gt_ext)
    if not labels:
        raise FileNotFoundError(f"No '*{gt_ext}' label files in '{gt_root}'")
    images = _stems(image_root, image_ext)
    without_label = [] if images_of_other_splits else sorted(set(images) - set(labels))
    without_image = sorted(set(labels) - set(images))
    stems = sorted(set(images) & set(labels))
    if without_label or without_image:
        counts = [f"{len(without_image)} of {len(labels)} label(s) have no image"]
        if not images_of_other_splits:
            counts.insert(0, f"{len(without_label)} of {len(images)} image(s) have no label")
        summary = (
            f"images '{image_root}' (*{image_ext}) and labels '{gt_root}' (*{gt_ext}) do not pair "
            f"one to one: {', '.join(counts)}"
        )
        if not allow_unpaired:
            missing = [os.path.join(gt_root, s + gt_ext) for s in without_label[:_NAMED_MISSING]]
            missing += [os.path.join(image_root, s + image_ext) for s in without_image[:_NAMED_MISSING]]
            raise UnpairedDatasetError(
                f"The {summary}; missing: {', '.join(repr(m) for m in missing)}"
                f"{' ...' if len(without_label) + len(without_image) > len(missing) else ''}. Every listed "
                "image must be evaluated: restore the missing files; to use only the images that have "
                "a label, register the dataset with allow_unpaired=True (JSON key 'allow_unpaired')"
            )
        logger.warning(
            "The %s; allow_unpaired is set: only the %d of %d image(s) with a label will be used and scored",
            summary, len(stems), len(images),
        )
        if not stems:
            raise FileNotFoundError(f"No image of '{image_root}' has a label in '{gt_root}'")
    logger.info("Loaded %d images with semantic segmentation from %s", len(stems), image_root)
    return [
        {
            "file_name": os.path.join(image_root, images[s]),
            "sem_seg_file_name": os.path.join(gt_root, labels[s]),
        }
        for s in stems
    ]


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
