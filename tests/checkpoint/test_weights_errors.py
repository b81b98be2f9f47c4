"""Bad weight files give one error naming the file and what is wrong; shapes must fit at
evaluation."""

import logging
import sys

import pytest
import torch
from conftest import QUICKSTART, REPO_ROOT, TINY_OCR, make_cfg

from panoptic_ocr.checkpoint.checkpointer import (
    ProjectCheckpointer,
    WeightFileError,
    load_inference_weights,
)
from panoptic_ocr.engine import Trainer

TINY = TINY_OCR + ["DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()", "VIS.NUM_IMAGES", "0"]


class _Tiny(torch.nn.Module):
    def __init__(self, out: int = 2):
        super().__init__()
        self.linear = torch.nn.Linear(2, out)


def _weights(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return str(path)


def _error(path) -> WeightFileError:
    with pytest.raises(WeightFileError) as e:
        load_inference_weights(_Tiny(), path)
    return e.value


def test_missing_file(tmp_path):
    path = str(tmp_path / "nowhere.pth")
    e = _error(path)
    assert e.kind == "missing" and str(e) == (
        f"Weight file '{path}' is missing: no such file (MODEL.WEIGHTS or the checkpoint named by "
        "last_checkpoint)"
    )


def test_truncated_checkpoint(tmp_path):
    full = _weights(tmp_path, "full.pth", {"model": _Tiny().state_dict()})
    data = open(full, "rb").read()
    path = _weights(tmp_path, "cut.pth", data[: len(data) // 2])
    e = _error(
        path
    )  # was torch's "PytorchStreamReader failed reading zip archive", without the file
    assert e.kind == "truncated"
    assert str(e).startswith(
        f"Weight file '{path}' is truncated: a torch zip archive of {len(data) // 2} bytes without "
        "its end"
    )
    assert _error(_weights(tmp_path, "empty.pth", b"")).kind == "truncated"


def test_not_a_checkpoint(tmp_path):
    path = _weights(tmp_path, "garbage.pth", b"garbage\n")
    e = _error(path)  # was "invalid literal for int() with base 10: 'arbage\n'"
    assert e.kind == "not a checkpoint" and str(e) == (
        f"Weight file '{path}' is not a checkpoint: neither a torch checkpoint (zip archive) nor a "
        "pickle; "
        "its first bytes are b'garbage\\n'"
    )


def test_wrong_format(tmp_path):
    path = _weights(tmp_path, "list.pth", [1, 2, 3])
    e = _error(path)
    assert e.kind == "wrong format" and str(e).startswith(
        f"Weight file '{path}' is a checkpoint of the wrong format: it holds a list without a "
        "state dict"
    )
    path = _weights(tmp_path, "strings.pth", {"model": {"linear.weight": "not a tensor"}})
    assert "its state dict entry 'linear.weight' is a str, not a tensor" in str(_error(path))


def test_garbage_model_weights_in_training_and_eval_only(tmp_path):
    import train_net

    path = _weights(tmp_path, "garbage.pth", b"garbage\n")
    cfg = make_cfg(QUICKSTART, TINY + ["MODEL.WEIGHTS", path, "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(WeightFileError, match=f"Weight file '{path}' is not a checkpoint"):
        train_net.evaluate_only(cfg)
    trainer = Trainer(cfg)
    with pytest.raises(WeightFileError, match=f"Weight file '{path}' is not a checkpoint"):
        trainer.resume_or_load(resume=False)


def test_classifier_of_another_size(tmp_path, caplog):
    import train_net

    five = make_cfg(QUICKSTART, TINY + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5"])
    path = _weights(tmp_path, "five_classes.pth", {"model": Trainer.build_model(five).state_dict()})
    cfg = make_cfg(QUICKSTART, TINY + ["MODEL.WEIGHTS", path, "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(
        ValueError,
        match=rf"Checkpoint '{path}' does not fit the model: 4 tensor\(s\) differ in shape "
        r"\('sem_seg_head.aux_branch.layers.2.weight' \(5, 32, 1, 1\) in the file, \(7, 32, 1, 1\) "
        r"in the model.*"
        r"MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    ):
        train_net.evaluate_only(cfg)  # no evaluation of a half-random classifier
    assert not (tmp_path / "out" / "inference").exists()
    trainer = Trainer(
        cfg
    )  # training: Detectron2's fine-tuning behaviour, the classifier is skipped
    with caplog.at_level(logging.WARNING):
        trainer.resume_or_load(resume=False)
    assert "Skip loading parameter 'sem_seg_head.predictor.weight'" in caplog.text


def test_weights_of_another_width_name_the_config_and_the_tool_exits_in_one_line(
    tmp_path, monkeypatch, capsys
):
    """Same class count, other layer widths (a checkpoint of another config): the message
    points at the config it was trained with, not at NUM_CLASSES; train_net.py prints it as one
    error line and exits 2, without a traceback."""
    import runpy

    wide = make_cfg(QUICKSTART, TINY + ["MODEL.OCR.MID_CHANNELS", "48"])
    path = _weights(tmp_path, "wide.pth", {"model": Trainer.build_model(wide).state_dict()})
    out_dir = str(tmp_path / "out")
    argv = ["train_net.py", "--config-file", str(REPO_ROOT / QUICKSTART), "--eval-only"]
    argv += TINY + ["MODEL.WEIGHTS", path, "OUTPUT_DIR", out_dir]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO_ROOT / "train_net.py"), run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"train_net.py: error: Checkpoint '{path}' does not fit the model")
    assert "trained with another config" in last and "NUM_CLASSES" not in last
    assert not (tmp_path / "out" / "inference").exists()


def test_project_checkpointer_saves_atomically(tmp_path):
    checkpointer = ProjectCheckpointer(_Tiny(), str(tmp_path))
    checkpointer.save("model_0000000", iteration=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000000.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    assert (
        ProjectCheckpointer(_Tiny(), str(tmp_path)).resume_or_load("", resume=True)["iteration"]
        == 0
    )
