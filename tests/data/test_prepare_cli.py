"""The prepare scripts work as the docs write them: run as files, missing splits, re-runs.

``datasets/<script>``'s ``main`` is called in this process (no second torch import); that each
script runs as a file, as the docs write it, is tested once for them all, in one interpreter.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED_DATA, load_script

ADE20K = SHARED_DATA / "ade20k" / "ADEChallengeData2016"
LIP = SHARED_DATA / "lip"


@pytest.fixture
def prepare(run_main, monkeypatch):
    """``prepare(script, *args)``: ``python datasets/<script> args`` from the repository root,
    in this process: ``(status, stdout, stderr)``."""
    monkeypatch.chdir(REPO_ROOT)
    return lambda script, *args: run_main(load_script(f"datasets/{script}").main, args)


def _validation_only_ade20k(tmp_path) -> Path:
    if not ADE20K.is_dir():
        pytest.skip(f"shared ADE20K samples not found at {ADE20K}")
    root = tmp_path / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        (root / kind).mkdir(parents=True)
        (root / kind / "validation").symlink_to(ADE20K / kind / "validation")
    return root


def test_ade20k_validation_only_then_rerun(tmp_path, prepare):
    root = _validation_only_ade20k(tmp_path)
    status, _, err = prepare("prepare_ade20k.py", "--root", root)
    assert status == 1, err
    assert err.strip().splitlines()[-1] == (
        f"error: Split 'training': '{root / 'annotations' / 'training'}' does not exist; "
        "found only validation: convert those with --splits validation (see datasets/README.md "
        "for the expected tree)"
    )
    assert not (root / "annotations_detectron2").exists()

    status, _, err = prepare("prepare_ade20k.py", "--root", root, "--splits", "validation")
    assert status == 0, err
    written = sorted((root / "annotations_detectron2" / "validation").iterdir())
    assert [p.name for p in written] == ["ADE_val_00000001.png", "ADE_val_00000002.png"]
    stamps = [p.stat().st_mtime_ns for p in written]

    status, out, err = prepare("prepare_ade20k.py", "--root", root, "--splits", "validation")
    assert status == 0, err  # finished: a no-op
    assert out.strip() == (
        "Already prepared: every output exists ({'validation': 2}); nothing to do. "
        "Pass --overwrite to convert again."
    )
    assert [p.stat().st_mtime_ns for p in written] == stamps


def test_lip_missing_split_names_what_exists(tmp_path, prepare):
    if not LIP.is_dir():
        pytest.skip(f"shared LIP samples not found at {LIP}")
    root = tmp_path / "lip"
    (root / "TrainVal_parsing_annotations").mkdir(parents=True)
    (root / "TrainVal_images").mkdir()
    annotations = root / "TrainVal_parsing_annotations"
    (annotations / "val_segmentations").symlink_to(LIP / "val_segmentations")
    (root / "TrainVal_images" / "val_images").symlink_to(LIP / "val_images")
    status, _, err = prepare("prepare_lip.py", "--root", root)
    assert status == 1
    assert err.strip() == (
        f"error: Split 'train': '{annotations / 'train_segmentations'}' does not exist; "
        "found only val: convert those with --splits val (see datasets/README.md for the expected "
        "tree)"
    )
    assert prepare("prepare_lip.py", "--root", root, "--splits", "val")[0] == 0


def test_toy_scenes_rerun_is_a_no_op(tmp_path, prepare):
    root = tmp_path / "toy_scenes"
    args = ("--root", root, "--num-train", "1", "--num-val", "1")
    status, _, err = prepare("prepare_toy_scenes.py", *args)
    assert status == 0, err
    stamp = (root / "toy_scenes.json").read_bytes()
    status, out, err = prepare("prepare_toy_scenes.py", *args)  # was "error: ... already exists"
    assert status == 0, err
    assert out.strip() == (
        f"{root} already holds these toy scenes ({{'train': 1, 'val': 1}}, seed 2020); "
        "nothing to do"
    )
    assert (root / "toy_scenes.json").read_bytes() == stamp

    status, _, err = prepare(
        "prepare_toy_scenes.py", *args[:2], "--num-train", "2", "--num-val", "1"
    )
    assert status == 1 and "not the requested {'train': 2, 'val': 1}" in err

    partial = tmp_path / "partial"
    partial.mkdir()
    status, _, err = prepare("prepare_toy_scenes.py", "--root", partial)
    assert status == 1 and "holds no toy_scenes.json" in err


def test_every_prepare_script_imports_when_run_as_a_file():
    """One interpreter runs each script as ``python datasets/<script> --help`` would (its folder,
    not the repository, first on sys.path)."""
    code = (
        "import runpy, sys\n"
        "for script in sys.argv[1:]:\n"
        "    sys.argv = [script, '--help']\n"
        "    sys.path[0] = script.rsplit('/', 1)[0]\n"
        "    try:\n"
        "        runpy.run_path(script, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (script, e.code)\n"
    )
    scripts = sorted(str(p) for p in (REPO_ROOT / "datasets").glob("prepare_*.py"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code, *scripts],
        env=env,
        capture_output=True,
        cwd=REPO_ROOT / "tests",
        text=True,
        timeout=120,
    )  # not the repo root
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("usage:") == len(scripts)
