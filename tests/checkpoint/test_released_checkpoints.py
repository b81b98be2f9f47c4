"""Released OCR checkpoints (HRNet-OCR, openseg, openseg pytorch-1.7, mmseg) load exactly.

With the fixtures of ``shared/data/released_checkpoints`` (full-size files in each family's
layout, and the outputs of each family's own model code on a test image): convert with the
project's converter, load through ``DetectionCheckpointer`` into the model of the released
config, and compare logits at stride 4 and at full resolution. The key lists check that every
released key maps and that a missing, extra or misshaped key fails naming it.

No R101 file or fixture exists: the R101 mappings are tested on state dicts built here from the
project's own R101 models by renaming keys in reverse (the authors' names written out in this
file, independently of the converter's tables).
"""

import json
import re
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from conftest import load_tool
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from panoptic_ocr.checkpoint.convert import Conversion, ConversionError, check_state_dict
from panoptic_ocr.checkpoint.released import (
    build_target_model,
    convert_released,
    convert_released_checkpoint,
    default_config,
    detect_variant,
    rename_released,
)
from panoptic_ocr.config import setup_cfg
from panoptic_ocr.utils.safe_write import OutputExistsError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "released_checkpoints"
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "make_fixture_checkpoint.py").is_file(),
    reason=f"released-checkpoint fixtures not found at {FIXTURES}",
)

# family -> (converter kind, released file name)
FAMILIES = {
    "hrnet_ocr": ("hrnet_ocr", "hrnet_ocr_cs_8162_torch11.pth"),
    "openseg": ("openseg", "hrnet_w48_ocr_1_latest.pth"),
    "openseg_torchbn": ("openseg", "cityscapes_hrnet_w48_ocr_rmi_paddle_lr2x_run1_latest.pth"),
    "mmseg": ("mmseg", "ocrnet_hr48_512x1024_160k_cityscapes_20200602_191037-dfbf1b0c.pth"),
}
F64_TOL = 1e-4  # README: a correct conversion reaches ~4e-14 in float64
F32_TOL = 1e-3  # README: float32 differs from the float64 reference by <= 3.5e-5


def _make_checkpoint():
    sys.path.insert(0, str(FIXTURES))
    try:
        from make_fixture_checkpoint import make_checkpoint
    finally:
        sys.path.remove(str(FIXTURES))
    return make_checkpoint


@pytest.fixture(scope="module")
def released_files(tmp_path_factory) -> Dict[str, Path]:
    """Each family's fixture checkpoint (seed 0), generated once, lazily."""
    root = tmp_path_factory.mktemp("released")
    made: Dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            path = root / FAMILIES[family][1]
            _make_checkpoint()(family, 0, str(path))
            made[family] = path
        return made[family]

    return get


@pytest.fixture(scope="module")
def converted_files(released_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    made: Dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            out = root / f"{family}.pth"
            kind, source = FAMILIES[family][0], str(released_files(family))
            if family == "openseg":  # once through the command line (its main, in-process)
                assert load_tool("convert_pretrained").main([kind, source, str(out)]) == 0
            else:
                convert_released_checkpoint(kind, source, str(out))
            made[family] = out
        return made[family]

    return get


def _model(config_file: str):
    cfg = setup_cfg(config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    return build_model(cfg)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_released_logits_match(family, converted_files):
    """Converted weights, loaded as train_net.py --eval-only does (no missing or unexpected
    keys), reproduce the family's own logits at stride 4 (main and aux) and at full resolution."""
    kind, _ = FAMILIES[family]
    ref = np.load(FIXTURES / f"{family}_expected.npz")
    path = converted_files(family)
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = setup_cfg(default_config(family), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg)

    checkpointer = DetectionCheckpointer(model)
    results = []
    load_model = checkpointer._load_model  # record what load() reports (it only logs it)
    checkpointer._load_model = lambda checkpoint: (
        results.append(load_model(checkpoint)) or results[-1]
    )
    checkpointer.load(str(path))  # as train_net.py --eval-only MODEL.WEIGHTS <path>
    (incompatible,) = results
    assert (
        not incompatible.missing_keys
        and not incompatible.unexpected_keys
        and not incompatible.incorrect_shapes
    )
    assert state["matching_heuristics"] is False

    image = torch.from_numpy(ref["image"]).permute(2, 0, 1).double()  # RGB, 0..255
    if str(ref["channel_order"]) == "BGR":
        image = image.flip(0)
    expected4 = torch.from_numpy(ref["logits_stride4"])
    expected_aux = torch.from_numpy(ref["aux_logits_stride4"])
    expected_full = torch.from_numpy(ref["logits_full"]).double()

    # The stride-4 logits are read by hooks during the full-resolution forward (one pass).
    captured = {}
    model.sem_seg_head.predictor.register_forward_hook(
        lambda m, i, o: captured.__setitem__("main", o)
    )
    model.sem_seg_head.aux_branch.register_forward_hook(
        lambda m, i, o: captured.__setitem__("aux", o)
    )
    errors = {}
    for dtype, tol in ((torch.float64, F64_TOL), (torch.float32, F32_TOL)):
        model.to(dtype).eval()
        # Detectron2 keeps PIXEL_MEAN/STD as float32 buffers (123.675 is not a float32): in
        # float64 use the exact values, as the reference does.
        model.pixel_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=dtype).view(-1, 1, 1)
        model.pixel_std = torch.tensor(cfg.MODEL.PIXEL_STD, dtype=dtype).view(-1, 1, 1)
        with torch.no_grad():
            full = model([{"image": image.to(dtype), "height": 64, "width": 128}])[0]["sem_seg"]
        err4 = (captured["main"][0].double() - expected4).abs().max().item()
        err_aux = (captured["aux"][0].double() - expected_aux).abs().max().item()
        err_full = (full.double() - expected_full).abs().max().item()
        errors[str(dtype)] = (err4, err_aux, err_full)
        assert err4 < tol and err_aux < tol and err_full < tol, f"{family} {dtype}: {errors}"
    print(f"\n{family}: max |logit error| (stride 4, aux stride 4, full): {errors}")


@pytest.fixture(scope="module")
def targets():
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = build_target_model(default_config(variant))
        return cache[variant]

    return get


def _key_list(family: str) -> Dict[str, torch.Tensor]:
    spec = json.loads((FIXTURES / f"{family}_keys.json").read_text())
    return {k: torch.empty(shape, device="meta") for k, shape in spec["keys"].items()}


def _check(variant: str, state_dict, target):
    renamed, sources, unmatched = rename_released(variant, state_dict, target)
    check_state_dict(Conversion(renamed, sources, unmatched, target, "model", "test", ""))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_full_key_lists_map_strictly(family, targets):
    """Every key of the released file maps; a missing, an extra and a misshaped key each fail
    naming the key."""
    kind, _ = FAMILIES[family]
    keys = _key_list(family)
    assert detect_variant(kind, keys) == family
    target = targets(family)
    renamed, _, unmatched = rename_released(family, keys, target)
    assert not unmatched
    assert set(renamed) == {k for k in target if not k.endswith("num_batches_tracked")}
    _check(family, keys, target)

    network = [
        k for k in keys if not k.startswith("loss.") and not k.endswith("num_batches_tracked")
    ]
    for victim in (
        network[0],
        next(k for k in network if "running_var" in k and "aux" not in k),
        network[-1],
    ):
        missing = dict(keys)
        del missing[victim]
        with pytest.raises(ConversionError) as e:
            _check(family, missing, target)
        assert "without weights" in str(e.value)

    extra = dict(keys)
    bogus = (
        "module." if kind == "openseg" else "model." if kind == "hrnet_ocr" else ""
    ) + "bogus_head.0.weight"
    extra[bogus] = torch.empty(3, device="meta")
    with pytest.raises(ConversionError, match=re.escape(bogus)):
        _check(family, extra, target)

    misshaped = dict(keys)
    victim = next(
        k
        for k in network
        if k.endswith("cls_head.weight") or k.endswith("decode_head.1.conv_seg.weight")
    )
    misshaped[victim] = torch.empty(18, 512, 1, 1, device="meta")
    with pytest.raises(ConversionError, match=re.escape(victim)):
        _check(family, misshaped, target)

    bias = (
        next(k for k in network if re.search(r"(conv3x3(_ocr)?\.0|aux_head\.0)\.bias$", k))
        if kind != "mmseg"
        else None
    )
    if bias is not None:  # a folded bias whose shape differs is reported too
        bad = dict(keys)
        bad[bias] = torch.empty(7, device="meta")
        with pytest.raises(ConversionError, match=re.escape(bias)):
            _check(family, bad, target)


def test_converter_refuses_to_overwrite_and_wrong_kind(released_files, tmp_path):
    source = released_files("mmseg")
    out = tmp_path / "out.pth"
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        convert_released_checkpoint("mmseg", str(source), str(out))
    assert out.read_bytes() == b"keep"
    with pytest.raises(ConversionError, match="not an HRNet-OCR checkpoint"):
        convert_released_checkpoint("hrnet_ocr", str(source), str(tmp_path / "other.pth"))
    assert not (tmp_path / "other.pth").exists()


# ------------------------------------------------------------------------------------------
# R101 variants: state dicts in the authors' names, built from the project's model in reverse
# ------------------------------------------------------------------------------------------
_G = "sem_seg_head.context.object_context.g.weight"


def _reverse_backbone(name: str, variant: str) -> str:
    rest = name[len("backbone.") :]
    m = re.fullmatch(r"stem\.conv([1-3])\.(norm\.)?(\w+)", rest)
    if m:
        c, norm, p = int(m.group(1)), m.group(2), m.group(3)
        if variant == "openseg_r101":
            return f"backbone.resinit.{'bn' if norm else 'conv'}{c}.{p}"
        return f"backbone.stem.{3 * (c - 1) + (1 if norm else 0)}.{p}"
    m = re.fullmatch(r"res([2-5])\.(\d+)\.(conv[1-3]|shortcut)\.(norm\.)?(\w+)", rest)
    s, b, layer, norm, p = int(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
    if layer == "shortcut":
        layer = "downsample.1" if norm else "downsample.0"
    elif norm:
        layer = "bn" + layer[-1]
    return f"backbone.layer{s - 1}.{b}.{layer}.{p}"


_OPENSEG_R101_NAMES = {  # project module -> (authors' conv, authors' BN)
    "sem_seg_head.context.conv_in": ("conv_3x3.0", "conv_3x3.1"),
    "sem_seg_head.context.object_context.phi.0": (
        "spatial_ocr_head.object_context_block.f_pixel.0",
        "spatial_ocr_head.object_context_block.f_pixel.1",
    ),
    "sem_seg_head.context.object_context.phi.1": (
        "spatial_ocr_head.object_context_block.f_pixel.2",
        "spatial_ocr_head.object_context_block.f_pixel.3",
    ),
    "sem_seg_head.context.object_context.psi.0": (
        "spatial_ocr_head.object_context_block.f_object.0",
        "spatial_ocr_head.object_context_block.f_object.1",
    ),
    "sem_seg_head.context.object_context.psi.1": (
        "spatial_ocr_head.object_context_block.f_object.2",
        "spatial_ocr_head.object_context_block.f_object.3",
    ),
    "sem_seg_head.context.object_context.delta": (
        "spatial_ocr_head.object_context_block.f_down.0",
        "spatial_ocr_head.object_context_block.f_down.1",
    ),
    "sem_seg_head.context.object_context.rho": (
        "spatial_ocr_head.object_context_block.f_up.0",
        "spatial_ocr_head.object_context_block.f_up.1",
    ),
    "sem_seg_head.context.object_context.g": (
        "spatial_ocr_head.conv_bn_dropout.0",
        "spatial_ocr_head.conv_bn_dropout.1",
    ),
    "sem_seg_head.aux_branch.layers.0": ("dsn_head.0", "dsn_head.1"),
    "sem_seg_head.aux_branch.layers.2": ("dsn_head.3", None),
    "sem_seg_head.predictor": ("head", None),
}
_B = "decode_head.1.object_context_block"
_MMSEG_R101_NAMES = {
    "sem_seg_head.context.conv_in": (
        "decode_head.1.bottleneck.conv",
        "decode_head.1.bottleneck.bn",
    ),
    "sem_seg_head.context.object_context.phi.0": (
        f"{_B}.query_project.0.conv",
        f"{_B}.query_project.0.bn",
    ),
    "sem_seg_head.context.object_context.phi.1": (
        f"{_B}.query_project.1.conv",
        f"{_B}.query_project.1.bn",
    ),
    "sem_seg_head.context.object_context.psi.0": (
        f"{_B}.key_project.0.conv",
        f"{_B}.key_project.0.bn",
    ),
    "sem_seg_head.context.object_context.psi.1": (
        f"{_B}.key_project.1.conv",
        f"{_B}.key_project.1.bn",
    ),
    "sem_seg_head.context.object_context.delta": (
        f"{_B}.value_project.conv",
        f"{_B}.value_project.bn",
    ),
    "sem_seg_head.context.object_context.rho": (f"{_B}.out_project.conv", f"{_B}.out_project.bn"),
    "sem_seg_head.context.object_context.g": (f"{_B}.bottleneck.conv", f"{_B}.bottleneck.bn"),
    "sem_seg_head.aux_branch.layers.0": ("decode_head.0.convs.0.conv", "decode_head.0.convs.0.bn"),
    "sem_seg_head.aux_branch.layers.2": ("decode_head.0.conv_seg", None),
    "sem_seg_head.predictor": ("decode_head.1.conv_seg", None),
}


def _authors_state_dict(
    model_state: Dict[str, torch.Tensor], variant: str
) -> Dict[str, torch.Tensor]:
    """The project's R101 model's weights under the authors' names (openseg: ``module.``,
    head convs with a bias before BN, no num_batches_tracked; mmseg: no bias, counters kept)."""
    names = _OPENSEG_R101_NAMES if variant == "openseg_r101" else _MMSEG_R101_NAMES
    prefix = "module." if variant == "openseg_r101" else ""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, value in model_state.items():
        if name.endswith("num_batches_tracked") and variant == "openseg_r101":
            continue
        if name.startswith("backbone."):
            out[prefix + _reverse_backbone(name, variant)] = value
            continue
        module = next(m for m in names if name.startswith(m + "."))
        conv, bn = names[module]
        param = name[len(module) + 1 :]
        if param.startswith("norm."):
            out[f"{prefix}{bn}.{param[5:]}"] = value
        else:
            if name == _G:
                half = value.shape[1] // 2
                value = torch.cat([value[:, half:], value[:, :half]], dim=1)
            out[f"{prefix}{conv}.{param}"] = value
    if (
        variant == "openseg_r101"
    ):  # biases before BN: BN(Wx + b) with mean mu + b == BN(Wx) with mean mu
        for module, (conv, bn) in names.items():
            if bn is not None:
                mean = out[f"{prefix}{bn}.running_mean"]
                bias = torch.randn(mean.shape, generator=gen) * 0.05
                out[f"{prefix}{conv}.bias"] = bias
                out[f"{prefix}{bn}.running_mean"] = mean + bias
    return out


@pytest.mark.parametrize("variant,kind", [("openseg_r101", "openseg"), ("mmseg_r101", "mmseg")])
def test_r101_variants_round_trip(variant, kind):
    """Synthetic R101 checkpoints in the authors' names convert back to the project's weights,
    checked against the whole model of the released R101 config."""
    config = default_config(variant)
    model = _model(config)
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.running_mean, -0.1, 0.1)
            torch.nn.init.uniform_(m.running_var, 0.8, 1.2)
    expected = model.state_dict()
    authors = _authors_state_dict(expected, variant)
    assert detect_variant(kind, authors) == variant
    converted, detected, _ = convert_released(kind, authors)
    assert detected == variant
    assert set(converted) == {k for k in expected if not k.endswith("num_batches_tracked")}
    for k, v in converted.items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=1e-6, msg=k)
    model.load_state_dict(converted, strict=False)
    missing = [
        k
        for k in model.load_state_dict(converted, strict=False).missing_keys
        if not k.endswith("num_batches_tracked")
    ]
    assert not missing

    incomplete = dict(authors)
    del incomplete[
        "module.head.weight" if variant == "openseg_r101" else "decode_head.1.conv_seg.weight"
    ]
    with pytest.raises(ConversionError, match="without weights"):
        convert_released(kind, incomplete)
    if variant == "openseg_r101":  # a bias before BN is required where the code always has one
        incomplete = dict(authors)
        del incomplete["module.conv_3x3.0.bias"]
        with pytest.raises(ConversionError, match=re.escape("module.conv_3x3.0.bias")):
            convert_released(kind, incomplete)


def test_behaviour_keys_default_to_todays_model():
    """The new keys' defaults build exactly the previous model: ReLU (F.relu itself), no
    align_corners, Detectron2's DeepLab dilations and stem; the released R101 configs contract."""
    from torch.nn import functional as F

    from panoptic_ocr.modeling.layers import head_activation

    assert head_activation("relu") is F.relu
    assert head_activation("leaky_relu", 0.01)(torch.tensor([-1.0])).item() == pytest.approx(-0.01)
    with pytest.raises(ValueError, match="MODEL.SEM_SEG_HEAD.ACTIVATION"):
        head_activation("gelu")

    cfg = setup_cfg(
        str(REPO / "configs/cityscapes/semantic/ocr_R101_os8_bs8_crop769_poly_40k.yaml"),
        ["MODEL.WEIGHTS", ""],
    )
    assert not cfg.MODEL.SEM_SEG_HEAD.ALIGN_CORNERS and cfg.MODEL.SEM_SEG_HEAD.ACTIVATION == "relu"
    assert not cfg.MODEL.RESNETS.CONTRACT_DILATION and not cfg.MODEL.RESNETS.STEM_POOL_CEIL_MODE
    from detectron2.modeling import META_ARCH_REGISTRY

    def built(config_cfg):
        with torch.device("meta"):
            return META_ARCH_REGISTRY.get(config_cfg.MODEL.META_ARCHITECTURE)(config_cfg)

    default = built(cfg)
    assert default.sem_seg_head.align_corners is False
    assert default.sem_seg_head.context.conv_in.activation is F.relu
    assert [default.backbone.res4[i].conv2.dilation for i in (0, 1)] == [(2, 2), (2, 2)]
    assert type(default.backbone.stem).__name__ == "BasicStem"

    for variant, stem in (("openseg_r101", "CeilPoolDeepLabStem"), ("mmseg_r101", "DeepLabStem")):
        released = built(setup_cfg(default_config(variant), ["MODEL.WEIGHTS", ""]))
        assert [released.backbone.res4[i].conv2.dilation for i in (0, 1)] == [(1, 1), (2, 2)]
        assert [released.backbone.res5[i].conv2.dilation for i in (0, 1, 2)] == [
            (2, 2),
            (4, 4),
            (4, 4),
        ]
        assert type(released.backbone.stem).__name__ == stem
        assert released.sem_seg_head.align_corners is (variant == "openseg_r101")
