"""Entry points start without torch's torch.jit.script deprecation warning, which Detectron2
triggers at import and which says nothing to a user (panoptic_ocr filters it, imported first;
here train_net.py, every tool imports panoptic_ocr first the same way)."""

import subprocess
import sys

import pytest
from conftest import REPO_ROOT


@pytest.mark.parametrize("script", ["train_net.py"])
def test_help_prints_no_deprecation_warning(script):
    done = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    assert "deprecated" not in done.stderr, done.stderr[-2000:]
