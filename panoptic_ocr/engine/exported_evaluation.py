"""Evaluation of an exported semantic model (ONNX through onnxruntime or OpenVINO, OpenVINO IR,
TorchScript) on a dataset, through the same test loader and ``DatasetEvaluator``\\ s as
``train_net.py --eval-only`` (``tools/evaluate_exported.py``, docs/export.md): the mIoU of the
deployed file, not of the PyTorch model it came from."""

import logging
import os
from collections import OrderedDict
from typing import Mapping, Optional

from detectron2.config import CfgNode
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..data.class_counts import check_model_matches_datasets
from ..export.runtimes import ExportedSemanticSegmentor
from ..modeling.segfix_refinement import wants_segfix
from .trainer import Trainer

__all__ = ["evaluate_exported", "exported_output_folder", "format_results"]

logger = logging.getLogger(__name__)


def exported_output_folder(cfg: CfgNode, runtime: str, dataset_name: str) -> str:
    """Where the evaluators of an exported run write: ``OUTPUT_DIR/inference_<runtime>/<name>``,
    beside (never over) the PyTorch evaluation's ``OUTPUT_DIR/inference/<name>``."""
    return os.path.join(cfg.OUTPUT_DIR, f"inference_{runtime}", dataset_name)


def _refuse_unsupported(cfg: CfgNode) -> None:
    """Inference keys an exported graph cannot honour: an error naming the key."""
    if cfg.TEST.AUG.ENABLED:
        raise ValueError(
            "TEST.AUG.ENABLED is True: the exported graph runs one scale, unflipped; set it False "
            "(test-time augmentation is evaluated in PyTorch: train_net.py --eval-only)"
        )
    if cfg.TEST.SLIDING_WINDOW.ENABLED:
        raise ValueError(
            "TEST.SLIDING_WINDOW.ENABLED is True: the exported graph segments whole images; set "
            "it False (sliding-window inference is evaluated in PyTorch)"
        )
    if wants_segfix(cfg):
        raise ValueError(
            f"MODEL.SEGFIX.WEIGHTS is {cfg.MODEL.SEGFIX.WEIGHTS!r}: the exported graph holds the "
            'segmentation model alone; set it "" (refine with tools/segfix_refine.py)'
        )


def evaluate_exported(
    cfg: CfgNode,
    path: str,
    runtime: Optional[str] = None,
    *,
    threads: Optional[int] = None,
    openvino_precision: str = "f32",
) -> OrderedDict:
    """Evaluate the exported file ``path`` with ``runtime`` on every ``cfg.DATASETS.TEST``.

    Before any inference, the file must stand for ``cfg``'s model (kind, class count, input
    format, architecture, fully loaded weights:
    :func:`~panoptic_ocr.export.runtimes.check_exported_matches_config`), then the model's class
    count must match each test dataset's. Returns ``DefaultTrainer.test``'s layout: one dataset's
    results dict, or ``{dataset: results}`` for several.

    Raises:
        ExportedFileError: the file does not stand for the config's model (names file and key).
        ValueError: a config key the exported graph cannot honour, or a class-count mismatch.
    """
    _refuse_unsupported(cfg)
    model = ExportedSemanticSegmentor.from_config(
        cfg, path, runtime, threads=threads, openvino_precision=openvino_precision
    )
    check_model_matches_datasets(cfg, lists=("DATASETS.TEST",))
    logger.info("Evaluating %s with %s", path, model.runtime)
    results = OrderedDict()
    for name in cfg.DATASETS.TEST:
        loader = Trainer.build_test_loader(cfg, name)
        evaluator = Trainer.build_evaluator(
            cfg, name, output_folder=exported_output_folder(cfg, model.runtime, name)
        )
        results[name] = inference_on_dataset(model, loader, evaluator)
        if comm.is_main_process():
            logger.info("Results of %s (%s) on %s:", path, model.runtime, name)
            print_csv_format(results[name])
    if len(results) == 1:
        results = list(results.values())[0]
    return results


def format_results(results: Mapping, source: str) -> str:
    """``{task: {metric: value}}`` (or ``{dataset: {task: ...}}``) as a table of one row per
    task: every metric without a per-class suffix (``IoU-<class>`` etc. are left out)."""
    from tabulate import tabulate

    flat = results
    if results and all(
        isinstance(v, Mapping) and v and isinstance(next(iter(v.values())), Mapping)
        for v in results.values()
    ):
        flat = {f"{d}/{t}": m for d, tasks in results.items() for t, m in tasks.items()}
    rows = []
    for task, metrics in flat.items():
        summary = {k: v for k, v in metrics.items() if "-" not in k}
        rows.append([task] + [f"{k} {v:.4f}" for k, v in summary.items()])
    return f"{source}:\n" + tabulate(rows, tablefmt="plain")
