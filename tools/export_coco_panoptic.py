#!/usr/bin/env python3
"""Export a COCO panoptic submission of a Panoptic-FPN model (test-dev, or val to check it).

Runs the model over a registered dataset and writes, in ``--output-dir``:

    panoptic_<split>_<method>_results.zip    the upload: the JSON and the folder below
    panoptic_<split>_<method>_results.json   {"annotations": [{image_id, file_name, segments_info}]}
    panoptic_<split>_<method>_results/       one RGB id PNG per image (id = R + 256 G + 256^2 B)

``<split>`` is the dataset's ``submission_split`` metadata ("test-dev2017" for
``coco_2017_test-dev_panoptic``), else the dataset name. An existing submission is never
replaced without ``--overwrite``. With ``--evaluate``, a dataset that has panoptic ground
truth (``panoptic_json``/``panoptic_root`` metadata) is scored with panopticapi's
``pq_compute`` on the written files.

Usage:
    python tools/export_coco_panoptic.py --config-file configs/.../panoptic_fpn.yaml \\
        --dataset coco_2017_test-dev_panoptic --output-dir output/submission \\
        --method-name my_method MODEL.WEIGHTS output/model_final.pth
    python tools/export_coco_panoptic.py --config-file \\
        configs/toy_scenes/Base-Panoptic-FPN-toy-scenes.yaml --evaluate --num-gpus 2 \\
        MODEL.WEIGHTS output/toy/model_final.pth     # 2 processes; gloo on CPU-only machines
"""

import argparse
import contextlib
import difflib
import io
import logging
import os
import sys
import warnings
from typing import Dict, List, Optional

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import CfgNode, get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.engine import launch  # noqa: E402
from detectron2.evaluation import inference_on_dataset  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from tabulate import tabulate  # noqa: E402

from panoptic_ocr import add_ocr_config  # noqa: E402
from panoptic_ocr.data import ensure_dataset_available  # noqa: E402
from panoptic_ocr.engine import Trainer, adapt_config_to_device  # noqa: E402
from panoptic_ocr.evaluation import COCOPanopticSubmissionWriter  # noqa: E402

logger = logging.getLogger("panoptic_ocr.export_coco_panoptic")


class ExportError(Exception):
    """Bad input to the export, reported as ``error: ...`` without a traceback."""


def setup_cfg(config_file: str, opts: List[str]) -> CfgNode:
    """The config as ``train_net.setup`` builds it (file, then opts, adapted to this machine)."""
    cfg = get_cfg()
    add_ocr_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    adapt_config_to_device(cfg)
    cfg.freeze()
    return cfg


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
    return os.path.join(cfg.OUTPUT_DIR, "panoptic_submission", dataset)


def build_writer(args, cfg: CfgNode, dataset: str) -> COCOPanopticSubmissionWriter:
    return COCOPanopticSubmissionWriter(
        dataset,
        args.output_dir or default_output_dir(cfg, dataset),
        split_tag=args.split_tag,
        method_name=args.method_name,
        overwrite=args.overwrite,
    )


def check_export(args) -> None:
    """Every check that needs no model, before any process starts (clear errors, no work).

    Raises:
        ExportError: bad config, dataset, weights or method name, or an existing submission.
    """
    try:
        cfg = setup_cfg(args.config_file, args.opts)
    except Exception as e:  # yacs/YAML errors: name the config
        raise ExportError(f"cannot build the config from '{args.config_file}' and opts {args.opts}: {e}") from e
    dataset = resolve_dataset(cfg, args.dataset)
    check_weights(cfg.MODEL.WEIGHTS)
    if cfg.MODEL.META_ARCHITECTURE == "PanopticFPN" and not cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED:
        raise ExportError("MODEL.PANOPTIC_FPN.COMBINE.ENABLED is False: the model predicts no panoptic_seg")
    try:
        ensure_dataset_available(dataset)
        build_writer(args, cfg, dataset)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise ExportError(str(e)) from e
    if args.evaluate and not has_panoptic_ground_truth(dataset):
        logger.warning("--evaluate: dataset '%s' has no panoptic ground truth; nothing will be scored", dataset)


def has_panoptic_ground_truth(dataset: str) -> bool:
    meta = MetadataCatalog.get(dataset)
    return bool(meta.get("panoptic_json", None) and meta.get("panoptic_root", None))


def panoptic_quality(dataset: str, pred_json: str, pred_folder: str) -> Dict[str, Dict]:
    """panopticapi's ``pq_compute`` of the written submission against the dataset's ground
    truth: ``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": ...}``."""
    from panopticapi.evaluation import pq_compute

    meta = MetadataCatalog.get(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        return pq_compute(
            meta.panoptic_json, str(pred_json), gt_folder=meta.panoptic_root, pred_folder=str(pred_folder)
        )


def format_panoptic_quality(pq: Dict[str, Dict]) -> str:
    rows = [
        [name] + [100 * pq[name][k] for k in ("pq", "sq", "rq")] + [pq[name]["n"]]
        for name in ("All", "Things", "Stuff")
    ]
    return tabulate(
        rows, headers=["", "PQ", "SQ", "RQ", "#categories"], tablefmt="pipe", floatfmt=".3f"
    )


def export(args) -> None:
    """Build the model, run it over the dataset with the writer (every process), then on the
    main process optionally score the files and print the zip's path."""
    cfg = setup_cfg(args.config_file, args.opts)
    rank = comm.get_rank()
    setup_logger(distributed_rank=rank, name="detectron2", abbrev_name="d2")
    setup_logger(distributed_rank=rank, name="panoptic_ocr")
    dataset = resolve_dataset(cfg, args.dataset)
    writer = build_writer(args, cfg, dataset)  # refuses an existing submission before inference

    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    data_loader = Trainer.build_test_loader(cfg, dataset)
    inference_on_dataset(model, data_loader, writer)
    if not comm.is_main_process():
        return
    if args.evaluate:
        if has_panoptic_ground_truth(dataset):
            pq = panoptic_quality(dataset, writer.json_path, writer.png_dir)
            print(f"Panoptic quality of {writer.json_path.name} on {dataset}:")
            print(format_panoptic_quality(pq))
        else:
            print(f"--evaluate: dataset '{dataset}' has no panoptic ground truth; not scored")
    print(f"COCO panoptic submission: {writer.zip_path}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--dataset", help="registered dataset (default: the config's first DATASETS.TEST)")
    parser.add_argument(
        "--output-dir",
        help="folder of the submission files (default: OUTPUT_DIR/panoptic_submission/<dataset>)",
    )
    parser.add_argument("--method-name", default="panoptic_ocr", help="algorithm name in the file names")
    parser.add_argument(
        "--split-tag",
        help="split in the file names (default: the dataset's submission_split, else its name)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing submission")
    parser.add_argument(
        "--evaluate", action="store_true", help="score the written files when the dataset has panoptic ground truth"
    )
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (gloo on CPU-only machines)")
    parser.add_argument("--dist-url", default="auto", help="init URL of multi-process runs")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config KEY VALUE pairs, e.g. MODEL.WEIGHTS x.pth")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file '{args.config_file}' does not exist")
    if args.num_gpus < 1:
        parser.error(f"--num-gpus must be >= 1, got {args.num_gpus}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_export(args)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    launch(export, args.num_gpus, dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
