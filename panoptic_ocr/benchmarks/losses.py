"""Loss benchmark (docs/losses.md): the cost of each loss side by side, and a learning check on
the toy scenes (does class weighting or OHEM change the "things" classes' IoU vs plain CE?).

- :func:`loss_cost_ms`: forward + backward of every registered loss on random full-resolution
  logits (default ``[8, 7, 192, 192]``, the quick start's batch), timed in interleaved rounds
  (one call of each loss per round) so that load from other processes hits all alike; median.
- :func:`learning_check`: trains the quick-start model
  (``configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml``) for a short schedule per
  (variant, seed) with :class:`panoptic_ocr.engine.Trainer` and reads the final evaluation's
  per-class IoU. Variants: plain CE; CE with ENet weights ``1 / ln(1.02 + f)`` (normalised
  to mean 1) from the toy training set's pixel counts on both branches; OHEM (HRNet-OCR's) on
  the final output only with CE on the auxiliary branch, as the authors do, with
  ``OHEM_MIN_KEPT`` scaled to the toy batch (see :data:`TOY_OHEM_MIN_KEPT`).
"""
import os
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = [
    "QUICKSTART_CONFIG",
    "THING_CLASSES",
    "TOY_OHEM_MIN_KEPT",
    "VARIANTS",
    "cost_variants",
    "learning_check",
    "loss_cost_ms",
    "toy_class_weights",
]

QUICKSTART_CONFIG = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
THING_CLASSES = ("circle", "rectangle", "triangle")
# HRNet-OCR keeps at least 131072 of 12 x 512 x 1024 pixels per batch (2.08%); the same share of
# the toy batch (8 x 192 x 192 = 294912 pixels) is 6144.
TOY_OHEM_MIN_KEPT = 6144
VARIANTS = ("cross_entropy", "weighted_cross_entropy", "ohem_cross_entropy")


def _cfg(config_file: str, opts: Sequence[str]):
    from panoptic_ocr.config import setup_cfg

    return setup_cfg(config_file, opts, freeze=False)


def cost_variants(num_classes: int, pixels_per_batch: int) -> Dict[str, List[str]]:
    """Loss name -> config overrides for the cost table (each registered loss; OHEM with the
    authors' default min kept capped by the batch; weighted CE; Lovasz per image)."""
    from panoptic_ocr.modeling.losses import registered_loss_types

    weights = [1.0 + 0.1 * k for k in range(num_classes)]
    variants = {name: ["MODEL.SEM_SEG_HEAD.LOSS_TYPE", name] for name in registered_loss_types()}
    variants["cross_entropy (class weights)"] = ["MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS", weights]
    variants["lovasz_softmax (per image)"] = [
        "MODEL.SEM_SEG_HEAD.LOSS_TYPE", "lovasz_softmax", "MODEL.SEM_SEG_HEAD.LOSS.LOVASZ_PER_IMAGE", True]
    for name in ("ohem_cross_entropy", "ohem_cross_entropy_openseg"):
        variants[name] += ["MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT", min(100000, pixels_per_batch // 3)]
    return variants


def loss_cost_ms(
    shape: Tuple[int, int, int, int] = (8, 7, 192, 192), runs: int = 5, warmup: int = 1, device: str = "cpu"
) -> Dict[str, float]:
    """Median ms of forward + backward of each loss on random logits ``shape`` (10% ignored).

    Returns:
        variant name -> median milliseconds.
    """
    from detectron2.config import get_cfg

    from panoptic_ocr.config import add_ocr_config
    from panoptic_ocr.modeling.losses import build_sem_seg_loss

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

    from panoptic_ocr.benchmarks.timing import time_interleaved

    def call(loss) -> None:
        x = logits.detach().requires_grad_(True)
        loss(x, targets).backward()

    calls = {name: (lambda loss=loss: call(loss)) for name, loss in losses.items()}
    times = time_interleaved(calls, torch.device(device), runs, warmup, inference=False)
    return {name: statistics.median(t) for name, t in times.items()}


def toy_class_weights(dataset: str = "toy_scenes_sem_seg_train", num_classes: int = 7) -> List[float]:
    """ENet weights (normalised to mean 1) from the pixel counts of ``dataset``'s label files."""
    from detectron2.data import DatasetCatalog
    from PIL import Image

    from panoptic_ocr.data.class_statistics import class_weights_from_frequencies

    counts = np.zeros(num_classes, dtype=np.int64)
    for record in DatasetCatalog.get(dataset):
        labels = np.asarray(Image.open(record["sem_seg_file_name"])).ravel()
        counts += np.bincount(labels[labels < num_classes], minlength=num_classes)[:num_classes]
    return [round(float(v), 4) for v in class_weights_from_frequencies(counts, "enet", normalize=True)]


def _variant_opts(variant: str, class_weights: Sequence[float]) -> List:
    if variant == "cross_entropy":
        return []
    if variant == "weighted_cross_entropy":
        return ["MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS", list(class_weights)]
    if variant == "ohem_cross_entropy":
        return ["MODEL.SEM_SEG_HEAD.LOSS_TYPE", "ohem_cross_entropy", "MODEL.SEM_SEG_HEAD.LOSS.OHEM_THRESH", 0.7,
                "MODEL.SEM_SEG_HEAD.LOSS.OHEM_MIN_KEPT", TOY_OHEM_MIN_KEPT]
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
    from panoptic_ocr.engine import Trainer

    class_weights = toy_class_weights()
    root = output_root or tempfile.mkdtemp(prefix="benchmark_losses_")
    rows = []
    for variant in variants:
        for seed in seeds:
            out = os.path.join(root, f"{variant}_seed{seed}")
            opts = ["SOLVER.MAX_ITER", iters, "SEED", seed, "OUTPUT_DIR", out, "VIS.NUM_IMAGES", 0,
                    "SOLVER.CHECKPOINT_PERIOD", 10 ** 9, "DATALOADER.NUM_WORKERS", 1]
            cfg = _cfg(config_file, opts + _variant_opts(variant, class_weights))
            start = time.perf_counter()
            trainer = Trainer(cfg)
            trainer.resume_or_load(resume=False)
            results = trainer.train()
            if not results:
                results = Trainer.test(cfg, trainer.model)
            sem = results["sem_seg"]
            things = [sem[f"IoU-{c}"] for c in THING_CLASSES]
            rows.append({
                "variant": variant, "seed": seed, "mIoU": sem["mIoU"],
                **{f"IoU-{c}": v for c, v in zip(THING_CLASSES, things)},
                "things": float(np.mean(things)), "seconds": time.perf_counter() - start,
            })
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
