#!/usr/bin/env python
"""Every CPU runtime of one semantic model side by side, in one process, on one image size:
PyTorch eager float32, the project's bfloat16 path, torch.compile (float32, bfloat16),
onnxruntime, OpenVINO (float32, bfloat16 hint where the CPU has it, int8 after NNCF
calibration where nncf is installed). Per runtime: median latency, speed-up over float32 eager,
preparation time (export / conversion / compilation), peak RSS growth of one call, and
agreement with float32 eager (largest logit difference, argmax agreement).

    .venv/bin/python tools/benchmark_runtimes.py \\
        --config-file configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml \\
        --size 512x1024 --runs 5 \\
        MODEL.WEIGHTS output/quickstart/ocr_R18_os16_toy_scenes_600it/model_final.pth
    .venv/bin/python tools/benchmark_runtimes.py \\
        --config-file configs/cityscapes/semantic/ocr_HRNetV2W48_bs8_crop769_poly_40k.yaml \\
        --size 512x1024 --runs 3 --variants "onnxruntime float32" "OpenVINO float32" \\
        MODEL.WEIGHTS ""

With --peer-python (mmsegmentation's own interpreter, ../shared/notes/peer-timing.md),
mmsegmentation's OCRNet-HR48 runs in its own process (tools/mmseg_peer_worker.py) in the same
rounds; with an empty MODEL.WEIGHTS both sides then run the peer's initial weights:

    .venv/bin/python tools/benchmark_runtimes.py \\
        --config-file configs/cityscapes/semantic/ocr_HRNetV2W48_bs8_crop769_poly_40k.yaml \\
        --variants "onnxruntime float32" "OpenVINO float32" "mmsegmentation float32" \\
        --size 1024x2048 --runs 3 --peer-python ../mmseg-venv/bin/python MODEL.WEIGHTS ""

An empty MODEL.WEIGHTS times the random initialisation (speed does not depend on the weights;
agreement is then a numerical check only). The table starts with the CPU model, its native
bfloat16 support, the threads and the load average. See docs/benchmarks.md.
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import os
import sys

import torch
from detectron2.utils.logger import setup_logger

from panoptic_ocr import setup_cfg
from panoptic_ocr.data.image_files import read_image
from panoptic_ocr.export.peer_process import PeerCommand
from panoptic_ocr.export.runtime_benchmark import (
    PEER_VARIANTS,
    RUNTIME_VARIANTS,
    benchmark_runtimes,
    format_runtime_table,
)
from panoptic_ocr.utils.measurement import machine_line
from panoptic_ocr.utils.override_args import add_config_overrides, parse_args_with_overrides

DEFAULT_VARIANTS = tuple(v for v in RUNTIME_VARIANTS if not v.startswith("torch.compile"))
PEER_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmseg_peer_worker.py")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--size", nargs="+", default=["512x1024"], help="HxW input size(s)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        choices=RUNTIME_VARIANTS + PEER_VARIANTS,
        metavar="NAME",
        help="runtimes to time (default: all but torch.compile and the peer); one of "
        f"{list(RUNTIME_VARIANTS + PEER_VARIANTS)}",
    )
    parser.add_argument(
        "--peer-python",
        metavar="PYTHON",
        help="mmsegmentation's interpreter: times its OCRNet-HR48 too (both mmsegmentation "
        "variants unless --variants names one)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="add the torch.compile variants (minutes)"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="threads (0: PyTorch's default)")
    parser.add_argument("--image", help="image to run on (resized); default: seeded noise")
    parser.add_argument(
        "--calibration-images", type=int, default=8, help="int8: training images to calibrate on"
    )
    parser.add_argument(
        "--calibration-dataset",
        metavar="DATASET",
        help="int8: the registered dataset to calibrate on (default DATASETS.TRAIN[0])",
    )
    add_config_overrides(parser)
    args = parse_args_with_overrides(parser, argv)
    setup_logger(name="panoptic_ocr")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.size]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 for s in sizes):
        print(
            f"benchmark_runtimes: --size takes HxW (e.g. 512x1024), got {args.size}",
            file=sys.stderr,
        )
        return 2
    cfg = setup_cfg(args.config_file, args.opts, freeze=False)
    if not cfg.MODEL.WEIGHTS:  # speed does not depend on the weights: time the random ones
        cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = True
    cfg.freeze()
    variants = list(args.variants)
    if args.compile:
        variants += [v for v in RUNTIME_VARIANTS if v.startswith("torch.compile")]
    peer = None
    if args.peer_python:
        if not os.path.isfile(args.peer_python):
            print(
                f"benchmark_runtimes: --peer-python {args.peer_python}: no such file",
                file=sys.stderr,
            )
            return 2
        peer = PeerCommand(args.peer_python, PEER_WORKER)
        if not any(v in PEER_VARIANTS for v in variants):
            variants += list(PEER_VARIANTS)
    image = read_image(args.image, format=cfg.INPUT.FORMAT) if args.image else None
    print(machine_line())
    weights = cfg.MODEL.WEIGHTS or (
        "random (mmsegmentation's initialisation, converted)" if peer else "random"
    )
    print(f"config: {args.config_file}; weights: {weights}")
    for size in sizes:
        results = benchmark_runtimes(
            cfg,
            size,
            image=image,
            variants=variants,
            runs=args.runs,
            warmup=args.warmup,
            calibration_images=args.calibration_images,
            calibration_dataset=args.calibration_dataset,
            peer=peer,
        )
        print(f"\ninput {size[0]}x{size[1]}, {args.runs} timed rounds after {args.warmup}:")
        print(format_runtime_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
