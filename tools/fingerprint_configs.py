#!/usr/bin/env python
"""Fingerprint every config's model (layout, weights, outputs, losses for a fixed seed), or
compare two fingerprint files: the check that a refactor changes no numerics.

    .venv/bin/python tools/fingerprint_configs.py --output before.json [--contains toy_scenes]
    .venv/bin/python tools/fingerprint_configs.py --compare before.json after.json

For every config under a folder, build the model with a fixed seed (``MODEL.WEIGHTS ""``) and
record its state-dict layout (keys and shapes), the sum of |parameters and buffers|, the eval
output on a fixed image (BatchNorm statistics set from a fixed generator, so the output is not
trivial) and, for semantic models, the training losses on that image with a fixed label. Two
fingerprint files written before and after a change are compared key by key
(``tests/tools/test_fingerprints.py`` runs :func:`fingerprint_config` and
:func:`compare_fingerprints`).
"""

import panoptic_ocr  # noqa: F401  # isort: skip  (before detectron2: quiets its torch.jit warning)
import argparse
import glob
import hashlib
import json
import os
import sys
from typing import Dict, Optional, Sequence, Tuple

import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from panoptic_ocr.config import setup_cfg


def fingerprint_config(config_file: str, size: Tuple[int, int] = (67, 99)) -> Dict:
    """The fingerprint of one config's model (see the module docstring) on a ``[3, *size]``
    image."""
    cfg = setup_cfg(config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"], freeze=False)
    torch.manual_seed(0)
    model = build_model(cfg)
    state = model.state_dict()
    layout = json.dumps([(k, list(v.shape)) for k, v in state.items()])
    record = {
        "layout_md5": hashlib.md5(layout.encode()).hexdigest(),
        "tensors": len(state),
        "abs_sum": float(
            sum(v.double().abs().sum() for v in state.values() if v.is_floating_point())
        ),
    }
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, *size, generator=g) * 255
    label = torch.randint(0, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, size, generator=g)
    panoptic = cfg.MODEL.META_ARCHITECTURE == "PanopticFPN"
    inputs = {"image": image, "height": size[0], "width": size[1]}
    if not panoptic:
        inputs["sem_seg"] = label
    bn = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=bn) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=bn) + 0.5)
    model.eval()
    with torch.no_grad():
        output = model([inputs])[0]
    if "sem_seg" in output:
        sem_seg = output["sem_seg"].double()
        record["eval_sum"] = float(sem_seg.sum())
        record["eval_argmax_md5"] = hashlib.md5(sem_seg.argmax(0).numpy().tobytes()).hexdigest()
    else:  # another model's outputs (SegFix: boundary and direction maps), each summed
        for key in sorted(k for k, v in output.items() if isinstance(v, torch.Tensor)):
            record[f"eval_sum_{key}"] = float(output[key].double().sum())
    if not panoptic:
        model.train()
        torch.manual_seed(3)
        with EventStorage():
            record["losses"] = {k: float(v) for k, v in model([inputs]).items()}
    return record


def fingerprint_configs(root: str = "configs", contains: Optional[str] = None) -> Dict[str, Dict]:
    """Fingerprints of every non-base config under ``root`` (whose path contains ``contains``)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)):
        if os.path.basename(path).startswith("Base-") or (contains and contains not in path):
            continue
        try:
            out[path] = fingerprint_config(path)
        except Exception as e:  # a config that does not build is part of the fingerprint
            out[path] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def compare_fingerprints(before: Dict[str, Dict], after: Dict[str, Dict]) -> Dict[str, list]:
    """``{"same": [...], "different": [...], "only_before": [...], "only_after": [...]}``."""
    common = sorted(set(before) & set(after))
    return {
        "same": [k for k in common if before[k] == after[k]],
        "different": [k for k in common if before[k] != after[k]],
        "only_before": sorted(set(before) - set(after)),
        "only_after": sorted(set(after) - set(before)),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Write the fingerprints of configs/, or compare two files (exit 1 on a difference)."""
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
