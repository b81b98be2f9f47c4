#!/usr/bin/env python3
"""Frames per second and peak memory of whole segmentation models, side by side.

Each ``--configs`` file is built as ``train_net.py`` builds it (``panoptic_ocr.setup_cfg``:
``get_cfg``, ``add_ocr_config``, the file, ``--opts``, ``adapt_config_to_device``) with random
initialisation (``MODEL.WEIGHTS ""``, ``--seed``), ``MODEL.DEVICE`` from ``--device`` and every
``*.NORM`` "SyncBN"/"naiveSyncBN" as "BN" (one process). The model then goes through the project's own
inference path, exactly as ``Trainer.test`` prepares it: ``MODEL.INFERENCE_DTYPE`` (autocast,
from ``--dtype``), ``MODEL.INFERENCE_CHANNELS_LAST`` and ``TEST.FOLD_BATCHNORM`` via
``prepare_for_inference`` (with reduced precision also the conv weights in that dtype).
``--fast-path auto`` (default) turns channels-last and BN folding on for bfloat16/float16 and
leaves the config's values for float32.

One frame = ``model([{"image": uint8 [3, H, W] already on the device}])`` under
``torch.inference_mode``: normalisation, padding, backbone, head, upsampling and
post-processing to ``[K, H, W]`` float32 logits, in one forward over the whole image
(``TEST.SLIDING_WINDOW`` is turned off unless ``--sliding-window``). Latency: median (and min)
over ``--runs`` rounds after ``--warmup`` ones; the models are timed interleaved (one call of
each per round), so load from other processes hits them alike. Peak memory: of one forward
above what is held before it (weights and input excluded; reported separately), measured as
every benchmark measures it (``panoptic_ocr.benchmarks.timing``; CUDA: ``torch.cuda.max_memory_allocated``; CPU: the
allocator events of ``torch.profiler``). ``--breakdown`` also times the backbone alone on the
model's preprocessed input; ``--flops`` counts multiply-adds with fvcore.

``--compare-dtype bfloat16`` measures each model in float32 and in that dtype (same weights)
and reports the speed-up and the fraction of pixels whose argmax agrees. Random weights give
nearly tied logits, which makes that agreement pessimistic; ``--calibrate`` (with ``--image``
and its ``--label``) fits only the final 1x1 classifier to the label in closed form, so that
the logits' margins are a real classifier's (see :func:`fit_classifier_`).

``--opts`` applies to every config; ``--config-opts`` gives one string of KEY VALUE pairs per
config, to put variants of one config side by side.

The measuring is :mod:`panoptic_ocr.benchmarks.fps` (with :mod:`panoptic_ocr.benchmarks.timing`);
this script parses the command line and prints.

Usage:
    python tools/benchmark_fps.py --configs a.yaml b.yaml --names A B --size 512,1024
    python tools/benchmark_fps.py --configs c.yaml --size 1024,2048 --compare-dtype bfloat16 \\
        --runs 3 --warmup 1 --image img.png --label label.png --calibrate
    python tools/benchmark_fps.py --configs a.yaml a.yaml --names wide narrow \
        --config-opts "" "MODEL.OCR.MID_CHANNELS 256" --flops --breakdown --json
"""

import argparse
import dataclasses
import json
import shlex
import sys
import warnings
from typing import Dict, Tuple

# Detectron2 uses torch.jit.script at import; torch's deprecation warning says nothing here.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

import torch  # noqa: E402

from panoptic_ocr.benchmarks.fps import (  # noqa: E402
    DTYPES,
    FAST_PATH,
    FpsSettings,
    format_report,
    parse_size,
    run_benchmark,
)


def _size(text: str) -> Tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", nargs="+", required=True, help="config files, measured side by side"
    )
    parser.add_argument("--names", nargs="+", help="one label per config (default: file names)")
    parser.add_argument(
        "--size", type=_size, default=(512, 1024), help="input H,W (default 512,1024)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="MODEL.INFERENCE_DTYPE")
    parser.add_argument(
        "--fast-path",
        default="auto",
        choices=FAST_PATH,
        help="MODEL.INFERENCE_CHANNELS_LAST and TEST.FOLD_BATCHNORM: on, off, or auto (on for "
        "bfloat16/float16, the config's for float32)",
    )
    parser.add_argument(
        "--compare-dtype",
        choices=DTYPES[1:],
        help="also run every model in float32 and this dtype: speed-up and argmax agreement",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights and noise image"
    )
    parser.add_argument("--image", help="image resized to --size (default: uniform noise)")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="fit only the final 1x1 classifier to --label (closed-form ridge regression), so "
        "argmax agreement is measured on a real classifier's margins",
    )
    parser.add_argument("--label", help="label PNG of --image (class indices), for --calibrate")
    parser.add_argument(
        "--sliding-window",
        action="store_true",
        help="keep the configs' TEST.SLIDING_WINDOW (default: one forward over the whole image)",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the backbone alone (whole-image only)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--flops",
        action="store_true",
        help="also count multiply-adds (fvcore, float32): total, backbone and head",
    )
    parser.add_argument(
        "--config-opts",
        nargs="+",
        metavar="'KEY VALUE ...'",
        help="one quoted string of KEY VALUE pairs per config, after --opts ('' for none): "
        "variants of one config side by side",
    )
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE pairs for every config (last)",
    )
    args = parser.parse_args(argv)
    if args.config_opts is not None:
        args.config_opts = [shlex.split(text) for text in args.config_opts]
    try:
        args.settings = FpsSettings(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(FpsSettings)}
        )
    except ValueError as e:  # the settings' checks name the option
        parser.error(str(e))
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = run_benchmark(args.settings, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=1) if args.json else format_report(report), flush=True)
    return report


if __name__ == "__main__":
    main()
