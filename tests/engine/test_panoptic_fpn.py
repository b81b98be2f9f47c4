"""Panoptic-FPN (+ PPM / ASPP / OCR) from the project's configs: recipe fidelity, training on the
toy scenes, the Table 3 summary, overlays, and 1- vs 2-process evaluation."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_cfg
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from panoptic_ocr.evaluation.panoptic_summary import format_panoptic_summary, panoptic_summary
from panoptic_ocr.utils import draw_prediction

COCO = "configs/coco/panoptic"
TOY = "configs/toy_scenes/Base-Panoptic-FPN-toy-scenes.yaml"
VARIANTS = {
    "": "SemSegFPNHead",
    "ppm_": "PPMSemSegFPNHead",
    "aspp_": "ASPPSemSegFPNHead",
    "ocr_": "OCRSemSegFPNHead",
}
VARIANT_NODES = (
    "MODEL.SEM_SEG_HEAD.NAME",
    "MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT",
    "MODEL.OCR.",
    "MODEL.PPM.",
    "MODEL.ASPP.",
)
# The COCO recipe on the toy scenes at CPU size: data, class counts and sampling sizes change, and
# without ImageNet weights the backbone's FrozenBN (identity statistics) becomes trainable BN.
COCO_ON_TOY = [
    "MODEL.WEIGHTS",
    "",
    "MODEL.RESNETS.NORM",
    "BN",
    "MODEL.BACKBONE.FREEZE_AT",
    "0",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "3",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    "5",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "100",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "16",
    "INPUT.MASK_FORMAT",
    "bitmask",
    "INPUT.MIN_SIZE_TRAIN",
    "(128,)",
    "INPUT.MAX_SIZE_TRAIN",
    "160",
    "DATASETS.TRAIN",
    "('toy_scenes_panoptic_train_separated',)",
]
SMALL_TOY = [
    "INPUT.MIN_SIZE_TRAIN",
    "(128,)",
    "INPUT.MAX_SIZE_TRAIN",
    "160",
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "160",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.WARMUP_ITERS",
    "0",
    "DATALOADER.NUM_WORKERS",
    "0",
    "VIS.NUM_IMAGES",
    "0",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "32",
    "MODEL.OCR.MID_CHANNELS",
    "64",
    "MODEL.OCR.KEY_CHANNELS",
    "32",  # GN: multiples of 32
]


def _flat(cfg, prefix=""):
    out = {}
    for key, value in cfg.items():
        if hasattr(value, "items"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize(
    "name", ["panoptic_fpn_R_50_1x", "panoptic_fpn_R_50_3x", "panoptic_fpn_R_101_3x"]
)
def test_plain_config_is_detectron2s_panoptic_fpn_recipe(name):
    theirs = get_cfg()
    theirs.merge_from_file(model_zoo.get_config_file(f"COCO-PanopticSegmentation/{name}.yaml"))
    ours = _flat(make_cfg(f"{COCO}/{name}.yaml"))
    theirs = _flat(theirs)
    # The project reads Detectron2's COCO files through its own checked registrations.
    for key in ("DATASETS.TRAIN", "DATASETS.TEST"):
        theirs[key] = tuple(f"{name}_checked" for name in theirs[key])
    different = {
        k: (ours[k], v)
        for k, v in theirs.items()
        if ours[k] != v and k not in ("OUTPUT_DIR", "MODEL.DEVICE")
    }
    assert different == {}


@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("schedule", ["1x", "3x"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_differ_from_panoptic_fpn_only_in_the_semantic_context_module(
    variant, schedule, depth
):
    cfg = make_cfg(f"{COCO}/panoptic_fpn_{variant}R_{depth}_{schedule}.yaml")
    plain = _flat(make_cfg(f"{COCO}/panoptic_fpn_R_{depth}_{schedule}.yaml"))
    assert cfg.MODEL.SEM_SEG_HEAD.NAME == VARIANTS[variant]
    assert cfg.MODEL.RESNETS.DEPTH == depth and cfg.MODEL.WEIGHTS.endswith(f"R-{depth}.pkl")
    assert (cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS)) == {
        "1x": (90000, (60000, 80000)),
        "3x": (270000, (210000, 250000)),
    }[schedule]
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.02
    different = {k for k, v in _flat(cfg).items() if plain[k] != v and k != "OUTPUT_DIR"}
    assert all(k.startswith(VARIANT_NODES) for k in different), different
    assert cfg.OUTPUT_DIR.endswith(f"panoptic_fpn_{variant}R_{depth}_{schedule}")


@pytest.fixture(scope="module")
def toy_batch():
    seed_all_rng(0)  # the mapper's random flip
    cfg = make_cfg(f"{COCO}/panoptic_fpn_R_50_3x.yaml", COCO_ON_TOY)
    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(r) for r in DatasetCatalog.get("toy_scenes_panoptic_train_separated")[:2]]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_builds_from_its_config_and_its_loss_falls_on_toy_data(variant, toy_batch):
    seed_all_rng(0)  # weights, proposal and RoI sampling
    cfg = make_cfg(
        f"{COCO}/panoptic_fpn_{variant}R_50_3x.yaml", COCO_ON_TOY + ["SOLVER.BASE_LR", "0.005"]
    )
    model = build_model(cfg)
    assert type(model.sem_seg_head).__name__ == VARIANTS[variant]
    model.train()
    optimizer = build_optimizer(cfg, model)
    history = []
    with EventStorage():
        for _ in range(6):
            losses = model(toy_batch)
            total = sum(losses.values())
            assert torch.isfinite(total), losses
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            history.append({k: v.item() for k, v in losses.items()})
    assert ("loss_sem_seg_aux" in losses) == (variant == "ocr_")
    # The dense losses (semantic branch with its context module, RPN objectness) fall steadily
    # on a repeated batch; the sampled ROI losses of a randomly initialised detector are too noisy.
    for key in ("loss_sem_seg", "loss_rpn_cls") + (
        ("loss_sem_seg_aux",) if variant == "ocr_" else ()
    ):
        assert history[-1][key] < 0.92 * history[0][key], (key, [h[key] for h in history])


def test_summary_has_the_columns_of_table_3():
    results = {
        "panoptic_seg": {"PQ": 42.7, "PQ_th": 48.6, "PQ_st": 33.9, "SQ": 1.0},
        "sem_seg": {"mIoU": 44.3},
        "segm": {"AP": 40.4},
        "bbox": {"AP": 1.0},
    }
    assert list(panoptic_summary(results).items()) == [
        ("AP", 40.4),
        ("PQ-Th", 48.6),
        ("mIoU", 44.3),
        ("PQ-St", 33.9),
        ("PQ", 42.7),
    ]
    assert panoptic_summary({"sem_seg": {"mIoU": 1.0}}) is None
    table = format_panoptic_summary(
        {"coco_2017_val_panoptic_separated": results, "other": {"sem_seg": {}}}
    )
    lines = table.splitlines()
    assert re.split(r"\s*\|\s*", lines[0].strip("| ")) == [
        "dataset",
        "AP",
        "PQ-Th",
        "mIoU",
        "PQ-St",
        "PQ",
    ]
    assert len(lines) == 3 and "40.4" in lines[2] and "42.7" in lines[2]
    # A column whose evaluator did not run is shown as "-", not silently dropped.
    assert (
        "-"
        in format_panoptic_summary(
            {"d": {"panoptic_seg": {"PQ": 1.0, "PQ_th": 2.0, "PQ_st": 0.5}}}
        ).splitlines()[2]
    )


SAMPLE = REPO_ROOT.parent / "shared" / "data" / "coco_panoptic" / "sample_data" / "input_images"


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="real COCO samples (../shared/data) not present")
def test_panoptic_fpn_ocr_runs_on_real_coco_images_and_visualizes(tmp_path):
    cfg = make_cfg(
        f"{COCO}/panoptic_fpn_ocr_R_50_3x.yaml",
        [
            "MODEL.WEIGHTS",
            "",
            "INPUT.MIN_SIZE_TEST",
            "256",
            "INPUT.MAX_SIZE_TEST",
            "400",
            "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH",
            "0.0",  # random weights: keep instances
            "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT",
            "0",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    metadata = MetadataCatalog.get("coco_2017_val_panoptic_separated")
    mapper = DatasetMapper(cfg, is_train=False)
    images = sorted(SAMPLE.glob("*.jpg"))
    assert len(images) == 2
    for path in images:
        from PIL import Image

        image = np.asarray(Image.open(path).convert("RGB"))
        inputs = mapper({"file_name": str(path), "height": image.shape[0], "width": image.shape[1]})
        with torch.no_grad():
            output = model([inputs])[0]
        panoptic_seg, segments_info = output["panoptic_seg"]
        assert panoptic_seg.shape == image.shape[:2] and output["sem_seg"].shape == (
            54,
            *image.shape[:2],
        )
        assert segments_info and all(
            0 <= s["category_id"] < (80 if s["isthing"] else 54) for s in segments_info
        )
        overlay = draw_prediction(image, output, metadata)
        assert overlay.shape == image.shape and overlay.dtype == np.uint8
        assert not np.array_equal(overlay, image)  # something was drawn
        Image.fromarray(overlay).save(tmp_path / f"{path.stem}.png")


def _copypaste_metrics(log: str) -> dict:
    """``{task: {metric: value}}`` from Detectron2's "copypaste" lines of a log."""
    lines = [line.split("copypaste: ", 1)[1] for line in log.splitlines() if "copypaste: " in line]
    metrics = {}
    for i, line in enumerate(lines):
        if line.startswith("Task: "):
            keys, values = lines[i + 1].split(","), lines[i + 2].split(",")
            metrics[line[len("Task: ") :]] = dict(zip(keys, map(float, values)))
    return metrics


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """Panoptic-FPN + OCR (R18) trained for a few iterations on the toy scenes: weights that give
    non-trivial numbers, shared by the evaluation tests."""
    from panoptic_ocr.engine import Trainer

    out = tmp_path_factory.mktemp("toy_panoptic_fpn")
    cfg = make_cfg(
        TOY,
        SMALL_TOY
        + [
            "MODEL.SEM_SEG_HEAD.NAME",
            "OCRSemSegFPNHead",
            "SOLVER.MAX_ITER",
            "20",
            "SOLVER.STEPS",
            "()",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            str(out),
        ],
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return out / "model_final.pth"


def _eval_only(out_dir, weights, *args):
    return subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train_net.py"),
            "--config-file",
            str(REPO_ROOT / TOY),
            "--eval-only",
            *args,
            *SMALL_TOY,
            "MODEL.SEM_SEG_HEAD.NAME",
            "OCRSemSegFPNHead",
            "MODEL.WEIGHTS",
            str(weights),
            "OUTPUT_DIR",
            str(out_dir),
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_eval_only_reports_every_evaluator_and_two_processes_agree_with_one(
    toy_checkpoint, tmp_path
):
    single = _eval_only(tmp_path / "one", toy_checkpoint)
    assert single.returncode == 0, single.stderr[-3000:]
    double = _eval_only(tmp_path / "two", toy_checkpoint, "--num-gpus", "2", "--dist-url", "auto")
    assert double.returncode == 0, double.stderr[-3000:]
    one = _copypaste_metrics((tmp_path / "one" / "log.txt").read_text())
    two = _copypaste_metrics((tmp_path / "two" / "log.txt").read_text())
    # COCOPanopticEvaluator, SemSegEvaluator and COCOEvaluator (boxes and masks) in one run.
    assert set(one) == {"panoptic_seg", "sem_seg", "bbox", "segm"}
    assert 0 < one["sem_seg"]["mIoU"] < 100 and 0 < one["panoptic_seg"]["PQ"] < 100
    for task in one:
        for metric, value in one[task].items():
            assert two[task][metric] == pytest.approx(value, abs=1e-6, nan_ok=True), (task, metric)
    # The log ends with the summary in supplementary Table 3's columns, from these numbers.
    log = (tmp_path / "one" / "log.txt").read_text().rstrip().splitlines()
    header = next(
        i
        for i, line in enumerate(log)
        if "Panoptic results (supplementary Table 3 columns)" in line
    )
    assert len(log) == header + 4  # message, header row, separator, one dataset row
    row = [c.strip() for c in log[-1].strip("| ").split("|")]
    assert row[0] == "toy_scenes_panoptic_val_separated"
    expected = [
        one["segm"]["AP"],
        one["panoptic_seg"]["PQ_th"],
        one["sem_seg"]["mIoU"],
        one["panoptic_seg"]["PQ_st"],
        one["panoptic_seg"]["PQ"],
    ]
    assert [float(c) for c in row[1:]] == pytest.approx(expected, abs=0.051)


def test_benchmark_of_the_semantic_branch_runs_and_ocr_costs_least():
    """Smoke run of tools/benchmark_panoptic_heads.py's measuring at a tiny size; the
    supplementary's claim that OCR is cheaper than PPM and ASPP holds for the configs' widths
    (MACs do not depend on the machine)."""
    from conftest import load_tool

    bench = load_tool("benchmark_panoptic_heads")

    rows = bench.benchmark((64, 96), torch.device("cpu"), runs=1, warmup=0)
    table = bench.format_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and table[-1].startswith("| + OCR (OCRSemSegFPNHead) |")
    results = {r["head"]: r for r in rows}
    assert list(results) == ["Panoptic-FPN", "+ PPM", "+ ASPP", "+ OCR"]
    plain = results["Panoptic-FPN"]["macs"]
    context = {head: r["macs"] - plain for head, r in results.items() if head != "Panoptic-FPN"}
    assert 0 < context["+ OCR"] < min(context["+ PPM"], context["+ ASPP"])
    assert all(r["latency_ms"] > 0 and r["params"] > 0 for r in results.values())
