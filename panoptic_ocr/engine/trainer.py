"""The project's ``DefaultTrainer``: evaluators that check their ground truth, data loaders,
the poly LR schedule of :mod:`.lr_scheduler`, CPU DDP, bfloat16 autocast on CPU, the crash-safe
checkpointer of :mod:`panoptic_ocr.checkpoint`, the model/dataset check of
:mod:`panoptic_ocr.data.class_counts`, and the hooks of :mod:`panoptic_ocr.engine.hooks` (kept
evaluation results, overlays, panoptic summary)."""

import logging
import os
import time
import warnings
import weakref
from collections import OrderedDict
from typing import List, Optional

import torch
from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    HookBase,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
)
from detectron2.engine import hooks as d2_hooks
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    verify_results,
)
from detectron2.solver import LRMultiplier
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint.checkpointer import ProjectCheckpointer, trim_metrics_for_resume
from ..data import SemanticDatasetMapper, ensure_dataset_available
from ..data.class_counts import check_model_matches_datasets
from ..data.dataset_mappers import SegFixDatasetMapper
from ..data.dataset_mappers.panoptic_instances_dataset_mapper import PanopticInstancesDatasetMapper
from ..evaluation import (
    CheckedCOCOPanopticEvaluator,
    CheckedSemSegEvaluator,
    CityscapesOfficialSemSegEvaluator,
    CityscapesPanopticSemSegEvaluator,
    COCOPanopticSubmissionWriter,
    SegFixEvaluator,
    build_cityscapes_instance_evaluator,
    build_submission_writer,
    cityscapesscripts_available,
)
from ..modeling.inference import build_inference_model
from ..modeling.test_time_augmentation import SemanticSegmentorWithTTA
from .hooks import (
    PanopticSummaryHook,
    PredictionOverlayHook,
    RecordingEvalHook,
    merge_eval_results,
)
from .lr_scheduler import build_lr_scheduler

__all__ = ["CPUAMPTrainer", "Trainer", "build_evaluator", "wrap_for_distributed"]

logger = logging.getLogger(__name__)


def wrap_for_distributed(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when there are several processes (as
    ``DefaultTrainer`` does, buffers not broadcast), else ``model`` itself. Detectron2's
    ``create_ddp_model`` defaults to the local rank as CUDA device; a CPU model gets
    ``device_ids=None`` instead, which gloo DDP needs."""
    if comm.get_world_size() > 1 and next(model.parameters()).device.type == "cpu":
        return create_ddp_model(model, broadcast_buffers=False, device_ids=None)
    return create_ddp_model(model, broadcast_buffers=False)


def _retake_last_step(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Recompute the current LRs of a resumed ``scheduler`` from its own schedule.

    A checkpoint restores the optimizer's LRs as the interrupted run's schedule set them, but
    only ``base_lrs`` and ``last_epoch`` of an ``LRMultiplier``, whose schedule (and
    ``max_iter``) come from this run's config: with another ``SOLVER.MAX_ITER`` the two differ.
    The last step is taken again (public ``last_epoch`` and ``step()``), so torch itself writes
    the optimizer's LRs and ``get_last_lr()``. Only for schedulers whose ``get_lr`` depends on
    ``last_epoch`` alone, as ``LRMultiplier``'s does (not for recursive ones such as ``StepLR``).
    """
    scheduler.last_epoch -= 1
    with warnings.catch_warnings():
        # Torch warns of a first step() before optimizer.step(); here the step is taken again.
        warnings.filterwarnings(
            "ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning
        )
        scheduler.step()


class CPUAMPTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose forward pass runs under ``torch.autocast("cpu", torch.bfloat16)``
    (``SOLVER.AMP.ENABLED`` on CPU; Detectron2's ``AMPTrainer`` needs CUDA). bfloat16 has
    float32's exponent range, so no gradient scaler is needed; weights, gradients and the
    optimizer stay float32. The losses are summed in float32."""

    def run_step(self):
        assert self.model.training, "[CPUAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        losses = sum(loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        losses.backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


def build_evaluator(
    cfg, dataset_name: str, output_folder: Optional[str] = None
) -> DatasetEvaluator:
    """Evaluators chosen by the dataset's ``evaluator_type`` metadata; the semantic and panoptic
    ones check every ground-truth file they read
    (:mod:`panoptic_ocr.evaluation.checked_evaluators`). A SegFix model
    (``MODEL.META_ARCHITECTURE "SegFixModel"``) is scored by :class:`SegFixEvaluator` on any
    labelled semantic dataset."""
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    evaluators: List[DatasetEvaluator] = []

    def sem_seg() -> DatasetEvaluator:
        return CheckedSemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)

    if cfg.MODEL.META_ARCHITECTURE == "SegFixModel":  # boundaries and directions, not classes
        return SegFixEvaluator(dataset_name, max_distance=cfg.MODEL.SEGFIX.MAX_DISTANCE)
    if evaluator_type == "sem_seg":
        evaluators.append(sem_seg())
    elif evaluator_type == "cityscapes_sem_seg":  # Detectron2's builtin cityscapes_fine_sem_seg_*
        evaluators.append(sem_seg())
        if cityscapesscripts_available():
            evaluators.append(CityscapesOfficialSemSegEvaluator(dataset_name))
    elif evaluator_type == "sem_seg_submission":  # test splits without public labels
        submission = os.path.join(output_folder, "submission")
        evaluators.append(build_submission_writer(dataset_name, submission))
    elif evaluator_type == "coco_panoptic_seg":
        evaluators.append(CheckedCOCOPanopticEvaluator(dataset_name, output_folder))
        if MetadataCatalog.get(dataset_name).get("sem_seg_root", None):
            evaluators.append(sem_seg())
        if MetadataCatalog.get(dataset_name).get("json_file", None):
            # Without detectron2._C the fast COCO eval is absent; ask for pycocotools directly.
            evaluators.append(
                COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)
            )
    elif evaluator_type == "cityscapes_panoptic_seg":  # Panoptic-FPN's separated Cityscapes
        evaluators.append(CheckedCOCOPanopticEvaluator(dataset_name, output_folder))
        evaluators.append(sem_seg())  # the semantic branch, on the separated labels
        evaluators.append(CityscapesPanopticSemSegEvaluator(dataset_name))  # 19-class, merged
        evaluators.append(build_cityscapes_instance_evaluator(dataset_name))
    elif evaluator_type in ("coco_panoptic_submission", "cityscapes_panoptic_submission"):
        writer = COCOPanopticSubmissionWriter(dataset_name, output_folder, overwrite=False)
        evaluators.append(writer)
    else:
        raise ValueError(
            f"Dataset '{dataset_name}' has evaluator_type {evaluator_type!r}; panoptic_ocr "
            "evaluates 'sem_seg', 'cityscapes_sem_seg', 'sem_seg_submission', "
            "'coco_panoptic_seg', 'coco_panoptic_submission', 'cityscapes_panoptic_seg' and "
            "'cityscapes_panoptic_submission'"
        )
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)


def _build_mapper(cfg, is_train: bool):
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name == "semantic":
        return SemanticDatasetMapper(cfg, is_train)
    if name == "detectron2":
        return DatasetMapper(cfg, is_train)
    if name == "segfix":
        return SegFixDatasetMapper(cfg, is_train)
    if name == "panoptic_instances":
        return PanopticInstancesDatasetMapper(cfg, is_train)
    raise ValueError(
        "INPUT.DATASET_MAPPER_NAME must be 'semantic', 'detectron2', 'segfix' or "
        f"'panoptic_instances', got {name!r}"
    )


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with the project's mappers, evaluators, poly LR and CPU DDP.

    Besides Detectron2's default hooks it registers, in this order after the periodic evaluation:
    a test-time-augmentation evaluation after training (``TEST.AUG.ENABLED``), then, after a
    finished training, the prediction overlays (``VIS.NUM_IMAGES``) and the panoptic summary table.
    :attr:`last_eval_results` holds the latest results of both evaluations.
    """

    def __init__(self, cfg):
        """Check that the model's class counts match every dataset's
        (:func:`~panoptic_ocr.data.class_counts.check_model_matches_datasets`), then build what
        ``DefaultTrainer.__init__`` builds, in its order and through the same classmethods
        (``build_model``, ``build_optimizer``, ``build_train_loader``, ``build_lr_scheduler``,
        ``build_hooks``), with three differences: the model is wrapped by
        :func:`wrap_for_distributed` (several CPU processes work too), ``SOLVER.AMP.ENABLED``
        uses :class:`CPUAMPTrainer` (bfloat16) on CPU and Detectron2's ``AMPTrainer`` on CUDA,
        and the checkpointer is a
        :class:`~panoptic_ocr.checkpoint.checkpointer.ProjectCheckpointer`."""
        # DefaultTrainer.__init__ is not called: it wraps the model with create_ddp_model's
        # default device_ids=[local rank] (a CPU model in gloo DDP refuses any device_ids), takes
        # AMPTrainer (CUDA only) for AMP and gives its hooks a plain DetectionCheckpointer, with
        # no hook to choose any of them.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()  # as DefaultTrainer: Detectron2's logger when nobody set one up
        check_model_matches_datasets(cfg)
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())

        # DefaultTrainer's order: the optimizer is built on the unwrapped model.
        model = self.build_model(cfg)
        if cfg.MODEL.TRAIN_CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_cpu = next(model.parameters()).device.type == "cpu"
        model = wrap_for_distributed(model)
        if cfg.SOLVER.AMP.ENABLED:
            loop = CPUAMPTrainer if on_cpu else AMPTrainer
            if on_cpu and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
                logger.warning(
                    "SOLVER.AMP.ENABLED on a CPU without native bfloat16 (AVX512-BF16/AMX): "
                    "bfloat16 autocast is emulated here and trains about 12x slower than float32 "
                    "(docs/trust.md); set SOLVER.AMP.ENABLED False on this machine"
                )
        else:
            loop = SimpleTrainer
        # The one private member written: DefaultTrainer keeps its loop in ``_trainer`` (its
        # model/optimizer/data_loader properties, run_step and state_dict, whose "_trainer"
        # entry every checkpoint holds, read it) and offers no other way to set it.
        self._trainer = loop(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = ProjectCheckpointer(
            model, cfg.OUTPUT_DIR, trusted=cfg.MODEL.WEIGHTS_TRUSTED, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self._eval_hooks: List[RecordingEvalHook] = []
        self.register_hooks(self.build_hooks())

    def build_hooks(self) -> List[HookBase]:
        """Detectron2's default hooks, its ``EvalHook`` replaced by a :class:`RecordingEvalHook`
        (same period) and its ``PeriodicCheckpointer`` moved after the ``PeriodicWriter``,
        followed by the TTA evaluation (``TEST.AUG.ENABLED``), the
        :class:`PredictionOverlayHook` and the :class:`PanopticSummaryHook`."""
        cfg = self.cfg
        evaluation = RecordingEvalHook(
            cfg.TEST.EVAL_PERIOD, lambda: self.test(self.cfg, self.model)
        )
        self._eval_hooks = [evaluation]
        if cfg.TEST.AUG.ENABLED:
            tta = RecordingEvalHook(0, lambda: self.test_with_TTA(self.cfg, self.model))
            self._eval_hooks.append(tta)
        ret, checkpointers = [], []
        for hook in super().build_hooks():
            if isinstance(hook, d2_hooks.PeriodicCheckpointer):
                checkpointers.append(hook)
            else:
                ret.extend(self._eval_hooks if isinstance(hook, d2_hooks.EvalHook) else [hook])
        # The checkpointer runs after the writers: an iteration's metrics are written before its
        # checkpoint, so a run killed in between resumes before them and writes them again
        # (trim_metrics_for_resume cuts the first copy); in Detectron2's order they would be lost.
        ret.extend(checkpointers)
        ret.append(PredictionOverlayHook(cfg, type(self).build_test_loader))
        ret.append(PanopticSummaryHook(cfg, self._eval_hooks))
        return ret

    def resume_or_load(self, resume: bool = True) -> None:
        """As ``DefaultTrainer.resume_or_load``, with :class:`ProjectCheckpointer`'s resume (the
        checkpoint ``last_checkpoint`` names, else the newest that loads; corrupt ones are skipped
        with a warning, none is deleted). A resumed run continues at the iteration after the
        checkpoint's, on the schedule of the config's ``SOLVER.MAX_ITER``; ``metrics.json``
        entries from that iteration on (written by the interrupted run after its checkpoint) are
        moved to a backup (:func:`~panoptic_ocr.checkpoint.checkpointer.trim_metrics_for_resume`),
        so the file reads as one uninterrupted run. Resuming a finished run keeps its final
        evaluation: whole when nothing is left to train, and before the new entries when a
        larger ``SOLVER.MAX_ITER`` trains it longer."""
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.resumed_from is not None:
            self.start_iter = self.iter + 1
            if isinstance(self.scheduler, LRMultiplier):
                _retake_last_step(self.scheduler)
            if comm.is_main_process() and self.start_iter < self.max_iter:
                metrics = os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")
                # Detectron2's PeriodicCheckpointer names the last step's checkpoint model_final
                finished = os.path.basename(self.checkpointer.resumed_from) == "model_final.pth"
                trim_metrics_for_resume(metrics, self.start_iter, after_finished_run=finished)

    @property
    def last_eval_results(self) -> Optional[OrderedDict]:
        """The latest results of the evaluation hooks (plain and ``*_TTA`` entries together), as
        ``Trainer.test`` returns them; ``None`` before the first evaluation."""
        return merge_eval_results(self._eval_hooks)

    def train(self) -> Optional[OrderedDict]:
        """Train from ``start_iter`` to ``max_iter``; returns :attr:`last_eval_results`, first
        checked against ``TEST.EXPECTED_RESULTS`` (main process) when that is set.

        Raises:
            RuntimeError: ``TEST.EXPECTED_RESULTS`` is set but no evaluation ran.
        """
        TrainerBase.train(self, self.start_iter, self.max_iter)
        results = self.last_eval_results
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            if results is None:
                raise RuntimeError("TEST.EXPECTED_RESULTS is set but training ran no evaluation")
            verify_results(self.cfg, results)
        return results

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        for name in cfg.DATASETS.TRAIN:
            ensure_dataset_available(name)
        return build_detection_train_loader(cfg, mapper=_build_mapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        ensure_dataset_available(dataset_name)
        return build_detection_test_loader(cfg, dataset_name, mapper=_build_mapper(cfg, False))

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """``DefaultTrainer.test`` on :func:`~panoptic_ocr.modeling.inference.build_inference_model`
        of ``model`` (BN folded, channels-last and/or reduced precision as the config asks;
        ``model`` itself is not modified, so training continues unaffected)."""
        return super().test(cfg, build_inference_model(cfg, model), evaluators)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate ``model`` wrapped in :class:`SemanticSegmentorWithTTA` (``TEST.AUG``);
        results are reported under ``<task>_TTA``, files under ``OUTPUT_DIR/inference_TTA``."""
        logger.info(
            "Running inference with test-time augmentation: scales %s, flip %s",
            cfg.TEST.AUG.SCALES,
            cfg.TEST.AUG.FLIP,
        )
        model = SemanticSegmentorWithTTA.from_config(cfg, model)
        evaluators = [
            cls.build_evaluator(
                cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name)
            )
            for name in cfg.DATASETS.TEST
        ]
        results = cls.test(cfg, model, evaluators)
        return OrderedDict((k + "_TTA", v) for k, v in results.items())

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """ "WarmupPolyLR" (the paper's poly schedule) as a resumable ``LRMultiplier``
        (:func:`~panoptic_ocr.engine.lr_scheduler.build_lr_scheduler`), else Detectron2's."""
        return build_lr_scheduler(cfg, optimizer)
