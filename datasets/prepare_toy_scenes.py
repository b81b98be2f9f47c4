#!/usr/bin/env python
"""Generate the embedded toy-scenes dataset (no download).

    .venv/bin/python datasets/prepare_toy_scenes.py  # into $DETECTRON2_DATASETS/toy_scenes
    .venv/bin/python datasets/prepare_toy_scenes.py --root ~/data/toy_small --num-train 50 \\
        --num-val 10 --seed 3

Training and evaluation generate the default dataset on first use; this script makes it
explicitly, or makes variants of other sizes and seeds. Run again on a finished dataset with the
same settings, it does nothing (exit status 0).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.datasets.toy_scenes import (
    DEFAULT_SEED,
    DEFAULT_SPLIT_SIZES,
    generate_toy_scenes,
)


def _report_existing(args) -> int:
    """``--root`` exists: a finished generation with these settings is a no-op (status 0);
    anything else is an error that says what is there (status 1). Nothing is changed."""
    stamp = Path(args.root) / "toy_scenes.json"
    if not stamp.is_file():
        print(
            f"error: {args.root} exists but holds no toy_scenes.json "
            "(not a complete toy-scenes dataset); "
            "move it away to generate it again",
            file=sys.stderr,
        )
        return 1
    with open(stamp) as f:
        found = json.load(f)
    wanted = {"seed": args.seed, "splits": {"train": args.num_train, "val": args.num_val}}
    if {k: found.get(k) for k in wanted} == wanted:
        print(
            f"{args.root} already holds these toy scenes ({found['splits']}, "
            f"seed {found['seed']}); nothing to do"
        )
        return 0
    print(
        f"error: {args.root} holds toy scenes {found.get('splits')} with seed {found.get('seed')}, "
        f"not the requested {wanted['splits']} with seed {wanted['seed']}; pass another --root, "
        "or move it away to regenerate",
        file=sys.stderr,
    )
    return 1


def main(argv=None) -> int:
    default_root = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "toy_scenes")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=default_root, help=f"output folder (default: {default_root})"
    )
    parser.add_argument("--num-train", type=int, default=DEFAULT_SPLIT_SIZES["train"])
    parser.add_argument("--num-val", type=int, default=DEFAULT_SPLIT_SIZES["val"])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if os.path.exists(args.root):
        return _report_existing(args)
    start = time.perf_counter()
    generate_toy_scenes(args.root, {"train": args.num_train, "val": args.num_val}, seed=args.seed)
    print(
        f"Wrote {args.num_train} train and {args.num_val} val scenes to {args.root} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
