"""Multi-scale attention trains and evaluates through ``train_net.py`` with two different
context heads (OCR and PSPNet's pyramid pooling), as a user runs it."""

import json

import pytest
from conftest import FAST_TRAINING, REPO_ROOT, load_script


@pytest.mark.parametrize(
    "config",
    [
        "configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml",
        "configs/toy_scenes/hmsa_ppm_R18_os16_toy_scenes_600it.yaml",
    ],
)
def test_train_net_trains_and_evaluates_hmsa(config, tmp_path, quiet_setup_logger):
    """``train_net.py`` run in this process (its ``run(args)``: the output lock, ``launch`` with
    one process, ``main``), as ``python train_net.py --config-file ...`` runs it."""
    train_net = load_script("train_net.py")
    args = train_net.argument_parser().parse_args(
        [
            "--config-file",
            str(REPO_ROOT / config),
            *FAST_TRAINING,
            "MODEL.PPM.BRANCH_CHANNELS",
            "16",
            "MODEL.PPM.OUT_CHANNELS",
            "32",
            "MODEL.HMSA.ATTENTION_CHANNELS",
            "8",
            "SOLVER.MAX_ITER",
            "3",
            "INPUT.MIN_SIZE_TEST",  # evaluated at 96 pixels, scored at the labels' size
            "96",
            "INPUT.MAX_SIZE_TEST",
            "96",
            "SOLVER.WARMUP_ITERS",
            "0",
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.SEM_SEG_HEAD.NORM",
            "BN",
            "OUTPUT_DIR",
            str(tmp_path),
        ]
    )
    train_net.run(args)
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    trained = [r for r in records if "loss_sem_seg_0.5x" in r]
    assert trained and {"loss_sem_seg", "loss_sem_seg_aux", "loss_sem_seg_1x"} <= set(trained[-1])
    evaluated = [r for r in records if "sem_seg/mIoU" in r]
    assert evaluated and 0 <= evaluated[-1]["sem_seg/mIoU"] <= 100
    assert "HMSASemanticSegmentor" in (tmp_path / "config.yaml").read_text()
