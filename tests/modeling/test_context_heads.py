"""The context-head zoo (PPM, ASPP, DANet, CC-attention, self-attention, double attention) and
OCR: building from config, shapes at odd sizes, training and inference, pinned paper-size
parameter counts, a smoke run of tools/benchmark_heads.py, and the registry with the config
nodes the context modules declare."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, make_cfg
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_sem_seg_head

import panoptic_ocr
from panoptic_ocr.modeling.contexts import (
    REGIONS,
    ContextModule,
    CrissCrossAttention,
    context_class,
    context_config_nodes,
)
from panoptic_ocr.modeling.contexts import registry as context_registry
from panoptic_ocr.modeling.named_registry import NamedRegistry

NUM_CLASSES = 5
STRIDE = 8
# (head name, extra config options): every head, and the second DANet/CC definition.
HEADS = [
    ("PPMHead", []),
    ("ASPPHead", []),
    ("DANetHead", []),
    ("DANetHead", ["MODEL.DANET.VARIANT", "compact"]),
    ("CCAttentionHead", []),
    ("CCAttentionHead", ["MODEL.CC_ATTENTION.VARIANT", "compact"]),
    ("SelfAttentionHead", []),
    ("DoubleAttentionHead", []),
    ("OCRHead", []),
]
HEAD_IDS = [name + ("-" + opts[1] if opts else "") for name, opts in HEADS]
# Narrow channels so that the whole file runs in seconds on 2 CPU cores.
SMALL = [
    "MODEL.SEM_SEG_HEAD.NORM",
    "BN",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    str(NUM_CLASSES),
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "8",
    "MODEL.PPM.BRANCH_CHANNELS",
    "8",
    "MODEL.PPM.OUT_CHANNELS",
    "16",
    "MODEL.ASPP.CHANNELS",
    "16",
    "MODEL.SELF_ATTENTION.MID_CHANNELS",
    "16",
    "MODEL.SELF_ATTENTION.KEY_CHANNELS",
    "8",
    "MODEL.DOUBLE_ATTENTION.MID_CHANNELS",
    "16",
    "MODEL.DOUBLE_ATTENTION.KEY_CHANNELS",
    "8",
    "MODEL.DOUBLE_ATTENTION.NUM_REGIONS",
    "4",
    "MODEL.DANET.MID_CHANNELS",
    "16",
    "MODEL.DANET.QK_CHANNELS",
    "4",
    "MODEL.CC_ATTENTION.MID_CHANNELS",
    "16",
    "MODEL.CC_ATTENTION.QK_CHANNELS",
    "4",
    "MODEL.OCR.MID_CHANNELS",
    "16",
    "MODEL.OCR.KEY_CHANNELS",
    "8",
]
SMALL_SHAPES = {
    "res4": ShapeSpec(channels=24, stride=STRIDE),
    "res5": ShapeSpec(channels=32, stride=STRIDE),
}
PAPER_SHAPES = {
    "res4": ShapeSpec(channels=1024, stride=8),
    "res5": ShapeSpec(channels=2048, stride=8),
}


def build_small_head(name, opts=()):
    cfg = make_cfg(opts=["MODEL.SEM_SEG_HEAD.NAME", name] + SMALL + list(opts))
    torch.manual_seed(0)
    return build_sem_seg_head(cfg, SMALL_SHAPES)


def features(batch, h, w):
    return {name: torch.randn(batch, spec.channels, h, w) for name, spec in SMALL_SHAPES.items()}


@pytest.mark.parametrize("name,opts", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("batch", [1, 2])
def test_train_losses_and_gradients_at_odd_size(name, opts, batch):
    head = build_small_head(name, opts).train()
    # Non-zero attention weights, so that the gradient reaches the query/key convs too.
    for param_name, param in head.named_parameters():
        if param_name.endswith("gamma"):
            param.data.fill_(0.5)
    h, w = 33, 47
    targets = torch.randint(0, NUM_CLASSES, (batch, h * STRIDE, w * STRIDE))
    targets[:, :5] = 255
    out, losses = head(features(batch, h, w), targets)
    assert out is None
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    for param_name, param in head.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {param_name}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {param_name}"


@pytest.mark.parametrize("name,opts", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("batch", [1, 2])
def test_eval_logits_at_input_resolution(name, opts, batch):
    head = build_small_head(name, opts).eval()
    with torch.no_grad():
        logits, losses = head(features(batch, 33, 47))
    assert losses == {}
    assert logits.shape == (batch, NUM_CLASSES, 33 * STRIDE, 47 * STRIDE)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name,opts", HEADS, ids=HEAD_IDS)
def test_context_accepts_any_feature_size(name, opts):
    head = build_small_head(name, opts).eval()
    for h, w in [(1, 1), (2, 9), (7, 3), (13, 6)]:
        x = torch.randn(2, 32, h, w)
        regions = torch.randn(2, NUM_CLASSES, h, w)
        with torch.no_grad():
            out = head.context(x, regions) if head.context.consumes == REGIONS else head.context(x)
        assert out.shape[0] == 2 and out.shape[2:] == (h, w), (name, h, w, out.shape)


def test_criss_cross_attention_matches_dense_masked_attention():
    torch.manual_seed(0)
    cca = CrissCrossAttention(channels=6, qk_channels=3).eval()
    cca.gamma.data.fill_(1.0)
    n, h, w = 2, 5, 7
    x = torch.randn(n, 6, h, w)
    with torch.no_grad():
        out = cca(x)
        # Dense reference: every pixel attends to the pixels of its row and column (once each).
        q, k, v = (m(x).flatten(2) for m in (cca.query, cca.key, cca.value))
        energy = torch.einsum("nci,ncj->nij", q, k)
        rows = torch.arange(h).repeat_interleave(w)
        cols = torch.arange(w).repeat(h)
        same_cross = (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])
        weights = energy.masked_fill(~same_cross, float("-inf")).softmax(dim=-1)
        expected = torch.einsum("nij,ncj->nci", weights, v).view(n, 6, h, w) + x
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


# Parameters of the paper-size context modules (2048-channel input, config defaults), measured.
# Table 4: PPM 23.1M, ASPP 15.5M, DANet 10.6M, CC 10.6M, SA 10.5M, DA 10.2M, OCR 10.5M.
PAPER_PARAMS = [
    ("PPMHead", [], 23_073_280),
    ("ASPPHead", [], 15_534_848),
    ("DANetHead", [], 23_925_378),
    ("DANetHead", ["MODEL.DANET.VARIANT", "compact"], 10_553_986),
    ("CCAttentionHead", [], 23_924_353),
    ("CCAttentionHead", ["MODEL.CC_ATTENTION.VARIANT", "compact"], 10_555_009),
    ("SelfAttentionHead", [], 10_490_368),
    ("DoubleAttentionHead", [], 10_292_608),
    ("OCRHead", ["MODEL.OCR.PROJ_LAYERS", "1"], 10_490_368),
    ("OCRHead", [], 10_622_464),
]


@pytest.mark.parametrize(
    "name,opts,expected",
    PAPER_PARAMS,
    ids=[f"{n}-{o[1] if o else 'default'}" for n, o, _ in PAPER_PARAMS],
)
def test_paper_size_context_parameter_count(name, opts, expected):
    cfg = make_cfg(
        opts=["MODEL.SEM_SEG_HEAD.NAME", name, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "19"] + opts
    )
    head = build_sem_seg_head(cfg, PAPER_SHAPES)
    assert sum(p.numel() for p in head.context.parameters()) == expected


def test_unknown_variant_is_rejected_with_the_choices():
    for name, key in [
        ("DANetHead", "MODEL.DANET.VARIANT"),
        ("CCAttentionHead", "MODEL.CC_ATTENTION.VARIANT"),
    ]:
        with pytest.raises(ValueError, match="original"):
            build_small_head(name, [key, "512"])


def test_benchmark_json_smoke():
    cmd = [
        sys.executable,
        str(REPO_ROOT / "tools" / "benchmark_heads.py"),
        "--input",
        "1,32,9,11",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--json",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    names = ["ppm", "aspp", "danet", "cc_attention", "self_attention", "double_attention", "ocr"]
    assert [r["name"] for r in results] == names
    for r in results:
        assert {"name", "params", "macs", "peak_memory_mb", "latency_ms"} <= set(r)
        assert r["params"] > 0 and r["macs"] > 0 and r["peak_memory_mb"] > 0 and r["latency_ms"] > 0


# --------------------------------------------------------------- registry and config nodes
def test_named_registry_registers_gets_and_lists():
    registry = NamedRegistry("TEST")

    @registry.register("b")
    class B:
        pass

    registry.register("a")(len)
    assert registry.get("b") is B and registry.get("a") is len
    assert "a" in registry and "c" not in registry and len(registry) == 2
    assert list(registry) == [("b", B), ("a", len)] and registry.names() == ("a", "b")
    with pytest.raises(ValueError, match=r"'b' is already registered in the TEST registry"):
        registry.register("b")(str)
    assert registry.get("b") is B  # the first registration stays
    with pytest.raises(
        KeyError, match=r"no object named 'c' in the TEST registry; registered: a, b"
    ):
        registry.get("c")
    with pytest.raises(TypeError, match="non-empty string"):
        registry.register(B)


def test_unknown_context_names_the_key_and_the_registered_modules():
    with pytest.raises(ValueError, match=r"SEM_SEG_HEAD.CONTEXT is 'nope'.*aspp, cc_attention"):
        context_class("nope")


def _fake_context(node, defaults, keys=None):
    return type(
        "Fake",
        (ContextModule,),
        {"CONFIG_NODE": node, "CONFIG_DEFAULTS": defaults, "CONFIG_KEYS": keys or {}},
    )


def test_context_config_nodes_are_collected_once_and_conflicts_name_both(monkeypatch):
    nodes = context_config_nodes()
    assert set(nodes) == {
        "OCR",
        "PPM",
        "ASPP",
        "SELF_ATTENTION",
        "DOUBLE_ATTENTION",
        "DANET",
        "CC_ATTENTION",
        "COARSE_TO_FINE",
    }
    ocr = {"MID_CHANNELS": 512, "KEY_CHANNELS": 256, "PROJ_LAYERS": 2, "DROPOUT": 0.05}
    assert nodes["OCR"] == ocr
    nodes["OCR"]["MID_CHANNELS"] = 1  # a copy: the class's declaration is untouched
    assert context_config_nodes()["OCR"]["MID_CHANNELS"] == 512

    fake = NamedRegistry("CONTEXT")  # a stand-in registry, restored by monkeypatch
    monkeypatch.setattr(context_registry, "CONTEXT_REGISTRY", fake)
    fake.register("first")(_fake_context("X", {"A": 1, "B": 2}))
    fake.register("same")(_fake_context("X", {"A": 1, "B": 2}))
    assert context_config_nodes() == {"X": {"A": 1, "B": 2}}
    fake.register("other")(_fake_context("X", {"A": 1, "B": 3}))
    with pytest.raises(ValueError, match=r"MODEL.X .*'first' \(.*Fake\) and 'other' .*keys B"):
        context_config_nodes()


@pytest.mark.parametrize(
    "node,defaults,keys,match",
    [
        ("X", {}, {}, r"reads MODEL.X but declares no CONFIG_DEFAULTS"),
        ("", {"A": 1}, {}, r"CONFIG_DEFAULTS but no CONFIG_NODE"),
        ("X", {"A": 1}, {"b": "B"}, r"CONFIG_KEYS\['b'\] is MODEL.X.B, which its CONFIG_DEFAULTS"),
    ],
)
def test_inconsistent_context_config_declarations_are_errors(
    monkeypatch, node, defaults, keys, match
):
    fake = NamedRegistry("CONTEXT")
    monkeypatch.setattr(context_registry, "CONTEXT_REGISTRY", fake)
    fake.register("bad")(_fake_context(node, defaults, keys))
    with pytest.raises(ValueError, match=match):
        context_config_nodes()


def test_add_ocr_config_adds_the_declared_nodes_and_refuses_to_replace_another(monkeypatch):
    cfg = make_cfg()
    assert cfg.MODEL.PPM.BINS == (1, 2, 3, 6) and cfg.MODEL.COARSE_TO_FINE.ENSEMBLE_WEIGHT == 0.5
    panoptic_ocr.add_ocr_config(cfg)  # a second call is harmless
    fake = NamedRegistry("CONTEXT")
    monkeypatch.setattr(context_registry, "CONTEXT_REGISTRY", fake)
    fake.register("clash")(_fake_context("RESNETS", {"DEPTH": 50}))
    with pytest.raises(ValueError, match=r"MODEL.RESNETS, the CONFIG_NODE of a context module"):
        panoptic_ocr.add_ocr_config(get_cfg())
