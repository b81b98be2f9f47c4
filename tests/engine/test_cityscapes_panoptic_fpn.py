"""Panoptic-FPN (+ OCR / PPM / ASPP) on Cityscapes panoptic: the recipes are Detectron2's
Panoptic-FPN with Detectron2's Cityscapes Mask R-CNN data and schedule, and a toy-scale training
on a generated Cityscapes-layout dataset runs through ``train_net.py`` and reports PQ, both mIoUs
and AP in one evaluation."""

import os
import re
import subprocess
import sys

import pytest
from cityscapes_layout import write_cityscapes_layout
from conftest import REPO_ROOT, load_script, make_cfg
from detectron2 import model_zoo
from detectron2.config import get_cfg
from test_panoptic_fpn import VARIANT_NODES, VARIANTS, _flat

CITYSCAPES = "configs/cityscapes/panoptic"
COCO = "configs/coco/panoptic"
# Keys where the Cityscapes recipe is Detectron2's Cityscapes Mask R-CNN, not its COCO Panoptic-FPN.
FROM_CITYSCAPES_MASK_RCNN = (
    "INPUT.MIN_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TRAIN_SAMPLING",
    "INPUT.MAX_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TEST",
    "INPUT.MAX_SIZE_TEST",
    "SOLVER.BASE_LR",
    "SOLVER.STEPS",
    "SOLVER.MAX_ITER",
    "SOLVER.IMS_PER_BATCH",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "TEST.EVAL_PERIOD",
)
# What else differs from the COCO recipe: the data, its class count and the merge's stuff area.
CITYSCAPES_DATA = {
    "DATASETS.TRAIN": ("cityscapes_fine_panoptic_separated_train",),
    "DATASETS.TEST": ("cityscapes_fine_panoptic_separated_val",),
    "INPUT.DATASET_MAPPER_NAME": "panoptic_instances",
    "INPUT.MASK_FORMAT": "bitmask",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 12,
    "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT": 2048,
}


@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_recipe_is_panoptic_fpn_on_detectron2s_cityscapes_mask_rcnn_schedule(variant, depth):
    ours = _flat(make_cfg(f"{CITYSCAPES}/panoptic_fpn_{variant}R_{depth}_24k.yaml"))
    coco = _flat(make_cfg(f"{COCO}/panoptic_fpn_{variant}R_{depth}_3x.yaml"))
    mask_rcnn = get_cfg()
    mask_rcnn.merge_from_file(model_zoo.get_config_file("Cityscapes/mask_rcnn_R_50_FPN.yaml"))
    mask_rcnn = _flat(mask_rcnn)
    assert {k: ours[k] for k in FROM_CITYSCAPES_MASK_RCNN} == {
        k: mask_rcnn[k] for k in FROM_CITYSCAPES_MASK_RCNN
    }
    assert {k: ours[k] for k in CITYSCAPES_DATA} == CITYSCAPES_DATA
    different = {
        k
        for k, v in ours.items()
        if coco[k] != v and k not in FROM_CITYSCAPES_MASK_RCNN + tuple(CITYSCAPES_DATA)
    }
    assert different == {"OUTPUT_DIR"}, different
    assert ours["MODEL.WEIGHTS"] == f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl"
    assert ours["OUTPUT_DIR"].endswith(f"cityscapes/panoptic/panoptic_fpn_{variant}R_{depth}_24k")


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v])
def test_variants_differ_from_plain_only_in_the_context_module_as_on_coco(variant):
    ours = _flat(make_cfg(f"{CITYSCAPES}/panoptic_fpn_{variant}R_50_24k.yaml"))
    plain = _flat(make_cfg(f"{CITYSCAPES}/panoptic_fpn_R_50_24k.yaml"))
    coco = _flat(make_cfg(f"{COCO}/panoptic_fpn_{variant}R_50_3x.yaml"))
    different = {k for k, v in ours.items() if plain[k] != v and k != "OUTPUT_DIR"}
    assert different and all(k.startswith(VARIANT_NODES) for k in different), different
    assert {k: ours[k] for k in different} == {k: coco[k] for k in different}
    assert ours["MODEL.SEM_SEG_HEAD.NAME"] == VARIANTS[variant]


# The OCR recipe at toy scale: a ResNet-18-FPN from scratch on 128x256 images for 6 iterations.
TOY_SCALE = [
    "MODEL.WEIGHTS", "",
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.BACKBONE.FREEZE_AT", "0",
    "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH", "0.0",  # keep untrained instances
    "INPUT.MIN_SIZE_TRAIN", "(128,)",
    "INPUT.MAX_SIZE_TRAIN", "256",
    "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "256",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.MAX_ITER", "6",
    "SOLVER.STEPS", "(4,)",
    "SOLVER.WARMUP_ITERS", "0",
    "DATALOADER.NUM_WORKERS", "0",
    "TEST.EVAL_PERIOD", "0",
]  # fmt: skip


def test_toy_scale_training_of_panoptic_fpn_ocr_runs_through_train_net_and_evaluates(tmp_path):
    datasets = tmp_path / "datasets"
    cityscapes = write_cityscapes_layout(datasets / "cityscapes", {"train": 4, "val": 2})
    prepare = load_script("datasets/prepare_cityscapes_panoptic.py")
    assert prepare.main(["--root", str(cityscapes)]) == 0
    output = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "train_net.py",
            "--config-file",
            f"{CITYSCAPES}/panoptic_fpn_ocr_R_50_24k.yaml",
        ]
        + TOY_SCALE
        + ["OUTPUT_DIR", str(output)],
        cwd=REPO_ROOT,
        env={**os.environ, "DETECTRON2_DATASETS": str(datasets)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    header = next(line for line in log.splitlines() if "PQ-Th" in line)
    assert re.split(r"\s*\|\s*", header.strip("| ")) == [
        "dataset", "AP", "PQ-Th", "mIoU", "PQ-St", "PQ", "mIoU-merged",
    ]  # fmt: skip
    row = next(
        line for line in log.splitlines() if "cityscapes_fine_panoptic_separated_val |" in line
    )
    values = [float(v) for v in re.split(r"\s*\|\s*", row.strip("| "))[1:]]
    assert len(values) == 6 and all(0.0 <= v <= 100.0 for v in values)
    for task in ("panoptic_seg", "sem_seg", "panoptic_sem_seg", "segm"):
        assert f"copypaste: Task: {task}" in log
    assert (output / "model_final.pth").is_file()
    assert not (REPO_ROOT / "matches.json").exists()  # cityscapesScripts' scratch file
