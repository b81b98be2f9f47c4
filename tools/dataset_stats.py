#!/usr/bin/env python
"""Per-class pixel frequency and image counts of a registered semantic dataset, and the class
weights a weighted loss would use, written as a config snippet.

    .venv/bin/python tools/dataset_stats.py --dataset toy_scenes_sem_seg_train --method enet \\
        --output output/class_weights.yaml

Every label value is checked (a class index or the ignore label). The snippet sets
MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS; add it to your config (docs/losses.md,
docs/custom_datasets.md).
"""

import argparse
import sys

from panoptic_ocr.data.class_statistics import CLASS_WEIGHT_METHODS, class_weights_from_frequencies
from panoptic_ocr.data.dataset_stats import class_weights_snippet, dataset_stats, format_stats
from panoptic_ocr.utils.safe_write import OutputExistsError, atomic_file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, help="a registered dataset name")
    parser.add_argument(
        "--num-classes", type=int, default=0, help="default: the metadata's stuff_classes"
    )
    parser.add_argument("--method", default="enet", choices=CLASS_WEIGHT_METHODS)
    parser.add_argument("--normalize", action="store_true", help="scale the weights to mean 1")
    parser.add_argument("--output", help="write the config snippet here (default: print it)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        stats = dataset_stats(args.dataset, args.num_classes or None)
    except (KeyError, FileNotFoundError, ValueError) as e:
        print(f"dataset_stats: {e}", file=sys.stderr)
        return 2
    weights = class_weights_from_frequencies(
        stats.pixel_counts,
        args.method,
        image_pixel_totals=stats.image_pixel_totals,
        normalize=args.normalize,
    )
    print(format_stats(stats, weights))
    snippet = class_weights_snippet(stats, args.method, args.normalize)
    if not args.output:
        print(snippet)
        return 0
    try:
        with atomic_file(args.output, overwrite=args.overwrite) as tmp, open(tmp, "w") as f:
            f.write(snippet)
    except OutputExistsError as e:
        print(f"dataset_stats: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
