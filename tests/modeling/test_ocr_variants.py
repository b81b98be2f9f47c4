"""OCR ablations (paper Table 1), the OCR* oracle, the coarse-to-fine baselines (supplementary
Table 1) and the inference path (reduced precision, BatchNorm folding)."""

import copy

import numpy as np
import pytest
import torch
from conftest import make_cfg, randomise_batchnorm
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import Backbone, build_model, build_sem_seg_head
from detectron2.utils.events import EventStorage
from PIL import Image
from torch.nn import functional as F

from panoptic_ocr.data import SemanticDatasetMapper
from panoptic_ocr.modeling import (
    OCRSemanticSegmentor,
    fold_batchnorm,
    prepare_for_inference,
    resolve_inference_dtype,
)
from panoptic_ocr.modeling.contexts import OCRContext
from panoptic_ocr.modeling.heads import OCRHead

NUM_CLASSES = 5
STRIDE = 4
HEADS = [
    "OCRNoRegionSupervisionHead",
    "OCRDoubleAttentionRelationHead",
    "OCRACFRelationHead",
    "OCRGroundTruthHead",
    "CoarseOnlyHead",
    "FineOnlyHead",
    "LabelEnsembleHead",
    "LabelRefinementHead",
]
# Whether each head returns an auxiliary loss (loss_sem_seg_aux) in training.
AUX_LOSS = {name: name != "CoarseOnlyHead" for name in HEADS}
TOY_CONFIGS = {
    "OCRNoRegionSupervisionHead": (
        "configs/toy_scenes/ocr_no_region_sup_R18_os16_toy_scenes_600it.yaml"
    ),
    "OCRDoubleAttentionRelationHead": (
        "configs/toy_scenes/ocr_da_relations_R18_os16_toy_scenes_600it.yaml"
    ),
    "OCRACFRelationHead": "configs/toy_scenes/ocr_acf_relations_R18_os16_toy_scenes_600it.yaml",
    "OCRGroundTruthHead": "configs/toy_scenes/ocr_gt_oracle_R18_os16_toy_scenes_600it.yaml",
    "CoarseOnlyHead": "configs/toy_scenes/coarse_only_R18_os16_toy_scenes_600it.yaml",
    "FineOnlyHead": "configs/toy_scenes/fine_only_R18_os16_toy_scenes_600it.yaml",
    "LabelEnsembleHead": "configs/toy_scenes/label_ensemble_R18_os16_toy_scenes_600it.yaml",
    "LabelRefinementHead": "configs/toy_scenes/label_refinement_R18_os16_toy_scenes_600it.yaml",
}
SMALL_MODEL = [
    "MODEL.RESNETS.NORM",
    "BN",
    "MODEL.SEM_SEG_HEAD.NORM",
    "BN",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    32,
    "MODEL.OCR.MID_CHANNELS",
    32,
    "MODEL.OCR.KEY_CHANNELS",
    16,
]


@pytest.fixture(autouse=True, scope="module")
def _single_thread(single_thread):
    """These tensors are tiny: run on one thread (conftest's ``single_thread``)."""


def _head(name: str, **opts):
    cfg = make_cfg(
        opts=[
            "MODEL.SEM_SEG_HEAD.NAME",
            name,
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            NUM_CLASSES,
            "MODEL.SEM_SEG_HEAD.NORM",
            "BN",
            "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
            8,
            "MODEL.OCR.MID_CHANNELS",
            16,
            "MODEL.OCR.KEY_CHANNELS",
            8,
            *[x for kv in opts.items() for x in kv],
        ]
    )
    shapes = {
        "res4": ShapeSpec(channels=12, stride=STRIDE),
        "res5": ShapeSpec(channels=20, stride=STRIDE),
    }
    return build_sem_seg_head(cfg, shapes)


def _data(batch: int, h: int, w: int, seed: int = 0):
    """Features and labels that the features predict: labels are a fixed function of res5."""
    g = torch.Generator().manual_seed(seed)
    feats = {
        "res4": torch.randn(batch, 12, h, w, generator=g),
        "res5": torch.randn(batch, 20, h, w, generator=g),
    }
    coarse = torch.einsum(
        "kc,nchw->nkhw", torch.randn(NUM_CLASSES, 20, generator=g), feats["res5"]
    ).argmax(1)
    targets = coarse.repeat_interleave(STRIDE, 1).repeat_interleave(STRIDE, 2)
    targets[:, :3, :5] = 255
    return feats, targets


@pytest.mark.parametrize("name", HEADS)
def test_head_shapes_and_gradients(name):
    torch.manual_seed(0)
    head = _head(name)
    for batch in (1, 2):
        feats, targets = _data(batch, 33, 47)
        head.train()
        out, losses = head(feats, targets)
        assert out is None
        expected = {"loss_sem_seg", "loss_sem_seg_aux"} if AUX_LOSS[name] else {"loss_sem_seg"}
        assert set(losses) == expected
        head.zero_grad()
        sum(losses.values()).backward()
        for pname, param in head.named_parameters():
            # Every parameter is used (DDP without find_unused_parameters needs this).
            assert param.grad is not None, f"{name}: {pname} got no gradient"
            assert torch.isfinite(param.grad).all(), f"{name}: {pname}"
        head.eval()
        with torch.no_grad():
            logits, extra = head(feats, targets if name == "OCRGroundTruthHead" else None)
        assert extra == {}
        assert logits.shape == (batch, NUM_CLASSES, 33 * STRIDE, 47 * STRIDE)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", HEADS)
def test_head_training_reduces_loss(name):
    torch.manual_seed(0)
    head = _head(name)
    feats, targets = _data(2, 9, 13, seed=1)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.03)
    head.train()
    history = []
    for _ in range(12):
        _, losses = head(feats, targets)
        loss = losses["loss_sem_seg"]
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.85 * history[0], history


def test_no_region_supervision_regions_get_no_loss():
    head = _head("OCRNoRegionSupervisionHead")
    feats, targets = _data(1, 9, 13)
    _, losses = head(feats, targets)
    losses["loss_sem_seg_aux"].backward()
    # The auxiliary loss reaches only the plain stage-3 classifier, not the soft regions.
    assert all(p.grad is None for p in head.region_branch.parameters())
    assert all(p.grad is None for p in head.context.parameters())
    assert all(p.grad is not None for p in head.aux_branch.parameters())


def test_relation_schemes():
    feats, _ = _data(1, 6, 7)
    acf = _head("OCRACFRelationHead").eval()
    da = _head("OCRDoubleAttentionRelationHead").eval()
    with torch.no_grad():
        x = acf.context.conv_in(feats["res5"])
        regions = torch.randn(1, NUM_CLASSES, 6, 7)
        w = acf.context.relations(x, regions)
        torch.testing.assert_close(w, regions.flatten(2).transpose(1, 2).softmax(-1))
        w_da = da.context.relations(x, regions)
        expected = da.context.relation_logits(x).flatten(2).transpose(1, 2).softmax(-1)
        torch.testing.assert_close(w_da, expected)
    assert acf.context.object_context.phi is None and da.context.object_context.psi is None


def test_label_ensemble_is_weighted_sum():
    head = _head("LabelEnsembleHead", **{"MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT": 0.3}).eval()
    feats, _ = _data(1, 5, 6)
    with torch.no_grad():
        final, coarse = head.layers(feats)
        fine = head.predictor(head.context(feats["res5"]))
    torch.testing.assert_close(final, 0.7 * fine + 0.3 * coarse)


def test_head_config_errors():
    with pytest.raises(ValueError, match="AUX_IN_FEATURE"):
        _head("LabelRefinementHead", **{"MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE": ""})
    with pytest.raises(ValueError, match="ensemble_weight"):
        _head("LabelEnsembleHead", **{"MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT": 1.5})
    with pytest.raises(ValueError, match="needs semantic targets"):
        _head("OCRGroundTruthHead").eval()(_data(1, 4, 4)[0], None)


# ----------------------------------------------------------------------------------------------
# Whole models from the example configs; OCR* through the meta-architecture
# ----------------------------------------------------------------------------------------------
def _inputs(batch: int, size: int = 64, labels: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        d = {
            "image": torch.randint(
                0, 256, (3, size, size - 8), generator=g, dtype=torch.uint8
            ).float(),
            "height": size,
            "width": size - 8,
        }
        if labels:
            d["sem_seg"] = torch.randint(0, 7, (size, size - 8), generator=g)
        out.append(d)
    return out


@pytest.mark.parametrize("name", HEADS)
def test_toy_config_builds_trains_and_infers(name):
    cfg = make_cfg(TOY_CONFIGS[name], SMALL_MODEL)
    assert cfg.MODEL.SEM_SEG_HEAD.NAME == name
    torch.manual_seed(0)
    model = build_model(cfg)
    with EventStorage():
        losses = model(_inputs(1))
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(_inputs(1, labels=name == "OCRGroundTruthHead"))
    assert out[0]["sem_seg"].shape == (7, 64, 56)


def test_oracle_needs_labels_at_inference():
    cfg = make_cfg(TOY_CONFIGS["OCRGroundTruthHead"], SMALL_MODEL)
    assert cfg.INPUT.LOAD_SEM_SEG_IN_TEST
    model = build_model(cfg).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="INPUT.LOAD_SEM_SEG_IN_TEST"):
        model(_inputs(1, labels=False))
    inputs = _inputs(1)
    with torch.no_grad():
        a = model(inputs)[0]["sem_seg"]
        inputs[0]["sem_seg"] = torch.roll(inputs[0]["sem_seg"], 20, dims=1)
        b = model(inputs)[0]["sem_seg"]
    assert not torch.allclose(a, b)  # the prediction reads the labels


def test_mapper_loads_labels_at_inference_on_request(tmp_path):
    image = np.random.RandomState(0).randint(0, 256, (10, 12, 3)).astype(np.uint8)
    label = np.random.RandomState(1).randint(0, 3, (10, 12)).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(label).save(tmp_path / "a_label.png")
    record = {
        "file_name": str(tmp_path / "a.png"),
        "sem_seg_file_name": str(tmp_path / "a_label.png"),
        "height": 10,
        "width": 12,
    }
    cfg = make_cfg("configs/quickstart/Base-toy-scenes-semantic.yaml")
    assert "sem_seg" not in SemanticDatasetMapper(cfg, is_train=False)(record)
    cfg.INPUT.LOAD_SEM_SEG_IN_TEST = True
    out = SemanticDatasetMapper(cfg, is_train=False)(record)
    assert out["sem_seg"].dtype == torch.int64 and torch.equal(
        out["sem_seg"], torch.from_numpy(label).long()
    )


# ----------------------------------------------------------------------------------------------
# Inference: reduced precision and BatchNorm folding
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_ocr_model():
    """The quickstart R18 OCR segmentor at reduced widths, fixed seed, random BN statistics and
    a classifier re-initialised with std 0.1 (instead of 0.001) so logits are O(1)."""
    cfg = make_cfg("configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml", SMALL_MODEL)
    torch.manual_seed(0)
    model = build_model(cfg)
    randomise_batchnorm(model, spread=0.1)
    torch.nn.init.normal_(model.sem_seg_head.predictor.weight, std=0.1)
    return model.eval()


def test_inference_dtype_resolution():
    assert resolve_inference_dtype("float32", "cpu") is None
    assert resolve_inference_dtype("float16", "cuda") == torch.float16
    assert resolve_inference_dtype("auto", "cuda") == torch.float16
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert resolve_inference_dtype("auto", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="INFERENCE_DTYPE"):
        resolve_inference_dtype("int8", "cpu")
    with pytest.raises(ValueError, match="INFERENCE_DTYPE"):
        build_model(
            make_cfg(
                "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml",
                SMALL_MODEL + ["MODEL.INFERENCE_DTYPE", "half"],
            )
        )


_COLOURS = torch.tensor(
    [
        [60.0, 60, 60],
        [200, 60, 60],
        [60, 200, 60],
        [60, 60, 200],
        [200, 200, 60],
        [200, 60, 200],
        [60, 200, 200],
    ]
)


def _scene(seed: int, size: int):
    """A synthetic image: up to 6 coloured squares (classes 1-6, one colour each) on class 0."""
    g = torch.Generator().manual_seed(seed)
    label = torch.zeros(size, size, dtype=torch.long)
    for k in range(1, 7):
        y, x = torch.randint(0, size - size // 4, (2,), generator=g).tolist()
        side = int(torch.randint(size // 5, size // 2, (1,), generator=g))
        label[y : y + side, x : x + side] = k
    image = (_COLOURS[label].permute(2, 0, 1) + torch.randn(3, size, size, generator=g) * 10).clamp(
        0, 255
    )
    return {"image": image, "sem_seg": label, "height": size, "width": size}


class _TinyBackbone(Backbone):
    """Three 3x3 conv-BN-ReLU layers: "res4" and "res5" at stride 4 (fast to train on CPU)."""

    def __init__(self):
        super().__init__()

        def layer(cin, cout, stride=1, dilation=1):
            return Conv2d(
                cin,
                cout,
                3,
                stride=stride,
                padding=dilation,
                dilation=dilation,
                bias=False,
                norm=get_norm("BN", cout),
                activation=F.relu,
            )

        self.conv1, self.conv2, self.conv3 = (
            layer(3, 16, 2),
            layer(16, 24, 2),
            layer(24, 32, dilation=2),
        )

    def forward(self, x):
        res4 = self.conv2(self.conv1(x))
        return {"res4": res4, "res5": self.conv3(res4)}

    def output_shape(self):
        return {"res4": ShapeSpec(channels=24, stride=4), "res5": ShapeSpec(channels=32, stride=4)}


@pytest.fixture(scope="module")
def trained_tiny_ocr():
    """A small OCR segmentor trained 30 steps on 4 synthetic scenes: its logits are well
    separated (median top-2 margin of several units) and span several classes."""
    torch.manual_seed(0)
    backbone = _TinyBackbone()
    head = OCRHead(
        backbone.output_shape(),
        num_classes=7,
        in_feature="res5",
        aux_in_feature="res4",
        aux_channels=16,
        context=OCRContext(32, mid_channels=32, key_channels=16),
    )
    model = OCRSemanticSegmentor(
        backbone=backbone,
        sem_seg_head=head,
        pixel_mean=[128.0] * 3,
        pixel_std=[64.0] * 3,
        size_divisibility=-1,
    )
    data = [_scene(i, 48) for i in range(4)]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    with EventStorage():
        for _ in range(30):
            loss = sum(model(data).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_bfloat16_predictions_agree_with_float32(trained_tiny_ocr, channels_last):
    model = copy.deepcopy(trained_tiny_ocr)
    inputs = [{k: v for k, v in _scene(10 + i, 96).items() if k != "sem_seg"} for i in range(2)]
    with torch.no_grad():
        ref = torch.stack([o["sem_seg"] for o in model(inputs)])
        model.inference_dtype, model.inference_channels_last = "bfloat16", channels_last
        low = torch.stack([o["sem_seg"] for o in model(inputs)])
    assert low.dtype == torch.float32 and low.shape == ref.shape == (2, 7, 96, 96)
    top2 = ref.topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1]).median() > 1.0  # well separated logits ...
    assert ref.argmax(1).unique().numel() >= 3  # ... of a non-trivial prediction
    agreement = (low.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agreement >= 0.995, agreement
    assert trained_tiny_ocr.inference_dtype == "float32"


def test_bfloat16_resnet_ocr_smoke(small_ocr_model):
    """The R18 OCR model through the bfloat16 channels-last path: float32 logits close to the
    float32 ones. Random deep features give near-tied logits, so agreement is only checked
    loosely here; the well-separated case is the test above."""
    model = copy.deepcopy(small_ocr_model)
    inputs = _inputs(1, size=64, labels=False, seed=3)
    with torch.no_grad():
        ref = model(inputs)[0]["sem_seg"]
        model.inference_dtype, model.inference_channels_last = "auto", True
        low = model(inputs)[0]["sem_seg"]
    assert low.dtype == torch.float32
    assert (low.argmax(0) == ref.argmax(0)).float().mean() >= 0.98
    torch.testing.assert_close(low, ref, rtol=0.0, atol=0.05 * ref.abs().max().item())


def test_fold_batchnorm_matches_eval(small_ocr_model):
    model = copy.deepcopy(small_ocr_model)
    inputs = _inputs(2, labels=False, seed=4)
    folded = fold_batchnorm(copy.deepcopy(model))
    convs = [m for m in folded.modules() if isinstance(m, Conv2d)]
    assert convs and all(m.norm is None for m in convs)
    with torch.no_grad():
        ref = torch.stack([o["sem_seg"] for o in model(inputs)])
        out = torch.stack([o["sem_seg"] for o in folded(inputs)])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_fold_frozen_batchnorm():
    from detectron2.layers import FrozenBatchNorm2d

    conv = Conv2d(3, 4, kernel_size=3, padding=1, bias=True, norm=FrozenBatchNorm2d(4))
    conv.norm.weight.uniform_(0.5, 1.5)
    conv.norm.bias.normal_()
    conv.norm.running_mean.normal_()
    conv.norm.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 5, 6)
    with torch.no_grad():
        ref = conv(x)
        out = fold_batchnorm(torch.nn.Sequential(conv))(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_trainer_evaluates_a_folded_copy_and_training_continues(small_ocr_model, monkeypatch):
    from detectron2.engine import DefaultTrainer

    from panoptic_ocr.engine import Trainer

    model = copy.deepcopy(small_ocr_model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    monkeypatch.setattr(
        DefaultTrainer, "test", classmethod(lambda cls, cfg, m, evaluators=None: seen.append(m))
    )
    cfg = make_cfg(
        opts=[
            "TEST.FOLD_BATCHNORM",
            True,
            "MODEL.INFERENCE_CHANNELS_LAST",
            True,
            "MODEL.INFERENCE_DTYPE",
            "bfloat16",
        ]
    )
    Trainer.test(cfg, model)
    evaluated = seen[0]
    assert evaluated is not model and not evaluated.training
    assert all(m.norm is None for m in evaluated.modules() if isinstance(m, Conv2d))
    stem = evaluated.backbone.stem.conv1
    assert (
        stem.weight.is_contiguous(memory_format=torch.channels_last)
        and stem.weight.dtype == torch.bfloat16
    )
    # The inference copy (bf16 weights, folded BN) predicts what the original predicts in bf16.
    inputs = _inputs(1, labels=False, seed=5)
    reference = copy.deepcopy(model).eval()
    reference.inference_dtype = "bfloat16"
    assert evaluated.inference_dtype == "bfloat16" and evaluated.inference_channels_last
    with torch.no_grad():
        out, ref = evaluated(inputs)[0]["sem_seg"], reference(inputs)[0]["sem_seg"]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0.0, atol=0.05 * ref.abs().max().item())
    # The training model is untouched: same tensors, BN layers, mode and layout ...
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.backbone.stem.conv1.norm is not None
    assert model.backbone.stem.conv1.weight.is_contiguous()
    assert model.backbone.stem.conv1.weight.dtype == torch.float32
    # ... and it still trains.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with EventStorage():
        loss = sum(model(_inputs(2)).values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(
        before["sem_seg_head.predictor.weight"], model.sem_seg_head.predictor.weight
    )
    # Without the options the model itself is evaluated.
    assert prepare_for_inference(model) is model
