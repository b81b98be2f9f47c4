#!/usr/bin/env python
"""mIoU of the majority-class baseline: predict the most frequent training class everywhere.

    python tools/majority_baseline.py --train toy_scenes_sem_seg_train --test toy_scenes_sem_seg_val

Scored with Detectron2's SemSegEvaluator, the evaluator the models are scored with, so the
numbers compare directly with a model's. The scoring is
:mod:`panoptic_ocr.benchmarks.majority_baseline`; this script parses the command line and prints.
"""
import argparse
import json

from panoptic_ocr.benchmarks.majority_baseline import majority_baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="toy_scenes_sem_seg_train")
    parser.add_argument("--test", default="toy_scenes_sem_seg_val")
    args = parser.parse_args()
    print(json.dumps(majority_baseline(args.train, args.test), indent=2))


if __name__ == "__main__":
    main()
