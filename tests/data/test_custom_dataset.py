"""register_sem_seg_folder's checks, and docs/custom_datasets.md's commands run as written."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from panoptic_ocr.data.dataset_stats import dataset_stats
from panoptic_ocr.data.datasets import register_sem_seg_folder


def _folder(tmp_path, labels):
    (tmp_path / "img").mkdir()
    (tmp_path / "lbl").mkdir()
    for i, label in enumerate(labels):
        Image.fromarray(np.zeros((*label.shape, 3), np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
        Image.fromarray(label.astype(np.uint8)).save(tmp_path / "lbl" / f"{i}.png")
    return str(tmp_path / "img"), str(tmp_path / "lbl")


def test_register_loads_counts_and_checks(tmp_path):
    images, labels = _folder(tmp_path, [np.array([[0, 1], [1, 255]]), np.array([[2, 2], [2, 2]])])
    register_sem_seg_folder("test_custom_ok", images, labels, ["a", "b", "c"])
    records = DatasetCatalog.get("test_custom_ok")
    assert [os.path.basename(r["file_name"]) for r in records] == ["0.jpg", "1.jpg"]
    meta = MetadataCatalog.get("test_custom_ok")
    assert meta.stuff_classes == ["a", "b", "c"] and meta.ignore_label == 255
    assert len(meta.stuff_colors) == 3
    stats = dataset_stats("test_custom_ok")
    assert stats.pixel_counts.tolist() == [1, 2, 4] and stats.image_counts.tolist() == [1, 1, 1]
    assert stats.ignored == 1
    with pytest.raises(ValueError, match="already registered"):
        register_sem_seg_folder("test_custom_ok", images, labels, ["a", "b", "c"])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"classes": []}, "classes is empty"),
        ({"classes": ["a", "a"]}, "duplicate"),
        ({"classes": ["a", "b"], "ignore_label": 1}, "ignore_label"),
        ({"classes": ["a", "b"], "colors": [(0, 0, 0)]}, "1 colors for 2 classes"),
    ],
)
def test_register_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        register_sem_seg_folder("test_custom_bad", "img", "lbl", **kwargs)


def test_bad_label_value_and_missing_image_are_named(tmp_path):
    images, labels = _folder(tmp_path, [np.array([[0, 7]])])
    register_sem_seg_folder("test_custom_badvalue", images, labels, ["a", "b"])
    with pytest.raises(ValueError, match=r"0\.png.*\[7\]"):
        dataset_stats("test_custom_badvalue")
    os.remove(os.path.join(images, "0.jpg"))
    register_sem_seg_folder("test_custom_noimage", images, labels, ["a", "b"])
    with pytest.raises(FileNotFoundError, match="test_custom_noimage.*0.jpg"):
        DatasetCatalog.get("test_custom_noimage")


# The docs' commands run by bash as written, but with `python` a function that records each
# command's argv (one file per command); the script's last line then runs them all, in order,
# in one interpreter (as `python <script>` / `python -c` would each, and with the environment
# that the docs export): one torch import instead of one a command.
RECORD_PYTHON = """set -euo pipefail
n=0
python() { n=$((n + 1)); printf '%s\\0' "$@" > "$COMMANDS/$n"; }
"""
RUN_RECORDED = r"""
import os, runpy, sys
folder = sys.argv[1]
for n in sorted(os.listdir(folder), key=int):
    with open(os.path.join(folder, n)) as f:
        argv = f.read().split("\0")[:-1]
    print("+ python", *argv, flush=True)
    if argv[0] == "-c":
        sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        continue
    sys.argv, sys.path[0] = argv, os.path.dirname(os.path.abspath(argv[0]))
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
"""


def test_docs_commands_run_as_written(tmp_path):
    text = (REPO_ROOT / "docs/custom_datasets.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    out = REPO_ROOT / "output/custom_walkthrough"
    shutil.rmtree(out, ignore_errors=True)  # the counts below are of this run's files
    commands = tmp_path / "commands"
    commands.mkdir()
    run_all = 'exec "$REAL_PY" -c "$RUN_RECORDED" "$COMMANDS"\n'
    script = RECORD_PYTHON + "\n".join(blocks) + "\n" + run_all
    env = dict(
        os.environ, COMMANDS=str(commands), REAL_PY=sys.executable, RUN_RECORDED=RUN_RECORDED
    )
    run = subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    # Each `python` command was recorded (none ran outside the one interpreter).
    lines = [line for block in blocks for line in block.splitlines()]
    assert len(list(commands.iterdir())) == sum(line.startswith("python ") for line in lines)
    snippet = (out / "class_weights.yaml").read_text()
    weights = re.search(r"CLASS_WEIGHTS: \[(.*)\]", snippet).group(1).split(",")
    assert len(weights) == 7 and all(float(w) > 0 for w in weights)
    assert len(list((out / "browse").glob("*.png"))) == 2
    assert len(list((out / "browse_aug").glob("*.png"))) == 2
    assert (out / "demo/toy_val_000000.png").is_file()
    assert (out / "demo/toy_val_000000_sem_seg.png").is_file()


def test_reduce_zero_label_converts_once_and_names_bad_values(tmp_path):
    """0 = ignore and 1..K = classes (mmseg's reduce_zero_label): the labels are converted into
    a sibling folder when first loaded, the records and stats see 0..K-1 and 255; a label that
    changes is converted again; a value above K is named with its file."""
    images, labels = _folder(tmp_path, [np.array([[0, 1], [2, 3]]), np.array([[3, 3], [255, 1]])])
    register_sem_seg_folder(
        "test_custom_reduce", images, labels, ["a", "b", "c"], reduce_zero_label=True
    )
    records = DatasetCatalog.get("test_custom_reduce")
    converted = tmp_path / "lbl_reduced_zero_label"
    assert [r["sem_seg_file_name"] for r in records] == [
        str(converted / f"{i}.png") for i in (0, 1)
    ]
    assert np.asarray(Image.open(converted / "0.png")).tolist() == [[255, 0], [1, 2]]
    assert np.asarray(Image.open(converted / "1.png")).tolist() == [[2, 2], [255, 0]]
    assert MetadataCatalog.get("test_custom_reduce").sem_seg_root == str(converted)
    stats = dataset_stats("test_custom_reduce")
    assert stats.pixel_counts.tolist() == [2, 1, 3] and stats.ignored == 2
    first = (converted / "0.png").stat().st_mtime_ns
    DatasetCatalog.get("test_custom_reduce")  # up to date: not rewritten
    assert (converted / "0.png").stat().st_mtime_ns == first
    Image.fromarray(np.array([[4, 1], [1, 1]], np.uint8)).save(tmp_path / "lbl" / "0.png")
    os.utime(tmp_path / "lbl" / "0.png", ns=(first + 10**9, first + 10**9))
    with pytest.raises(ValueError, match=r"test_custom_reduce.*0\.png.*4"):
        DatasetCatalog.get("test_custom_reduce")
    assert np.asarray(Image.open(converted / "0.png")).tolist() == [[255, 0], [1, 2]]  # kept


def test_dataset_stats_gives_absent_classes_weight_zero_and_says_so(tmp_path):
    from panoptic_ocr.data.dataset_stats import class_weights_snippet, format_stats

    images, labels = _folder(tmp_path, [np.array([[0, 0], [2, 2]])])
    register_sem_seg_folder("test_custom_absent", images, labels, ["a", "b", "c"])
    stats = dataset_stats("test_custom_absent")
    snippet = class_weights_snippet(stats, "enet")
    assert "CLASS_WEIGHTS: [" in snippet and "absent from the data: b" in snippet
    weights = [float(v) for v in snippet.split("CLASS_WEIGHTS: [")[1].split("]")[0].split(",")]
    assert weights[1] == 0.0 and weights[0] > 0 and weights[2] > 0
    assert "1 class(es) absent from the data get weight 0 (nothing measured): 1=b" in format_stats(
        stats, np.array(weights)
    )
