"""mmsegmentation's OCRNet-HR48, timed on request: the peer side of
``tools/benchmark_runtimes.py --peer-python``.

Runs in mmsegmentation's own virtual environment (``../shared/notes/peer-timing.md``), never
in the project's, so it imports nothing of ``panoptic_ocr``. It builds
``configs/ocrnet/ocrnet_hr48_4xb2-40k_cityscapes-512x1024.py`` with plain BN, initialises it
with ``--seed``, writes its state dict as an mmseg checkpoint (``--save-weights``: the project
converts it, so both sides run the same weights), then answers one command per stdin line:

- ``run``: one ``test_step`` on the ``--input`` image; prints ``ms <wall milliseconds>``;
- ``logits PATH``: the same, saving the ``[C, H, W]`` logits to ``PATH`` (``.npy``);
- ``quit``.

The first call (of either command) is preceded by ``peak_mb <MB>``: the resident-set growth of
that call above the level once built, as the project's side measures it in a fresh process.
The input is BGR, as mmseg's data preprocessor (``bgr_to_rgb=True``) expects.
"""

import argparse
import gc
import os
import sys
import threading
import time

import numpy as np
import torch

CONFIG = os.path.join("configs", "ocrnet", "ocrnet_hr48_4xb2-40k_cityscapes-512x1024.py")
SETTINGS = ("float32", "bfloat16-channels-last")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_growth(run) -> int:
    gc.collect()  # as the project's side: garbage freed during run() would hide its growth
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(0, max(peak[0], _rss_bytes()) - before)


def _stand_in_for_compiled_ops() -> None:
    """mmcv-lite ships no compiled ops, and importing ``mmseg.models`` imports ``mmcv.ops`` for
    heads OCRNet does not use. Give it a module whose every name raises when called, so OCRNet
    builds and any use of a compiled op fails loudly."""
    import types

    try:
        import mmcv.ops  # noqa: F401

        return
    except ModuleNotFoundError:
        pass

    def missing(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def refuse(*args, **kwargs):
            raise RuntimeError(f"mmcv.ops.{name} needs mmcv's compiled ops (not in mmcv-lite)")

        return type(name, (), {"__init__": refuse, "__call__": refuse})

    stand_in = types.ModuleType("mmcv.ops")
    stand_in.__getattr__ = missing
    sys.modules["mmcv.ops"] = stand_in


def build_model(height: int, width: int, setting: str) -> torch.nn.Module:
    """OCRNet-HR48 (19 classes) as mmseg builds it, with BN in place of SyncBN and the data
    preprocessor padding to ``height x width``."""
    _stand_in_for_compiled_ops()
    import mmseg
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    _stand_in_for_compiled_ops()
    register_all_modules()
    config = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", CONFIG))
    norm = dict(type="BN", requires_grad=True)
    config.model.backbone.norm_cfg = norm
    for head in config.model.decode_head:
        head.norm_cfg = norm
    config.model.pretrained = None
    config.model.backbone.init_cfg = None
    config.model.data_preprocessor.size = (height, width)
    model = MODELS.build(config.model)
    model.init_weights()
    model.eval()
    if setting == "bfloat16-channels-last":
        model = model.to(memory_format=torch.channels_last)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="[1, 3, H, W] float32 BGR pixels (.npy)")
    parser.add_argument("--setting", choices=SETTINGS, default="float32")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-weights", help="write the initialised weights here (.pth)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    _stand_in_for_compiled_ops()
    from mmseg.structures import SegDataSample

    image = np.load(args.input)
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        print(f"{args.input}: expected [1, 3, H, W], got {list(image.shape)}", file=sys.stderr)
        return 2
    height, width = image.shape[2:]
    model = build_model(height, width, args.setting)
    if args.save_weights:
        torch.save(
            {"meta": {"seed": args.seed}, "state_dict": model.state_dict()}, args.save_weights
        )
    pixels = torch.from_numpy(np.ascontiguousarray(image[0])).round().clamp(0, 255).to(torch.uint8)
    shape = (height, width)
    meta = dict(ori_shape=shape, img_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])

    first = [True]

    def predict():
        data = {"inputs": [pixels], "data_samples": [SegDataSample(metainfo=meta)]}
        with (
            torch.no_grad(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.setting != "float32"),
        ):
            if not first[0]:
                return model.test_step(data)[0]
            first[0] = False
            out = []
            peak = _peak_rss_growth(lambda: out.append(model.test_step(data)[0]))
            print(f"peak_mb {peak / 2**20:.1f}", flush=True)
            return out[0]

    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "run":
            start = time.perf_counter()
            predict()
            print(f"ms {1000 * (time.perf_counter() - start):.3f}", flush=True)
        elif command[0] == "logits" and len(command) == 2:
            np.save(command[1], predict().seg_logits.data.float().numpy())
            print("saved", flush=True)
        else:
            print(f"unknown command {line.strip()!r}", file=sys.stderr, flush=True)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
