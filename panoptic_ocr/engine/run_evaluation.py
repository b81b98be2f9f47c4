"""Evaluation of trained ``train_net.py`` run folders, for the benchmarks that compare models
side by side (``tools/benchmark_multi_scale.py``, ``tools/benchmark_segfix.py``): load a run's
config and final weights, evaluate through the project's test loader and Detectron2's
evaluators (mIoU; boundary IoU), and time each image's forward."""

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
from detectron2.evaluation import DatasetEvaluators
from detectron2.modeling import build_model

from ..checkpoint.checkpointer import load_inference_weights, weight_options
from ..config import setup_cfg
from ..evaluation import BoundaryIoUEvaluator, CheckedSemSegEvaluator
from ..modeling.inference import build_inference_model
from ..utils.measurement import peak_memory_bytes
from .trainer import Trainer

__all__ = ["Evaluation", "evaluate", "load_model", "run_config", "spread"]


@dataclass
class Evaluation:
    """One method on one run."""

    method: str
    run: str
    miou: float
    mbiou: float
    ms_per_image: List[float] = field(default_factory=list)
    peak_mb: float = 0.0


def run_config(run_dir: str, opts: Sequence[str] = ()):
    """The config of a ``train_net.py`` run folder with its final weights."""
    config = os.path.join(run_dir, "config.yaml")
    weights = os.path.join(run_dir, "model_final.pth")
    for path in (config, weights):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{run_dir}: no {os.path.basename(path)} (a train_net.py run?)")
    return setup_cfg(
        config,
        ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu", "TEST.AUG.ENABLED", "False"] + list(opts),
    )


def load_model(cfg):
    """The inference model of ``cfg`` with its weights (refused unless they fill the model)."""
    model = build_model(cfg).eval()
    load_inference_weights(model, cfg.MODEL.WEIGHTS, **weight_options(cfg))
    return build_inference_model(cfg, model).eval()


def evaluate(method: str, run: str, cfg, model, dataset: Optional[str] = None) -> Evaluation:
    """mIoU, mBIoU, per-image times and the first image's peak memory of ``model`` over the
    config's (or ``dataset``'s) test set."""
    name = dataset or cfg.DATASETS.TEST[0]
    evaluators = DatasetEvaluators(
        [
            CheckedSemSegEvaluator(name, distributed=False),
            BoundaryIoUEvaluator(name, distributed=False),
        ]
    )
    evaluators.reset()
    times, peak = [], 0
    with torch.no_grad():
        for i, inputs in enumerate(Trainer.build_test_loader(cfg, name)):
            if i == 0:
                peak = peak_memory_bytes(lambda: model(inputs) and None, torch.device("cpu"))
            start = time.perf_counter()
            outputs = model(inputs)
            times.append((time.perf_counter() - start) * 1000.0 / len(inputs))
            evaluators.process(inputs, outputs)
    results = evaluators.evaluate()
    return Evaluation(
        method,
        run,
        results["sem_seg"]["mIoU"],
        results["sem_seg_boundary"]["mBIoU"],
        times,
        peak / 2**20,
    )


def spread(values: List[float]) -> str:
    """``mean ± sample std (each value)``, two decimals."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    each = " / ".join(f"{v:.2f}" for v in values)
    return f"{mean:.2f} ± {std:.2f} ({each})"
