#!/usr/bin/env python3
"""Does SegFix help? Each trained segmentation model evaluated as it is and refined by a trained
SegFix model: mIoU and boundary IoU before and after, with their spread over seeds, and the time
the refinement adds per image, side by side in one run.

    .venv/bin/python train_net.py \\
        --config-file configs/toy_scenes/segfix_R18_toy_scenes_600it.yaml \\
        SEED 1 OUTPUT_DIR output/bench/segfix_seed1          # and SEED 2, ...
    .venv/bin/python tools/benchmark_segfix.py --segfix output/bench/segfix_seed* \\
        --models "OCR (quick start)" output/bench/ocr_seed1 output/bench/ocr_seed2 \\
        --models "fine only" output/bench/fine_only_seed1 output/bench/fine_only_seed2

Run folders are what ``train_net.py`` wrote (``config.yaml``, ``model_final.pth``). The i-th run
of each ``--models`` group is refined by the i-th ``--segfix`` run (one seed each; a single
``--segfix`` run refines every model run), through the
project's own path: ``MODEL.SEGFIX.WEIGHTS``/``CONFIG`` on the model's config, i.e. the
inference builder's :class:`~panoptic_ocr.modeling.segfix_refinement.SegFixRefinement`, and the
test loader with Detectron2's evaluators (mIoU; boundary IoU, :mod:`panoptic_ocr.evaluation`).
Time: the median per-image forward of each variant over the dataset; "added" is refined minus
plain.

``--targets LABEL.png [--crop H W]`` instead measures what SegFix's targets cost the data
loader: the median time to read the label PNG, to compute the targets of the whole label and of
a central ``--crop`` of it (``MODEL.SEGFIX.TARGETS "online"``: the "segfix" mapper computes them
on the augmented crop), and to read the label's cached target PNG and crop, flip and decode it
(``"cached"``):

    C=../shared/data/cityscapes; F=frankfurt_000000_000294
    .venv/bin/python tools/benchmark_segfix.py --resize 1024 2048 --crop 769 769 \\
        --targets $C/gtFine/val/frankfurt/${F}_gtFine_labelTrainIds.png \\
        --image $C/leftImg8bit/val/frankfurt/${F}_leftImg8bit.png

With ``--image``, it also times the whole loader step per training record (read, random scale
0.5-2, crop, flip) of the semantic mapper and of the "segfix" mapper with each target source.
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.utils.logger import setup_logger
from PIL import Image

from panoptic_ocr.data import RandomScale, SemanticDatasetMapper
from panoptic_ocr.data.dataset_mappers import SegFixDatasetMapper
from panoptic_ocr.data.label_files import read_label_png
from panoptic_ocr.engine.run_evaluation import (
    Evaluation,
    evaluate,
    load_model,
    run_config,
    spread,
)
from panoptic_ocr.segfix import segfix_targets
from panoptic_ocr.segfix.target_files import (
    augment_targets,
    decode_targets,
    read_target_file,
    target_file_path,
    targets_of_label,
)
from panoptic_ocr.utils.measurement import machine_line, median_latency_ms

CPU = torch.device("cpu")


def benchmark(
    groups: Sequence[Tuple[str, Sequence[str]]], segfix_runs: Sequence[str], dataset=None
) -> List[Evaluation]:
    """For every group and run: ``<group>`` and ``<group> + SegFix`` evaluations."""
    rows = []
    for name, runs in groups:
        if len(segfix_runs) == 1:  # one SegFix model refines every run
            pairs = [(run, segfix_runs[0]) for run in runs]
        elif len(runs) <= len(segfix_runs):
            pairs = list(zip(runs, segfix_runs))
        else:
            raise ValueError(
                f"--models {name!r} has {len(runs)} runs but --segfix {len(segfix_runs)}: give one "
                "SegFix run per seed, or a single one for all"
            )
        for run, segfix in pairs:
            cfg = run_config(run)
            rows.append(evaluate(name, run, cfg, load_model(cfg), dataset))
            refined_cfg = run_config(
                run,
                [
                    "MODEL.SEGFIX.WEIGHTS",
                    os.path.join(segfix, "model_final.pth"),
                    "MODEL.SEGFIX.CONFIG",
                    os.path.join(segfix, "config.yaml"),
                ],
            )
            rows.append(
                evaluate(f"{name} + SegFix", run, refined_cfg, load_model(refined_cfg), dataset)
            )
    return rows


def format_report(rows: List[Evaluation]) -> str:
    """One row per variant: mIoU, mBIoU (mean ± std, each seed), their change from the plain
    model per seed, median ms per image and the time SegFix adds."""
    by_method: Dict[str, List[Evaluation]] = {}
    for r in rows:
        by_method.setdefault(r.method, []).append(r)
    lines = [
        "| model | runs | mIoU | mBIoU | Δ mIoU | Δ mBIoU | ms / image | added ms |",
        "|---|---:|---|---|---|---|---:|---:|",
    ]
    for method, mine in by_method.items():
        ms = statistics.median(t for r in mine for t in r.ms_per_image)
        plain = by_method.get(method[: -len(" + SegFix")]) if method.endswith(" + SegFix") else None
        if plain:
            d_miou = spread([a.miou - b.miou for a, b in zip(mine, plain)])
            d_mbiou = spread([a.mbiou - b.mbiou for a, b in zip(mine, plain)])
            base = statistics.median(t for r in plain for t in r.ms_per_image)
            added = f"{ms - base:.1f}"
        else:
            d_miou = d_mbiou = added = ""
        lines.append(
            f"| {method} | {len(mine)} | {spread([r.miou for r in mine])} | "
            f"{spread([r.mbiou for r in mine])} | {d_miou} | {d_mbiou} | {ms:.1f} | {added} |"
        )
    return "\n".join(lines)


def targets_cost(
    label_file: str,
    resize: Optional[Tuple[int, int]] = None,
    crop: Tuple[int, int] = (769, 769),
    runs: int = 5,
) -> Dict[str, float]:
    """Median ms of reading ``label_file`` (resized by nearest neighbour to ``resize`` first, and
    written to a temporary PNG, when given); of the targets of the whole label and of a ``crop``
    of it ("online"); and of the "cached" path: reading the label's cached target PNG, then
    cropping, flipping and decoding it as the mapper does."""
    label = read_label_png(label_file)
    if resize is not None:
        label = np.asarray(Image.fromarray(label).resize(resize[::-1], Image.NEAREST))
    h, w = min(crop[0], label.shape[0]), min(crop[1], label.shape[1])
    y0, x0 = (label.shape[0] - h) // 2, (label.shape[1] - w) // 2
    piece = np.ascontiguousarray(label[y0 : y0 + h, x0 : x0 + w])
    augment = [
        T.CropTransform(x0, y0, w, h),
        T.HFlipTransform(w),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "label.png")
        Image.fromarray(label).save(path)
        cached = target_file_path(path, 5, tmp)
        os.makedirs(os.path.dirname(cached))
        Image.fromarray(targets_of_label(label, 255, 5)).save(cached)
        read_ms = median_latency_ms(lambda: read_label_png(path), CPU, runs=runs, warmup=1)
        read_targets_ms = median_latency_ms(
            lambda: read_target_file(cached, path, label.shape), CPU, runs=runs, warmup=1
        )
        packed = read_target_file(cached, path, label.shape)
    return {
        "size": f"{label.shape[0]}x{label.shape[1]}",
        "crop": f"{h}x{w}",
        "read_label_ms": read_ms,
        "targets_full_ms": median_latency_ms(
            lambda: segfix_targets(label), CPU, runs=runs, warmup=1
        ),
        "targets_crop_ms": median_latency_ms(
            lambda: segfix_targets(piece), CPU, runs=runs, warmup=1
        ),
        "read_targets_ms": read_targets_ms,
        "augment_targets_ms": median_latency_ms(
            lambda: decode_targets(augment_targets(packed, augment)),
            CPU,
            runs=runs,
            warmup=1,
        ),
    }


def format_targets_cost(cost: Dict[str, float]) -> str:
    """The markdown table of :func:`targets_cost`."""
    cached = cost["read_targets_ms"] + cost["augment_targets_ms"]
    return "\n".join(
        [
            "| label | read label PNG ms | online: targets of the whole label ms | crop "
            "| online: targets of the crop ms | cached: read target PNG ms "
            "| cached: crop + flip + decode ms | cached total / label read |",
            "|---|---:|---:|---|---:|---:|---:|---:|",
            f"| {cost['size']} | {cost['read_label_ms']:.1f} | {cost['targets_full_ms']:.1f} | "
            f"{cost['crop']} | {cost['targets_crop_ms']:.1f} | {cost['read_targets_ms']:.1f} | "
            f"{cost['augment_targets_ms']:.1f} | {cached / cost['read_label_ms']:.2f}x |",
        ]
    )


def mapper_cost(
    image_file: str,
    label_file: str,
    resize: Optional[Tuple[int, int]] = None,
    crop: Tuple[int, int] = (769, 769),
    runs: int = 9,
) -> Dict[str, float]:
    """Median ms per training record of the whole loader step (read the image and label, the
    paper's augmentations: random scale 0.5-2, ``crop`` padded with ignore, flip) for the
    semantic mapper and the "segfix" mapper with online and with cached targets. The image and
    label (resized to ``resize`` first, when given) are written to a temporary folder; each
    mapper sees the same sequence of random draws."""
    image = np.asarray(Image.open(image_file).convert("RGB"))
    label = read_label_png(label_file)
    if resize is not None:
        image = np.asarray(Image.fromarray(image).resize(resize[::-1], Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize(resize[::-1], Image.NEAREST))
    augmentations = [
        RandomScale(0.5, 2.0),
        T.FixedSizeCrop(crop, pad=True, pad_value=0.0, seg_pad_value=255),
        T.RandomFlip(horizontal=True, vertical=False),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = dict(
            augmentations=augmentations, image_format="RGB", ignore_label=255, num_classes=None
        )
        mappers = {
            "semantic": SemanticDatasetMapper(True, **kwargs),
            "segfix_online": SegFixDatasetMapper(True, targets="online", **kwargs),
            "segfix_cached": SegFixDatasetMapper(True, targets="cached", targets_dir=tmp, **kwargs),
        }
        record = {
            "file_name": os.path.join(tmp, "image.png"),
            "sem_seg_file_name": os.path.join(tmp, "label.png"),
        }
        Image.fromarray(image).save(record["file_name"])
        Image.fromarray(label).save(record["sem_seg_file_name"])
        cached = target_file_path(record["sem_seg_file_name"], 5, tmp)
        os.makedirs(os.path.dirname(cached))
        Image.fromarray(targets_of_label(label, 255, 5)).save(cached)
        cost = {}
        for name, mapper in mappers.items():
            np.random.seed(0)
            cost[name] = median_latency_ms(lambda: mapper(record), CPU, runs=runs, warmup=1)
    return cost


def format_mapper_cost(cost: Dict[str, float]) -> str:
    """The markdown table of :func:`mapper_cost`."""
    base = cost["semantic"]
    rows = [
        ("semantic (image + label)", "semantic"),
        ('segfix, TARGETS "online"', "segfix_online"),
        ('segfix, TARGETS "cached"', "segfix_cached"),
    ]
    lines = ["| loader step per record | ms | added to semantic ms |", "|---|---:|---:|"]
    for title, key in rows:
        added = "" if key == "semantic" else f"{cost[key] - base:+.1f}"
        lines.append(f"| {title} | {cost[key]:.1f} | {added} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", metavar="LABEL", help="measure the targets' cost instead")
    parser.add_argument(
        "--image", help="with --targets: also time the whole loader step on this image"
    )
    parser.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"))
    parser.add_argument("--crop", nargs=2, type=int, default=[769, 769], metavar=("H", "W"))
    parser.add_argument(
        "--models",
        nargs="+",
        action="append",
        metavar=("NAME", "RUN"),
        help="a name, then the run folders of that model (one per seed); repeatable",
    )
    parser.add_argument("--segfix", nargs="+", help="SegFix run folders")
    parser.add_argument("--dataset", help="test dataset (default: each config's DATASETS.TEST[0])")
    parser.add_argument("--json", help="also write the per-run results to this file")
    args = parser.parse_args(argv)
    if args.targets:
        cost = targets_cost(args.targets, tuple(args.resize) if args.resize else None, args.crop)
        print(machine_line())
        print(format_targets_cost(cost))
        if args.image:
            print()
            resize = tuple(args.resize) if args.resize else None
            print(format_mapper_cost(mapper_cost(args.image, args.targets, resize, args.crop)))
        return 0
    if not args.models or not args.segfix:
        parser.error("give --models and --segfix (or --targets)")
    setup_logger(name="panoptic_ocr")
    groups = [(g[0], g[1:]) for g in args.models]
    if any(not runs for _, runs in groups):
        parser.error("--models takes a name and at least one run folder")
    try:
        rows = benchmark(groups, args.segfix, args.dataset)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(machine_line())
    print(format_report(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
