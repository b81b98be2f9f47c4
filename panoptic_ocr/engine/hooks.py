"""Trainer hooks of the project: evaluation results that stay readable, prediction overlays and
the panoptic summary table.

The overlay and summary hooks act in ``after_train`` of a finished training; their
:meth:`PredictionOverlayHook.save` and :meth:`PanopticSummaryHook.log` do the same work without a
trainer, for ``train_net.py --eval-only``.
"""

import logging
import os
from collections import OrderedDict
from typing import Callable, Iterable, Mapping, Optional, Sequence

import torch
from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook
from detectron2.utils import comm

from ..evaluation.panoptic_summary import format_panoptic_summary
from ..utils import save_prediction_overlays

__all__ = [
    "PanopticSummaryHook",
    "PredictionOverlayHook",
    "RecordingEvalHook",
    "merge_eval_results",
    "training_finished",
]

logger = logging.getLogger("panoptic_ocr")


def training_finished(trainer) -> bool:
    """Whether ``trainer`` ran to its last iteration (``after_train`` also runs after a failure)."""
    return trainer.iter >= trainer.max_iter


class RecordingEvalHook(EvalHook):
    """Detectron2's ``EvalHook`` that also keeps what its evaluation function returned.

    Attributes:
        latest_results: the nested result dict of the latest evaluation, or ``None`` before the
            first one.
    """

    def __init__(
        self,
        eval_period: int,
        eval_function: Callable[[], Optional[Mapping]],
        eval_after_train: bool = True,
    ):
        """
        Args:
            eval_period: evaluate every that many iterations (0: only after training).
            eval_function: takes no argument, returns a nested dict of metrics (or nothing).
            eval_after_train: evaluate after the last iteration too.
        """
        self.latest_results: Optional[Mapping] = None

        def evaluate_and_keep():
            self.latest_results = eval_function()
            return self.latest_results

        super().__init__(eval_period, evaluate_and_keep, eval_after_train=eval_after_train)


def merge_eval_results(sources: Iterable[RecordingEvalHook]) -> Optional["OrderedDict"]:
    """The latest results of ``sources``, merged in order (later keys win, e.g. the ``*_TTA``
    entries are added beside the plain ones); ``None`` when none of them has evaluated yet."""
    merged: Optional[OrderedDict] = None
    for hook in sources:
        if hook.latest_results:
            merged = merged if merged is not None else OrderedDict()
            merged.update(hook.latest_results)
    return merged


class PredictionOverlayHook(HookBase):
    """Save ``VIS.NUM_IMAGES`` prediction overlays of the first test dataset under
    ``OUTPUT_DIR/vis`` (main process only; nothing when ``VIS.NUM_IMAGES`` is 0 or there is no
    test dataset). As a hook: once, after a finished training, with the trained model."""

    def __init__(self, cfg, build_test_loader: Callable):
        """
        Args:
            cfg: the config (``VIS.NUM_IMAGES``, ``DATASETS.TEST``, ``OUTPUT_DIR``).
            build_test_loader: ``(cfg, dataset_name) -> loader``, e.g.
                ``Trainer.build_test_loader``.
        """
        self.num_images = cfg.VIS.NUM_IMAGES
        self.dataset_name = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
        self.output_dir = os.path.join(cfg.OUTPUT_DIR, "vis")
        self._cfg = cfg
        self._build_test_loader = build_test_loader

    def save(self, model: torch.nn.Module) -> Sequence[str]:
        """Write the overlays of ``model`` (a DDP wrapper is unwrapped); returns the paths."""
        if self.num_images <= 0 or self.dataset_name is None or not comm.is_main_process():
            return []
        model = getattr(model, "module", model)
        loader = self._build_test_loader(self._cfg, self.dataset_name)
        paths = save_prediction_overlays(
            model, loader, self.dataset_name, self.output_dir, self.num_images
        )
        logger.info("Saved %d prediction overlays to %s", len(paths), self.output_dir)
        return paths

    def after_train(self):
        if training_finished(self.trainer):
            self.save(self.trainer.model)


class PanopticSummaryHook(HookBase):
    """Log supplementary Table 3's columns (AP, PQ-Th, mIoU, PQ-St, PQ) for every test dataset
    with panoptic results (main process only). As a hook: after a finished training, from the
    latest results of the given evaluation hooks."""

    MESSAGE = "Panoptic results (supplementary Table 3 columns):\n%s"

    def __init__(self, cfg, sources: Sequence[RecordingEvalHook] = ()):
        """
        Args:
            cfg: the config (``DATASETS.TEST`` names the rows when there is one dataset).
            sources: the hooks whose latest results are summarised after training.
        """
        self.dataset_names = tuple(cfg.DATASETS.TEST)
        self.sources = tuple(sources)

    def log(self, results: Optional[Mapping]) -> Optional[str]:
        """Log the table of ``results`` (``Trainer.test``'s output: per dataset, or one dataset's
        tasks when ``DATASETS.TEST`` has one name); returns it, ``None`` when nothing is
        panoptic."""
        if not results or not comm.is_main_process():
            return None
        per_dataset = results if len(self.dataset_names) != 1 else {self.dataset_names[0]: results}
        table = format_panoptic_summary(per_dataset)
        if table:
            logger.info(self.MESSAGE, table)
        return table

    def after_train(self):
        if training_finished(self.trainer):
            self.log(merge_eval_results(self.sources))
