"""openseg's released SegFix checkpoints (``SegFix_HRNet`` on HRNet-W48) convert exactly into
``SegFixModel`` (``tools/convert_pretrained.py segfix``).

No released SegFix file or fixture is available here: the checkpoints are built from the
project's own ``SegFixModel`` by renaming keys in reverse (openseg's names written out in this
file, independently of the converter's tables) and wrapped as openseg's
``ModuleRunner.save_net`` saves them: ``{"config_dict", "state_dict"}`` of the DataParallel model
(``module.`` prefix); openseg master's InPlaceABNSync modules carry no ``num_batches_tracked``,
the torchsyncbn ones do and put the heads' BN one level deeper (``Sequential(BN, ReLU)``).
Numerics at HRNet-W18 (a config deriving from the released one) through the command line; the
W48 key lists on the meta device.
"""

import re
from pathlib import Path
from typing import Dict

import pytest
import torch
from conftest import load_tool, randomise_batchnorm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_model
from torch.nn import functional as F

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

RELEASED_NAME = "segfix_hrnet_hrnet48_segfix_loss_iter80000_1_latest.pth"
# variant -> openseg's bn_type of the heads
VARIANTS = {"openseg_segfix": "inplace_abn", "openseg_segfix_torchbn": "torchsyncbn"}

# SegFixModel module -> (openseg conv, openseg BN by bn_type), lib/models/nets/segfix.py:
# mask_head / dir_head = Sequential(Conv2d 1x1 no bias, ModuleHelper.BNReLU, Conv2d 1x1 no bias).
_OPENSEG_SEGFIX_NAMES = {
    "boundary_head.0": (
        "mask_head.0",
        {"inplace_abn": "mask_head.1", "torchsyncbn": "mask_head.1.0"},
    ),
    "boundary_head.1": ("mask_head.2", None),
    "direction_head.0": (
        "dir_head.0",
        {"inplace_abn": "dir_head.1", "torchsyncbn": "dir_head.1.0"},
    ),
    "direction_head.1": ("dir_head.2", None),
}


def _openseg_state_dict(model_state: Dict[str, torch.Tensor], bn_type: str):
    """The project's SegFixModel weights under openseg's names, as ``net.state_dict()`` of
    openseg's DataParallel ``SegFix_HRNet`` has them."""
    out = {}
    for name, value in model_state.items():
        if name.endswith("num_batches_tracked") and bn_type == "inplace_abn":
            continue  # InPlaceABNSync keeps no counter
        if name.startswith("backbone."):  # HRNet: openseg's names are the project's
            out[f"module.{name}"] = value
            continue
        module = next(m for m in _OPENSEG_SEGFIX_NAMES if name.startswith(m + "."))
        conv, bns = _OPENSEG_SEGFIX_NAMES[module]
        param = name[len(module) + 1 :]
        if param.startswith("norm."):
            out[f"module.{bns[bn_type]}.{param[5:]}"] = value
        else:
            out[f"module.{conv}.{param}"] = value
    return out


def _save_openseg(path: Path, state_dict, bn_type: str, backbone: str = "hrnet48") -> None:
    """As openseg's ``ModuleRunner.save_net``: the configer's dict and the state dict."""
    config_dict = {
        "network": {"backbone": backbone, "model_name": "segfix_hrnet", "bn_type": bn_type},
        "loss": {"loss_type": "segfix_loss"},
        "iters": 80000,
    }
    torch.save({"config_dict": config_dict, "state_dict": state_dict}, path)


def _small_config(tmp_path: Path, variant: str) -> str:
    """The released config at HRNet-W18 (same layout, smaller tensors)."""
    path = tmp_path / f"{variant}_w18.yaml"
    path.write_text(f'_BASE_: "{default_config(variant)}"\nMODEL:\n  HRNET:\n    WIDTH: 18\n')
    return str(path)


def _load_reporting(model, path: Path):
    checkpointer = DetectionCheckpointer(model)
    results = []
    load_model = checkpointer._load_model  # record what load() reports (it only logs it)
    checkpointer._load_model = lambda ckpt: results.append(load_model(ckpt)) or results[-1]
    checkpointer.load(str(path))  # as train_net.py --eval-only MODEL.WEIGHTS <path>
    (incompatible,) = results
    return incompatible


def test_released_configs_reproduce_openseg_behaviour():
    """SegFixModel on HRNetV2-W48 "concat" (openseg's four branches, align_corners=True), BGR
    input normalised as openseg does, whole images, the "segfix" mapper; LeakyReLU(0.01) after
    the InPlaceABN heads, ReLU after the torchsyncbn ones."""
    for variant, activation in (
        ("openseg_segfix", "leaky_relu"),
        ("openseg_segfix_torchbn", "relu"),
    ):
        cfg = setup_cfg(default_config(variant), ["MODEL.WEIGHTS", ""])
        assert cfg.MODEL.META_ARCHITECTURE == "SegFixModel"
        assert cfg.MODEL.BACKBONE.NAME == "build_hrnet_backbone" and cfg.MODEL.HRNET.WIDTH == 48
        assert cfg.MODEL.HRNET.ALIGN_CORNERS and cfg.MODEL.SEGFIX.ALIGN_CORNERS
        assert list(cfg.MODEL.SEGFIX.IN_FEATURES) == ["concat"]
        assert cfg.MODEL.SEGFIX.MID_CHANNELS == 256
        assert cfg.MODEL.SEGFIX.ACTIVATION == activation
        assert cfg.INPUT.FORMAT == "BGR" and cfg.INPUT.DATASET_MAPPER_NAME == "segfix"
        assert cfg.INPUT.MIN_SIZE_TEST == 0 and not cfg.TEST.SLIDING_WINDOW.ENABLED
        assert not cfg.TEST.AUG.ENABLED
        assert list(cfg.MODEL.PIXEL_MEAN) == pytest.approx([123.675, 116.28, 103.53])
        assert list(cfg.MODEL.PIXEL_STD) == pytest.approx([58.395, 57.12, 57.375])
        assert cfg.DATASETS.TEST == ("cityscapes_fine_sem_seg_val_checked",)
        with torch.device("meta"):
            model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
        act = model.boundary_head[0].activation
        assert act(torch.tensor([-1.0])).item() == pytest.approx(
            -0.01 if activation == "leaky_relu" else 0.0
        )


def test_hrnet_concat_is_openseg_fusion(tmp_path):
    """The backbone's "concat" is SegFix_HRNet's fusion: branches 2-4 upsampled bilinearly with
    align_corners=True to branch 1's size, concatenated after branch 1."""
    cfg = setup_cfg(
        _small_config(tmp_path, "openseg_segfix"),
        [
            "MODEL.WEIGHTS",
            "",
            "MODEL.DEVICE",
            "cpu",
            "MODEL.HRNET.OUT_FEATURES",
            '["concat", "branch1", "branch2", "branch3", "branch4"]',
        ],
    )
    backbone = build_backbone(cfg)
    randomise_batchnorm(backbone)
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 61, 90, generator=torch.Generator().manual_seed(0)))
    first = out["branch1"]
    expected = torch.cat(
        [first]
        + [
            F.interpolate(
                out[f"branch{i}"], size=first.shape[-2:], mode="bilinear", align_corners=True
            )
            for i in (2, 3, 4)
        ],
        dim=1,
    )
    assert out["concat"].shape[1] == 15 * 18
    torch.testing.assert_close(out["concat"], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_through_the_command_line(variant, tmp_path):
    """An openseg-layout file (W18) converts through ``convert_pretrained.py segfix``, loads as
    ``train_net.py --eval-only`` loads weights (nothing missing or unexpected) and gives the
    source model's boundary and direction outputs exactly."""
    bn_type = VARIANTS[variant]
    config = _small_config(tmp_path, variant)
    cfg = setup_cfg(config, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    source_model = build_model(cfg)
    randomise_batchnorm(source_model, seed=1)
    source_model.eval()
    expected = source_model.state_dict()
    authors = _openseg_state_dict(expected, bn_type)
    assert "module.mask_head.1.weight" in authors or "module.mask_head.1.0.weight" in authors
    assert any(k.endswith("num_batches_tracked") for k in authors) == (bn_type != "inplace_abn")
    source, output = tmp_path / RELEASED_NAME, tmp_path / "openseg_segfix_w18.pth"
    _save_openseg(source, authors, bn_type, backbone="hrnet18")

    tool = load_tool("convert_pretrained")
    assert tool.main(["segfix", str(source), str(output), "--config-file", config]) == 0
    state = torch.load(output, map_location="cpu", weights_only=True)
    assert state["matching_heuristics"] is False
    assert "openseg" in state["__author__"]
    assert set(state["model"]) == {k for k in expected if not k.endswith("num_batches_tracked")}
    for k, v in state["model"].items():
        assert torch.equal(v, expected[k]), k

    model = build_model(cfg)
    incompatible = _load_reporting(model, output)
    assert not (
        incompatible.missing_keys or incompatible.unexpected_keys or incompatible.incorrect_shapes
    )
    model.eval()
    image = torch.randint(0, 256, (3, 70, 100), generator=torch.Generator().manual_seed(2))
    inputs = [{"image": image.float(), "height": 70, "width": 100}]
    with torch.no_grad():
        (got,) = model(inputs)
        (want,) = source_model(inputs)
        logits = model.predict(torch.randn(1, 3, 64, 96))
    assert got["segfix_boundary"].shape == (70, 100)
    assert got["segfix_direction"].shape == (8, 70, 100)
    assert logits[0].shape == (1, 2, 16, 24) and logits[1].shape == (1, 8, 16, 24)
    for key in ("segfix_boundary", "segfix_direction"):
        assert torch.equal(got[key], want[key]), key


@pytest.fixture(scope="module")
def targets():
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = build_target_model(default_config(variant))
        return cache[variant]

    return get


def _check(variant, state_dict, target):
    renamed, sources, unmatched = rename_released(variant, state_dict, target)
    check_state_dict(Conversion(renamed, sources, unmatched, target, "model", "test", ""))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_w48_key_list_maps_strictly(variant, targets):
    """At W48 (meta tensors): every openseg key maps to the released config's model and fills
    it; a missing, an extra and a misshaped key each fail naming the key."""
    target = targets(variant)
    keys = _openseg_state_dict(target, VARIANTS[variant])
    assert detect_variant("segfix", keys) == variant
    renamed, sources, unmatched = rename_released(variant, keys, target)
    assert not unmatched
    assert set(renamed) == {k for k in target if not k.endswith("num_batches_tracked")}
    assert sources["boundary_head.1.weight"] == "module.mask_head.2.weight"
    assert sources["direction_head.0.norm.running_var"] == (
        "module.dir_head.1.running_var"
        if variant == "openseg_segfix"
        else "module.dir_head.1.0.running_var"
    )
    assert tuple(keys["module.mask_head.0.weight"].shape) == (256, 720, 1, 1)
    _check(variant, keys, target)

    bn = "module.mask_head.1" if variant == "openseg_segfix" else "module.mask_head.1.0"
    for victim, target_key in (
        ("module.mask_head.2.weight", "boundary_head.1.weight"),
        (f"{bn}.running_var", "boundary_head.0.norm.running_var"),
        (
            "module.backbone.stage4.2.fuse_layers.0.3.0.weight",
            "backbone.stage4.2.fuse_layers.0.3.0",
        ),
    ):
        missing = {k: v for k, v in keys.items() if k != victim}
        with pytest.raises(ConversionError, match="without weights") as e:
            _check(variant, missing, target)
        assert target_key in str(e.value)

    for bogus in ("module.mask_head.3.weight", "module.edge_head.0.weight"):
        extra = dict(keys, **{bogus: torch.empty(3, device="meta")})
        with pytest.raises(ConversionError, match=re.escape(bogus)):
            _check(variant, extra, target)

    victim = "module.dir_head.2.weight"
    misshaped = dict(keys, **{victim: torch.empty(9, 256, 1, 1, device="meta")})
    with pytest.raises(ConversionError, match=re.escape(victim)):
        _check(variant, misshaped, target)


def test_wrong_kind_is_refused_and_nothing_is_written(tmp_path, targets):
    """An openseg OCR file is not a SegFix one, and a SegFix file is not an OCR one."""
    ocr = {
        "module.conv3x3.0.weight": torch.zeros(512, 720, 3, 3),
        "module.conv3x3.1.weight": torch.zeros(512),
    }
    with pytest.raises(ConversionError, match="not an openseg SegFix checkpoint"):
        detect_variant("segfix", ocr)
    source, out = tmp_path / "hrnet_w48_ocr_1_latest.pth", tmp_path / "out.pth"
    torch.save({"config_dict": {}, "state_dict": ocr}, source)
    with pytest.raises(ConversionError, match="not an openseg SegFix checkpoint"):
        convert_released_checkpoint("segfix", str(source), str(out))
    assert not out.exists()

    segfix = _openseg_state_dict(targets("openseg_segfix"), "inplace_abn")
    with pytest.raises(ConversionError, match="not an openseg OCR checkpoint"):
        detect_variant("openseg", segfix)
    with pytest.raises(ConversionError, match="not an openseg SegFix checkpoint"):
        convert_released("segfix", {k[len("module.") :]: v for k, v in segfix.items()})


def _hrnet2x_keys() -> Dict[str, torch.Tensor]:
    """A few keys of openseg's SegFix_HRNet on ``hrnet2x20`` (HighResolutionNext, from
    lib/models/backbones/hrnet/hrnet_backbone.py and hrnet_config.py HRNET2X_20): one stem conv,
    transition0 / stage1 (Bottleneck 32, 64), stages 2-4 of 3, 4 and 5 branches (20 ... 320),
    heads on 20 + 40 + 80 + 160 + 320 = 620 channels; InPlaceABNSync."""

    def e(*shape):
        return torch.empty(shape, device="meta")

    b = "module.backbone."
    keys = {f"{b}conv1.weight": e(64, 3, 3, 3)}
    for p in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{b}bn1.{p}"] = e(64)
    keys[f"{b}transition0.0.0.weight"] = e(128, 64, 3, 3)
    keys[f"{b}stage1.0.branches.0.0.conv1.weight"] = e(32, 128, 1, 1)
    keys[f"{b}stage2.0.branches.2.0.conv1.weight"] = e(80, 80, 3, 3)
    keys[f"{b}stage4.2.branches.4.3.conv2.weight"] = e(320, 320, 3, 3)
    for head, out in (("mask_head", 2), ("dir_head", 8)):
        keys[f"module.{head}.0.weight"] = e(256, 620, 1, 1)
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"module.{head}.1.{p}"] = e(256)
        keys[f"module.{head}.2.weight"] = e(out, 256, 1, 1)
    return keys


def test_hrnet2x_file_is_refused_clearly(tmp_path, capsys):
    """openseg's HRNet2x-W20 SegFix files need a backbone the project lacks: refused, naming
    what is missing, before any model is built; through the command line too (exit 1)."""
    keys = _hrnet2x_keys()
    with pytest.raises(ConversionError, match="HRNet2x backbones are not supported here") as e:
        detect_variant("segfix", keys)
    message = str(e.value)
    for name in (
        "module.backbone.conv2.weight",
        "module.backbone.layer1.0.conv1.weight",
        "module.backbone.transition0.0.0.weight",
        "620 channels",
    ):
        assert name in message, name

    # Read from the heads' input alone (31 x width), even without HRNet2x backbone keys.
    heads_only = {k: v for k, v in keys.items() if "backbone" not in k}
    with pytest.raises(ConversionError, match="HRNet2x backbones are not supported here"):
        detect_variant("segfix", heads_only)

    source = tmp_path / "segfix_hrnet_hrnext20_segfix_loss_1_latest.pth"
    out = tmp_path / "out.pth"
    real = {k: torch.zeros(v.shape) for k, v in keys.items()}
    _save_openseg(source, real, "inplace_abn", backbone="hrnet2x20")
    assert load_tool("convert_pretrained").main(["segfix", str(source), str(out)]) == 1
    assert "HRNet2x backbones are not supported here" in capsys.readouterr().err
    assert not out.exists()
