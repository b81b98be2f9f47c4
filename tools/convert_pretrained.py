#!/usr/bin/env python
"""Convert local ImageNet checkpoints into Detectron2 checkpoints for the project's backbones.

    .venv/bin/python tools/convert_pretrained.py \\
        resnet resnet101-63fe2227.pth pretrained/R-101-tv.pkl
    .venv/bin/python tools/convert_pretrained.py \\
        mobilenetv2 mobilenet_v2-b0353104.pth pretrained/mnv2.pkl
    .venv/bin/python tools/convert_pretrained.py \\
        hrnet hrnetv2_w48_imagenet_pretrained.pth pretrained/w48.pkl

then train with ``MODEL.WEIGHTS pretrained/<file>.pkl``. Released OCR segmentation and SegFix
models (whole models, checked against the model of their released config; MODEL_ZOO.md):

    .venv/bin/python tools/convert_pretrained.py hrnet_ocr hrnet_ocr_cs_8162_torch11.pth \\
        pretrained/hrnet_ocr_cs_8162.pth
    .venv/bin/python tools/convert_pretrained.py openseg hrnet_w48_ocr_1_latest.pth \\
        pretrained/openseg_hrnet_w48_ocr.pth
    .venv/bin/python tools/convert_pretrained.py mmseg \\
        ocrnet_hr48_512x1024_160k_cityscapes_20200602_191037-dfbf1b0c.pth \\
        pretrained/mmseg_ocrnet_hr48.pth
    .venv/bin/python tools/convert_pretrained.py nvidia \\
        cityscapes_ocrnet.HRNet_Mscale_outstanding-turtle.pth pretrained/nvidia_hmsa_cityscapes.pth
    .venv/bin/python tools/convert_pretrained.py segfix \\
        segfix_hrnet_hrnet48_segfix_loss_iter80000_1_latest.pth \\
        pretrained/openseg_segfix_hrnet_w48.pth

(``nvidia``: NVIDIA's HRNet-OCR + hierarchical multi-scale attention, Cityscapes or Mapillary,
into ``HMSASemanticSegmentor``; docs/multi_scale_attention.md. ``segfix``: openseg's SegFix
HRNet-W48 boundary/direction model into ``SegFixModel``, InPlaceABN or SyncBN heads read from the
keys; HRNet2x-W20 files are refused, the project has no HRNet2x backbone; docs/segfix.md)

(``--config-file`` for another released config, e.g. HRNet-OCR's LIP model), then
``train_net.py --eval-only --config-file <released config> MODEL.WEIGHTS <output>``. ImageNet
sources (nothing is downloaded):

- ``resnet``: a torchvision ResNet-18/34/50/101/152 state dict, renamed to Detectron2's ResNet
  (``stem.conv1``, ``res2.0.conv1.norm``, ``shortcut``, ...) for ``build_dilated_resnet_backbone``
  (depth >= 50: Detectron2's ``build_resnet_deeplab_backbone``). The depth is read from the
  checkpoint. torchvision puts the stride in the 3x3 conv and has a 7x7 stem: set
  ``MODEL.RESNETS.STRIDE_IN_1X1 False`` and ``STEM_TYPE "basic"``, and feed RGB images normalised
  as in training (see docs/backbones.md);
- ``mobilenetv2``: a torchvision MobileNetV2 state dict for ``build_mobilenetv2_backbone``; the
  names are already the backbone's, the 1280-channel last conv and the classifier are dropped;
- ``hrnet``: the HRNet authors' ImageNet HRNetV2 checkpoint
  (``hrnetv2_w48_imagenet_pretrained.pth``) for ``build_hrnet_backbone``; the names are already
  the backbone's, the classification-only ``incre_modules``, ``downsamp_modules``,
  ``final_layer`` and ``classifier`` are dropped. The width is read from the checkpoint.

The result is checked against the backbone built by the project's builder: a checkpoint key that
maps to no backbone parameter, or a shape mismatch, is an error listing the keys; so is a
backbone parameter left without weights, unless ``--allow-missing``. ``num_batches_tracked``
counters are dropped (PyTorch's BatchNorm fills them in when loading).

The output follows Detectron2's conventions: ``.pkl`` holds ``{"model": {name: numpy array},
"__author__": ..., "matching_heuristics": False}``, ``.pth`` the same with tensors. Names carry
``--prefix`` (default ``backbone.``, where Detectron2's meta-architectures keep the backbone;
``backbone.bottom_up.`` for an FPN), so ``DetectionCheckpointer`` loads them exactly. An
existing output is replaced only with ``--overwrite``; the file is written to a temporary
sibling and renamed into place, so a failed conversion leaves nothing behind.

The conversion is :mod:`panoptic_ocr.checkpoint.convert`; this script parses the command line.
"""

import argparse
import logging
import sys
from typing import List, Optional

from panoptic_ocr.checkpoint.convert import (
    ALL_KINDS,
    RELEASED_KINDS,
    ConversionError,
    convert_checkpoint,
)
from panoptic_ocr.checkpoint.weight_files import WeightFileError
from panoptic_ocr.engine.arguments import add_weight_arguments
from panoptic_ocr.utils.safe_write import OutputExistsError


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See docs/backbones.md.",
    )
    parser.add_argument("kind", choices=ALL_KINDS, help="source checkpoint type")
    parser.add_argument("source", help="local checkpoint (.pth/.pt/.pkl)")
    parser.add_argument("output", help="converted checkpoint (.pkl or .pth)")
    parser.add_argument("--depth", type=int, help="ResNet depth (default: from the checkpoint)")
    parser.add_argument("--width", type=int, help="HRNet width (default: read from the checkpoint)")
    parser.add_argument(
        "--prefix",
        default="backbone.",
        help="prefix of every converted name: where the model keeps the backbone "
        "(default 'backbone.'; 'backbone.bottom_up.' for an FPN)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="accept backbone parameters that the checkpoint does not provide (left at init)",
    )
    parser.add_argument(
        "--config-file",
        help=f"{'/'.join(RELEASED_KINDS)}: the released config of the target model (default: the "
        "variant's Cityscapes config under configs/cityscapes/semantic/released/)",
    )
    add_weight_arguments(parser, partial=False)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.kind in RELEASED_KINDS:
            from panoptic_ocr.checkpoint.released import convert_released_checkpoint

            convert_released_checkpoint(
                args.kind,
                args.source,
                args.output,
                config_file=args.config_file,
                overwrite=args.overwrite,
                trusted=args.trust_weights,
            )
            return 0
        convert_checkpoint(
            args.kind,
            args.source,
            args.output,
            depth=args.depth,
            width=args.width,
            prefix=args.prefix,
            allow_missing=args.allow_missing,
            overwrite=args.overwrite,
            trusted=args.trust_weights,
        )
    except (ConversionError, OutputExistsError, WeightFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
