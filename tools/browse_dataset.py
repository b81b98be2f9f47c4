#!/usr/bin/env python
"""Draw a dataset's ground truth on its images (Detectron2's tools/visualize_data.py approach).

    .venv/bin/python tools/browse_dataset.py \\
        --config-file CFG --source annotation --output-dir output/browse/
    .venv/bin/python tools/browse_dataset.py --config-file CFG --source dataloader --num-images 4 \\
        --output-dir output/browse_aug/ DATASETS.TRAIN "('my_dataset_train',)"

(``my_dataset_train``: a dataset of your own, registered as docs/custom_datasets.md shows.)

``annotation``: the labels as stored; ``dataloader``: after the training augmentations of
SemanticDatasetMapper (crop, scale, flip, brightness). Dataset: --dataset, else the config's
first DATASETS.TRAIN. Trailing KEY VALUE pairs override the config.
"""

import argparse
import sys

from panoptic_ocr import setup_cfg
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides
from panoptic_ocr.utils.safe_write import OutputExistsError
from panoptic_ocr.utils.visualization import browse_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    parser.add_argument("--dataset", help="default: the config's first DATASETS.TRAIN")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--overwrite", action="store_true")
    add_config_overrides(parser)
    args = parse_args_with_overrides(parser, argv)
    cfg = setup_cfg(args.config_file, args.opts)
    try:
        paths = browse_dataset(
            cfg,
            args.output_dir,
            dataset_name=args.dataset,
            source=args.source,
            num_images=args.num_images,
            overwrite=args.overwrite,
        )
    except (OutputExistsError, ValueError, KeyError, FileNotFoundError) as e:
        print(f"browse_dataset: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} image(s) to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
