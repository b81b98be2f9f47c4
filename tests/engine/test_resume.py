"""Resuming follows the config's schedule; checkpoints survive SIGKILL; metrics.json stays clean."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from conftest import FAST_TRAINING, QUICKSTART, REPO_ROOT, make_cfg
from detectron2.engine import HookBase
from fault_injection import environment, killed_at

from panoptic_ocr.checkpoint.checkpointer import ProjectCheckpointer, trim_metrics_for_resume
from panoptic_ocr.engine import Trainer
from panoptic_ocr.engine.lr_scheduler import build_lr_scheduler

# The quick start shrunk to a few seconds per run: narrow OCR, 64x64 crops, 2 images, no workers,
# no test set, plain BN.
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
    """Tiny tensors: one thread, no OpenMP barrier stalls on shared cores."""


def _lrs(cfg, iterations):
    """LR of each iteration 0..iterations-1 of ``Trainer.build_lr_scheduler(cfg)``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    out = []
    for _ in range(iterations):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(
    "opts",
    [
        [],  # the quick start: 20 linear warmup iterations
        ["SOLVER.WARMUP_ITERS", "0"],
        [
            "SOLVER.WARMUP_METHOD",
            "constant",
            "SOLVER.WARMUP_FACTOR",
            "0.1",
            "SOLVER.WARMUP_ITERS",
            "7",
        ],
        [
            "SOLVER.POLY_LR_POWER",
            "2.0",
            "SOLVER.POLY_LR_CONSTANT_ENDING",
            "0.3",
            "SOLVER.WARMUP_ITERS",
            "5",
        ],
        # the floor reached during the warmup
        ["SOLVER.POLY_LR_CONSTANT_ENDING", "0.99", "SOLVER.WARMUP_ITERS", "10"],
    ],
)
def test_poly_schedule_keeps_the_lr_values_of_warmup_poly_lr(opts):
    from detectron2.projects.deeplab import build_lr_scheduler as build_deeplab_lr_scheduler

    cfg = make_cfg(QUICKSTART, ["SOLVER.MAX_ITER", "60"] + opts)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    old = build_deeplab_lr_scheduler(cfg, optimizer)
    assert type(old).__name__ == "WarmupPolyLR"
    expected = []
    for _ in range(60):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        old.step()
    assert _lrs(cfg, 60) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_scheduler_state_holds_no_copy_of_the_config():
    cfg = make_cfg(QUICKSTART, ["SOLVER.MAX_ITER", "20"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    assert set(build_lr_scheduler(cfg, optimizer).state_dict()) == {"base_lrs", "last_epoch"}


class _Interrupted(Exception):
    pass


class _StopAfter(HookBase):
    """Interrupts training after iteration ``iteration`` (as a crash would), once the hooks
    registered before it (the periodic checkpointer too) ran."""

    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            raise _Interrupted()


def test_interrupted_training_resumes_at_the_next_iteration_on_the_new_schedule(tmp_path):
    """Resume after the checkpoint of an interrupted run: the next iteration, the saved weights
    and scheduler state, and the LRs of the new config's larger MAX_ITER."""
    opts = TINY + ["SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "2"]
    opts += ["OUTPUT_DIR", str(tmp_path)]
    first = Trainer(make_cfg(QUICKSTART, opts + ["SOLVER.MAX_ITER", "4"]))
    first.register_hooks([_StopAfter(1)])  # after the periodic checkpoint of iteration 1
    first.resume_or_load(resume=False)
    with pytest.raises(_Interrupted):
        first.train()
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000001.pth"
    saved = torch.load(tmp_path / "model_0000001.pth", map_location="cpu", weights_only=True)
    assert saved["iteration"] == 1

    cfg = make_cfg(QUICKSTART, opts + ["SOLVER.MAX_ITER", "6"])
    second = Trainer(cfg)
    second.resume_or_load(resume=True)
    assert second.start_iter == 2
    state = second.model.state_dict()
    assert all(torch.equal(state[name], value) for name, value in saved["model"].items())
    assert second.scheduler.last_epoch == 2  # the LR schedule resumes too
    second.train()  # WarmupPolyLR raised "math domain error" past its old max_iters (here 4)
    assert second.iter == 6  # Detectron2 leaves iter at max_iter after the last step
    history = second.storage.history("lr").values()
    assert [it for _, it in history] == [2, 3, 4, 5]
    assert [lr for lr, _ in history] == pytest.approx(_lrs(cfg, 6)[2:], rel=1e-12)
    assert [it for _, it in second.storage.history("total_loss").values()] == [2, 3, 4, 5]
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 5


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)


def test_resume_skips_a_corrupt_newest_checkpoint_and_a_truncated_tag(tmp_path, caplog):
    writer = ProjectCheckpointer(_Tiny(), str(tmp_path))
    writer.save("model_0000001", iteration=1)
    older = (tmp_path / "model_0000001.pth").read_bytes()
    os.utime(tmp_path / "model_0000001.pth", (1_000_000, 1_000_000))
    writer.save("model_0000003", iteration=3)
    newest = tmp_path / "model_0000003.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # cut off
    (tmp_path / "last_checkpoint").write_text("")  # truncated

    reader = ProjectCheckpointer(_Tiny(), str(tmp_path))
    with caplog.at_level(logging.WARNING):
        extra = reader.resume_or_load("", resume=True)
    assert extra["iteration"] == 1 and reader.resumed_from == str(tmp_path / "model_0000001.pth")
    text = caplog.text
    assert f"'{tmp_path / 'last_checkpoint'}' is empty" in text
    assert f"Resume: skipping checkpoint '{newest}': Weight file '{newest}' is truncated" in text
    # Nothing was deleted or changed.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last_checkpoint", "model_0000001.pth", "model_0000003.pth"]
    assert (tmp_path / "model_0000001.pth").read_bytes() == older

    newest.unlink()
    (tmp_path / "model_0000001.pth").write_bytes(b"garbage\n")
    message = "no checkpoint in .* loads; tried Weight file .* is not a checkpoint"
    with pytest.raises(RuntimeError, match=message):
        ProjectCheckpointer(_Tiny(), str(tmp_path)).resume_or_load("", resume=True)


def test_trim_metrics_keeps_a_backup(tmp_path):
    metrics = tmp_path / "metrics.json"
    lines = [json.dumps({"iteration": i, "loss": 1.0}) + "\n" for i in (4, 9, 14)]
    metrics.write_text("".join(lines) + '{"iteration": 19, "lo')  # killed mid-line
    before = metrics.read_bytes()
    assert trim_metrics_for_resume(str(metrics), 15) == str(metrics) + ".before-resume-15"
    assert metrics.read_text() == "".join(lines)
    assert (tmp_path / "metrics.json.before-resume-15").read_bytes() == before
    assert trim_metrics_for_resume(str(metrics), 10) == str(metrics) + ".before-resume-10"
    assert metrics.read_text() == "".join(lines[:2])
    assert trim_metrics_for_resume(str(metrics), 10) is None  # nothing beyond: untouched


def _train(out_dir, fault=None, max_iter=25):
    """train_net.py --resume on the tiny quick start; with ``fault``, the process SIGKILLs
    itself there (:mod:`fault_injection`)."""
    env = environment(fault, {**os.environ, "OMP_NUM_THREADS": "1"})
    return subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train_net.py"),
            "--config-file",
            str(REPO_ROOT / QUICKSTART),
            "--resume",
            *TINY,
            "SOLVER.MAX_ITER",
            str(max_iter),
            "SOLVER.CHECKPOINT_PERIOD",
            "5",
            "OUTPUT_DIR",
            str(out_dir),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _checkpoints(folder):
    """The checkpoints of ``folder``: ``*.pth`` but the hidden temporaries of interrupted saves."""
    return [p for p in folder.glob("*.pth") if not p.name.startswith(".")]


def test_sigkilled_training_resumes_to_the_end(tmp_path):
    """Killed after an iteration, while writing a checkpoint, before its rename and before
    last_checkpoint is updated: each --resume continues; the run ends with every iteration's
    metrics once, every checkpoint loadable, nothing lost."""
    written = {}  # every metrics line ever written, by iteration: none may disappear
    kills = [
        ("after_iter:12", 10),  # newest checkpoint: iteration 9
        ("during_save:model_0000014", 10),  # half a temporary file; 9 stays the newest
        ("before_rename:model_0000019", 15),  # metrics of 19 written, its checkpoint not in place
        ("before_tag:model_0000019", 20),  # checkpoint 19 in place, last_checkpoint still 14
    ]
    for fault, next_start in kills:
        out = _train(tmp_path, fault)
        assert out.returncode == -9, (fault, out.returncode, out.stderr[-2000:])
        assert killed_at(fault) in out.stderr  # where it was asked to die, not elsewhere
        for line in (tmp_path / "metrics.json").read_text().splitlines():
            written.setdefault(json.loads(line)["iteration"], line)
        for p in _checkpoints(tmp_path):  # never a half-written checkpoint under a real name
            torch.load(p, map_location="cpu", weights_only=False)
    (tmp_path / "last_checkpoint").write_text("")  # and a truncated tag on top

    out = _train(tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    assert f"'{tmp_path / 'last_checkpoint'}' is empty" in log
    assert "Starting training from iteration 20" in log
    lines = (tmp_path / "metrics.json").read_text().splitlines()
    # As an uninterrupted run: Detectron2 writes every 20 iterations and at the end.
    assert [json.loads(line)["iteration"] for line in lines] == [19, 24]
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 24
    expected = {f"model_{i:07d}.pth" for i in (4, 9, 14, 19, 24)} | {"model_final.pth"}
    assert {p.name for p in _checkpoints(tmp_path)} == expected
    for p in _checkpoints(tmp_path):
        torch.load(p, map_location="cpu", weights_only=False)
    partial = list(tmp_path.glob(".partial-*model_0000014.pth"))
    assert partial, "the interrupted save's temporary is kept"
    # The first run's metrics of iteration 19 (trained again after the resume at 15): in a backup.
    backup = (tmp_path / "metrics.json.before-resume-15").read_text()
    assert written[19] in backup and set(written) == {19}


def test_resuming_a_finished_run_keeps_its_metrics(tmp_path, caplog):
    """--resume of a run that reached MAX_ITER trains nothing, so metrics.json (its final
    evaluation included) stays whole: no cut, no backup, no warning."""
    opts = TINY + ["SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000"]
    opts += ["OUTPUT_DIR", str(tmp_path)]
    first = Trainer(make_cfg(QUICKSTART, opts))
    first.resume_or_load(resume=False)
    first.train()
    metrics = tmp_path / "metrics.json"
    # what the final evaluation of a finished run writes: an entry at iteration MAX_ITER
    with open(metrics, "a") as f:
        f.write(json.dumps({"iteration": 2, "sem_seg/mIoU": 1.0}) + "\n")
    before = metrics.read_bytes()
    second = Trainer(make_cfg(QUICKSTART, opts))
    with caplog.at_level("WARNING"):
        second.resume_or_load(resume=True)
    assert second.start_iter == 2 and metrics.read_bytes() == before
    assert not list(tmp_path.glob("metrics.json.before-resume-*"))
    assert "of later entries" not in caplog.text


def test_training_a_finished_run_longer_keeps_its_final_evaluation(tmp_path, caplog):
    """--resume with a larger MAX_ITER from a finished run's model_final: its final evaluation
    (written at iteration MAX_ITER, after the last step) describes the weights the resume starts
    from, so it stays in metrics.json, with no cut and no warning."""
    opts = TINY + ["SOLVER.CHECKPOINT_PERIOD", "1000", "OUTPUT_DIR", str(tmp_path)]
    first = Trainer(make_cfg(QUICKSTART, opts + ["SOLVER.MAX_ITER", "2"]))
    first.resume_or_load(resume=False)
    first.train()
    metrics = tmp_path / "metrics.json"
    with open(metrics, "a") as f:  # what the final evaluation of the finished run writes
        f.write(json.dumps({"iteration": 2, "sem_seg/mIoU": 1.0}) + "\n")
    before = metrics.read_bytes()
    second = Trainer(make_cfg(QUICKSTART, opts + ["SOLVER.MAX_ITER", "4"]))
    with caplog.at_level("WARNING"):
        second.resume_or_load(resume=True)
    assert second.start_iter == 2 and metrics.read_bytes() == before
    assert not list(tmp_path.glob("metrics.json.before-resume-*"))
    assert "of later entries" not in caplog.text


def test_trim_after_a_finished_run_keeps_only_its_final_evaluation(tmp_path):
    """After a finished run only the first loss-free entry at start_iter is kept: a training
    entry there, and whatever follows it (a killed longer run's), is cut."""
    metrics = tmp_path / "metrics.json"
    entries = [
        {"iteration": 1, "total_loss": 1.0},
        {"iteration": 2, "sem_seg/mIoU": 5.0},  # the finished run's final evaluation
        {"iteration": 2, "total_loss": 0.9},  # a longer run, killed before its checkpoint
        {"iteration": 3, "sem_seg/mIoU": 6.0},
    ]
    lines = [json.dumps(e) + "\n" for e in entries]
    metrics.write_text("".join(lines))
    assert trim_metrics_for_resume(str(metrics), 2, after_finished_run=True)
    assert metrics.read_text() == "".join(lines[:2])
    metrics.write_text("".join(lines))
    assert trim_metrics_for_resume(str(metrics), 2)  # an interrupted run's entry at 2: cut
    assert metrics.read_text() == lines[0]
