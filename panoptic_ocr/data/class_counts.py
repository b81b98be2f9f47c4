"""Checks that a config's model and the datasets it is used with agree, run before anything is
built: a model with another class count than its data trains on wrong targets or reports a
meaningless score (a 7-class model evaluated on ADE20K's 150 classes scored 0.43 mIoU silently).

Used by :class:`~panoptic_ocr.engine.Trainer` (training), ``train_net.py --eval-only``, and
offered to the export and demo tools: call :func:`check_model_matches_datasets` with the
dataset(s) whose metadata the tool reads.
"""

from typing import Iterable, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["ClassCountMismatchError", "check_model_matches_datasets", "expected_class_counts"]

# Meta-architectures with both an instance head (things) and a semantic head (stuff + 1 "things").
_PANOPTIC = {"PanopticFPN"}
_INSTANCE_ONLY = {"GeneralizedRCNN"}


class ClassCountMismatchError(ValueError):
    """The model's class count (a config key) differs from a dataset's metadata."""


def expected_class_counts(cfg) -> List[Tuple[str, int, str]]:
    """``(config key, its value, metadata field)`` of every class count the model of ``cfg`` has:
    ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` against ``stuff_classes`` (semantic models and
    Panoptic-FPN's semantic branch, whose "separated" ``stuff_classes`` starts with "things"),
    ``MODEL.ROI_HEADS.NUM_CLASSES`` against ``thing_classes`` (Panoptic-FPN, Mask R-CNN)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    counts = []
    if arch in _PANOPTIC or arch in _INSTANCE_ONLY:
        counts.append(
            ("MODEL.ROI_HEADS.NUM_CLASSES", int(cfg.MODEL.ROI_HEADS.NUM_CLASSES), "thing_classes")
        )
    if arch not in _INSTANCE_ONLY:
        counts.append(
            (
                "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
                int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES),
                "stuff_classes",
            )
        )
    return counts


def _used_datasets(cfg, lists: Sequence[str]) -> Iterable[Tuple[str, str]]:
    seen = set()
    for key in lists:
        for name in cfg.DATASETS.TRAIN if key == "DATASETS.TRAIN" else cfg.DATASETS.TEST:
            if name not in seen:
                seen.add(name)
                yield name, key


def check_model_matches_datasets(
    cfg,
    dataset_names: Optional[Sequence[str]] = None,
    *,
    lists: Sequence[str] = ("DATASETS.TRAIN", "DATASETS.TEST"),
) -> None:
    """Check every class count of the model (:func:`expected_class_counts`) against the metadata
    of every dataset used: ``dataset_names`` if given (e.g. the dataset a submission is written
    for), else those of the config ``lists`` (training: both; evaluation, the demo and the
    exports: ``("DATASETS.TEST",)``). A dataset without the metadata field (or not registered,
    which Detectron2 reports itself) is not checked.

    Raises:
        ClassCountMismatchError: naming the config key, the dataset and both numbers.
    """
    pairs = (
        [(n, "dataset") for n in dataset_names]
        if dataset_names is not None
        else list(_used_datasets(cfg, lists))
    )
    registered = set(DatasetCatalog.list())
    for name, where in pairs:
        if name not in registered:
            continue
        metadata = MetadataCatalog.get(name)
        for key, value, field in expected_class_counts(cfg):
            classes = metadata.get(field, None)
            if classes is None:
                continue
            if len(classes) != value:
                raise ClassCountMismatchError(
                    f"{key} is {value} but {where} '{name}' has {len(classes)} classes "
                    f"(its metadata '{field}'); the model and the dataset must agree: "
                    f"set {key} {len(classes)} (and "
                    f"weights trained for it), or use a dataset of {value} classes"
                )
