#!/usr/bin/env python
"""Train and evaluate panoptic_ocr models with Detectron2's trainer.

.venv/bin/python train_net.py --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml
.venv/bin/python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
.venv/bin/python train_net.py \\
    --config-file ... --num-gpus 2   # 2 processes; gloo on CPU-only machines
.venv/bin/python train_net.py ... --num-machines 2 --machine-rank 0 \\
    --dist-url tcp://HOST:PORT  # docs/distributed.md
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import sys
from datetime import timedelta

from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from panoptic_ocr import setup_cfg
from panoptic_ocr.checkpoint.checkpointer import load_inference_weights, weight_options
from panoptic_ocr.data.class_counts import check_model_matches_datasets
from panoptic_ocr.engine import PanopticSummaryHook, PredictionOverlayHook, Trainer
from panoptic_ocr.engine.arguments import (
    add_weight_arguments,
    exit_status_of_weight_errors,
    weight_overrides,
)
from panoptic_ocr.engine.output_lock import OutputDirLock
from panoptic_ocr.utils.override_args import parse_args_with_overrides


def setup(args):
    """Config from file and command line, adapted to this machine, frozen; loggers set up."""
    cfg = setup_cfg(args.config_file, list(args.opts) + weight_overrides(args))
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="panoptic_ocr")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        return evaluate_only(cfg, resume=args.resume)
    # The trainer's hooks evaluate (and TTA-evaluate), then save the overlays and log the
    # panoptic summary after the last iteration.
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def evaluate_only(cfg, resume: bool = False):
    """Evaluate ``MODEL.WEIGHTS`` (the newest checkpoint of ``OUTPUT_DIR`` that loads, with
    ``resume``), with TTA when ``TEST.AUG.ENABLED``; check ``TEST.EXPECTED_RESULTS``; then the
    overlays and the panoptic summary of the trainer's hooks. Returns the results
    (``Trainer.test``'s layout).

    Before any inference: the model's class counts must match the test datasets'
    (:func:`check_model_matches_datasets`) and every tensor of the weights must fit the model
    (:func:`load_inference_weights`: no missing, unexpected or misshaped tensor, no empty
    ``MODEL.WEIGHTS``, unless ``--allow-partial-weights``)."""
    check_model_matches_datasets(cfg, lists=("DATASETS.TEST",))
    model = Trainer.build_model(cfg)
    load_inference_weights(
        model, cfg.MODEL.WEIGHTS, save_dir=cfg.OUTPUT_DIR, resume=resume, **weight_options(cfg)
    )
    results = Trainer.test(cfg, model)
    if cfg.TEST.AUG.ENABLED:
        results.update(Trainer.test_with_TTA(cfg, model))
    if comm.is_main_process():
        verify_results(cfg, results)
    PredictionOverlayHook(cfg, Trainer.build_test_loader).save(model)
    PanopticSummaryHook(cfg).log(results)
    return results


def argument_parser() -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` plus ``--dist-timeout``, ``--trust-weights`` and
    ``--allow-partial-weights``; parse with
    :func:`~panoptic_ocr.utils.override_args.parse_args_with_overrides` (flags after the
    ``KEY VALUE`` pairs, ``--opts``)."""
    parser = default_argument_parser(
        epilog="""Examples:

Train (the quick start), resume an interrupted run, evaluate a checkpoint:
    $ .venv/bin/python train_net.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml
    $ .venv/bin/python train_net.py --config-file CFG --resume
    $ .venv/bin/python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth

Config overrides are KEY VALUE pairs, at the end or after --opts; flags may stand anywhere:
    $ .venv/bin/python train_net.py --config-file CFG SOLVER.MAX_ITER 100 --resume

Several processes on one machine (gloo on CPU): --num-gpus 2. See the README.
"""
    )
    add_weight_arguments(parser)
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT.total_seconds(),
        help="seconds a process waits for the others (rendezvous, collectives) before it fails "
        f"(default: Detectron2's {DEFAULT_TIMEOUT.total_seconds():.0f})",
    )
    return parser


def run(args) -> None:
    """``launch`` :func:`main` in ``args.num_gpus`` processes, holding ``OUTPUT_DIR`` for the
    whole run (:class:`OutputDirLock`: a second run into the same folder refuses to start; on
    several machines the first one holds it)."""
    lock = None
    if args.machine_rank == 0:
        lock = OutputDirLock(
            setup_cfg(args.config_file, list(args.opts) + weight_overrides(args)).OUTPUT_DIR
        )
        lock.acquire()
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            timeout=timedelta(seconds=args.dist_timeout),
        )
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    args = parse_args_with_overrides(argument_parser())
    print("Command Line Args:", args)
    sys.exit(exit_status_of_weight_errors("train_net.py", lambda: run(args)))
