"""The prepare scripts work as the docs write them: run as files, missing splits, re-runs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ADE20K = SHARED / "ade20k" / "ADEChallengeData2016"
LIP = SHARED / "lip"


def _run(script, *args, env=None):
    """``.venv/bin/python datasets/<script> ...`` from the repository root, as the docs write it,
    with no PYTHONPATH (the default .venv set-up, panoptic_ocr not installed)."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, f"datasets/{script}", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _main(script, *args, capsys):
    """Run ``datasets/<script>``'s ``main`` in this process (fast): ``(status, stdout, stderr)``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(script[:-3], REPO_ROOT / "datasets" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    status = module.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def _validation_only_ade20k(tmp_path) -> Path:
    if not ADE20K.is_dir():
        pytest.skip(f"shared ADE20K samples not found at {ADE20K}")
    root = tmp_path / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        (root / kind).mkdir(parents=True)
        (root / kind / "validation").symlink_to(ADE20K / kind / "validation")
    return root


def test_ade20k_validation_only_then_rerun(tmp_path, capsys):
    root = _validation_only_ade20k(tmp_path)
    out = _run("prepare_ade20k.py", "--root", str(root))
    assert out.returncode == 1 and "No module named" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: Split 'training': '{root / 'annotations' / 'training'}' does not exist; found only validation: "
        "convert those with --splits validation (see datasets/README.md for the expected tree)"
    )
    assert not (root / "annotations_detectron2").exists()

    status, _, err = _main("prepare_ade20k.py", "--root", str(root), "--splits", "validation", capsys=capsys)
    assert status == 0, err
    written = sorted((root / "annotations_detectron2" / "validation").iterdir())
    assert [p.name for p in written] == ["ADE_val_00000001.png", "ADE_val_00000002.png"]
    stamps = [p.stat().st_mtime_ns for p in written]

    status, out, err = _main("prepare_ade20k.py", "--root", str(root), "--splits", "validation", capsys=capsys)
    assert status == 0, err  # finished: a no-op
    assert out.strip() == (
        "Already prepared: every output exists ({'validation': 2}); nothing to do. Pass --overwrite to convert again."
    )
    assert [p.stat().st_mtime_ns for p in written] == stamps


def test_lip_missing_split_names_what_exists(tmp_path, capsys):
    if not LIP.is_dir():
        pytest.skip(f"shared LIP samples not found at {LIP}")
    root = tmp_path / "lip"
    (root / "TrainVal_parsing_annotations").mkdir(parents=True)
    (root / "TrainVal_images").mkdir()
    (root / "TrainVal_parsing_annotations" / "val_segmentations").symlink_to(LIP / "val_segmentations")
    (root / "TrainVal_images" / "val_images").symlink_to(LIP / "val_images")
    status, _, err = _main("prepare_lip.py", "--root", str(root), capsys=capsys)
    assert status == 1
    assert err.strip() == (
        f"error: Split 'train': '{root / 'TrainVal_parsing_annotations' / 'train_segmentations'}' does not exist; "
        "found only val: convert those with --splits val (see datasets/README.md for the expected tree)"
    )
    assert _main("prepare_lip.py", "--root", str(root), "--splits", "val", capsys=capsys)[0] == 0


def test_toy_scenes_rerun_is_a_no_op(tmp_path, capsys):
    root = tmp_path / "toy_scenes"
    args = ("--root", str(root), "--num-train", "1", "--num-val", "1")
    out = _run("prepare_toy_scenes.py", *args)
    assert out.returncode == 0, out.stderr
    stamp = (root / "toy_scenes.json").read_bytes()
    out = _run("prepare_toy_scenes.py", *args)  # was "error: ... already exists", status 1
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{root} already holds these toy scenes ({{'train': 1, 'val': 1}}, seed 2020); nothing to do"
    assert (root / "toy_scenes.json").read_bytes() == stamp

    status, _, err = _main("prepare_toy_scenes.py", *args[:2], "--num-train", "2", "--num-val", "1", capsys=capsys)
    assert status == 1 and "not the requested {'train': 2, 'val': 1}" in err

    partial = tmp_path / "partial"
    partial.mkdir()
    status, _, err = _main("prepare_toy_scenes.py", "--root", str(partial), capsys=capsys)
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
    out = subprocess.run([sys.executable, "-c", code, *scripts], cwd=REPO_ROOT / "tests", env=env,  # not the repository root

                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("usage:") == len(scripts)
