#!/usr/bin/env python3
"""Loss benchmark: cost of each loss side by side, and a seeded learning check on the toy scenes
(plain CE vs class-weighted CE vs OHEM: the things classes' IoU); docs/losses.md.

- :func:`loss_cost_ms`: forward + backward of every registered loss on random full-resolution
  logits (default ``[8, 7, 192, 192]``, the quick start's batch), timed in interleaved rounds
  (:func:`panoptic_ocr.utils.measurement.time_interleaved`: one call of each loss per round) so
  that load from other processes hits all alike; median.
- :func:`learning_check`: trains the quick-start model
  (``configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml``) for a short schedule per
  (variant, seed) with :class:`panoptic_ocr.engine.Trainer` and reads the final evaluation's
  per-class IoU. Variants: plain CE; CE with ENet weights ``1 / ln(1.02 + f)`` (normalised
  to mean 1) from the toy training set's pixel counts on both branches; OHEM (HRNet-OCR's) on
  the final output only with CE on the auxiliary branch, as the authors do, with
  ``OHEM_MIN_KEPT`` scaled to the toy batch (see :data:`TOY_OHEM_MIN_KEPT`).

Usage:
    .venv/bin/python tools/benchmark_losses.py \\
                        # cost table + 3 variants x 2 seeds x 150 it
    .venv/bin/python tools/benchmark_losses.py --skip-training # cost table only
    .venv/bin/python tools/benchmark_losses.py --iters 150 --seeds 0,1,2 \\
        --variants cross_entropy,ohem_cross_entropy
    .venv/bin/python tools/benchmark_losses.py --shape 8,7,192,192 --runs 5
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from PIL import Image

from panoptic_ocr.config import add_ocr_config, setup_cfg
from panoptic_ocr.data.class_statistics import class_weights_from_frequencies
from panoptic_ocr.engine import Trainer
from panoptic_ocr.modeling.losses import build_sem_seg_loss, registered_loss_types
from panoptic_ocr.utils.measurement import time_interleaved

QUICKSTART_CONFIG = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
THING_CLASSES = ("circle", "rectangle", "triangle")
# HRNet-OCR keeps at least 131072 of 12 x 512 x 1024 pixels per batch (2.08%); the same share of
# the toy batch (8 x 192 x 192 = 294912 pixels) is 6144.
TOY_OHEM_MIN_KEPT = 6144
VARIANTS = ("cross_entropy", "weighted_cross_entropy", "ohem_cross_entropy")


def cost_variants(num_classes: int, pixels_per_batch: int) -> Dict[str, List[str]]:
    """Loss name -> config overrides for the cost table (each registered loss; OHEM with the
    authors' default min kept capped by the batch; weighted CE; Lovasz per image)."""
    weights = [1.0 + 0.1 * k for k in range(num_classes)]
    variants = {name: ["MODEL.SEM_SEG_HEAD.LOSS_TYPE", name] for name in registered_loss_types()}
    variants["cross_entropy (class weights)"] = ["MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS", weights]
    variants["lovasz_softmax (per image)"] = [
        "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
        "lovasz_softmax",
        "MODEL.SEM_SEG_HEAD.LOSS.LOVASZ_PER_IMAGE",
        True,
    ]
    for name in ("ohem_cross_entropy", "ohem_cross_entropy_openseg"):
        variants[name] += [
            "MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT",
            min(100000, pixels_per_batch // 3),
        ]
    return variants


def loss_cost_ms(
    shape: Tuple[int, int, int, int] = (8, 7, 192, 192),
    runs: int = 5,
    warmup: int = 1,
    device: str = "cpu",
) -> Dict[str, float]:
    """Median ms of forward + backward of each loss on random logits ``shape`` (10% ignored).

    Returns:
        variant name -> median milliseconds.
    """
    n, k, h, w = shape
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g).to(device)
    targets = torch.randint(0, k, (n, h, w), generator=g)
    targets[torch.rand((n, h, w), generator=g) < 0.1] = 255
    targets = targets.to(device)
    losses = {}
    for name, opts in cost_variants(k, n * h * w).items():
        cfg = get_cfg()
        add_ocr_config(cfg)
        cfg.merge_from_list(["MODEL.SEM_SEG_HEAD.NUM_CLASSES", k] + opts)
        losses[name] = build_sem_seg_loss(cfg, "main").to(device)

    def call(loss) -> None:
        x = logits.detach().requires_grad_(True)
        loss(x, targets).backward()

    calls = {name: (lambda loss=loss: call(loss)) for name, loss in losses.items()}
    times = time_interleaved(calls, torch.device(device), runs, warmup, inference=False)
    return {name: statistics.median(t) for name, t in times.items()}


def toy_class_weights(
    dataset: str = "toy_scenes_sem_seg_train", num_classes: int = 7
) -> List[float]:
    """ENet weights (normalised to mean 1) from the pixel counts of ``dataset``'s label files."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in DatasetCatalog.get(dataset):
        labels = np.asarray(Image.open(record["sem_seg_file_name"])).ravel()
        counts += np.bincount(labels[labels < num_classes], minlength=num_classes)[:num_classes]
    return [
        round(float(v), 4) for v in class_weights_from_frequencies(counts, "enet", normalize=True)
    ]


def _variant_opts(variant: str, class_weights: Sequence[float]) -> List:
    if variant == "cross_entropy":
        return []
    if variant == "weighted_cross_entropy":
        return ["MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS", list(class_weights)]
    if variant == "ohem_cross_entropy":
        return [
            "MODEL.SEM_SEG_HEAD.LOSS_TYPE",
            "ohem_cross_entropy",
            "MODEL.SEM_SEG_HEAD.LOSS.OHEM_THRESH",
            0.7,
            "MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT",
            TOY_OHEM_MIN_KEPT,
        ]
    raise ValueError(f"variant is {variant!r}; allowed values: {', '.join(VARIANTS)}")


def learning_check(
    variants: Sequence[str] = VARIANTS,
    seeds: Sequence[int] = (0, 1),
    iters: int = 150,
    output_root: Optional[str] = None,
    config_file: str = QUICKSTART_CONFIG,
) -> List[Dict[str, object]]:
    """Train the quick-start model per (variant, seed) for ``iters`` iterations; final IoUs.

    Returns:
        One row per run: variant, seed, mIoU, IoU of each thing class, things mean, seconds.
    """
    class_weights = toy_class_weights()
    root = output_root or tempfile.mkdtemp(prefix="benchmark_losses_")
    rows = []
    for variant in variants:
        for seed in seeds:
            out = os.path.join(root, f"{variant}_seed{seed}")
            # fmt: off
            opts = ["SOLVER.MAX_ITER", iters, "SEED", seed, "OUTPUT_DIR", out, "VIS.NUM_IMAGES", 0,
                    "SOLVER.CHECKPOINT_PERIOD", 10**9, "DATALOADER.NUM_WORKERS", 1]
            # fmt: on
            cfg = setup_cfg(config_file, opts + _variant_opts(variant, class_weights), freeze=False)
            start = time.perf_counter()
            trainer = Trainer(cfg)
            trainer.resume_or_load(resume=False)
            results = trainer.train()
            if not results:
                results = Trainer.test(cfg, trainer.model)
            sem = results["sem_seg"]
            things = [sem[f"IoU-{c}"] for c in THING_CLASSES]
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "mIoU": sem["mIoU"],
                    **{f"IoU-{c}": v for c, v in zip(THING_CLASSES, things)},
                    "things": float(np.mean(things)),
                    "seconds": time.perf_counter() - start,
                }
            )
    return rows


def summarise(rows: List[Dict[str, object]]) -> List[Dict[str, object]]:
    """Mean and spread (min-max) over seeds, per variant."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant]
        row = {"variant": variant, "seeds": len(runs)}
        for key in ("mIoU", *[f"IoU-{c}" for c in THING_CLASSES], "things"):
            values = [float(r[key]) for r in runs]
            row[key] = (float(np.mean(values)), min(values), max(values))
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line, run the cost table and/or the learning check, print tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shape", default="8,7,192,192", help="N,K,H,W of the logits of the cost table"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument(
        "--variants", default="cross_entropy,weighted_cross_entropy,ohem_cross_entropy"
    )
    parser.add_argument(
        "--output-root", default=None, help="where the runs write (default: a temp folder)"
    )
    parser.add_argument("--json", action="store_true", help="also print the raw rows as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at start: {load:.2f}, threads: {torch.get_num_threads()}")
    raw = {}
    if not args.skip_cost:
        shape = tuple(int(v) for v in args.shape.split(","))
        costs = loss_cost_ms(shape, runs=args.runs, device=args.device)
        base = costs["cross_entropy"]
        print(
            f"\nforward + backward on logits {list(shape)} ({args.device}), "
            f"median of {args.runs} interleaved rounds"
        )
        print("| loss | ms | x cross_entropy |\n| :-- | --: | --: |")
        for name, ms in costs.items():
            print(f"| {name} | {ms:.1f} | {ms / base:.2f} |")
        raw["cost_ms"] = costs
    if not args.skip_training:
        seeds = [int(s) for s in args.seeds.split(",")]
        rows = learning_check(args.variants.split(","), seeds, args.iters, args.output_root)
        print(f"\ntoy scenes val, quick-start OCR R18, {args.iters} iterations, seeds {seeds}")
        columns = (
            "variant | seed | mIoU | IoU circle | IoU rectangle | IoU triangle | things mean | s"
        )
        print(f"| {columns} |")
        print("| :-- | --: | --: | --: | --: | --: | --: | --: |")
        for r in rows:
            print(
                f"| {r['variant']} | {r['seed']} | {r['mIoU']:.1f} | {r['IoU-circle']:.1f} "
                f"| {r['IoU-rectangle']:.1f} | {r['IoU-triangle']:.1f} | {r['things']:.1f} "
                f"| {r['seconds']:.0f} |"
            )
        print("\nmean over seeds (min-max)")
        print("| variant | seeds | mIoU | circle | rectangle | triangle | things mean |")
        print("| :-- | --: | --: | --: | --: | --: | --: |")
        for s in summarise(rows):
            cells = " | ".join(
                f"{m:.1f} ({lo:.1f}-{hi:.1f})"
                for m, lo, hi in (
                    s[k] for k in ("mIoU", "IoU-circle", "IoU-rectangle", "IoU-triangle", "things")
                )
            )
            print(f"| {s['variant']} | {s['seeds']} | {cells} |")
        raw["runs"] = rows
    if args.json:
        print(json.dumps(raw, indent=1))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at end: {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
