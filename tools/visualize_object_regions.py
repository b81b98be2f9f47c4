#!/usr/bin/env python3
"""Show OCR's soft object regions: per chosen class, a heat map over the image beside the
prediction.

The soft object regions M_k are the auxiliary branch's logits at the feature resolution
(paper sec. 3.3). OCR turns each into pixel weights by a softmax over all pixels and averages
the pixel representations with them (eq. 4): that spatial softmax is what the "region" panel
shows, min-max normalised per class (it is usually concentrated on a few confident pixels of
the class). The "p(class)" panel shows the same logits as an ordinary per-pixel class
probability (softmax over the K classes): the coarse segmentation the regions come from.

For every input image and chosen class one PNG is written,
``<image name>_<class index>_<class name>.png``: three panels side by side, each of the
image's size: the predicted segmentation (Detectron2's ``Visualizer``), the soft object
region and the class probability (cv2 JET colormap blended over the image).

Works with the OCR heads whose context module receives predicted region logits: ``OCRHead``,
``OCRDoubleAttentionRelationHead``, ``OCRACFRelationHead`` and
``OCRNoRegionSupervisionHead`` (its unsupervised ``region_branch``). Class names and colors
come from the config's first test dataset. The drawing is
:mod:`panoptic_ocr.utils.object_regions`; this script parses the command line.

Usage:
    python tools/visualize_object_regions.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --weights output/quickstart/ocr_R18_os16_toy_scenes_600it/model_final.pth \\
        --input datasets/toy_scenes/images/val/toy_val_000000.jpg --output vis_regions/
    python tools/visualize_object_regions.py --config-file ... --input a.jpg b.jpg \\
        --classes car 11 --output out/ --opts MODEL.OCR.MID_CHANNELS 256
"""

import argparse
import logging
import os
import warnings
from typing import List

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import torch  # noqa: E402

from panoptic_ocr import setup_cfg  # noqa: E402
from panoptic_ocr.utils.object_regions import visualize_object_regions  # noqa: E402

logger = logging.getLogger("panoptic_ocr.visualize_object_regions")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--weights", help="checkpoint (default: random initialisation, with a warning)"
    )
    parser.add_argument("--input", nargs="+", required=True, help="image path(s)")
    parser.add_argument(
        "--classes",
        nargs="+",
        help="class names or indices (default: the classes of the --top-k largest segments of "
        "the prediction)",
    )
    parser.add_argument(
        "--top-k", type=int, default=3, help="classes shown when --classes is not given"
    )
    parser.add_argument("--output", required=True, help="folder for the PNGs (created)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config KEY VALUE pairs (last, as in Detectron2's demo)",
    )
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be >= 1, got {args.top_k}")
    for path in args.input:
        if not os.path.isfile(path):
            parser.error(f"--input {path!r} does not exist")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = setup_cfg(args.config_file, list(args.opts) + ["MODEL.DEVICE", args.device])
    written = visualize_object_regions(
        cfg, args.input, args.output, weights=args.weights, classes=args.classes, top_k=args.top_k
    )
    logger.info("Wrote %d images to %s", len(written), args.output)
    return written


if __name__ == "__main__":
    main()
