#!/usr/bin/env python
"""Fingerprint every config's model (layout, weights, outputs, losses for a fixed seed), or
compare two fingerprint files: the check that a refactor changes no numerics.

    python tools/fingerprint_configs.py --output before.json [--contains toy_scenes]
    python tools/fingerprint_configs.py --compare before.json after.json
"""
import argparse
import json
import sys

import torch

from panoptic_ocr.benchmarks.fingerprints import compare_fingerprints, fingerprint_configs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="write the fingerprints of configs/ to this JSON file")
    parser.add_argument("--contains", help="only configs whose path contains this string")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two files")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.load(open(p)) for p in args.compare)
        result = compare_fingerprints(before, after)
        for key, names in result.items():
            print(f"{key}: {len(names)}")
            if key != "same":
                for name in names:
                    print(f"  {name}")
        return 1 if result["different"] else 0
    if not args.output:
        parser.error("give --output FILE or --compare BEFORE AFTER")
    torch.set_num_threads(args.threads)
    fingerprints = fingerprint_configs(contains=args.contains)
    with open(args.output, "w") as f:
        json.dump(fingerprints, f, indent=1, sort_keys=True)
    print(f"{len(fingerprints)} configs fingerprinted into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
