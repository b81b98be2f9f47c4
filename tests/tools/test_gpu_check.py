"""tools/gpu_check.sh: its steps (``--list``), and its report, continuation after a failed step
and time budget, run with a stub interpreter (``PY``) so that no model is built here.

The real CPU dry run (``bash tools/gpu_check.sh --cpu-dry-run``) builds HRNetV2-W48 and R101
and trains the toy model: minutes on this project's 2 shared cores, so it is run by hand (see
docs/gpu.md), not by the suite.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "gpu_check.sh"
STEPS = [
    "setup",
    "environment",
    "cuda-tests",
    "heads-float32",
    "heads-float16",
    "fps",
    "amp-training",
    "training-metrics",
]

# Stands in for python: fails benchmark_fps.py (exit 3), sleeps in the float16 head benchmark
# when STUB_SLEEP is set, writes a training's metrics.json for train_net.py, answers the
# environment step, and runs the other `-c` snippet (the metrics check) with the real python.
STUB = r"""#!/usr/bin/env bash
case "$*" in
  *benchmark_fps.py*) echo "stub fps: broken"; exit 3 ;;
  *benchmark_heads.py*float16*)
    echo "stub heads float16"; [ -n "${STUB_SLEEP:-}" ] && sleep "$STUB_SLEEP"; exit 0 ;;
  *train_net.py*)
    out=""; prev=""
    for a in "$@"; do [ "$prev" = OUTPUT_DIR ] && out="$a"; prev="$a"; done
    mkdir -p "$out"
    printf '%s\n' '{"iteration": 0, "total_loss": 2.0}' \
      '{"iteration": 1, "total_loss": 1.0, "sem_seg/mIoU": 12.5}' > "$out/metrics.json"
    echo "stub training into $out"; exit 0 ;;
  "-c import torch"*) echo "stub environment"; exit 0 ;;
  -c*) exec "$REAL_PY" "$@" ;;
  *) echo "stub: $*"; exit 0 ;;
esac
"""


def _list(*args: str) -> List[Tuple[str, int, str]]:
    out = subprocess.run(
        ["bash", str(SCRIPT), "--list", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    rows = []
    for line in re.split(r"\n(?=[a-z0-9-]+\t\d+\t)", out.stdout.strip()):
        name, timeout, command = line.split("\t", 2)
        rows.append((name, int(timeout), command))
    return rows


def test_gpu_steps_run_every_cuda_check_at_the_papers_sizes():
    steps = {name: command for name, _, command in _list()}
    assert list(steps) == STEPS
    assert "make setup" in steps["setup"]
    assert "-m pytest -m cuda" in steps["cuda-tests"]
    for name, dtype in (("heads-float32", "float32"), ("heads-float16", "float16")):
        assert (
            "benchmark_heads.py --device cuda" in steps[name] and f"--dtype {dtype}" in steps[name]
        )
        assert "--input" not in steps[name]  # Table 4's [1, 2048, 128, 128] (the tool's default)
    fps = steps["fps"]
    assert "--device cuda" in fps and "--size 1024,2048" in fps
    assert "--dtype float16 --compare-dtype bfloat16" in fps  # float32, float16 and bfloat16 rows
    for config in re.findall(r"configs/\S+\.yaml", fps):
        assert (REPO_ROOT / config).is_file(), config
    assert "HRNetV2W48" in fps and "R101" in fps
    train = steps["amp-training"]
    for opt in (
        "SOLVER.AMP.ENABLED True",
        "SOLVER.MAX_ITER 200",
        "MODEL.DEVICE cuda",
        "configs/quickstart/",
    ):
        assert opt in train


def test_cpu_dry_run_has_the_same_steps_without_cuda():
    gpu = _list()
    dry = _list("--cpu-dry-run")
    assert [name for name, _, _ in dry] == [name for name, _, _ in gpu]
    for name, _, command in dry:
        assert "--device cuda" not in command and "MODEL.DEVICE cuda" not in command, name
    steps = {name: command for name, _, command in dry}
    assert (
        steps["cuda-tests"] == dict((n, c) for n, _, c in gpu)["cuda-tests"]
    )  # collected, skipped here
    assert (
        "SOLVER.AMP.ENABLED False" in steps["amp-training"]
        and "SOLVER.MAX_ITER 5" in steps["amp-training"]
    )
    assert "--device cpu" in steps["fps"] and "--size 32,64" in steps["fps"]
    assert all("skipped" in c for n, _, c in _list("--skip-setup") if n == "setup")


def _run(
    tmp_path: Path, *args: str, env: Dict[str, str] = None
) -> Tuple[subprocess.CompletedProcess, str]:
    stub = tmp_path / "stub_python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    report = tmp_path / "out" / "report.md"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-dry-run", "--skip-setup", "--report", str(report), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PY": str(stub), "REAL_PY": sys.executable, **(env or {})},
    )
    return proc, report.read_text()


def _summary(report: str) -> Dict[str, Tuple[str, int]]:
    rows = re.findall(r"^\| ([a-z0-9-]+) \| ([^|]+) \| (\d+) \| \d+ \|$", report, re.M)
    return {name: (status.strip(), int(rc)) for name, status, rc in rows}


def test_report_has_every_step_and_continues_after_a_failure(tmp_path):
    proc, report = _run(tmp_path)
    assert proc.returncode == 1, proc.stderr  # one step failed
    summary = _summary(report)
    assert list(summary) == STEPS
    assert summary["fps"] == ("failed", 3)
    for name in STEPS:
        if name != "fps":
            assert summary[name] == ("passed", 0), (name, summary[name])
    sections = re.findall(r"^## (\S+)$", report, re.M)
    assert sections == STEPS
    for name in STEPS:
        section = report.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "Command (timeout" in section and f"Exit status: {summary[name][1]} " in section, (
            name
        )
        assert (tmp_path / "out" / "logs" / f"{name}.log").is_file()
    assert "stub fps: broken" in report  # the output tail
    assert "mode: cpu-dry-run" in report and "iterations logged 2" in report


def test_the_time_budget_stops_a_long_step_and_skips_the_rest(tmp_path):
    proc, report = _run(tmp_path, "--budget", "2", env={"STUB_SLEEP": "30"})
    assert proc.returncode == 1
    summary = _summary(report)
    assert list(summary) == STEPS
    assert summary["heads-float16"][1] == 124 and summary["heads-float16"][0].startswith(
        "timed out"
    )
    for name in STEPS[STEPS.index("heads-float16") + 1 :]:
        assert summary[name] == ("not run (budget spent)", 124), name


@pytest.mark.parametrize("args", [["--bogus"], ["--budget", "soon"]])
def test_bad_arguments_exit_2(args):
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "gpu_check.sh" in proc.stderr
