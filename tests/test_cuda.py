"""CUDA paths, proven on a GPU (issue 14): every registered head, reduced-precision inference,
AMP training with its GradScaler checkpointed, SyncBN (1 process; NCCL with 2 GPUs), sliding
window and TTA equal to the CPU, and the CPU fallback of ``MODEL.DEVICE cuda``.

Every test carries the ``cuda`` marker (``pytest -m cuda``; ``tools/gpu_check.sh`` runs them).
Without CUDA they are skipped with a reason in well under a second, except
:func:`test_model_device_cuda_falls_back_to_cpu_and_still_trains`, which is the one that needs
a machine *without* CUDA (and is skipped where CUDA is present).

Comparisons of CUDA with the CPU run in float32 with TF32 off (fixture ``exact_float32``): the
two devices then differ only by the order of float32 sums, about 1e-6 relative per layer,
while a wrong kernel, layout or window/flip bookkeeping gives differences of the order of the
values themselves. The bounds below are stated where they are used.
"""

import math
import re
import subprocess
import sys
from typing import Dict, List, Sequence

import pytest
import torch
from conftest import REPO_ROOT, load_tool, make_cfg, randomise_batchnorm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY, build_model, build_sem_seg_head
from detectron2.utils.env import seed_all_rng

from panoptic_ocr import setup_cfg
from panoptic_ocr.engine import Trainer
from panoptic_ocr.modeling.heads import ContextHead
from panoptic_ocr.modeling.heads.panoptic_fpn_heads import ContextSemSegFPNHead
from panoptic_ocr.modeling.inference import build_inference_model
from panoptic_ocr.modeling.test_time_augmentation import SemanticSegmentorWithTTA

# The precision-agreement helpers of the whole-model FPS tool (tools/benchmark_fps.py).
_fps = load_tool("benchmark_fps")
agreement, fit_classifier_, make_image, read_label = (
    _fps.agreement,
    _fps.fit_classifier_,
    _fps.make_image,
    _fps.read_label,
)

pytestmark = pytest.mark.cuda

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(
    not HAS_CUDA, reason="needs CUDA (no GPU here): run tools/gpu_check.sh on a GPU machine"
)
requires_two_gpus = pytest.mark.skipif(
    torch.cuda.device_count() < 2 if HAS_CUDA else True,
    reason="needs 2 CUDA devices for a 2-process NCCL run (torch.cuda.device_count() < 2)",
)

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
# The quick start shrunk as tests/engine/test_training.py shrinks it (narrow OCR, small crops,
# no workers).
SMALL_TRAINING = [
    "MODEL.OCR.MID_CHANNELS",
    "64",
    "MODEL.OCR.KEY_CHANNELS",
    "32",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "64",
    "INPUT.CROP.SIZE",
    "(96, 96)",
    "SOLVER.IMS_PER_BATCH",
    "4",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.WARMUP_ITERS",
    "0",
    "VIS.NUM_IMAGES",
    "0",
]
ALL_BN = ["MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]
NUM_TOY_CLASSES = 7  # MODEL.SEM_SEG_HEAD.NUM_CLASSES of the quick start


@pytest.fixture
def exact_float32():
    """TF32 off for convolutions and matmuls (cuDNN allows TF32 convs by default), so that CUDA
    float32 is compared with the CPU's float32, not with a 10-bit mantissa."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def assert_close_to_scale(
    actual: torch.Tensor, expected: torch.Tensor, fraction: float, what: str, min_scale: float = 0.0
) -> None:
    """``max |actual - expected| <= fraction * max(max |expected|, min_scale)`` (on the CPU)."""
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    scale = max(float(expected.abs().max()), min_scale)
    diff = float((actual - expected).abs().max())
    assert diff <= fraction * scale + 1e-12, (
        f"{what}: max abs diff {diff:.3g} > {fraction} x {scale:.3g}"
    )


# ----------------------------------------------------------------------------------------------
# Every registered head, forward and backward on CUDA at odd sizes, against the CPU
# ----------------------------------------------------------------------------------------------
NUM_CLASSES = 5
CONTEXT_HEADS = sorted(
    n
    for n, c in SEM_SEG_HEADS_REGISTRY
    if isinstance(c, type) and issubclass(c, ContextHead) and c.CONTEXT
)
FPN_HEADS = sorted(
    n
    for n, c in SEM_SEG_HEADS_REGISTRY
    if isinstance(c, type) and issubclass(c, ContextSemSegFPNHead) and c.CONTEXT
)
# Narrow widths of every context, as tests/modeling/test_context_heads.py builds them, and no
# dropout:
# its masks come from each device's own generator, so only without it is a training forward
# the same on both devices.
DROPOUT_KEYS = ["SEM_SEG_HEAD.AUX_DROPOUT"] + [
    f"{node}.DROPOUT"
    for node in (
        "OCR",
        "PPM",
        "ASPP",
        "SELF_ATTENTION",
        "DOUBLE_ATTENTION",
        "DANET",
        "CC_ATTENTION",
    )
]
SMALL_HEAD = [x for key in DROPOUT_KEYS for x in ("MODEL." + key, "0.0")] + [
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
CONTEXT_SHAPES = {
    "res4": ShapeSpec(channels=24, stride=8),
    "res5": ShapeSpec(channels=32, stride=8),
}
FPN_SHAPES = {f"p{i}": ShapeSpec(channels=16, stride=2**i) for i in range(2, 6)}
FPN_OPTS = [
    "MODEL.SEM_SEG_HEAD.IN_FEATURES",
    "['p2', 'p3', 'p4', 'p5']",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "32",
    "MODEL.SEM_SEG_HEAD.COMMON_STRIDE",
    "4",
]


def _head_and_data(name: str, batch: int = 2):
    """A small head (float32, CPU) with non-zero attention weights, and odd-size features and
    labels (some ignored) for it."""
    fpn = name in FPN_HEADS
    cfg = make_cfg(opts=["MODEL.SEM_SEG_HEAD.NAME", name] + SMALL_HEAD + (FPN_OPTS if fpn else []))
    torch.manual_seed(0)
    head = build_sem_seg_head(cfg, FPN_SHAPES if fpn else CONTEXT_SHAPES)
    for param_name, param in head.named_parameters():
        if param_name.endswith("gamma"):  # zero at init: the query/key convs would get no gradient
            param.data.fill_(0.5)
    g = torch.Generator().manual_seed(1)
    if fpn:  # p5 is 3 x 5 (odd); the levels above it double, as an FPN's do
        h, w = 3, 5
        feats = {
            f"p{i}": torch.randn(batch, 16, h * 2 ** (5 - i), w * 2 ** (5 - i), generator=g)
            for i in range(2, 6)
        }
        label_size = (h * 32, w * 32)
    else:
        h, w = 13, 19
        feats = {
            k: torch.randn(batch, s.channels, h, w, generator=g) for k, s in CONTEXT_SHAPES.items()
        }
        label_size = (h * 8, w * 8)
    targets = torch.randint(0, NUM_CLASSES, (batch, *label_size), generator=g)
    targets[:, :5, :7] = 255
    return head, feats, targets


def _train_step(head, feats, targets):
    """Losses and gradients of one training forward (BN on batch statistics)."""
    head.train()
    head.zero_grad()
    _, losses = head(feats, targets)
    sum(losses.values()).backward()
    grads = {n: p.grad.detach().clone() for n, p in head.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def _to(device, feats: Dict[str, torch.Tensor], targets: torch.Tensor):
    return {k: v.to(device) for k, v in feats.items()}, targets.to(device)


@requires_cuda
@pytest.mark.parametrize("name", CONTEXT_HEADS + FPN_HEADS)
def test_every_registered_head_trains_and_infers_on_cuda_as_on_cpu(name, exact_float32):
    """Losses and every parameter's gradient (training BN: batch statistics), then eval logits
    at the input resolution, on CUDA equal the CPU's within 1e-3 of each tensor's largest
    magnitude (float32 reassociation is ~1e-6 relative per op; a wrong kernel is O(1)). A
    gradient that is a near-cancelling sum (a conv before a training BN: 1e-3 of the head's
    largest gradient here) is held to 1e-3 of 1e-3 of the largest gradient instead."""
    head, feats, targets = _head_and_data(name)
    cpu_losses, cpu_grads = _train_step(head, feats, targets)
    cuda_head = head.to("cuda")
    cuda_feats, cuda_targets = _to("cuda", feats, targets)
    cuda_losses, cuda_grads = _train_step(cuda_head, cuda_feats, cuda_targets)
    assert set(cuda_losses) == set(cpu_losses) and "loss_sem_seg" in cuda_losses
    for key, value in cuda_losses.items():
        assert value.device.type == "cuda" and torch.isfinite(value)
        assert_close_to_scale(value, cpu_losses[key], 1e-4, f"{name} {key}")
    params = dict(cuda_head.named_parameters())
    assert set(cuda_grads) == set(cpu_grads) == set(params), (
        f"{name}: parameters without a gradient"
    )
    largest = max(float(g.abs().max()) for g in cpu_grads.values())
    assert largest > 0
    for param_name, grad in cuda_grads.items():
        assert grad.device.type == "cuda"
        assert_close_to_scale(
            grad, cpu_grads[param_name], 1e-3, f"{name} grad of {param_name}", 1e-3 * largest
        )

    cuda_head.eval()
    eval_targets = cuda_targets if getattr(cuda_head, "uses_targets_at_inference", False) else None
    with torch.no_grad():
        logits, extra = cuda_head(cuda_feats, eval_targets)
        cpu_logits, _ = head.cpu()(feats, None if eval_targets is None else targets)
    assert extra == {} and logits.shape == (2, NUM_CLASSES, *targets.shape[-2:])
    assert_close_to_scale(logits, cpu_logits, 1e-3, f"{name} eval logits")


# ----------------------------------------------------------------------------------------------
# The inference builder in float16 and bfloat16 on CUDA against float32
# ----------------------------------------------------------------------------------------------
# Bounds (quick-start OCR R18 with randomised BN and a fitted final classifier, one toy val
# image). Measured on this project's CPU with the same model and inference path: bfloat16
# agreement 99.87%, mean |d logit| 0.66% of the float32 logits' std, max |d logit| 0.04 of the
# median top-2 margin; float16 99.986%, 0.078%, 0.003. The means are ~1.6x each format's unit
# roundoff (bfloat16 2^-8 = 0.39%, float16 2^-11 = 0.049%), as expected of rounding errors that
# do not grow through the network. The bounds leave a wide margin for CUDA's kernels while
# staying well below what a wrong path gives (float16 overflow: inf/NaN; a lost BN fold or a
# weight in the wrong layout: mean differences of the order of the std, agreement near 1/K).
PRECISION_BOUNDS = {
    # dtype: (min argmax agreement, max mean|d| / std, max max|d| / median top-2 margin)
    "float16": (0.995, 0.01, 0.25),
    "bfloat16": (0.985, 0.05, 0.75),
}


@pytest.fixture(scope="module")
def toy_val_image():
    """The first toy-scenes val image (256 x 272) as a model input on the CPU, and its label."""
    import cv2

    record = DatasetCatalog.get("toy_scenes_sem_seg_val")[0]
    size = tuple(cv2.imread(record["file_name"]).shape[:2])
    image = make_image(size, record["file_name"], 0)
    return {"image": image, "height": size[0], "width": size[1]}, read_label(
        size, record["sem_seg_file_name"]
    )


def _fitted_quickstart_model(device: str, inputs: List[Dict], label: torch.Tensor):
    """The quick-start model (plain BN, randomised statistics) on ``device`` whose final
    classifier is fitted to ``label`` (:func:`fit_classifier_`), so its margins are a real
    classifier's."""
    cfg = make_cfg(QUICKSTART, ALL_BN)
    cfg.MODEL.DEVICE = device
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    randomise_batchnorm(model)
    with torch.no_grad():
        accuracy = fit_classifier_(model, inputs, label)
    assert accuracy > 0.6, accuracy  # the probe follows the label: margins are meaningful
    return cfg, model


@requires_cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_inference_builder_reduced_precision_on_cuda_agrees_with_float32(
    dtype, toy_val_image, exact_float32
):
    inp, label = toy_val_image
    inputs = [{**inp, "image": inp["image"].cuda()}]
    cfg, model = _fitted_quickstart_model("cuda", inputs, label)
    cfg.MODEL.INFERENCE_DTYPE = dtype
    cfg.TEST.FOLD_BATCHNORM = True
    cfg.MODEL.INFERENCE_CHANNELS_LAST = True
    inference = build_inference_model(cfg, model)
    assert inference is not model
    convs = [m for m in inference.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(
        c.weight.dtype == getattr(torch, dtype) and c.weight.is_cuda for c in convs
    )
    seen = []
    handles = [
        c.register_forward_hook(lambda mod, args, out: seen.append(out.dtype)) for c in convs
    ]
    with torch.no_grad():
        out = inference(inputs)[0]["sem_seg"]
        ref = model(inputs)[0]["sem_seg"]
        stats = agreement(model, inference, inputs)
    for h in handles:
        h.remove()
    assert seen and set(seen) == {getattr(torch, dtype)}, set(seen)  # really ran in that dtype
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    min_agreement, max_mean, max_peak = PRECISION_BOUNDS[dtype]
    mean_diff = float((out - ref).abs().mean())
    assert 0 < mean_diff <= max_mean * float(ref.std()), (dtype, mean_diff, float(ref.std()))
    assert stats["agreement"] >= min_agreement, (dtype, stats)
    assert stats["max_abs_logit_diff"] <= max_peak * stats["median_top2_margin"], (dtype, stats)


# ----------------------------------------------------------------------------------------------
# AMP training on CUDA, its GradScaler saved and restored; SyncBN in one process
# ----------------------------------------------------------------------------------------------
def _cuda_training_cfg(output_dir, *opts: str):
    """The quick start as train_net.py builds it (panoptic_ocr.setup_cfg, adapted to this
    machine), small, on CUDA, writing to ``output_dir``."""
    return setup_cfg(
        str(REPO_ROOT / QUICKSTART),
        SMALL_TRAINING + ["MODEL.DEVICE", "cuda", "OUTPUT_DIR", str(output_dir), *opts],
        freeze=False,
    )


def _losses(trainer) -> List[float]:
    return [v for v, _ in trainer.storage.history("total_loss").values()]


@requires_cuda
def test_amp_training_on_cuda_lowers_loss_and_resumes_its_grad_scaler(tmp_path):
    seed_all_rng(0)
    iters = 40
    cfg = _cuda_training_cfg(
        tmp_path,
        *ALL_BN,
        "SOLVER.AMP.ENABLED",
        "True",
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
        "DATASETS.TEST",
        "()",
    )
    first = Trainer(cfg)
    scaler = first._trainer.grad_scaler  # Detectron2's AMPTrainer
    assert next(first.model.parameters()).is_cuda
    first.resume_or_load(resume=False)
    first.train()
    losses = _losses(first)
    assert len(losses) == iters and all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses
    assert all(torch.isfinite(p).all() for p in first.model.parameters())
    state = scaler.state_dict()
    assert state["scale"] > 0 and state["_growth_tracker"] > 0, state  # the scaler really stepped

    saved = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert saved["trainer"]["_trainer"]["grad_scaler"] == state

    cfg.SOLVER.MAX_ITER = iters + 3
    second = Trainer(cfg)
    assert second._trainer.grad_scaler.state_dict()["_growth_tracker"] == 0  # fresh before resume
    second.resume_or_load(resume=True)
    assert second.start_iter == iters
    assert second._trainer.grad_scaler.state_dict() == state
    second.train()
    assert [it for _, it in second.storage.history("total_loss").values()] == list(
        range(iters, iters + 3)
    )
    assert all(math.isfinite(v) for v in _losses(second))


@requires_cuda
def test_syncbn_trains_in_one_process_on_cuda(tmp_path):
    """The config's SyncBN stays torch's SyncBatchNorm on CUDA (no naiveSyncBN rewrite) and
    trains in a single process: finite losses, running statistics updated."""
    seed_all_rng(0)
    cfg = _cuda_training_cfg(
        tmp_path,
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
        "DATASETS.TEST",
        "()",
    )
    assert cfg.MODEL.RESNETS.NORM == cfg.MODEL.SEM_SEG_HEAD.NORM == "SyncBN"
    trainer = Trainer(cfg)
    syncbn = [m for m in trainer.model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert syncbn and all(m.running_mean.is_cuda for m in syncbn)
    before = [m.running_mean.clone() for m in syncbn]
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert len(_losses(trainer)) == 3 and all(math.isfinite(v) for v in _losses(trainer))
    assert all(not torch.equal(m.running_mean, b) for m, b in zip(syncbn, before))


def _train_net(args: Sequence[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train_net.py"),
            "--config-file",
            str(REPO_ROOT / QUICKSTART),
            *args,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _copypaste_metrics(log: str) -> Dict[str, float]:
    """The last ``copypaste:`` header/value pair of a Detectron2 log (``print_csv_format``)."""
    lines = re.findall(r"copypaste: (.*)", log)
    assert len(lines) >= 2, "no copypaste metrics in the log"
    keys, values = lines[-2].split(","), lines[-1].split(",")
    return {k: float(v) for k, v in zip(keys, values)}


@requires_cuda
@requires_two_gpus
def test_two_process_nccl_training_evaluates_as_one_process(tmp_path):
    """``--num-gpus 2``: NCCL, SyncBN across 2 GPUs, sharded evaluation. Its final evaluation
    equals a 1-process ``--eval-only`` of the same weights (the confusion matrix sums integer
    counts; 0.01 absorbs the 4-decimal print and argmax ties between the two GPUs' kernels)."""
    two = tmp_path / "two"
    out = _train_net(
        [
            "--num-gpus",
            "2",
            "--dist-url",
            "auto",
            *SMALL_TRAINING,
            "SOLVER.MAX_ITER",
            "10",
            "MODEL.DEVICE",
            "cuda",
            "OUTPUT_DIR",
            str(two),
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    log = (two / "log.txt").read_text()
    assert "naiveSyncBN" not in log
    two_metrics = _copypaste_metrics(log)
    one = tmp_path / "one"
    out = _train_net(
        [
            "--num-gpus",
            "1",
            "--eval-only",
            *SMALL_TRAINING,
            "MODEL.DEVICE",
            "cuda",
            "MODEL.WEIGHTS",
            str(two / "model_final.pth"),
            "OUTPUT_DIR",
            str(one),
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    one_metrics = _copypaste_metrics((one / "log.txt").read_text())
    assert set(one_metrics) == set(two_metrics) and "mIoU" in one_metrics
    for key, value in one_metrics.items():
        assert two_metrics[key] == pytest.approx(value, abs=0.01), key


# ----------------------------------------------------------------------------------------------
# Sliding window and TTA: CUDA equals CPU
# ----------------------------------------------------------------------------------------------
def _quickstart_model(opts: Sequence[str] = ()):
    cfg = make_cfg(QUICKSTART, ALL_BN + list(opts))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    randomise_batchnorm(model)
    return cfg, model


@requires_cuda
def test_sliding_window_inference_on_cuda_equals_cpu(toy_val_image, exact_float32):
    """Overlapping 96x96 windows (stride 64, 2 per batch) over the val image: the CUDA logits
    equal the CPU's within 1e-3 of their largest magnitude (float32 reassociation)."""
    inp, _ = toy_val_image
    cfg, model = _quickstart_model(
        [
            "TEST.SLIDING_WINDOW.ENABLED",
            "True",
            "TEST.SLIDING_WINDOW.SIZE",
            "(96, 96)",
            "TEST.SLIDING_WINDOW.STRIDE",
            "(64, 64)",
            "TEST.SLIDING_WINDOW.BATCH_SIZE",
            "2",
        ]
    )
    assert model.sliding_window is not None and min(inp["height"], inp["width"]) > 96
    with torch.no_grad():
        cpu = build_inference_model(cfg, model)([inp])[0]["sem_seg"]
        cuda_model = model.to("cuda")
        cuda = build_inference_model(cfg, cuda_model)([{**inp, "image": inp["image"].cuda()}])[0][
            "sem_seg"
        ]
    assert cuda.is_cuda and cuda.shape == cpu.shape == (
        NUM_TOY_CLASSES,
        inp["height"],
        inp["width"],
    )
    assert_close_to_scale(cuda, cpu, 1e-3, "sliding-window logits")


@requires_cuda
def test_tta_on_cuda_equals_cpu(toy_val_image, exact_float32):
    """Scales (0.75, 1.0) and flips: the averaged probabilities on CUDA equal the CPU's within
    1e-3 (probabilities in [0, 1]; float32 reassociation and bilinear resizing ~1e-6)."""
    inp, _ = toy_val_image
    cfg, model = _quickstart_model(
        ["TEST.AUG.ENABLED", "True", "TEST.AUG.SCALES", "(0.75, 1.0)", "TEST.AUG.FLIP", "True"]
    )
    with torch.no_grad():
        cpu = build_inference_model(cfg, SemanticSegmentorWithTTA.from_config(cfg, model))([inp])[
            0
        ]["sem_seg"]
        tta = SemanticSegmentorWithTTA.from_config(cfg, model.to("cuda"))
        cuda = build_inference_model(cfg, tta)([{**inp, "image": inp["image"].cuda()}])[0][
            "sem_seg"
        ]
    assert cuda.is_cuda and cuda.shape == cpu.shape == (
        NUM_TOY_CLASSES,
        inp["height"],
        inp["width"],
    )
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=1e-3)


# ----------------------------------------------------------------------------------------------
# MODEL.DEVICE cuda on a machine without CUDA: CPU, and it still trains and evaluates
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def two_val_images():
    """``toy_scenes_sem_seg_val`` cut to its first 2 images (a fast evaluation)."""
    name = "test_cuda_toy_scenes_sem_seg_val2"
    DatasetCatalog.register(name, lambda: DatasetCatalog.get("toy_scenes_sem_seg_val")[:2])
    meta = MetadataCatalog.get("toy_scenes_sem_seg_val").as_dict()
    MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.mark.skipif(
    HAS_CUDA, reason="checks the fallback of machines without CUDA; CUDA is present here"
)
def test_model_device_cuda_falls_back_to_cpu_and_still_trains(tmp_path, two_val_images):
    cfg = setup_cfg(
        str(REPO_ROOT / QUICKSTART),
        SMALL_TRAINING
        + [
            "MODEL.DEVICE",
            "cuda",
            "SOLVER.MAX_ITER",
            "2",
            "SOLVER.CHECKPOINT_PERIOD",
            "100000",
            "DATASETS.TEST",
            f'("{two_val_images}",)',
            "OUTPUT_DIR",
            str(tmp_path),
        ],
    )
    assert cfg.MODEL.DEVICE == "cpu"
    assert (
        cfg.MODEL.RESNETS.NORM == cfg.MODEL.SEM_SEG_HEAD.NORM == "naiveSyncBN"
    )  # SyncBN needs CUDA
    trainer = Trainer(cfg)
    assert all(p.device.type == "cpu" for p in trainer.model.parameters())
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert len(_losses(trainer)) == 2 and all(math.isfinite(v) for v in _losses(trainer))
    assert 0 <= results["sem_seg"]["mIoU"] <= 100
    assert (tmp_path / "model_final.pth").exists()
