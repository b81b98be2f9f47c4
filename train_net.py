#!/usr/bin/env python
"""Train and evaluate panoptic_ocr models with Detectron2's trainer.

    python train_net.py --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --num-gpus 2   # 2 processes; gloo on CPU-only machines
"""
import logging
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from panoptic_ocr import add_ocr_config
from panoptic_ocr.engine import PanopticSummaryHook, PredictionOverlayHook, Trainer, adapt_config_to_device


def setup(args):
    """Config from file and command line, adapted to this machine, frozen; loggers set up."""
    from panoptic_ocr import setup_cfg

    cfg = setup_cfg(args.config_file, args.opts)
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
    """Evaluate ``MODEL.WEIGHTS`` (the last checkpoint of ``OUTPUT_DIR`` with ``resume``), with
    TTA when ``TEST.AUG.ENABLED``; check ``TEST.EXPECTED_RESULTS``; then the overlays and the
    panoptic summary of the trainer's hooks. Returns the results (``Trainer.test``'s layout)."""
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    results = Trainer.test(cfg, model)
    if cfg.TEST.AUG.ENABLED:
        results.update(Trainer.test_with_TTA(cfg, model))
    if comm.is_main_process():
        verify_results(cfg, results)
    PredictionOverlayHook(cfg, Trainer.build_test_loader).save(model)
    PanopticSummaryHook(cfg).log(results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
