"""Multi-machine launch on one host: 2 "machines" x 1 process train with CPU DDP and evaluate
exactly as 1 process does, and a run whose peer dies stops with an error instead of waiting
forever."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import FAST_TRAINING, QUICKSTART, REPO_ROOT

from panoptic_ocr import setup_cfg
from panoptic_ocr.checkpoint.checkpointer import load_inference_weights
from panoptic_ocr.data.datasets.sem_seg_loaders import load_sem_seg_paired
from panoptic_ocr.data.datasets.toy_scenes import generate_toy_scenes
from panoptic_ocr.engine import Trainer

# The quick start shrunk (its SyncBN kept: naiveSyncBN on CPU): narrow OCR, 64x64 crops, batch 2.
TINY = FAST_TRAINING
BN = ["MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A 4-image toy dataset (2 train, 4 val) for the subprocesses, via $DETECTRON2_DATASETS."""
    root = tmp_path_factory.mktemp("launch_data")
    generate_toy_scenes(root / "toy_scenes", {"train": 2, "val": 4})
    return root


@pytest.fixture
def small_val(small_data):
    """The val split of ``small_data`` registered in this process too, as a dataset of its own."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "test_launch_small_val"
    labels, images = (str(small_data / "toy_scenes" / d / "val") for d in ("sem_seg", "images"))
    DatasetCatalog.register(name, lambda: load_sem_seg_paired(labels, images))
    meta = MetadataCatalog.get("toy_scenes_sem_seg_val").as_dict()
    meta.update(sem_seg_root=labels, image_root=images)
    MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _train_net(args, data, out, rank_args=(), **popen):
    env = {**os.environ, "DETECTRON2_DATASETS": str(data), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(REPO_ROOT / "train_net.py"),
        "--config-file",
        str(REPO_ROOT / QUICKSTART),
        *rank_args,
        *args,
        *TINY,
        "OUTPUT_DIR",
        str(out),
    ]
    return subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **popen,
    )


def _machines(args, data, out, timeout_s):
    """Two "machines" of one process each (ranks 0 and 1) on this host, into ``out``."""
    url = f"tcp://127.0.0.1:{_free_port()}"
    return [
        _train_net(
            args,
            data,
            out,
            [
                "--num-machines",
                "2",
                "--machine-rank",
                str(rank),
                "--dist-url",
                url,
                "--dist-timeout",
                str(timeout_s),
            ],
        )
        for rank in (0, 1)
    ]


def test_two_machines_train_and_evaluate_as_one_process(
    tmp_path, small_data, small_val, single_thread
):
    """2 processes train (CPU DDP over gloo, the config's SyncBN made naiveSyncBN), save
    model_final and evaluate it after training; 1 process evaluates that file exactly alike."""
    out = tmp_path / "two"
    args = ["SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000", "SEED", "0"]
    machines = _machines(args, small_data, out, 120)
    logs = [m.communicate(timeout=300)[0] for m in machines]
    for m, log in zip(machines, logs):
        assert m.returncode == 0, log[-3000:]
    log = (out / "log.txt").read_text()
    assert "naiveSyncBN" in log  # SyncBN of the config is made CPU-capable
    assert "copypaste: mIoU" in log
    two = out / "inference" / "toy_scenes_sem_seg_val" / "sem_seg_evaluation.pth"
    two = dict(torch.load(two, weights_only=False))

    opts = TINY + ["DATASETS.TEST", f'("{small_val}",)', "OUTPUT_DIR", str(tmp_path / "one")]
    cfg = setup_cfg(str(REPO_ROOT / QUICKSTART), opts)
    model = Trainer.build_model(cfg)
    load_inference_weights(model, str(out / "model_final.pth"))
    one = dict(Trainer.test(cfg, model)["sem_seg"])
    assert one.pop("num_images") == 4 and one["mIoU"] > 0
    assert two == pytest.approx(one, rel=0, abs=0, nan_ok=True)  # exactly


def test_a_dead_peer_stops_the_other_machine(tmp_path, small_data):
    args = ["SOLVER.MAX_ITER", "200", "DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "1000"]
    args += BN
    machines = _machines(args, small_data, tmp_path, 30)
    try:
        deadline = time.monotonic() + 240
        log = tmp_path / "log.txt"
        while not (log.exists() and "Starting training from iteration 0" in log.read_text()):
            assert time.monotonic() < deadline, "training did not start"
            assert machines[0].poll() is None, machines[0].communicate()[0][-3000:]
            time.sleep(0.5)
        time.sleep(2)  # a few iterations of DDP
        os.killpg(machines[1].pid, signal.SIGKILL)  # the machine and its worker
        killed = time.monotonic()
        # Detectron2's default would wait up to 30 min.
        out = machines[0].communicate(timeout=120)[0]
        assert machines[0].returncode not in (0, None), out[-3000:]
        assert time.monotonic() - killed < 120
    finally:
        for m in machines:
            if m.poll() is None:
                os.killpg(m.pid, signal.SIGKILL)
            m.communicate()
