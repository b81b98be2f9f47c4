"""HRNetV2 and dilated MobileNetV2 backbones, and the ImageNet-checkpoint converter.

Shapes at odd input sizes, gradients, norms, pinned parameter counts, OCR on HRNet through
``build_model``, and converter round trips (random weights: nothing is downloaded).
"""

import contextlib
import logging
import math
import re
from typing import Dict

import pytest
import torch
import torchvision
from conftest import load_tool, make_cfg
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from detectron2.utils.events import EventStorage
from torch import nn

from panoptic_ocr.checkpoint import convert as cp
from panoptic_ocr.modeling import conv_norm_relu
from panoptic_ocr.modeling.backbone import HRNet
from panoptic_ocr.utils.safe_write import OutputExistsError

torch.manual_seed(0)

H, W = 65, 97  # odd on purpose: every stride-2 layer rounds up


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _hrnet_cfg(width: int = 18, *opts):
    return make_cfg(
        opts=[
            "MODEL.BACKBONE.NAME",
            "build_hrnet_backbone",
            "MODEL.BACKBONE.FREEZE_AT",
            0,
            "MODEL.HRNET.WIDTH",
            width,
            *opts,
        ]
    )


def _mobilenet_cfg(*opts):
    return make_cfg(
        opts=[
            "MODEL.BACKBONE.NAME",
            "build_mobilenetv2_backbone",
            "MODEL.BACKBONE.FREEZE_AT",
            0,
            *opts,
        ]
    )


def _check_outputs(backbone, outputs: Dict[str, torch.Tensor], batch: int) -> None:
    """Every output matches ``output_shape()``: channels, and ``ceil(size / stride)``."""
    shapes = backbone.output_shape()
    assert set(outputs) == set(shapes)
    for name, spec in shapes.items():
        expected = (batch, spec.channels, math.ceil(H / spec.stride), math.ceil(W / spec.stride))
        assert tuple(outputs[name].shape) == expected, name


def _check_gradients(backbone, outputs: Dict[str, torch.Tensor]) -> None:
    sum(o.square().mean() for o in outputs.values()).backward()
    no_grad = [n for n, p in backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad
    assert all(p.grad.abs().sum() > 0 for p in backbone.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------
# HRNet
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 2])
def test_hrnet_w18_shapes_and_gradients(batch):
    features = ["concat", "branch1", "branch2", "branch3", "branch4"]
    backbone = build_backbone(_hrnet_cfg(18, "MODEL.HRNET.OUT_FEATURES", features)).train()
    shapes = backbone.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == {
        "concat": (270, 4),
        "branch1": (18, 4),
        "branch2": (36, 8),
        "branch3": (72, 16),
        "branch4": (144, 32),
    }
    outputs = backbone(torch.randn(batch, 3, H, W))
    _check_outputs(backbone, outputs, batch)
    # "concat" is branch 1 followed by the other branches upsampled to its size.
    assert torch.equal(outputs["concat"][:, :18], outputs["branch1"])
    _check_gradients(backbone, outputs)


def test_hrnet_default_is_w48_concat_720():
    cfg = make_cfg()
    assert (cfg.MODEL.HRNET.WIDTH, cfg.MODEL.HRNET.NORM) == (48, "BN")
    assert list(cfg.MODEL.HRNET.OUT_FEATURES) == ["concat"]
    cfg.MODEL.BACKBONE.NAME = "build_hrnet_backbone"
    shape = build_backbone(cfg).output_shape()
    assert {k: (s.channels, s.stride) for k, s in shape.items()} == {"concat": (720, 4)}


def test_hrnet_authors_parameter_names():
    names = set(HRNet(18).state_dict())
    for expected in [
        "conv1.weight",
        "bn1.running_var",
        "conv2.weight",
        "bn2.weight",
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "transition1.0.0.weight",
        "transition1.1.0.0.weight",
        "transition2.2.0.1.weight",
        "transition3.3.0.0.weight",
        "stage2.0.branches.1.3.conv2.weight",
        "stage2.0.fuse_layers.0.1.0.weight",
        "stage2.0.fuse_layers.1.0.0.1.weight",
        "stage3.3.fuse_layers.2.0.1.0.weight",
        "stage4.2.fuse_layers.3.0.2.1.running_mean",
        "stage4.2.fuse_layers.0.3.1.weight",
    ]:
        assert expected in names, expected
    prefixes = {n.split(".")[0] for n in names}
    assert prefixes == {
        "conv1",
        "bn1",
        "conv2",
        "bn2",
        "layer1",
        "transition1",
        "stage2",
        "transition2",
        "stage3",
        "transition3",
        "stage4",
    }


@pytest.mark.parametrize(
    "norm, norm_type", [("SyncBN", nn.SyncBatchNorm), ("naiveSyncBN", NaiveSyncBatchNorm)]
)
def test_hrnet_sync_norms(norm, norm_type):
    backbone = build_backbone(_hrnet_cfg(18, "MODEL.HRNET.NORM", norm)).eval()
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, norm_type) for m in norms)
    with torch.no_grad():  # SyncBatchNorm runs on CPU in eval mode only
        assert backbone(torch.randn(1, 3, H, W))["concat"].shape == (1, 270, 17, 25)


def test_hrnet_freeze_at_2_freezes_stem_and_stage1():
    backbone = build_backbone(_hrnet_cfg(18, "MODEL.BACKBONE.FREEZE_AT", 2))
    for name, p in backbone.named_parameters():
        assert p.requires_grad == (name.split(".")[0] not in {"conv1", "conv2", "layer1"}), name
    assert isinstance(backbone.bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.layer1[0].bn3, FrozenBatchNorm2d)


def test_pinned_parameter_counts():
    cfg = _hrnet_cfg(48)
    assert _num_params(build_backbone(cfg)) == 65_325_120  # HRNetV2-W48
    assert _num_params(build_backbone(_hrnet_cfg(18))) == 9_562_260  # HRNetV2-W18
    assert _num_params(build_backbone(_mobilenet_cfg())) == 1_811_712  # features[0:18]


def _ocr_on_hrnet_cfg(width: int, num_classes: int, *opts):
    return _hrnet_cfg(
        width,
        "MODEL.META_ARCHITECTURE",
        "OCRSemanticSegmentor",
        "MODEL.SEM_SEG_HEAD.NAME",
        "OCRHead",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES",
        ["concat"],
        "MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE",
        "concat",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        num_classes,
        "MODEL.SEM_SEG_HEAD.NORM",
        "BN",
        *opts,
    )


def test_hrnet_w48_ocr_parameter_count():
    """Paper size, Cityscapes' K = 19. The auxiliary branch with 720 hidden channels is the
    authors' openseg layout (3x3 conv); the HRNet-OCR repository uses a 1x1 conv there, which
    gives the ~70.4M the paper reports."""
    model = build_model(_ocr_on_hrnet_cfg(48, 19, "MODEL.SEM_SEG_HEAD.AUX_CHANNELS", 720))
    assert _num_params(model.sem_seg_head) == 9_193_526
    assert _num_params(model) == 74_518_646
    model.sem_seg_head.aux_branch.layers[0] = conv_norm_relu(720, 720, "BN", kernel_size=1)
    assert _num_params(model) == 70_371_446
    assert round(_num_params(model) / 1e6, 1) == 70.4


def test_ocr_head_on_hrnet_through_build_model():
    model = build_model(
        _ocr_on_hrnet_cfg(
            18,
            5,
            "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
            32,
            "MODEL.OCR.MID_CHANNELS",
            32,
            "MODEL.OCR.KEY_CHANNELS",
            16,
        )
    )
    assert model.size_divisibility == 4
    inputs = [
        {
            "image": torch.randint(0, 256, (3, H, W)).float(),
            "sem_seg": torch.randint(0, 5, (H, W)),
            "height": H,
            "width": W,
        },
        {
            "image": torch.randint(0, 256, (3, H - 8, W)).float(),
            "sem_seg": torch.randint(0, 5, (H - 8, W)),
            "height": H - 8,
            "width": W,
        },
    ]
    model.train()
    with EventStorage():
        losses = model(inputs)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        results = model(inputs[:1])
    assert results[0]["sem_seg"].shape == (5, H, W)


# ------------------------------------------------------------------------------------------
# MobileNetV2
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 2])
def test_mobilenetv2_shapes_and_gradients(batch):
    stages = ["stage1", "stage2", "stage3", "stage4", "stage5"]
    backbone = build_backbone(_mobilenet_cfg("MODEL.MOBILENETV2.OUT_FEATURES", stages)).train()
    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == {
        "stage1": (16, 2),
        "stage2": (24, 4),
        "stage3": (32, 8),
        "stage4": (96, 8),
        "stage5": (320, 8),
    }
    outputs = backbone(torch.randn(batch, 3, H, W))
    _check_outputs(backbone, outputs, batch)
    _check_gradients(backbone, outputs)


def test_mobilenetv2_defaults_and_dilation():
    cfg = _mobilenet_cfg()
    assert list(cfg.MODEL.MOBILENETV2.OUT_FEATURES) == ["stage4", "stage5"]
    backbone = build_backbone(cfg)
    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == {
        "stage4": (96, 8),
        "stage5": (320, 8),
    }
    depthwise = {
        i: m
        for i, block in enumerate(backbone.features)
        for m in block.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1
    }
    assert [depthwise[i].dilation[0] for i in range(1, 18)] == [1] * 6 + [2] * 7 + [4] * 4
    assert all(depthwise[i].stride == (1, 1) for i in range(7, 18))
    # Its modules are torchvision's own.
    assert all(
        isinstance(b, torchvision.models.mobilenetv2.InvertedResidual)
        for b in backbone.features[1:]
    )


@pytest.mark.parametrize("output_stride", [16, 32])
def test_mobilenetv2_output_stride(output_stride):
    backbone = build_backbone(_mobilenet_cfg("MODEL.MOBILENETV2.OUTPUT_STRIDE", output_stride))
    strides = {k: s.stride for k, s in backbone.output_shape().items()}
    assert strides == {"stage4": 16, "stage5": output_stride}
    with torch.no_grad():
        _check_outputs(backbone, backbone.eval()(torch.randn(1, 3, H, W)), 1)


def test_mobilenetv2_norms_and_truncation():
    backbone = build_backbone(_mobilenet_cfg("MODEL.MOBILENETV2.NORM", "SyncBN"))
    assert all(
        isinstance(m, nn.SyncBatchNorm)
        for m in backbone.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )
    frozen = build_backbone(
        _mobilenet_cfg(
            "MODEL.MOBILENETV2.NORM", "FrozenBN", "MODEL.MOBILENETV2.OUT_FEATURES", ["stage3"]
        )
    )
    assert len(frozen.features) == 7  # nothing past the deepest requested stage
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())


def test_builders_registered():
    for name in ("build_hrnet_backbone", "build_mobilenetv2_backbone"):
        assert BACKBONE_REGISTRY.get(name) is not None


# ------------------------------------------------------------------------------------------
# Converter
# ------------------------------------------------------------------------------------------
def _randomised(state_dict):
    """Distinct random values, so a tensor loaded into the wrong place would show."""
    return {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in state_dict.items()}


class _Holder(nn.Module):
    """A model that keeps its backbone under ``backbone``, as Detectron2's meta-archs do."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone


@contextlib.contextmanager
def _checkpointer_warnings():
    """Warnings of fvcore's checkpointer (missing/unexpected keys, shape mismatches), caught
    with a handler of our own: the logger may not propagate after a ``default_setup``."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    log = logging.getLogger("fvcore.common.checkpoint")
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


def _load_exactly(backbone: nn.Module, path: str, expected: Dict[str, torch.Tensor]) -> None:
    """Load ``path`` with ``DetectionCheckpointer`` and check that it fits ``backbone``
    exactly and that every tensor is ``expected[backbone name]``."""
    holder = _Holder(backbone)
    with _checkpointer_warnings() as warnings:
        DetectionCheckpointer(holder).load(path)
    assert not warnings, [r.getMessage() for r in warnings]
    state = backbone.state_dict()
    targets = [k for k in state if not k.endswith("num_batches_tracked")]
    assert sorted(expected) == sorted(targets)
    for name in targets:
        assert torch.equal(state[name], expected[name]), name


@pytest.mark.parametrize("depth, norm", [(101, "BN"), (18, "FrozenBN")])
def test_convert_torchvision_resnet(tmp_path, depth, norm):
    source = _randomised(getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict())
    torch.save(source, tmp_path / "tv.pth")
    cp.convert_checkpoint("resnet", str(tmp_path / "tv.pth"), str(tmp_path / "d2.pkl"))

    cfg = make_cfg(
        opts=[
            "MODEL.BACKBONE.NAME",
            "build_dilated_resnet_backbone",
            "MODEL.BACKBONE.FREEZE_AT",
            0,
            "MODEL.RESNETS.DEPTH",
            depth,
            "MODEL.RESNETS.NORM",
            norm,
            "MODEL.RESNETS.STEM_TYPE",
            "basic",
            "MODEL.RESNETS.STEM_OUT_CHANNELS",
            64,
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            64 if depth < 50 else 256,
            "MODEL.RESNETS.STRIDE_IN_1X1",
            False,
            "MODEL.RESNETS.OUT_FEATURES",
            ["res4", "res5"],
            "MODEL.RESNETS.RES4_DILATION",
            2,
            "MODEL.RESNETS.RES5_DILATION",
            4,
        ]
    )
    expected = {
        cp._rename_resnet_key(k): v
        for k, v in source.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    _load_exactly(build_backbone(cfg), str(tmp_path / "d2.pkl"), expected)


def test_convert_torchvision_mobilenetv2(tmp_path):
    source = _randomised(torchvision.models.mobilenet_v2(weights=None).state_dict())
    torch.save(source, tmp_path / "tv.pth")
    cp.convert_checkpoint("mobilenetv2", str(tmp_path / "tv.pth"), str(tmp_path / "d2.pth"))
    stages = ["stage2", "stage3", "stage4", "stage5"]
    backbone = build_backbone(_mobilenet_cfg("MODEL.MOBILENETV2.OUT_FEATURES", stages))
    expected = {
        k: v
        for k, v in source.items()
        if not k.startswith(("features.18.", "classifier."))
        and not k.endswith("num_batches_tracked")
    }
    _load_exactly(backbone, str(tmp_path / "d2.pth"), expected)


def _authors_hrnet_checkpoint(width: int) -> Dict[str, torch.Tensor]:
    """A checkpoint in the HRNet authors' ImageNet naming: the backbone's own names plus
    classification-only modules (their names as in the authors' checkpoints)."""
    source = _randomised(HRNet(width).state_dict())
    source.update(
        {
            "incre_modules.0.0.conv1.weight": torch.randn(32, 18, 1, 1),
            "incre_modules.0.0.bn1.num_batches_tracked": torch.tensor(5),
            "downsamp_modules.0.0.weight": torch.randn(256, 128, 3, 3),
            "final_layer.0.weight": torch.randn(2048, 1024, 1, 1),
            "final_layer.1.running_mean": torch.randn(2048),
            "classifier.weight": torch.randn(1000, 2048),
            "classifier.bias": torch.randn(1000),
        }
    )
    return source


def test_convert_hrnet_authors_checkpoint(tmp_path):
    source = _authors_hrnet_checkpoint(18)
    torch.save(source, tmp_path / "hrnet_w18_imagenet.pth")
    source_path, out_path = str(tmp_path / "hrnet_w18_imagenet.pth"), str(tmp_path / "w18.pkl")
    cp.convert_checkpoint("hrnet", source_path, out_path)  # width 18 read
    expected = {
        k: v
        for k, v in source.items()
        if not k.startswith(cp._HRNET_CLASSIFICATION_ONLY) and not k.endswith("num_batches_tracked")
    }
    _load_exactly(build_backbone(_hrnet_cfg(18)), out_path, expected)


def test_converter_errors_list_the_keys(tmp_path, run_main):
    source = dict(torchvision.models.resnet18(weights=None).state_dict())
    source["layer2.0.conv7.weight"] = torch.zeros(1)  # no rule for it
    source["layer4.2.conv1.weight"] = torch.zeros(512, 512, 3, 3)  # R18 has no 3rd block
    del source["layer3.1.bn2.bias"]
    with pytest.raises(cp.ConversionError) as error:
        cp.convert_state_dict("resnet", source, depth=18)
    message = str(error.value)
    assert "layer2.0.conv7.weight" in message
    assert "layer4.2.conv1.weight (-> res5.2.conv1.weight)" in message
    assert "res4.1.conv2.norm.bias" in message and "--allow-missing" in message

    del source["layer2.0.conv7.weight"], source["layer4.2.conv1.weight"]
    converted = cp.convert_state_dict("resnet", source, allow_missing=True)
    assert "backbone.res4.1.conv2.norm.bias" not in converted
    assert "backbone.res4.1.conv2.norm.weight" in converted

    # Shape mismatches: a W18 checkpoint forced into W32, through the command line (its main).
    torch.save(_authors_hrnet_checkpoint(18), tmp_path / "w18.pth")
    argv = ["hrnet", tmp_path / "w18.pth", tmp_path / "out.pkl", "--width", "32"]
    status, _, err = run_main(load_tool("convert_pretrained").main, argv)
    assert status == 1, err[-3000:]
    assert "error: cannot convert the checkpoint" in err and "Traceback" not in err
    assert "shape mismatches" in err and "match no backbone key" not in err
    assert "transition1.0.0.weight" in err
    assert not (tmp_path / "out.pkl").exists()


def test_converter_refuses_to_overwrite_unless_asked(tmp_path):
    source = _randomised(torchvision.models.mobilenet_v2(weights=None).state_dict())
    torch.save(source, tmp_path / "tv.pth")
    output = tmp_path / "d2.pkl"
    output.write_bytes(b"an earlier conversion")
    with pytest.raises(OutputExistsError, match=re.escape(str(output))):
        cp.convert_checkpoint("mobilenetv2", str(tmp_path / "tv.pth"), str(output))
    assert output.read_bytes() == b"an earlier conversion"
    converted = cp.convert_checkpoint(
        "mobilenetv2", str(tmp_path / "tv.pth"), str(output), overwrite=True
    )
    assert sorted(cp.load_checkpoint(str(output))) == sorted(converted)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries
