"""NVIDIA's released HRNet-OCR + multi-scale attention (``HRNet_Mscale``) loads exactly.

The ``nvidia_mscale`` fixture of ``shared/data/released_checkpoints`` is a full-size file in the
released layout and the outputs of NVIDIA's own code on a test image at every stage: one scale
at stride 4 (logits, aux logits, attention), scale 1.0 upsampled, the attention at 0.5, the
two-scale combination and the three-scale (0.5, 1.0, 2.0) one. The file is converted through
``tools/convert_pretrained.py nvidia``, loaded as ``train_net.py --eval-only`` loads weights, and
every array is compared in float64 (1e-4) and float32 (1e-3), as the README says.
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_tool
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from panoptic_ocr.checkpoint.convert import Conversion, ConversionError, check_state_dict
from panoptic_ocr.checkpoint.released import (
    build_target_model,
    convert_released_checkpoint,
    default_config,
    detect_variant,
    rename_released,
)
from panoptic_ocr.config import setup_cfg
from panoptic_ocr.modeling.multi_scale_attention import combine_scales

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "released_checkpoints"
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "nvidia_mscale_expected.npz").is_file(),
    reason=f"nvidia_mscale fixture not found at {FIXTURES}",
)
RELEASED_NAME = "cityscapes_ocrnet.HRNet_Mscale_outstanding-turtle.pth"
TOLERANCES = {torch.float64: 1e-4, torch.float32: 1e-3}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The seed-0 fixture, converted once through the command line (its main, in-process)."""
    sys.path.insert(0, str(FIXTURES))
    try:
        from make_fixture_checkpoint import make_checkpoint
    finally:
        sys.path.remove(str(FIXTURES))
    root = tmp_path_factory.mktemp("nvidia")
    source, out = root / RELEASED_NAME, root / "nvidia_hmsa_cityscapes.pth"
    make_checkpoint("nvidia_mscale", 0, str(source))
    assert load_tool("convert_pretrained").main(["nvidia", str(source), str(out)]) == 0
    return out


def test_every_stage_matches_nvidia(converted):
    ref = np.load(FIXTURES / "nvidia_mscale_expected.npz")
    assert [float(s) for s in ref["scales"]] == [0.5, 1.0, 2.0]
    cfg = setup_cfg(default_config("nvidia_mscale"), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.META_ARCHITECTURE == "HMSASemanticSegmentor"
    assert tuple(cfg.MODEL.HMSA.TEST_SCALES) == (0.5, 1.0, 2.0)
    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    results = []
    load_model = checkpointer._load_model  # record what load() reports (it only logs it)
    checkpointer._load_model = lambda ckpt: results.append(load_model(ckpt)) or results[-1]
    checkpointer.load(str(converted))
    (incompatible,) = results
    assert not (
        incompatible.missing_keys or incompatible.unexpected_keys or incompatible.incorrect_shapes
    )

    image = torch.from_numpy(ref["image"]).permute(2, 0, 1).double()  # RGB, 0..255
    arrays = [k for k in ref.files if ref[k].ndim >= 2 and k != "image"]
    expected = {k: torch.from_numpy(ref[k]).double() for k in arrays}
    errors = {}
    for dtype, tol in TOLERANCES.items():
        model.to(dtype).eval()
        model.pixel_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=dtype).view(-1, 1, 1)
        model.pixel_std = torch.tensor(cfg.MODEL.PIXEL_STD, dtype=dtype).view(-1, 1, 1)
        x = (image.to(dtype) - model.pixel_mean) / model.pixel_std
        with torch.no_grad():
            logits, aux, representation = model.sem_seg_head.forward_features(
                model.backbone(x[None])
            )
            attention = model.scale_attention(representation)
            per_scale = model.predict_scales([x], (0.5, 1.0, 2.0))[0]
            two_scale, _ = combine_scales({s: per_scale[s] for s in (0.5, 1.0)})
            output = model([{"image": image.to(dtype), "height": 64, "width": 128}])[0]["sem_seg"]
        got = {
            "logits_stride4": logits[0],
            "aux_logits_stride4": aux[0],
            "attn_stride4": attention[0, 0],
            "logits_1x": per_scale[1.0].logits[0],
            "attn_05x": per_scale[0.5].attention[0, 0],
            "logits_two_scale": two_scale[0],
            "logits_mscale": output,
        }
        assert set(got) == set(expected)
        errors[str(dtype)] = {k: (got[k].double() - expected[k]).abs().max().item() for k in got}
        bad = {k: e for k, e in errors[str(dtype)].items() if not e < tol}
        assert not bad, f"{dtype}: {errors}"
    print(f"\nnvidia_mscale max |error| per stage: {errors}")


def _key_list(classes: int = 19):
    spec = json.loads((FIXTURES / "nvidia_mscale_keys.json").read_text())
    keys = {}
    for k, shape in spec["keys"].items():
        if re.search(r"ocr\.(cls_head|aux_head\.2)\.", k):
            shape = [classes] + shape[1:]
        keys[k] = torch.empty(shape, device="meta")
    return keys


@pytest.mark.parametrize("classes", [19, 65])
def test_full_key_list_maps_strictly(classes):
    """Every released key maps (Cityscapes 19 and Mapillary 65 classes, each to its released
    config); a missing, an extra and a misshaped key each fail naming the key."""
    keys = _key_list(classes)
    variant = detect_variant("nvidia", keys)
    assert variant == ("nvidia_mscale" if classes == 19 else "nvidia_mscale_mapillary")
    target = build_target_model(default_config(variant))
    renamed, sources, unmatched = rename_released(variant, keys, target)
    assert not unmatched
    assert set(renamed) == {k for k in target if not k.endswith("num_batches_tracked")}
    assert sources["scale_attention.layers.2.weight"] == "module.scale_attn.conv2.weight"

    def check(state_dict):
        r, s, u = rename_released(variant, state_dict, target)
        check_state_dict(Conversion(r, s, u, target, "model", "test", ""))

    check(keys)
    for victim in ("module.scale_attn.bn1.running_var", "module.ocr.aux_head.2.bias"):
        missing = {k: v for k, v in keys.items() if k != victim}
        with pytest.raises(ConversionError, match="without weights"):
            check(missing)
    extra = dict(keys, **{"module.scale_attn.conv3.weight": torch.empty(1, device="meta")})
    with pytest.raises(ConversionError, match=re.escape("module.scale_attn.conv3.weight")):
        check(extra)
    misshaped = dict(keys, **{"module.scale_attn.conv0.weight": torch.empty(256, 720, 3, 3)})
    with pytest.raises(ConversionError, match=re.escape("module.scale_attn.conv0.weight")):
        check(misshaped)


def test_wrong_kind_is_refused_and_nothing_is_written(tmp_path):
    sys.path.insert(0, str(FIXTURES))
    try:
        from make_fixture_checkpoint import make_state_dict
    finally:
        sys.path.remove(str(FIXTURES))
    source = tmp_path / "mmseg.pth"
    torch.save({"meta": {}, "state_dict": make_state_dict("mmseg", 0)}, source)
    out = tmp_path / "out.pth"
    with pytest.raises(ConversionError, match="not an NVIDIA HRNet_Mscale checkpoint"):
        convert_released_checkpoint("nvidia", str(source), str(out))
    assert not out.exists()
