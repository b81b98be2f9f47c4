#!/usr/bin/env python
"""Generate the embedded toy-scenes dataset (no download).

    python datasets/prepare_toy_scenes.py                 # into $DETECTRON2_DATASETS/toy_scenes
    python datasets/prepare_toy_scenes.py --root ~/data/toy_small --num-train 50 --num-val 10 --seed 3

Training and evaluation generate the default dataset on first use; this script makes it
explicitly, or makes variants of other sizes and seeds.
"""
import argparse
import os
import sys
import time

from panoptic_ocr.data.datasets.toy_scenes import DEFAULT_SEED, DEFAULT_SPLIT_SIZES, generate_toy_scenes


def main(argv=None) -> int:
    default_root = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "toy_scenes")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=default_root, help=f"output folder (default: {default_root})")
    parser.add_argument("--num-train", type=int, default=DEFAULT_SPLIT_SIZES["train"])
    parser.add_argument("--num-val", type=int, default=DEFAULT_SPLIT_SIZES["val"])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if os.path.exists(args.root):
        print(f"error: {args.root} already exists; remove it first to regenerate", file=sys.stderr)
        return 1
    start = time.perf_counter()
    generate_toy_scenes(args.root, {"train": args.num_train, "val": args.num_val}, seed=args.seed)
    print(f"Wrote {args.num_train} train and {args.num_val} val scenes to {args.root} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
