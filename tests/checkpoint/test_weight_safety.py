"""No code runs from a weight file, no result comes from weights that do not fill the model, no
run shares an output folder, and a write that fails for lack of space says so (issue 17)."""

import argparse
import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_cfg
from PIL import Image

import panoptic_ocr.checkpoint.checkpointer as checkpointer_module
from panoptic_ocr.checkpoint import load_checkpoint
from panoptic_ocr.checkpoint.checkpointer import (
    IncompleteWeightsError,
    ProjectCheckpointer,
    WeightFileError,
    load_inference_weights,
)
from panoptic_ocr.checkpoint.released import load_released
from panoptic_ocr.checkpoint.weight_files import read_weight_file
from panoptic_ocr.engine import Trainer
from panoptic_ocr.engine.arguments import add_weight_arguments, weight_overrides
from panoptic_ocr.engine.output_lock import (
    LOCK_NAME,
    OutputDirLock,
    OutputDirLockedError,
    OutputDirNotWritableError,
)
from panoptic_ocr.utils.safe_write import OutputWriteError, save_torch

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
PANOPTIC = "configs/toy_scenes/panoptic_fpn_R18_toy_scenes_600it.yaml"
TINY = [
    "MODEL.OCR.MID_CHANNELS",
    "32",
    "MODEL.OCR.KEY_CHANNELS",
    "16",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "32",
    "DATALOADER.NUM_WORKERS",
    "0",
    "VIS.NUM_IMAGES",
    "0",
]


class _Payload:
    """Unpickling it calls ``open(marker, "w")``: the marker file appears if code from the file
    ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 3)
        self.norm = torch.nn.BatchNorm1d(3)


def _tiny_cfg(tmp_path, weights, *opts):
    return make_cfg(
        QUICKSTART,
        TINY + ["MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(tmp_path / "out"), *opts],
    )


def _real_weights(tmp_path, name="model.pth", **extra):
    state = Trainer.build_model(_tiny_cfg(tmp_path, "")).state_dict()
    path = tmp_path / name
    torch.save({"model": state, **extra}, path)
    return path, state


def _evil_pkl(tmp_path, state):
    """A Detectron2 model-zoo .pkl with genuine weights (numpy arrays) and a payload beside them."""
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(
            {
                "model": {k: v.numpy() for k, v in state.items()},
                "__author__": "x",
                "extra": _Payload(tmp_path / "MARKER"),
            },
            f,
        )
    return path


# ---------------------------------------------------------------------------------- safe reading
def test_pkl_and_pth_payloads_are_refused_everywhere_and_nothing_runs(tmp_path):
    import train_net
    from panoptic_ocr.engine.predictor import Predictor
    from panoptic_ocr.export.exporter import build_export_model
    from panoptic_ocr.utils.object_regions import visualize_object_regions

    pth, state = _real_weights(tmp_path, "evil.pth", extra=_Payload(tmp_path / "MARKER"))
    pkl = _evil_pkl(tmp_path, state)
    image = str(tmp_path / "image.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
        image
    )
    entry_points = {
        "train": lambda cfg: Trainer(cfg).resume_or_load(resume=False),
        "eval-only": train_net.evaluate_only,
        "demo": Predictor,
        "export": build_export_model,
        "object regions": lambda cfg: visualize_object_regions(
            cfg, [image], str(tmp_path / "reg"), weights=cfg.MODEL.WEIGHTS
        ),
    }
    for path, holds in ((pkl, "io.open"), (pth, "io.open")):
        for name, run in entry_points.items():
            with pytest.raises(WeightFileError) as e:
                run(_tiny_cfg(tmp_path, path))
            assert e.value.kind == "refused", name
            assert str(e.value).startswith(
                f"Weight file '{path}' was refused (nothing in it was run): it holds {holds}"
            )
            assert "MODEL.WEIGHTS_TRUSTED True" in str(e.value)
    for convert in (load_checkpoint, load_released):  # tools/convert_pretrained.py
        for path in (pkl, pth):
            with pytest.raises(WeightFileError, match="was refused"):
                convert(str(path))
    assert not (tmp_path / "MARKER").exists()
    assert not (tmp_path / "out" / "inference").exists()


def test_detectron2_and_converter_pkl_files_still_load(tmp_path):
    """What the restricted unpickler admits: Detectron2's model zoo layout, numpy arrays and
    scalars of several dtypes, OrderedDicts, a Caffe2 'blobs' dict."""
    from collections import OrderedDict

    model = _Tiny()
    arrays = OrderedDict((k, v.numpy()) for k, v in model.state_dict().items())
    zoo = tmp_path / "zoo.pkl"
    with open(zoo, "wb") as f:
        pickle.dump(
            {
                "model": arrays,
                "__author__": "Detectron2 Model Zoo",
                "matching_heuristics": False,
                "scalars": [np.float32(1.5), np.int64(3), np.arange(3, dtype=np.uint8)],
            },
            f,
            protocol=2,
        )
    loaded = read_weight_file(str(zoo))
    assert loaded["scalars"][0] == np.float32(1.5) and loaded["scalars"][2].dtype == np.uint8
    other = _Tiny()
    load_inference_weights(other, str(zoo))
    assert torch.equal(other.linear.weight, model.linear.weight)
    blobs = tmp_path / "caffe2.pkl"
    with open(blobs, "wb") as f:
        pickle.dump(
            {
                "blobs": {
                    "linear.weight": arrays["linear.weight"],
                    "linear.weight_momentum": arrays["linear.weight"],
                }
            },
            f,
        )
    extra = ProjectCheckpointer(_Tiny())._load_file(str(blobs))
    assert list(extra["model"]) == ["linear.weight"] and extra["matching_heuristics"]


def test_trusted_files_load_with_a_warning(tmp_path, caplog):
    pth, state = _real_weights(tmp_path, "evil.pth", extra=_Payload(tmp_path / "MARKER"))
    model = Trainer.build_model(_tiny_cfg(tmp_path, ""))
    with caplog.at_level(logging.WARNING):
        load_inference_weights(model, str(pth), trusted=True)
    assert (tmp_path / "MARKER").exists()  # the opt-in really unpickles everything
    assert "as a trusted file (MODEL.WEIGHTS_TRUSTED): any code in it runs" in caplog.text
    (tmp_path / "MARKER").unlink()
    load_inference_weights(model, str(_evil_pkl(tmp_path, state)), trusted=True)
    assert (tmp_path / "MARKER").exists()


def test_damaged_and_refused_files_are_told_apart(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": _Tiny().state_dict()}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    cut = tmp_path / "cut_legacy.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError) as e:
        read_weight_file(str(cut))
    assert e.value.kind == "truncated"
    cut_pkl = tmp_path / "cut.pkl"
    cut_pkl.write_bytes(pickle.dumps({"model": {"w": np.ones(100)}})[:50])
    with pytest.raises(WeightFileError) as e:
        read_weight_file(str(cut_pkl))
    assert e.value.kind == "truncated"


# -------------------------------------------------------------------- strict where results come
def test_results_need_weights_that_fill_the_model(tmp_path):
    import train_net

    path, state = _real_weights(tmp_path)
    cases = {
        "empty": ("", "MODEL.WEIGHTS is empty: the model would keep its random initialisation"),
        "no key matches": (
            {f"other.{k}": v for k, v in state.items()},
            "tensors are not in the file",
        ),
        "head missing": (
            {k: v for k, v in state.items() if not k.startswith("sem_seg_head.")},
            "does not fill the model: 49 of its 178 tensors are not in the file",
        ),
        "not finite": (
            {k: v.float() * float("nan") if v.is_floating_point() else v for k, v in state.items()},
            "holds non-finite values (NaN or inf)",
        ),
        "unexpected": (
            {**state, "extra.weight": torch.ones(1)},
            "holds 1 tensor(s) the model does not have ('extra.weight')",
        ),
    }
    for name, (content, message) in cases.items():
        weights = ""
        if content != "":
            weights = tmp_path / f"{name.replace(' ', '_')}.pth"
            torch.save({"model": content}, weights)
        with pytest.raises(
            IncompleteWeightsError, match=message.replace("(", r"\(").replace(")", r"\)")
        ) as e:
            train_net.evaluate_only(_tiny_cfg(tmp_path, weights))
        assert "--allow-partial-weights" in str(e.value), name
    assert not (tmp_path / "out" / "inference").exists()
    # The explicit opt-in evaluates them, with warnings; the exact weights evaluate without it.
    model = Trainer.build_model(_tiny_cfg(tmp_path, ""))
    load_inference_weights(model, str(tmp_path / "head_missing.pth"), allow_partial=True)
    load_inference_weights(model, "", allow_partial=True)
    load_inference_weights(model, str(path))
    # Training from a partial checkpoint keeps Detectron2's fine-tuning behaviour.
    Trainer(_tiny_cfg(tmp_path, tmp_path / "head_missing.pth")).resume_or_load(resume=False)


def test_panoptic_tools_refuse_semantic_weights(tmp_path):
    from panoptic_ocr.engine.predictor import Predictor

    semantic, _ = _real_weights(tmp_path)
    cfg = make_cfg(PANOPTIC, ["MODEL.WEIGHTS", str(semantic), "DATALOADER.NUM_WORKERS", "0"])
    with pytest.raises(IncompleteWeightsError, match="does not fill the model"):
        Predictor(cfg)


def test_eval_only_checks_the_test_datasets_only(tmp_path):
    """A config whose training set has another class count evaluates on its test set."""
    import train_net
    from panoptic_ocr.data.class_counts import ClassCountMismatchError

    cfg = _tiny_cfg(tmp_path, "", "DATASETS.TRAIN", '("ade20k_sem_seg_train",)')
    with pytest.raises(
        IncompleteWeightsError
    ):  # past the class-count check, stopped at the weights
        train_net.evaluate_only(cfg)
    with pytest.raises(
        ClassCountMismatchError, match="DATASETS.TRAIN 'ade20k_sem_seg_train' has 150"
    ):
        Trainer(cfg)


def test_weight_flags_set_the_config_keys():
    parser = argparse.ArgumentParser()
    add_weight_arguments(parser)
    assert weight_overrides(parser.parse_args([])) == []
    assert weight_overrides(parser.parse_args(["--trust-weights", "--allow-partial-weights"])) == [
        "MODEL.WEIGHTS_TRUSTED",
        "True",
        "MODEL.WEIGHTS_ALLOW_PARTIAL",
        "True",
    ]


# ------------------------------------------------------------------------------------ resuming
def test_resume_follows_last_checkpoint_not_modification_times(tmp_path, caplog):
    writer = ProjectCheckpointer(_Tiny(), str(tmp_path))
    writer.save("model_0000004", iteration=4)
    writer.save("model_final", iteration=19)
    os.utime(tmp_path / "model_0000004.pth")  # `touch` of an old checkpoint
    os.utime(tmp_path / "model_final.pth", (1_000_000, 1_000_000))
    reader = ProjectCheckpointer(_Tiny(), str(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert reader.resume_or_load("", resume=True)["iteration"] == 19
    assert reader.resumed_from == str(tmp_path / "model_final.pth")
    assert "1 checkpoint file(s) are newer" in caplog.text
    # The tagged file damaged: the newest one that loads is the fallback.
    (tmp_path / "model_final.pth").write_bytes(b"garbage\n")
    assert (
        ProjectCheckpointer(_Tiny(), str(tmp_path)).resume_or_load("", resume=True)["iteration"]
        == 4
    )


# ------------------------------------------------------------------------------- output folders
def test_a_second_run_refuses_a_held_output_folder(tmp_path, caplog):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        (out / LOCK_NAME).write_text(
            '{"pid": %d, "host": "%s", "started": "today", "command": "train_net.py A"}'
            % (holder.pid, os.uname().nodename)
        )
        with pytest.raises(
            OutputDirLockedError,
            match=rf"OUTPUT_DIR '{out}' is in use by another run \(process {holder.pid} on host",
        ):
            OutputDirLock(str(out)).acquire()
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING):  # the holder is dead now: its lock is taken over
        with OutputDirLock(str(out)):
            assert f'"pid": {os.getpid()}' in (out / LOCK_NAME).read_text()
            with pytest.raises(OutputDirLockedError):
                OutputDirLock(str(out)).acquire()
    assert f"taking over the lock of process {holder.pid}" in caplog.text
    assert not (out / LOCK_NAME).exists()  # released
    (out / LOCK_NAME).write_text('{"pid": 1, "host": "another-host"}')
    with pytest.raises(OutputDirLockedError, match="on host 'another-host'"):
        OutputDirLock(str(out)).acquire()


def test_train_net_refuses_to_share_an_output_folder(tmp_path):
    """Two train_net.py runs in one OUTPUT_DIR: the second stops before writing anything."""
    out = tmp_path / "out"
    with OutputDirLock(str(out)):
        result = subprocess.run(
            [
                sys.executable,
                "train_net.py",
                "--config-file",
                QUICKSTART,
                *TINY,
                "SOLVER.MAX_ITER",
                "1",
                "OUTPUT_DIR",
                str(out),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("panoptic_ocr.engine.output_lock.OutputDirLockedError: OUTPUT_DIR")
        and str(os.getpid()) in last
    )
    assert (
        sorted(p.name for p in out.iterdir()) == []
    )  # the lock of this process is released, nothing else written


def test_unwritable_output_folder_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        OutputDirNotWritableError, match=rf"OUTPUT_DIR '{blocker}/out' cannot be written"
    ):
        OutputDirLock(str(blocker / "out")).acquire()


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    writer = ProjectCheckpointer(_Tiny(), str(tmp_path))
    writer.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def full_disk_save(obj, f, *args, **kwargs):  # what torch.save raises on a full tmpfs
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(checkpointer_module.torch, "save", full_disk_save)
    monkeypatch.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 1024})())
    with pytest.raises(OutputWriteError) as e:
        writer.save("model_final", iteration=2)
    assert str(e.value) == (
        f"Cannot write '{tmp_path / 'model_final.pth'}': no space left on the device of "
        f"'{tmp_path}' (0.0 MiB free); "
        "the previous file is unchanged"
    )
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]

    def read_only(obj, f, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(checkpointer_module.torch, "save", read_only)
    with pytest.raises(
        OutputWriteError, match="is on a read-only file system; the previous file is unchanged"
    ):
        writer.save("model_final", iteration=2)
    with pytest.raises(OutputWriteError, match="nothing was written"):
        save_torch({}, tmp_path / "new.pth")  # not the checkpointer's torch, the same message
