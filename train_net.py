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
from detectron2.engine import default_argument_parser, default_setup, hooks, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from panoptic_ocr import add_ocr_config
from panoptic_ocr.engine import Trainer, adapt_config_to_device
from panoptic_ocr.evaluation.panoptic_summary import format_panoptic_summary
from panoptic_ocr.utils import save_prediction_overlays


def setup(args):
    """Config from file and command line, adapted to this machine, frozen; loggers set up."""
    from panoptic_ocr import setup_cfg

    cfg = setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="panoptic_ocr")
    return cfg


def save_overlays(cfg, model):
    if cfg.VIS.NUM_IMAGES <= 0 or not comm.is_main_process() or not cfg.DATASETS.TEST:
        return
    dataset_name = cfg.DATASETS.TEST[0]
    paths = save_prediction_overlays(
        model,
        Trainer.build_test_loader(cfg, dataset_name),
        dataset_name,
        os.path.join(cfg.OUTPUT_DIR, "vis"),
        cfg.VIS.NUM_IMAGES,
    )
    logging.getLogger("panoptic_ocr").info("Saved %d prediction overlays to %s", len(paths), os.path.dirname(paths[0]))


def log_panoptic_summary(cfg, results):
    """End the log with supplementary Table 3's columns (AP, PQ-Th, mIoU, PQ-St, PQ) for every
    test dataset evaluated panoptically."""
    if not comm.is_main_process() or not results:
        return
    per_dataset = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
    table = format_panoptic_summary(per_dataset)
    if table:
        logging.getLogger("panoptic_ocr").info("Panoptic results (supplementary Table 3 columns):\n%s", table)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
        save_overlays(cfg, model)
        log_panoptic_summary(cfg, results)
        return results

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if cfg.TEST.AUG.ENABLED:
        trainer.register_hooks([hooks.EvalHook(0, lambda: trainer.test_with_TTA(cfg, trainer.model))])
    results = trainer.train()
    # DefaultTrainer.train returns the results only when TEST.EXPECTED_RESULTS is set; its
    # EvalHook keeps the last ones on the trainer.
    results = results or getattr(trainer, "_last_eval_results", None)
    save_overlays(cfg, trainer.model.module if hasattr(trainer.model, "module") else trainer.model)
    log_panoptic_summary(cfg, results)
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
