"""The authors' training recipes (configs/cityscapes/semantic/authors/) carry the values of the
authors' configs, written out here separately, and each builds a model that takes a training
step with its chosen losses. To stay fast the step runs with ``MODEL.HRNET.WIDTH 18`` (the
recipe's W48 head and losses unchanged, only the backbone narrower), plain BN and a 64x96 input."""

from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, make_cfg
from detectron2.modeling import build_model

from panoptic_ocr.modeling.losses import CrossEntropyLoss, RMILoss

pytestmark = pytest.mark.usefixtures("single_thread")
AUTHORS = Path("configs/cityscapes/semantic/authors")

# Both authors' Cityscapes class weights (HRNet-OCR lib/datasets/cityscapes.py; openseg ce_weight).
CITYSCAPES_WEIGHTS = [
    0.8373,
    0.918,
    0.866,
    1.0345,
    1.0166,
    0.9969,
    0.9754,
    1.0489,
    0.8786,
    1.0023,
    0.9539,
    0.9843,
    1.1116,
    0.9037,
    1.0865,
    1.0955,
    1.0865,
    1.1529,
    1.0507,
]

# name -> (batch, crop (H, W), lr, wd, iterations, main loss, aux loss, class weights, aux weight)
RECIPES = {
    # HRNet-OCR: 3 images x 4 GPUs, 484 epochs x int(2975 / 12) iterations.
    "hrnet_ocr_w48_bs12_crop512x1024_lr1e-2_wd5e-4_484ep_hrnet_ocr_branch": (
        12,
        (512, 1024),
        0.01,
        5e-4,
        484 * 247,
        "cross_entropy",
        "cross_entropy",
        CITYSCAPES_WEIGHTS,
        0.4,
    ),
    # openseg model zoo: 80000 iterations, batch 8, fs_auxce_loss with ce_weight.
    "hrnet_ocr_w48_bs8_crop512x1024_lr1e-2_wd5e-4_80k_openseg": (
        8,
        (512, 1024),
        0.01,
        5e-4,
        80000,
        "cross_entropy",
        "cross_entropy",
        CITYSCAPES_WEIGHTS,
        0.4,
    ),
    # openseg OCR+RMI: batch 16, lr 0.02, 40000 iterations, RMI main, plain CE aux.
    "hrnet_ocr_w48_bs16_crop512x1024_lr2e-2_wd5e-4_40k_openseg_rmi": (
        16,
        (512, 1024),
        0.02,
        5e-4,
        40000,
        "rmi",
        "cross_entropy",
        [],
        0.4,
    ),
    # NVIDIA HRNet_Mscale (train_cityscapes_sota.yml): 1 image x 16 GPUs, crop 1024x2048, lr 0.01,
    # wd 1e-4 (its default), 175 epochs x int(2975 / 16), RMI main, CE aux (OCR_AUX_RMI off).
    "nvidia_hmsa_hrnet_ocr_w48_bs16_crop1024x2048_lr1e-2_poly2_175ep_rmi": (
        16,
        (1024, 2048),
        0.01,
        1e-4,
        175 * 185,
        "rmi",
        "cross_entropy",
        [],
        0.4,
    ),
}
# Poly LR power where it is not the authors' usual 0.9 (NVIDIA's poly_exp).
POLY_POWER = {"nvidia_hmsa_hrnet_ocr_w48_bs16_crop1024x2048_lr1e-2_poly2_175ep_rmi": 2.0}


def test_every_recipe_config_is_checked():
    on_disk = {p.stem for p in (REPO_ROOT / AUTHORS).glob("*.yaml")}
    assert on_disk == set(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_carries_the_authors_values(name):
    batch, crop, lr, wd, iters, main, aux, weights, aux_weight = RECIPES[name]
    cfg = make_cfg(str(AUTHORS / f"{name}.yaml"))
    head = cfg.MODEL.SEM_SEG_HEAD
    assert cfg.SOLVER.IMS_PER_BATCH == batch
    assert tuple(cfg.INPUT.CROP.SIZE) == crop and cfg.INPUT.CROP.ENABLED
    assert cfg.SOLVER.BASE_LR == pytest.approx(lr) and cfg.SOLVER.WEIGHT_DECAY == pytest.approx(wd)
    assert cfg.SOLVER.MAX_ITER == iters
    assert cfg.SOLVER.MOMENTUM == pytest.approx(0.9)
    assert (
        cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR"
        and cfg.SOLVER.POLY_LR_POWER == pytest.approx(POLY_POWER.get(name, 0.9))
    )
    assert (head.LOSS_TYPE, head.AUX_LOSS_TYPE) == (main, aux)
    assert list(head.LOSS.CLASS_WEIGHTS) == pytest.approx(weights)
    assert head.AUX_LOSS_WEIGHT == pytest.approx(aux_weight) and head.LOSS_WEIGHT == pytest.approx(
        1.0
    )
    assert head.NUM_CLASSES == 19 and head.NAME == "OCRHead"
    assert cfg.MODEL.BACKBONE.NAME == "build_hrnet_backbone" and cfg.MODEL.HRNET.WIDTH == 48
    assert tuple(cfg.INPUT.RANDOM_SCALE) == (0.5, 2.0)
    assert not cfg.TEST.SLIDING_WINDOW.ENABLED  # both test whole 1024x2048 images
    if main == "rmi":  # H_48_D_4_RMI.json
        assert (head.LOSS.RMI_RADIUS, head.LOSS.RMI_POOL_STRIDE, head.LOSS.RMI_POOL_TYPE) == (
            3,
            3,
            "max",
        )
        assert head.LOSS.RMI_LAMBDA == pytest.approx(0.5)
    if name.endswith("_hrnet_ocr_branch"):
        assert head.AUX_KERNEL_SIZE == 1 and cfg.INPUT.BRIGHTNESS_DELTA == 0.0
        assert (head.LOSS.OHEM_THRESH, head.LOSS.OHEM_MIN_KEPT) == (pytest.approx(0.9), 131072)
    elif name.startswith("nvidia_hmsa"):
        assert head.AUX_KERNEL_SIZE == 1 and head.AUX_DROPOUT == 0.0
        assert cfg.MODEL.META_ARCHITECTURE == "HMSASemanticSegmentor"
        hmsa = cfg.MODEL.HMSA
        assert (tuple(hmsa.TRAIN_SCALES), tuple(hmsa.TEST_SCALES)) == ((0.5, 1.0), (0.5, 1.0, 2.0))
        assert hmsa.SUPERVISED_SCALE_WEIGHT == pytest.approx(0.05)
        assert (hmsa.ATTENTION_CHANNELS, hmsa.ATTENTION_NUM_CONVS) == (256, 2)
    else:
        assert head.AUX_KERNEL_SIZE == 3 and cfg.INPUT.BRIGHTNESS_DELTA == pytest.approx(10.0)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_builds_and_trains_one_step_with_its_losses(name):
    cfg = make_cfg(str(AUTHORS / f"{name}.yaml"), ["MODEL.HRNET.WIDTH", 18, "MODEL.WEIGHTS", ""])
    cfg.MODEL.HRNET.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    head = model.sem_seg_head
    main_cls = RMILoss if cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE == "rmi" else CrossEntropyLoss
    assert type(head.loss) is main_cls and type(head.aux_loss) is CrossEntropyLoss
    weights = cfg.MODEL.SEM_SEG_HEAD.LOSS.CLASS_WEIGHTS
    if weights:
        assert head.loss.class_weights.tolist() == pytest.approx(list(weights))
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 19, (64, 96), generator=g)
    labels[:8] = 255
    batch = [
        {"image": torch.randint(0, 256, (3, 64, 96), generator=g).float(), "sem_seg": labels}
        for _ in range(2)
    ]
    losses = model(batch)
    scale_terms = (
        {f"loss_sem_seg_{s:g}x" for s in cfg.MODEL.HMSA.TRAIN_SCALES}
        if cfg.MODEL.HMSA.SUPERVISED_SCALE_WEIGHT > 0
        and cfg.MODEL.META_ARCHITECTURE == "HMSASemanticSegmentor"
        else set()
    )
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"} | scale_terms
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
