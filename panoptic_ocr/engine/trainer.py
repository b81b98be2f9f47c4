"""The project's ``DefaultTrainer``: evaluators, data loaders, LR schedule and CPU DDP."""
import contextlib
import logging
import os
from collections import OrderedDict
from typing import List, Optional

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data import DatasetMapper
from detectron2.engine import DefaultTrainer
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import (
    COCOEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
)
from detectron2.projects.deeplab import build_lr_scheduler as build_deeplab_lr_scheduler
from detectron2.utils import comm

from ..data import SemanticDatasetMapper, ensure_dataset_available
from ..evaluation import (
    CityscapesOfficialSemSegEvaluator,
    COCOPanopticSubmissionWriter,
    build_submission_writer,
    cityscapesscripts_available,
)
from ..modeling.inference import prepare_for_inference, resolve_inference_dtype
from ..test_time_augmentation import SemanticSegmentorWithTTA

__all__ = ["Trainer", "build_evaluator"]

logger = logging.getLogger(__name__)


def _create_ddp_model_any_device(model, *, fp16_compression=False, **kwargs):
    """Detectron2's ``create_ddp_model``, but CPU models get ``device_ids=None`` (gloo DDP)."""
    if comm.get_world_size() > 1 and next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return _D2_CREATE_DDP_MODEL(model, fp16_compression=fp16_compression, **kwargs)


_D2_CREATE_DDP_MODEL = d2_defaults.create_ddp_model


@contextlib.contextmanager
def _cpu_capable_ddp():
    # DefaultTrainer.__init__ calls the module-level create_ddp_model, which always passes the
    # local rank as a CUDA device id; swap it for the duration of the constructor only.
    d2_defaults.create_ddp_model = _create_ddp_model_any_device
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = _D2_CREATE_DDP_MODEL


def build_evaluator(cfg, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
    """Evaluators chosen by the dataset's ``evaluator_type`` metadata."""
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    evaluators: List[DatasetEvaluator] = []
    if evaluator_type == "sem_seg":
        evaluators.append(SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
    elif evaluator_type == "cityscapes_sem_seg":  # Detectron2's builtin cityscapes_fine_sem_seg_*
        evaluators.append(SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
        if cityscapesscripts_available():
            evaluators.append(CityscapesOfficialSemSegEvaluator(dataset_name))
    elif evaluator_type == "sem_seg_submission":  # test splits without public labels
        evaluators.append(build_submission_writer(dataset_name, os.path.join(output_folder, "submission")))
    elif evaluator_type == "coco_panoptic_seg":
        evaluators.append(COCOPanopticEvaluator(dataset_name, output_folder))
        if MetadataCatalog.get(dataset_name).get("sem_seg_root", None):
            evaluators.append(SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
        if MetadataCatalog.get(dataset_name).get("json_file", None):
            # Without detectron2._C the fast COCO eval is absent; ask for pycocotools directly.
            evaluators.append(COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False))
    elif evaluator_type == "coco_panoptic_submission":  # COCO panoptic test-dev: the server's zip
        evaluators.append(COCOPanopticSubmissionWriter(dataset_name, output_folder, overwrite=False))
    else:
        raise ValueError(
            f"Dataset '{dataset_name}' has evaluator_type {evaluator_type!r}; panoptic_ocr evaluates "
            f"'sem_seg', 'cityscapes_sem_seg', 'sem_seg_submission', 'coco_panoptic_seg' and "
            f"'coco_panoptic_submission'"
        )
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)


def _build_mapper(cfg, is_train: bool):
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name == "semantic":
        return SemanticDatasetMapper(cfg, is_train)
    if name == "detectron2":
        return DatasetMapper(cfg, is_train)
    raise ValueError(f"INPUT.DATASET_MAPPER_NAME must be 'semantic' or 'detectron2', got {name!r}")


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with the project's mappers, evaluators, poly LR and CPU DDP."""

    def __init__(self, cfg):
        with _cpu_capable_ddp():
            super().__init__(cfg)

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
        """``DefaultTrainer.test`` on an inference copy of ``model`` (BN folded, channels-last
        and/or reduced-precision conv weights) when ``TEST.FOLD_BATCHNORM``,
        ``MODEL.INFERENCE_CHANNELS_LAST`` or ``MODEL.INFERENCE_DTYPE`` asks for one; ``model``
        itself is not modified, so training continues unaffected."""
        weight_dtype = None
        # Reduced-precision weights need the autocast that OCRSemanticSegmentor runs at inference.
        if hasattr(getattr(model, "module", model), "inference_dtype"):
            weight_dtype = resolve_inference_dtype(cfg.MODEL.INFERENCE_DTYPE, torch.device(cfg.MODEL.DEVICE).type)
        inference_model = prepare_for_inference(
            model,
            fold_bn=cfg.TEST.FOLD_BATCHNORM,
            channels_last=cfg.MODEL.INFERENCE_CHANNELS_LAST,
            weight_dtype=weight_dtype,
        )
        if inference_model is not model and hasattr(inference_model, "inference_dtype"):
            # The copy's weights follow cfg: make its forward follow cfg too.
            inference_model.inference_dtype = cfg.MODEL.INFERENCE_DTYPE
            inference_model.inference_channels_last = cfg.MODEL.INFERENCE_CHANNELS_LAST
        return super().test(cfg, inference_model, evaluators)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate ``model`` wrapped in :class:`SemanticSegmentorWithTTA` (``TEST.AUG``);
        results are reported under ``<task>_TTA``, files under ``OUTPUT_DIR/inference_TTA``."""
        logger.info("Running inference with test-time augmentation: scales %s, flip %s", cfg.TEST.AUG.SCALES, cfg.TEST.AUG.FLIP)
        model = SemanticSegmentorWithTTA.from_config(cfg, model)
        evaluators = [
            cls.build_evaluator(cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
            for name in cfg.DATASETS.TEST
        ]
        results = cls.test(cfg, model, evaluators)
        return OrderedDict((k + "_TTA", v) for k, v in results.items())

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # Adds "WarmupPolyLR" (the paper's poly schedule) to Detectron2's schedulers.
        return build_deeplab_lr_scheduler(cfg, optimizer)
