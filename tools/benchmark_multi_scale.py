#!/usr/bin/env python3
"""Single scale vs plain multi-scale averaging vs hierarchical multi-scale attention, on trained
models: mIoU and boundary IoU over a test set with their spread across training seeds, and the
cost (time and peak memory per image) of each at the same scales, side by side in one run.

    .venv/bin/python train_net.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        SEED 1 OUTPUT_DIR output/bench/single_seed1       # and SEED 2, ...
    .venv/bin/python train_net.py \\
        --config-file configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml \\
        SEED 1 OUTPUT_DIR output/bench/hmsa_seed1         # and SEED 2, ...
    .venv/bin/python tools/benchmark_multi_scale.py --single output/bench/single_seed* \\
        --hmsa output/bench/hmsa_seed* --scales 0.5 1.0 2.0

Each run folder holds what ``train_net.py`` wrote: ``config.yaml`` and ``model_final.pth``
(loaded as ``--eval-only`` loads weights: they must fill the model). Methods (rows):

- ``single scale``: the single-scale models at scale 1;
- ``multi-scale average``: the same models under ``TEST.AUG`` at ``--scales`` (no flip): the mean
  of the class probabilities of the scales;
- ``HMSA at 1.0``: the multi-scale attention models at scale 1 only;
- ``HMSA``: the same models combining ``--scales`` with their learned attention.

Every method runs the project's test loader and Detectron2 evaluators
(:class:`~panoptic_ocr.evaluation.CheckedSemSegEvaluator` for mIoU,
:class:`~panoptic_ocr.evaluation.BoundaryIoUEvaluator` for mBIoU) over the whole dataset.
Quality: mean and sample standard deviation over the runs (one run per seed), and each run's
value. Time: median wall time of one image's forward over the dataset (all runs); memory: the
peak of one forward on the first image above what is held before it (weights excluded;
:func:`~panoptic_ocr.utils.measurement.peak_memory_bytes`). The machine line gives the CPU, its
native bfloat16 support and the load (``uptime``).
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import json
import statistics
import sys
import warnings
from dataclasses import asdict
from typing import List, Optional, Sequence

warnings.filterwarnings("ignore", message=".*torch.jit.*", category=FutureWarning)

import torch  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from panoptic_ocr.engine.run_evaluation import (  # noqa: E402
    Evaluation,
    evaluate,
    load_model,
    run_config,
    spread,
)
from panoptic_ocr.modeling.test_time_augmentation import SemanticSegmentorWithTTA  # noqa: E402
from panoptic_ocr.utils.measurement import machine_line  # noqa: E402


def benchmark(
    single_runs: Sequence[str], hmsa_runs: Sequence[str], scales: Sequence[float], dataset=None
) -> List[Evaluation]:
    """Every method on every run (see the module docstring)."""
    scales = tuple(float(s) for s in scales)
    rows = []
    for run in single_runs:
        cfg = run_config(run)
        model = load_model(cfg)
        rows.append(evaluate("single scale", run, cfg, model, dataset))
        tta = SemanticSegmentorWithTTA(
            model,
            scales=scales,
            flip=False,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            max_input_pixels=cfg.INPUT.MAX_INPUT_PIXELS,
        )
        rows.append(evaluate("multi-scale average", run, cfg, tta, dataset))
    for run in hmsa_runs:
        for method, test_scales in (("HMSA at 1.0", (1.0,)), ("HMSA", scales)):
            cfg = run_config(run, ["MODEL.HMSA.TEST_SCALES", str(test_scales)])
            rows.append(evaluate(method, run, cfg, load_model(cfg), dataset))
    return rows


def format_report(rows: List[Evaluation], scales: Sequence[float]) -> str:
    """A markdown table, one row per method (mean ± std over runs, each run's value)."""
    methods = list(dict.fromkeys(r.method for r in rows))
    base_ms = None
    lines = [
        f"scales: {', '.join(f'{s:g}' for s in scales)}",
        "",
        "| method | runs | mIoU | mBIoU | ms / image (median) | time ratio | peak MB (1 image) |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for method in methods:
        mine = [r for r in rows if r.method == method]
        ms = statistics.median(t for r in mine for t in r.ms_per_image)
        base_ms = base_ms or ms
        peak = max(r.peak_mb for r in mine)
        lines.append(
            f"| {method} | {len(mine)} | {spread([r.miou for r in mine])} | "
            f"{spread([r.mbiou for r in mine])} | {ms:.1f} | {ms / base_ms:.2f}x | {peak:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", nargs="+", required=True, help="single-scale run folders")
    parser.add_argument("--hmsa", nargs="+", required=True, help="HMSA run folders")
    parser.add_argument("--scales", nargs="+", type=float, default=[0.5, 1.0, 2.0])
    parser.add_argument("--dataset", help="test dataset (default: each config's DATASETS.TEST[0])")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="also write the per-run results to this file")
    args = parser.parse_args(argv)
    setup_logger(name="panoptic_ocr")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = benchmark(args.single, args.hmsa, args.scales, args.dataset)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(machine_line())
    print(format_report(rows, args.scales))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
