"""The context-head zoo (PPM, ASPP, DANet, CC-attention, self-attention, double attention) and
OCR: building from config, shapes at odd sizes, training and inference, pinned paper-size
parameter counts, and a smoke run of tools/benchmark_heads.py."""
import json
import subprocess
import sys

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_sem_seg_head

from conftest import REPO_ROOT, make_cfg
from panoptic_ocr.modeling.contexts import REGIONS, CrissCrossAttention

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
    "MODEL.SEM_SEG_HEAD.NORM", "BN", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(NUM_CLASSES),
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS", "8",
    "MODEL.PPM.BRANCH_CHANNELS", "8", "MODEL.PPM.OUT_CHANNELS", "16",
    "MODEL.ASPP.CHANNELS", "16",
    "MODEL.SELF_ATTENTION.MID_CHANNELS", "16", "MODEL.SELF_ATTENTION.KEY_CHANNELS", "8",
    "MODEL.DOUBLE_ATTENTION.MID_CHANNELS", "16", "MODEL.DOUBLE_ATTENTION.KEY_CHANNELS", "8",
    "MODEL.DOUBLE_ATTENTION.NUM_REGIONS", "4",
    "MODEL.DANET.MID_CHANNELS", "16", "MODEL.DANET.QK_CHANNELS", "4",
    "MODEL.CC_ATTENTION.MID_CHANNELS", "16", "MODEL.CC_ATTENTION.QK_CHANNELS", "4",
    "MODEL.OCR.MID_CHANNELS", "16", "MODEL.OCR.KEY_CHANNELS", "8",
]
SMALL_SHAPES = {"res4": ShapeSpec(channels=24, stride=STRIDE), "res5": ShapeSpec(channels=32, stride=STRIDE)}
PAPER_SHAPES = {"res4": ShapeSpec(channels=1024, stride=8), "res5": ShapeSpec(channels=2048, stride=8)}


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
    "name,opts,expected", PAPER_PARAMS, ids=[f"{n}-{o[1] if o else 'default'}" for n, o, _ in PAPER_PARAMS]
)
def test_paper_size_context_parameter_count(name, opts, expected):
    cfg = make_cfg(opts=["MODEL.SEM_SEG_HEAD.NAME", name, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "19"] + opts)
    head = build_sem_seg_head(cfg, PAPER_SHAPES)
    assert sum(p.numel() for p in head.context.parameters()) == expected


def test_unknown_variant_is_rejected_with_the_choices():
    for name, key in [("DANetHead", "MODEL.DANET.VARIANT"), ("CCAttentionHead", "MODEL.CC_ATTENTION.VARIANT")]:
        with pytest.raises(ValueError, match="original"):
            build_small_head(name, [key, "512"])


def test_benchmark_json_smoke():
    cmd = [
        sys.executable, str(REPO_ROOT / "tools" / "benchmark_heads.py"),
        "--input", "1,32,9,11", "--runs", "1", "--warmup", "0", "--threads", "1", "--json",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    names = ["ppm", "aspp", "danet", "cc_attention", "self_attention", "double_attention", "ocr"]
    assert [r["name"] for r in results] == names
    for r in results:
        assert {"name", "params", "macs", "peak_memory_mb", "latency_ms"} <= set(r)
        assert r["params"] > 0 and r["macs"] > 0 and r["peak_memory_mb"] > 0 and r["latency_ms"] > 0
