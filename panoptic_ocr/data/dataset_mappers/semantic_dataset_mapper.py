"""Dataset mapper for semantic segmentation: reads, validates and augments image + label."""

import copy
import logging
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..augmentations import build_semantic_train_augmentations
from ..image_files import read_image, read_label_file

__all__ = ["SemanticDatasetMapper", "check_label_values", "read_semantic_label"]

logger = logging.getLogger(__name__)

# (file, num_classes, ignore_label) of the label files whose values passed check_label_values in
# this process: a file is read at every epoch but checked once (a file rewritten during a run is
# not checked again). Data-loader workers each keep their own copy.
_CHECKED_LABELS: Set[Tuple[str, int, int]] = set()


# Label values are carried through the augmentations as uint8 (what PIL resizes) or, beyond 255,
# as float32 (what torch's nearest resize handles; exact for integers below 2**24).
_MAX_FLOAT32_EXACT = 2**24


def read_semantic_label(
    file_name: str, num_classes: Optional[int], ignore_label: int
) -> np.ndarray:
    """Read a single-channel integer label file (8, 16 or 32 bits, signed or not) as ``[H, W]``,
    check its values with :func:`check_label_values` (once per file and ``(num_classes,
    ignore_label)`` in a process: later reads of a file that passed skip the check), and return
    it as uint8 when every value is in 0..255, else as int64.

    Raises:
        OSError: the file cannot be read, or is not single-channel.
        ValueError: the file holds float values (names it and its dtype), or a value is neither a
            class id in ``[0, num_classes)`` nor ``ignore_label``.
    """
    label = read_label_file(file_name)
    if label.ndim != 2:
        raise OSError(f"Label file '{file_name}' must be single-channel, got shape {label.shape}")
    if label.dtype.kind == "b":
        label = label.astype(np.uint8)
    elif label.dtype.kind not in "ui":
        raise ValueError(
            f"Label file '{file_name}' holds {label.dtype} values; "
            "labels must be integer class ids "
            f"(an 8, 16 or 32-bit integer PNG or TIFF)"
        )
    if num_classes is not None:
        key = (file_name, num_classes, ignore_label)
        if key not in _CHECKED_LABELS:
            check_label_values(label, file_name, num_classes, ignore_label)
            _CHECKED_LABELS.add(key)
    if label.dtype == np.uint8:
        return label
    if label.size == 0 or (label.min() >= 0 and label.max() <= 255):
        return label.astype(np.uint8)
    return label.astype(np.int64)


def check_label_values(
    label: np.ndarray, file_name: str, num_classes: int, ignore_label: int
) -> None:
    """Check that every value of ``label`` is a class id in ``[0, num_classes)`` or
    ``ignore_label``.

    No sort of the whole array: its min/max decide when every value is a class id; otherwise only
    the pixels outside ``[0, num_classes)`` are compared with ``ignore_label``.

    Raises:
        ValueError: naming ``file_name`` and (up to 10 of) the offending values.
    """
    if label.size == 0:
        return
    if label.max() < num_classes and (label.dtype.kind == "u" or label.min() >= 0):
        return
    outside = (
        label[(label < 0) | (label >= num_classes)]
        if label.dtype.kind != "u"
        else label[label >= num_classes]
    )
    bad = outside[outside != ignore_label]
    if bad.size:
        values = np.unique(bad).tolist()  # only the offending pixels, for the message
        raise ValueError(
            f"Label file '{file_name}' holds values {values[:10]} that are neither a class "
            f"in [0, {num_classes}) nor the ignore label {ignore_label}"
        )


class SemanticDatasetMapper:
    """Map a Detectron2 dataset dict with ``file_name`` and ``sem_seg_file_name`` to model inputs.

    Output: ``image`` ``[3, H, W]`` uint8 tensor in ``image_format``, ``sem_seg`` ``[H, W]`` int64
    (training, and inference when ``load_sem_seg`` is set: evaluators read the label files
    themselves, but a head that uses the ground truth at inference needs it), ``height``/``width``.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[T.Augmentation],
        image_format: str,
        ignore_label: int,
        num_classes: Optional[int],
        load_sem_seg: Optional[bool] = None,
    ):
        """
        Args:
            is_train: training (augmentations of training, labels required) or inference.
            augmentations: applied to the image and its label.
            image_format: format of the returned image (e.g. "RGB").
            ignore_label: label value ignored by losses and metrics.
            num_classes: K, to validate label values; None skips the check.
            load_sem_seg: read the label; None means ``is_train``.
        """
        self.is_train = is_train
        self.load_sem_seg = is_train if load_sem_seg is None else load_sem_seg
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.num_classes = num_classes
        mode = "training" if is_train else "inference"
        logger.info(f"[SemanticDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        if is_train:
            augs = build_semantic_train_augmentations(cfg)
        elif cfg.INPUT.MIN_SIZE_TEST > 0:
            augs = [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
        else:
            augs = []
        dataset_names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        ignore_label = MetadataCatalog.get(dataset_names[0]).get(
            "ignore_label", cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        )
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": ignore_label,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "load_sem_seg": True if is_train else cfg.INPUT.LOAD_SEM_SEG_IN_TEST,
        }

    def __call__(self, dataset_dict: Dict) -> Dict:
        return self.map_with_transforms(dataset_dict)[0]

    def map_with_transforms(
        self, dataset_dict: Dict, read_label: bool = True
    ) -> Tuple[Dict, T.TransformList, Tuple[int, int]]:
        """``(record, transforms, (H, W))``: the mapped record, the augmentations applied to its
        image and label, and the image's size before them (for a subclass that carries other
        per-pixel maps through the same transforms). ``read_label=False``: no ``sem_seg``, the
        label file is not read (a subclass that reads what it needs from elsewhere)."""
        dataset_dict = copy.deepcopy(dataset_dict)
        file_name = dataset_dict["file_name"]
        image = read_image(file_name, format=self.image_format)
        utils.check_image_size(dataset_dict, image)

        label = None
        if self.load_sem_seg and read_label:
            if "sem_seg_file_name" not in dataset_dict:
                what = (
                    "Training record"
                    if self.is_train
                    else "Record (INPUT.LOAD_SEM_SEG_IN_TEST is set)"
                )
                raise KeyError(f"{what} for '{file_name}' has no 'sem_seg_file_name'")
            label_file = dataset_dict.pop("sem_seg_file_name")
            label = read_semantic_label(label_file, self.num_classes, self.ignore_label)
            if label.shape != image.shape[:2]:
                raise ValueError(
                    f"Label file '{label_file}' is {label.shape[1]}x{label.shape[0]} but image "
                    f"'{file_name}' is {image.shape[1]}x{image.shape[0]} (WxH)"
                )

        if label is not None and label.dtype != np.uint8:
            if label.max() >= _MAX_FLOAT32_EXACT or label.min() <= -_MAX_FLOAT32_EXACT:
                raise ValueError(
                    f"Label file '{label_file}' holds values beyond +-2**24 "
                    f"([{int(label.min())}, {int(label.max())}]), "
                    "which the augmentations cannot carry"
                )
            label = label.astype(np.float32)  # torch's nearest resize has no integer kernels
        original_size = image.shape[:2]
        aug_input = T.AugInput(image, sem_seg=label)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if label is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))
        return dataset_dict, transforms, original_size
