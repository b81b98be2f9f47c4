"""Multi-scale attention trains and evaluates through ``train_net.py`` with two different
context heads (OCR and PSPNet's pyramid pooling), as a user runs it."""

import json
import subprocess
import sys

import pytest
from conftest import FAST_TRAINING, REPO_ROOT


@pytest.mark.parametrize(
    "config",
    [
        "configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml",
        "configs/toy_scenes/hmsa_ppm_R18_os16_toy_scenes_600it.yaml",
    ],
)
def test_train_net_trains_and_evaluates_hmsa(config, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train_net.py"),
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
            "SOLVER.WARMUP_ITERS",
            "0",
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.SEM_SEG_HEAD.NORM",
            "BN",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    trained = [r for r in records if "loss_sem_seg_0.5x" in r]
    assert trained and {"loss_sem_seg", "loss_sem_seg_aux", "loss_sem_seg_1x"} <= set(trained[-1])
    evaluated = [r for r in records if "sem_seg/mIoU" in r]
    assert evaluated and 0 <= evaluated[-1]["sem_seg/mIoU"] <= 100
    assert "HMSASemanticSegmentor" in (tmp_path / "config.yaml").read_text()
