#!/usr/bin/env python
"""Cache SegFix's targets (boundary and direction, docs/segfix.md) of every label of registered
semantic datasets, for training with MODEL.SEGFIX.TARGETS "cached".

    .venv/bin/python datasets/prepare_segfix_targets.py cityscapes_fine_sem_seg_train --workers 2
    .venv/bin/python datasets/prepare_segfix_targets.py \\
        --config-file configs/toy_scenes/segfix_R18_toy_scenes_600it.yaml

Reads   each record's sem_seg_file_name (and the dataset's ignore_label)
Writes  <targets dir>/<label path>/<label stem>_segfix<MAX_DISTANCE>.png: the label's path
        relative to $DETECTRON2_DATASETS (or its absolute path) under --targets-dir (default
        $DETECTRON2_DATASETS/segfix_targets); 8-bit, direction bin 0..7 on boundary pixels,
        8 off the boundary, 255 ignored.
With --config-file the datasets are its DATASETS.TRAIN and the distance and folder its
MODEL.SEGFIX.MAX_DISTANCE / TARGETS_DIR, i.e. what its training will read. Re-runnable: a target
file not older than its label is kept (--overwrite recomputes all); each file is written
atomically.
"""

import argparse
import os
import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.config import setup_cfg
from panoptic_ocr.data import datasets  # noqa: F401  (registers the datasets)
from panoptic_ocr.segfix.prepare_targets import write_dataset_targets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("datasets", nargs="*", help="registered semantic dataset names")
    parser.add_argument("--config-file", help="take datasets, distance and folder from a config")
    parser.add_argument("--max-distance", type=int, help="MODEL.SEGFIX.MAX_DISTANCE (default 5)")
    parser.add_argument("--targets-dir", help="MODEL.SEGFIX.TARGETS_DIR")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--overwrite", action="store_true", help="recompute up-to-date files")
    args = parser.parse_args(argv)
    names, max_distance, targets_dir = list(args.datasets), 5, None
    if args.config_file:
        cfg = setup_cfg(args.config_file)
        names = names or list(cfg.DATASETS.TRAIN)
        max_distance, targets_dir = cfg.MODEL.SEGFIX.MAX_DISTANCE, cfg.MODEL.SEGFIX.TARGETS_DIR
    if args.max_distance is not None:
        max_distance = args.max_distance
    if args.targets_dir is not None:
        targets_dir = args.targets_dir
    if not names:
        parser.error("give dataset names or --config-file")
    try:
        counts = write_dataset_targets(
            names, max_distance, targets_dir or None, args.overwrite, max(args.workers, 1)
        )
    except (KeyError, ValueError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 1
    for name, c in counts.items():
        print(f"{name}: wrote {c['written']}, kept {c['up_to_date']} up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
