"""Multi-machine launch on one host: 2 "machines" x 1 process give 1 process's metrics, and a
run whose peer dies stops with an error instead of waiting forever."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO_ROOT, make_cfg

from panoptic_ocr.data.datasets.toy_scenes import generate_toy_scenes
from panoptic_ocr.engine import Trainer

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
TINY = ["MODEL.OCR.MID_CHANNELS", "32", "MODEL.OCR.KEY_CHANNELS", "16", "MODEL.SEM_SEG_HEAD.AUX_CHANNELS", "32",
        "INPUT.CROP.SIZE", "(64, 64)", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "VIS.NUM_IMAGES", "0",
        "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]


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


def _train_net(args, data, out, rank_args=(), **popen):
    env = {**os.environ, "DETECTRON2_DATASETS": str(data), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO_ROOT / "train_net.py"), "--config-file", str(REPO_ROOT / QUICKSTART),
           *rank_args, *args, *TINY, "OUTPUT_DIR", str(out)]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def _miou(out) -> dict:
    results = torch.load(out / "inference" / "toy_scenes_sem_seg_val" / "sem_seg_evaluation.pth", weights_only=False)
    return dict(results)


def test_two_machines_evaluate_as_one_process(tmp_path, small_data):
    weights = tmp_path / "weights.pth"
    torch.manual_seed(0)
    torch.save({"model": Trainer.build_model(make_cfg(QUICKSTART, TINY)).state_dict()}, weights)
    args = ["--eval-only", "MODEL.WEIGHTS", str(weights)]

    single = _train_net(args, small_data, tmp_path / "single")
    log = single.communicate(timeout=300)[0]
    assert single.returncode == 0, log[-3000:]

    url = f"tcp://127.0.0.1:{_free_port()}"
    machines = [
        _train_net(args, small_data, tmp_path / "two",
                   ["--num-machines", "2", "--machine-rank", str(rank), "--dist-url", url, "--dist-timeout", "120"])
        for rank in (0, 1)
    ]
    logs = [m.communicate(timeout=300)[0] for m in machines]
    for m, log in zip(machines, logs):
        assert m.returncode == 0, log[-3000:]
    single_results = _miou(tmp_path / "single")
    assert single_results["mIoU"] > 0
    assert _miou(tmp_path / "two") == pytest.approx(single_results, rel=0, abs=0, nan_ok=True)  # exactly


def test_a_dead_peer_stops_the_other_machine(tmp_path, small_data):
    url = f"tcp://127.0.0.1:{_free_port()}"
    args = ["SOLVER.MAX_ITER", "200", "DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "1000"]
    machines = [
        _train_net(args, small_data, tmp_path, ["--num-machines", "2", "--machine-rank", str(rank), "--dist-url", url,
                                                "--dist-timeout", "30"])
        for rank in (0, 1)
    ]
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
        out = machines[0].communicate(timeout=120)[0]  # Detectron2's default would wait up to 30 min
        assert machines[0].returncode not in (0, None), out[-3000:]
        assert time.monotonic() - killed < 120
    finally:
        for m in machines:
            if m.poll() is None:
                os.killpg(m.pid, signal.SIGKILL)
            m.communicate()
