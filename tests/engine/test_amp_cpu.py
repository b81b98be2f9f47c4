"""SOLVER.AMP.ENABLED on CPU trains with bfloat16 autocast (Detectron2's AMPTrainer needs CUDA)."""

import math

import pytest
import torch
from conftest import FAST_TRAINING, QUICKSTART, make_cfg

from panoptic_ocr.engine import Trainer
from panoptic_ocr.engine.trainer import CPUAMPTrainer

TINY = FAST_TRAINING + [
    "DATASETS.TEST",
    "()",
    "MODEL.RESNETS.NORM",
    "BN",
    "MODEL.SEM_SEG_HEAD.NORM",
    "BN",
]


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    pass


def test_amp_on_cpu_trains_in_bfloat16(tmp_path):
    cfg = make_cfg(
        QUICKSTART,
        TINY
        + [
            "SOLVER.AMP.ENABLED",
            "True",
            "SOLVER.MAX_ITER",
            "2",
            "SOLVER.CHECKPOINT_PERIOD",
            "1000",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
    )
    trainer = Trainer(cfg)  # Detectron2's AMPTrainer: "CUDA is required for AMP training!"
    assert isinstance(trainer._trainer, CPUAMPTrainer)
    seen = []
    conv = (
        trainer.model.backbone.stem.conv1
        if hasattr(trainer.model.backbone, "stem")
        else next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    )
    conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay float32
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
