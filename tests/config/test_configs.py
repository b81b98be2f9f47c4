"""Every config loads, names registered components, and the benchmark configs follow the
paper's recipe (sec. 4.2; supplementary sec. D for MobileNetV2)."""

import json

import pytest
import torch
from conftest import REPO_ROOT, make_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY

CONFIGS = sorted(p.relative_to(REPO_ROOT) for p in (REPO_ROOT / "configs").rglob("*.yaml"))
LEAVES = [p for p in CONFIGS if not p.name.startswith("Base-")]

# The paper's numbers, written out here on purpose (not imported from tools/generate_configs.py):
# dataset folder -> (base LR, weight decay, crop, batch, iterations, classes).
PAPER = {
    "cityscapes": (0.01, 5e-4, 769, 8, 40000, 19),
    "ade20k": (0.02, 1e-4, 520, 16, 150000, 150),
    "lip": (0.007, 5e-4, 473, 32, 100000, 20),
    "pascal_context": (0.001, 1e-4, 520, 16, 30000, 59),
    "coco_stuff": (0.001, 1e-4, 520, 16, 60000, 171),
}
# configs/<dataset>/semantic/authors/ hold the authors' own recipes
# (tests/config/test_recipe_configs.py); configs/<dataset>/panoptic/ are Panoptic-FPN recipes
# (tests/engine/test_cityscapes_panoptic_fpn.py).
BENCHMARK_LEAVES = [
    p
    for p in LEAVES
    if p.parts[1] in PAPER and p.parts[2] == "semantic" and "authors" not in p.parts
]


def test_there_are_configs_for_every_benchmark_and_backbone():
    names = {p.stem for p in BENCHMARK_LEAVES}
    for dataset in PAPER:
        assert any(
            p.parts[1] == dataset and "_R101_os8_" in p.stem and p.stem.startswith("ocr_")
            for p in BENCHMARK_LEAVES
        )
        assert any(p.parts[1] == dataset and "_HRNetV2W48_" in p.stem for p in BENCHMARK_LEAVES)
    for head in (
        "ppm",
        "aspp",
        "self_attention",
        "danet",
        "cc_attention",
        "ocr_no_region_sup",
        "ocr_da_relations",
        "ocr_acf_relations",
        "ocr_gt_oracle",
        "coarse_only",
        "fine_only",
        "label_ensemble",
        "label_refinement",
    ):
        assert f"{head}_R101_os8_bs8_crop769_poly_40k" in names
    for k in (8, 16, 32, 64, 128):
        assert f"double_attention_k{k}_R101_os8_bs8_crop769_poly_40k" in names
    assert {
        "ocr_MobileNetV2_os8_bs16_crop769_poly_100k",
        "fine_only_MobileNetV2_os8_bs16_crop769_poly_100k",
    } <= names


@pytest.mark.parametrize("path", LEAVES, ids=str)
def test_config_loads_and_names_registered_parts(path):
    cfg = make_cfg(str(path))
    assert cfg.MODEL.META_ARCHITECTURE in META_ARCH_REGISTRY
    assert cfg.MODEL.BACKBONE.NAME in BACKBONE_REGISTRY
    assert cfg.MODEL.SEM_SEG_HEAD.NAME in SEM_SEG_HEADS_REGISTRY
    registered = set(DatasetCatalog.list())
    if "custom" in path.parts:  # registered from the JSON file the walkthrough names
        registered |= set(
            json.loads((REPO_ROOT / "configs/custom/toy_scenes_as_custom.json").read_text())
        )
    for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST:
        assert name in registered, f"{path}: dataset {name} is not registered"


@pytest.mark.parametrize("path", BENCHMARK_LEAVES, ids=str)
def test_benchmark_config_follows_the_paper(path):
    cfg = make_cfg(str(path))
    lr, wd, crop, batch, iters, classes = PAPER[path.parts[1]]
    mobilenet = "MobileNetV2" in path.stem
    if mobilenet:  # supplementary sec. D: batch 16, 100K iterations, otherwise the same
        batch, iters = 16, 100000
    elif "_trainval_20k_after_coarse" in path.stem:
        iters = 20000
    elif "_coarse_50k" in path.stem:
        iters = 50000
    elif "_100k_trainval" in path.stem:
        iters = 100000
        assert set(cfg.DATASETS.TRAIN) == {
            "cityscapes_fine_sem_seg_train_checked",
            "cityscapes_fine_sem_seg_val_checked",
        }
    assert cfg.SOLVER.BASE_LR == pytest.approx(lr)
    assert cfg.SOLVER.WEIGHT_DECAY == pytest.approx(wd)
    assert tuple(cfg.INPUT.CROP.SIZE) == (crop, crop) and cfg.INPUT.CROP.ENABLED
    assert cfg.SOLVER.IMS_PER_BATCH == batch
    assert cfg.SOLVER.MAX_ITER == iters
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == classes
    # The shared recipe.
    assert (
        cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR"
        and cfg.SOLVER.POLY_LR_POWER == pytest.approx(0.9)
    )
    assert cfg.SOLVER.MOMENTUM == pytest.approx(0.9)
    assert tuple(cfg.INPUT.RANDOM_SCALE) == (0.5, 2.0)
    assert cfg.INPUT.RANDOM_FLIP == "horizontal" and cfg.INPUT.BRIGHTNESS_DELTA == pytest.approx(
        10.0
    )
    assert cfg.MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT == pytest.approx(0.4)
    assert cfg.MODEL.SEM_SEG_HEAD.NORM == "SyncBN"
    if "_R101_" in path.stem:
        assert cfg.MODEL.RESNETS.DEPTH == 101 and cfg.MODEL.RESNETS.NORM == "SyncBN"
        assert (cfg.MODEL.RESNETS.RES4_DILATION, cfg.MODEL.RESNETS.RES5_DILATION) == (2, 4)  # OS 8
    if "double_attention_k" in path.stem:
        assert f"_k{cfg.MODEL.DOUBLE_ATTENTION.NUM_REGIONS}_" in path.stem


def test_configs_build_their_heads_on_their_backbones():
    """Each distinct (backbone, head) pair of the benchmark configs builds (shapes agree)."""
    from detectron2.modeling import build_backbone, build_sem_seg_head

    built_backbones = {}
    seen = set()
    for path in BENCHMARK_LEAVES:
        cfg = make_cfg(str(path))
        cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = cfg.MODEL.HRNET.NORM = "BN"
        key_bb = (cfg.MODEL.BACKBONE.NAME, tuple(cfg.MODEL.RESNETS.OUT_FEATURES))
        key = (key_bb, cfg.MODEL.SEM_SEG_HEAD.NAME)
        if key in seen:
            continue
        seen.add(key)
        with torch.device("meta"):  # shapes and parameters, no memory nor initialisation
            if key_bb not in built_backbones:
                built_backbones[key_bb] = build_backbone(cfg).output_shape()
            head = build_sem_seg_head(cfg, built_backbones[key_bb])
        assert sum(p.numel() for p in head.parameters()) > 0, path


def test_hrnet_w48_ocr_cityscapes_config_has_the_papers_parameter_count():
    """HRNetV2-W48 + OCR for Cityscapes: about 70.4M parameters (HRNet-OCR's 1x1 aux conv)."""
    from detectron2.modeling import build_model

    cfg = make_cfg("configs/cityscapes/semantic/ocr_HRNetV2W48_bs8_crop769_poly_40k.yaml")
    cfg.MODEL.HRNET.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == 70_371_446


def test_dataset_specific_test_time_settings():
    lip = make_cfg("configs/lip/semantic/ocr_R101_os8_bs32_crop473_poly_100k.yaml")
    assert lip.TEST.AUG.ENABLED and lip.TEST.AUG.FLIP and tuple(lip.TEST.AUG.SCALES) == (1.0,)
    assert [tuple(p) for p in lip.TEST.AUG.FLIP_CHANNEL_PAIRS] == [(14, 15), (16, 17), (18, 19)]
    city = make_cfg("configs/cityscapes/semantic/ocr_R101_os8_bs8_crop769_poly_40k.yaml")
    assert city.TEST.SLIDING_WINDOW.ENABLED and tuple(city.TEST.SLIDING_WINDOW.SIZE) == (769, 769)


@pytest.mark.parametrize("path", LEAVES, ids=str)
def test_configs_use_the_checked_datasets(path):
    """Where the project registers a checked twin (``<name>_checked``) of a Detectron2 dataset,
    configs name the twin, not Detectron2's entry."""
    cfg = make_cfg(str(path))
    registered = set(DatasetCatalog.list())
    if "custom" in path.parts:  # registered from the JSON file the walkthrough names
        registered |= set(
            json.loads((REPO_ROOT / "configs/custom/toy_scenes_as_custom.json").read_text())
        )
    for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST:
        assert f"{name}_checked" not in registered, f"{path}: use {name}_checked instead of {name}"
