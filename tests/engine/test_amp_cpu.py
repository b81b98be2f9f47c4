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


def _two_iterations(tmp_path, extra):
    from detectron2.utils.env import seed_all_rng

    opts = TINY + ["SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000", "SEED", "3"]
    cfg = make_cfg(QUICKSTART, opts + ["OUTPUT_DIR", str(tmp_path)] + extra)
    seed_all_rng(3)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer, [v for v, _ in trainer.storage.history("total_loss").values()]


def test_channels_last_training_keeps_the_weights_in_that_layout_and_the_losses(tmp_path, caplog):
    """MODEL.TRAIN_CHANNELS_LAST: 4-D weights in channels_last through the optimizer steps, and
    the same losses as the default layout (float32 rounding); AMP without native bfloat16
    warns that it is slow."""
    plain, plain_losses = _two_iterations(tmp_path / "plain", [])
    last, last_losses = _two_iterations(tmp_path / "last", ["MODEL.TRAIN_CHANNELS_LAST", "True"])
    weights = [p for p in last.model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert not all(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in plain.model.parameters()
        if p.dim() == 4 and p.shape[-1] > 1
    )
    assert plain_losses == pytest.approx(last_losses, rel=1e-4)
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with caplog.at_level("WARNING", logger="panoptic_ocr.engine.trainer"):
            Trainer(
                make_cfg(
                    QUICKSTART,
                    TINY + ["SOLVER.AMP.ENABLED", "True", "OUTPUT_DIR", str(tmp_path / "amp")],
                )
            )
        assert "about 12x slower" in caplog.text
