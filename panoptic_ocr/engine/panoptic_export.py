"""Export a COCO panoptic submission of a Panoptic-FPN model (the library behind
``tools/export_coco_panoptic.py``).

:func:`check_export` makes every check that needs no model (config, dataset, weights, names,
an existing submission) before any process starts; :func:`export_panoptic` runs the model over
the dataset with :class:`~panoptic_ocr.evaluation.COCOPanopticSubmissionWriter` in every
process and, on the main one, optionally scores the written files with panopticapi's
``pq_compute`` (:func:`panoptic_quality`).
"""

import contextlib
import difflib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from ..checkpoint.checkpointer import load_inference_weights, weight_options
from ..config import setup_cfg
from ..data import ensure_dataset_available
from ..data.class_counts import check_model_matches_datasets
from ..evaluation.panoptic_submission import COCOPanopticSubmissionWriter
from ..modeling.inference import build_inference_model
from .trainer import Trainer

__all__ = [
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "check_export",
    "check_weights",
    "default_output_dir",
    "export_panoptic",
    "format_panoptic_quality",
    "has_panoptic_ground_truth",
    "panoptic_quality",
    "resolve_dataset",
]

# The tool's name, as in its log lines.
logger = logging.getLogger("panoptic_ocr.export_coco_panoptic")


class ExportError(Exception):
    """Bad input to the export, reported as ``error: ...`` without a traceback."""


@dataclass
class ExportOptions:
    """What to export (the options of ``tools/export_coco_panoptic.py``).

    Attributes:
        config_file: the model's config.
        opts: config ``[KEY, VALUE, ...]`` pairs (e.g. ``MODEL.WEIGHTS``).
        dataset: registered dataset (None: the config's first ``DATASETS.TEST``).
        output_dir: folder of the files (None: ``OUTPUT_DIR/panoptic_submission/<dataset>``).
        method_name: algorithm name in the file names.
        split_tag: split in the file names (None: the dataset's ``submission_split``, else its
            name).
        overwrite: replace an existing submission.
        evaluate: score the files when the dataset has panoptic ground truth.
    """

    config_file: str
    opts: List[str] = field(default_factory=list)
    dataset: Optional[str] = None
    output_dir: Optional[str] = None
    method_name: str = "panoptic_ocr"
    split_tag: Optional[str] = None
    overwrite: bool = False
    evaluate: bool = False


@dataclass
class ExportResult:
    """What :func:`export_panoptic` wrote (main process).

    Attributes:
        dataset: the exported dataset.
        zip_path, json_path, png_dir: the upload, its JSON and its PNG folder.
        panoptic_quality: :func:`panoptic_quality`'s result; None when not evaluated.
        has_ground_truth: whether the dataset has panoptic ground truth.
    """

    dataset: str
    zip_path: Path
    json_path: Path
    png_dir: Path
    panoptic_quality: Optional[Dict[str, Dict]]
    has_ground_truth: bool


def resolve_dataset(cfg: CfgNode, dataset: Optional[str]) -> str:
    """``dataset``, else the config's first ``DATASETS.TEST``; it must be registered and have
    Detectron2's panoptic id maps.

    Raises:
        ExportError: naming the dataset (and registered names close to it).
    """
    if not dataset:
        if not cfg.DATASETS.TEST:
            raise ExportError("the config has no DATASETS.TEST: pass --dataset")
        dataset = cfg.DATASETS.TEST[0]
    registered = DatasetCatalog.list()
    if dataset not in registered:
        close = difflib.get_close_matches(dataset, registered, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ExportError(f"unknown dataset '{dataset}': it is not registered{hint}")
    meta = MetadataCatalog.get(dataset)
    for key in ("thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id"):
        if meta.get(key, None) is None:
            raise ExportError(
                f"dataset '{dataset}' has no '{key}' metadata: it is not a COCO panoptic dataset"
            )
    return dataset


def check_weights(weights: str) -> None:
    """A local ``MODEL.WEIGHTS`` must exist; "" means random initialisation (warned).

    Raises:
        ExportError: naming the missing file.
    """
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: the model is randomly initialised")
    elif "://" not in weights and not os.path.isfile(weights):
        raise ExportError(f"MODEL.WEIGHTS '{weights}' does not exist")


def default_output_dir(cfg: CfgNode, dataset: str) -> str:
    """``OUTPUT_DIR/panoptic_submission/<dataset>``."""
    return os.path.join(cfg.OUTPUT_DIR, "panoptic_submission", dataset)


def _build_writer(
    options: ExportOptions, cfg: CfgNode, dataset: str
) -> COCOPanopticSubmissionWriter:
    return COCOPanopticSubmissionWriter(
        dataset,
        options.output_dir or default_output_dir(cfg, dataset),
        split_tag=options.split_tag,
        method_name=options.method_name,
        overwrite=options.overwrite,
    )


def has_panoptic_ground_truth(dataset: str) -> bool:
    """Whether ``dataset`` has ``panoptic_json`` and ``panoptic_root`` metadata."""
    meta = MetadataCatalog.get(dataset)
    return bool(meta.get("panoptic_json", None) and meta.get("panoptic_root", None))


def check_export(options: ExportOptions) -> None:
    """Every check that needs no model, before any process starts (clear errors, no work).

    Raises:
        ExportError: bad config, dataset, weights or method name, or an existing submission.
    """
    try:
        cfg = setup_cfg(options.config_file, options.opts)
    except Exception as e:  # yacs/YAML errors: name the config
        raise ExportError(
            f"cannot build the config from '{options.config_file}' and opts {options.opts}: {e}"
        ) from e
    dataset = resolve_dataset(cfg, options.dataset)
    check_weights(cfg.MODEL.WEIGHTS)
    if cfg.MODEL.META_ARCHITECTURE == "PanopticFPN" and not cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED:
        raise ExportError(
            "MODEL.PANOPTIC_FPN.COMBINE.ENABLED is False: the model predicts no panoptic_seg"
        )
    try:
        ensure_dataset_available(dataset)
        _build_writer(options, cfg, dataset)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise ExportError(str(e)) from e
    if options.evaluate and not has_panoptic_ground_truth(dataset):
        logger.warning(
            "--evaluate: dataset '%s' has no panoptic ground truth; nothing will be scored", dataset
        )


def panoptic_quality(dataset: str, pred_json: str, pred_folder: str) -> Dict[str, Dict]:
    """panopticapi's ``pq_compute`` of a written submission against the dataset's ground
    truth: ``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": ...}``."""
    from panopticapi.evaluation import pq_compute

    meta = MetadataCatalog.get(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        return pq_compute(
            meta.panoptic_json,
            str(pred_json),
            gt_folder=meta.panoptic_root,
            pred_folder=str(pred_folder),
        )


def format_panoptic_quality(pq: Dict[str, Dict]) -> str:
    """PQ, SQ, RQ (%) and category counts of All, Things and Stuff, as a Markdown table."""
    rows = [
        [name] + [100 * pq[name][k] for k in ("pq", "sq", "rq")] + [pq[name]["n"]]
        for name in ("All", "Things", "Stuff")
    ]
    return tabulate(
        rows, headers=["", "PQ", "SQ", "RQ", "#categories"], tablefmt="pipe", floatfmt=".3f"
    )


def export_panoptic(options: ExportOptions) -> Optional[ExportResult]:
    """Build the model, load ``MODEL.WEIGHTS`` and run it over the dataset with the writer (in
    every process of a ``launch``); on the main process optionally score the files.

    Returns:
        The written files (and their PQ with ``options.evaluate``) on the main process, None
        on the others.
    Raises:
        ExportError: bad dataset.
        FileExistsError: the submission exists and not ``options.overwrite`` (before inference).
    """
    cfg = setup_cfg(options.config_file, options.opts)
    rank = comm.get_rank()
    setup_logger(distributed_rank=rank, name="detectron2", abbrev_name="d2")
    setup_logger(distributed_rank=rank, name="panoptic_ocr")
    dataset = resolve_dataset(cfg, options.dataset)
    writer = _build_writer(options, cfg, dataset)  # refuses an existing submission before inference

    check_model_matches_datasets(cfg, [dataset])
    model = Trainer.build_model(cfg)
    load_inference_weights(model, cfg.MODEL.WEIGHTS, **weight_options(cfg))
    data_loader = Trainer.build_test_loader(cfg, dataset)
    # The evaluation's model: MODEL.INFERENCE_DTYPE, channels-last and TEST.FOLD_BATCHNORM apply.
    inference_on_dataset(build_inference_model(cfg, model), data_loader, writer)
    if not comm.is_main_process():
        return None
    has_gt = has_panoptic_ground_truth(dataset)
    pq = (
        panoptic_quality(dataset, writer.json_path, writer.png_dir)
        if options.evaluate and has_gt
        else None
    )
    return ExportResult(dataset, writer.zip_path, writer.json_path, writer.png_dir, pq, has_gt)
