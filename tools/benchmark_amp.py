#!/usr/bin/env python
"""Mixed precision on CPU: bfloat16 autocast training (SOLVER.AMP.ENABLED) against float32.

Trains the same short run twice from the same seed and prints seconds per iteration (median and
min of the steady iterations), the speed-up, the final loss and the mIoU after training;
results are recorded in docs/trust.md.

Both runs use the same config, seed and data order; the only difference is
``SOLVER.AMP.ENABLED``, which makes :class:`~panoptic_ocr.engine.Trainer` use
:class:`~panoptic_ocr.engine.trainer.CPUAMPTrainer` on CPU. Evaluation (after training) is in
the config's inference precision (float32 by default) for both, through ``Trainer.test``.

    .venv/bin/python tools/benchmark_amp.py                       # the quick start, 30 iterations
    .venv/bin/python tools/benchmark_amp.py --iterations 100 --threads 2 --channels-last \\
        SOLVER.IMS_PER_BATCH 4
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import logging
import os
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import get_cfg
from detectron2.utils.env import seed_all_rng

from panoptic_ocr.config import add_ocr_config
from panoptic_ocr.engine import Trainer
from panoptic_ocr.utils.measurement import machine_line
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides

DEFAULT_CONFIG = str(
    Path(__file__).resolve().parents[1] / "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
)


def _train_once(
    config_file: str,
    opts: Sequence[str],
    amp: bool,
    iterations: int,
    output_dir: str,
    seed: int,
    channels_last: bool = False,
) -> Dict:
    """One training run from ``seed``: seconds per iteration, final loss, mIoU."""
    cfg = get_cfg()
    add_ocr_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    # fmt: off
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", str(amp), "SOLVER.MAX_ITER", str(iterations),
        "SOLVER.CHECKPOINT_PERIOD", str(10**9), "OUTPUT_DIR", output_dir, "SEED", str(seed),
        "MODEL.TRAIN_CHANNELS_LAST", str(channels_last),
    ])
    # fmt: on
    cfg.freeze()
    seed_all_rng(seed)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    times = [t for t, _ in trainer.storage.history("time").values()]
    steady = times[min(2, len(times) - 1) :]  # the first iterations include one-off set-up
    miou: Optional[float] = None
    if results:
        first = results[cfg.DATASETS.TEST[0]] if len(cfg.DATASETS.TEST) > 1 else results
        miou = first.get("sem_seg", {}).get("mIoU")
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    return {
        "s_per_iter_median": statistics.median(steady),
        "s_per_iter_min": min(steady),
        "final_loss": statistics.mean(losses[-5:]),
        "mIoU": miou,
    }


def run_amp_benchmark(
    config_file: str,
    opts: Sequence[str] = (),
    iterations: int = 30,
    output_dir: str = "output/benchmark_amp",
    seed: int = 0,
    channels_last: bool = False,
) -> Dict[str, Dict]:
    """Train ``iterations`` iterations in float32, then with bfloat16 autocast (and, with
    ``channels_last``, both again with ``MODEL.TRAIN_CHANNELS_LAST``), from the same seed;
    returns ``{"float32": ..., "bfloat16": ..., ["float32 channels-last": ...,
    "bfloat16 channels-last": ...]}`` with ``s_per_iter_median``, ``s_per_iter_min``,
    ``final_loss`` (mean of the last 5) and ``mIoU`` (after training; ``None`` without
    ``DATASETS.TEST``). Each run writes under ``output_dir/<name>``."""
    runs = [("float32", False, False), ("bfloat16", True, False)]
    if channels_last:
        runs += [("float32 channels-last", False, True), ("bfloat16 channels-last", True, True)]
    return {
        name: _train_once(
            config_file,
            opts,
            amp,
            iterations,
            os.path.join(output_dir, name.replace(" ", "_")),
            seed,
            layout,
        )
        for name, amp, layout in runs
    }


def format_amp_table(results: Dict[str, Dict]) -> str:
    """A Markdown table of :func:`run_amp_benchmark`'s results, with the speed-up over float32."""
    base = results["float32"]["s_per_iter_median"]
    rows: List[str] = [
        "| precision | s/iter (median) | s/iter (min) | speed-up vs float32 | final loss | mIoU |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        miou = "-" if r["mIoU"] is None else f"{r['mIoU']:.2f}"
        rows.append(
            f"| {name} | {r['s_per_iter_median']:.3f} | {r['s_per_iter_min']:.3f} "
            f"| {base / r['s_per_iter_median']:.2f}x | {r['final_loss']:.3f} | {miou} |"
        )
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    rows.append(
        f"\nCPU with native bfloat16 kernels (oneDNN): {bf16}; "
        f"torch threads: {torch.get_num_threads()}"
    )
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line, train twice, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: PyTorch's default)"
    )
    parser.add_argument("--output-dir", default="output/benchmark_amp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="also train both precisions with MODEL.TRAIN_CHANNELS_LAST",
    )
    add_config_overrides(parser)
    args = parse_args_with_overrides(parser, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    print(machine_line())
    results = run_amp_benchmark(
        args.config_file, args.opts, args.iterations, args.output_dir, args.seed, args.channels_last
    )
    print(format_amp_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
