"""panoptic_ocr.utils.safe_write, and the writers built on it: a failed or interrupted write keeps
the previous output and leaves no temporary behind; existing outputs are replaced only when
asked, and a refusal names the path."""

import json
import os
import re
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from detectron2.data import MetadataCatalog
from PIL import Image

from panoptic_ocr.data.coco_panoptic_stuff import PanopticStuffSplit, write_panoptic_stuff_labels
from panoptic_ocr.data.label_files import (
    AlreadyPrepared,
    LabelConversionError,
    LabelLUT,
    convert_splits,
    read_label_png,
)
from panoptic_ocr.evaluation import ADE20KSubmissionWriter, COCOPanopticSubmissionWriter
from panoptic_ocr.utils.safe_write import (
    BACKUP_PREFIX,
    TEMP_PREFIX,
    OutputExistsError,
    PendingOutputs,
    atomic_directory,
    atomic_file,
    check_writable,
    save_torch,
    write_json,
)


def _snapshot(root: Path) -> Dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), hidden ones included."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith((TEMP_PREFIX, BACKUP_PREFIX))]


def _fail_placing_new_outputs(monkeypatch, match=lambda name: True):
    """Make ``os.replace`` of a temporary (``.partial-*``, matching ``match``) into place fail;
    moving an old output aside and back still works."""
    real_replace = os.replace

    def replace(src, dst):
        name = Path(src).name
        if name.startswith(TEMP_PREFIX) and match(name):
            raise OSError(f"rename of '{src}' failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


# --------------------------------------------------------------------------------------------
# The helper
# --------------------------------------------------------------------------------------------


def test_atomic_file_and_directory_write_and_leave_nothing_else(tmp_path):
    with atomic_file(tmp_path / "a" / "b.txt") as tmp:
        assert Path(tmp).parent == tmp_path / "a" and Path(tmp).name.startswith(TEMP_PREFIX)
        assert tmp.endswith("b.txt")  # the extension is kept, for writers that look at it
        Path(tmp).write_text("new")
    with atomic_directory(tmp_path / "d") as tmp:
        Path(tmp, "x.txt").write_text("x")
    assert _snapshot(tmp_path) == {"a/b.txt": b"new", "d/x.txt": b"x"}
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a/b.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_refusal_without_overwrite_names_the_path_and_writes_nothing(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("old")
    else:
        target.mkdir()
        (target / "x.txt").write_text("old")
    before = _snapshot(tmp_path)
    writer = atomic_file if kind == "file" else atomic_directory
    with pytest.raises(OutputExistsError, match=re.escape(f"'{target}' already exists")) as e:
        with writer(target):
            raise AssertionError("the block must not run")
    assert isinstance(e.value, FileExistsError) and e.value.filename == str(target)
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        check_writable(target, overwrite=False, hint="Or pass --overwrite.")
    check_writable(target, overwrite=True)
    assert _snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["out"]


def test_an_empty_folder_is_no_output(tmp_path):
    (tmp_path / "out").mkdir()
    check_writable(tmp_path / "out", overwrite=False)
    with atomic_directory(tmp_path / "out") as tmp:
        Path(tmp, "x").write_text("x")
    assert _snapshot(tmp_path) == {"out/x": b"x"}


@pytest.mark.parametrize("kind", ["file", "directory"])
@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize("failure", ["exception", "interrupt", "rename"])
def test_a_failed_write_keeps_the_previous_output(tmp_path, monkeypatch, kind, overwrite, failure):
    out = tmp_path / "out"
    target = out / ("model.pth" if kind == "file" else "pngs")
    out.mkdir()
    (out / "other.txt").write_text("unrelated")
    if overwrite:  # an earlier output to replace; without overwrite there must be none
        if kind == "file":
            target.write_bytes(b"old")
        else:
            target.mkdir()
            (target / "a.png").write_bytes(b"old")
    before = _snapshot(tmp_path)
    writer = atomic_file if kind == "file" else atomic_directory
    if failure == "rename":
        _fail_placing_new_outputs(monkeypatch)
    error = {"exception": RuntimeError, "interrupt": KeyboardInterrupt, "rename": OSError}[failure]
    with pytest.raises(error):
        with writer(target, overwrite=overwrite) as tmp:
            if kind == "file":
                with open(tmp, "wb") as f:
                    f.write(b"half of the new")
            else:
                Path(tmp, "a.png").write_bytes(b"new")
            if failure == "exception":
                raise RuntimeError("disk full")
            if failure == "interrupt":
                raise KeyboardInterrupt
    assert _snapshot(tmp_path) == before
    assert sorted(os.listdir(out)) == sorted(
        ["other.txt"] + (["model.pth" if kind == "file" else "pngs"] if overwrite else [])
    )


def test_a_failed_write_removes_the_folders_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "new" / "deeper" / "x.json") as tmp:
            Path(tmp).write_text("{")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_several_outputs_are_placed_all_or_none(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("old a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("old b")
    (tmp_path / "c.zip").write_text("old c")
    before = _snapshot(tmp_path)
    _fail_placing_new_outputs(monkeypatch, match=lambda name: name.endswith("c.zip"))
    pending = PendingOutputs(overwrite=True)
    with pytest.raises(OSError, match="rename of"):
        with pending:
            Path(pending.file(tmp_path / "a.json")).write_text("new a")
            Path(pending.directory(tmp_path / "b"), "y").write_text("new b")
            Path(pending.file(tmp_path / "c.zip")).write_text("new c")
    # a.json and b were already replaced when c.zip failed: both were put back.
    assert _snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == [
        "a.json",
        "b",
        "c.zip",
    ]


def test_an_output_that_appears_during_the_write_is_not_replaced(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(OutputExistsError, match=re.escape(str(target))):
        with atomic_file(target) as tmp:
            Path(tmp).write_text("mine")
            target.write_text("someone else's")
    assert _snapshot(tmp_path) == {"x.txt": b"someone else's"}


def test_the_same_output_twice_in_one_run_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"'{tmp_path / 'x'}' is written twice")):
        with PendingOutputs() as pending:
            pending.file(tmp_path / "x")
            pending.file(tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_write_json_and_save_torch(tmp_path):
    write_json({"a": 1}, tmp_path / "a.json")
    save_torch({"w": torch.ones(2)}, tmp_path / "m.pth")
    with pytest.raises(OutputExistsError, match=re.escape(str(tmp_path / "m.pth"))):
        save_torch({}, tmp_path / "m.pth")
    write_json({"a": 2}, tmp_path / "a.json", overwrite=True)
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 2}
    assert torch.equal(torch.load(tmp_path / "m.pth")["w"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["a.json", "m.pth"]


# --------------------------------------------------------------------------------------------
# The writers built on it: a failing second run keeps the first run's files
# --------------------------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_label_conversion_that_fails_while_renaming_keeps_every_earlier_label(
    tmp_path, monkeypatch
):
    lut = LabelLUT([0, 1, 2], "test values")
    jobs = {}
    for split in ("train", "val"):
        jobs[split] = []
        for i in range(2):
            _png(tmp_path / "src" / split / f"{i}.png", np.full((3, 4), i, np.uint8))
            _png(tmp_path / "img" / split / f"{i}.png", np.zeros((3, 4, 3), np.uint8))
            jobs[split].append(
                (
                    tmp_path / "src" / split / f"{i}.png",
                    tmp_path / "img" / split / f"{i}.png",
                    tmp_path / "out" / split / f"{i}.png",
                )
            )
    outputs = [tmp_path / "out" / s for s in jobs]
    assert convert_splits(jobs, read_label_png, lut, outputs, overwrite=False) == {
        "train": 2,
        "val": 2,
    }
    first = _snapshot(tmp_path / "out")
    assert len(first) == 4

    with pytest.raises(AlreadyPrepared, match="Already prepared"):  # a finished step is a no-op
        convert_splits(jobs, read_label_png, lut, outputs, overwrite=False)
    _png(tmp_path / "src/val/1.png", np.full((3, 4), 2, np.uint8))  # the new run differs
    _png(tmp_path / "src/train/0.png", np.full((3, 4), 2, np.uint8))
    with monkeypatch.context() as m:  # the last label cannot be renamed into place
        real_replace = os.replace

        def replace(src, dst):
            if Path(src).name.startswith(TEMP_PREFIX) and Path(dst) == tmp_path / "out/val/1.png":
                raise OSError("rename failed")
            real_replace(src, dst)

        m.setattr(os, "replace", replace)
        with pytest.raises(OSError, match="rename failed"):
            convert_splits(jobs, read_label_png, lut, outputs, overwrite=True)
    assert _snapshot(tmp_path / "out") == first and _no_temporaries(tmp_path)

    (tmp_path / "src/val/0.png").unlink()  # a run that fails while converting
    with pytest.raises(LabelConversionError, match=re.escape(str(tmp_path / "src/val/0.png"))):
        convert_splits(jobs, read_label_png, lut, outputs, overwrite=True)
    assert _snapshot(tmp_path / "out") == first and _no_temporaries(tmp_path)


def _panoptic_split(root: Path, name: str, thing_id: int) -> PanopticStuffSplit:
    """One image: segment 1 (thing category ``thing_id``) on top, segment 2 (stuff 3) below."""
    ids = np.ones((4, 6), np.int64)
    ids[2:] = 2
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1).astype(np.uint8)
    _png(root / f"panoptic_{name}" / "a.png", rgb)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 6}],
        "annotations": [
            {
                "image_id": 1,
                "file_name": "a.png",
                "segments_info": [
                    {"id": 1, "category_id": thing_id},
                    {"id": 2, "category_id": 3},
                ],
            },
        ],
    }
    (root / f"panoptic_{name}.json").write_text(json.dumps(data))
    return PanopticStuffSplit(
        str(root / f"panoptic_{name}.json"),
        str(root / f"panoptic_{name}"),
        str(root / f"stuff_{name}"),
    )


def test_panoptic_stuff_labels_that_fail_while_renaming_keep_every_earlier_folder(
    tmp_path, monkeypatch
):
    meta = {
        "thing_dataset_id_to_contiguous_id": {1: 0, 2: 1},
        "stuff_dataset_id_to_contiguous_id": {0: 0, 3: 1, 4: 2},
    }
    splits = [_panoptic_split(tmp_path, "train", 1), _panoptic_split(tmp_path, "val", 1)]
    write_panoptic_stuff_labels(splits, meta)
    first = _snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match=re.escape(splits[0].output_dir)):
        write_panoptic_stuff_labels(splits, meta)

    # The val folder cannot be renamed into place after train's was: train's old one comes back.
    with monkeypatch.context() as m:
        _fail_placing_new_outputs(m, match=lambda name: name.endswith("-stuff_val"))
        with pytest.raises(OSError, match="rename of"):
            write_panoptic_stuff_labels(splits, meta, overwrite=True)
    assert _snapshot(tmp_path) == first and _no_temporaries(tmp_path)

    _panoptic_split(tmp_path, "val", 9)  # an unknown category: fails while converting
    with pytest.raises(LabelConversionError, match="category id 9"):
        write_panoptic_stuff_labels(splits, meta, overwrite=True)
    assert _snapshot(tmp_path) == {**first, **_snapshot_of_json(tmp_path, "val")}
    assert _no_temporaries(tmp_path)


def _snapshot_of_json(root: Path, name: str) -> Dict[str, bytes]:
    return {f"panoptic_{name}.json": (root / f"panoptic_{name}.json").read_bytes()}


def _ade_run(out: Path, values: Dict[str, int], overwrite: bool) -> None:
    writer = ADE20KSubmissionWriter(str(out), overwrite=overwrite)
    writer.reset()
    for stem, value in values.items():
        logits = torch.zeros(150, 3, 4)
        logits[value] = 1
        writer.process([{"file_name": f"/x/{stem}.jpg"}], [{"sem_seg": logits}])
    writer.evaluate()


def test_sem_seg_submission_whose_second_run_fails_keeps_the_first_runs_files(
    tmp_path, monkeypatch
):
    out = tmp_path / "inference" / "submission"
    _ade_run(out, {"ADE_test_00000001": 3, "ADE_test_00000002": 4}, overwrite=False)
    first = _snapshot(tmp_path)
    assert sorted(first) == [
        "inference/submission/ADE_test_00000001.png",
        "inference/submission/ADE_test_00000002.png",
    ]

    with pytest.raises(OutputExistsError, match=re.escape(f"'{out}' already exists")):
        _ade_run(out, {"ADE_test_00000003": 5}, overwrite=False)
    real_write_bytes = Path.write_bytes
    calls = []

    def write_bytes_then_fail(self, data):
        calls.append(self)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write_bytes(self, data)

    with monkeypatch.context() as m:  # fails after the first of two new PNGs
        m.setattr(Path, "write_bytes", write_bytes_then_fail)
        with pytest.raises(OSError, match="disk full"):
            _ade_run(out, {"ADE_test_00000001": 7, "ADE_test_00000003": 8}, overwrite=True)
    assert len(calls) == 2
    with monkeypatch.context() as m:
        _fail_placing_new_outputs(m)
        with pytest.raises(OSError, match="rename of"):
            _ade_run(out, {"ADE_test_00000001": 7}, overwrite=True)
    assert _snapshot(tmp_path) == first and _no_temporaries(tmp_path)

    _ade_run(out, {"ADE_test_00000003": 8}, overwrite=True)  # the whole folder is replaced
    assert sorted(_snapshot(tmp_path)) == ["inference/submission/ADE_test_00000003.png"]


@pytest.fixture
def panoptic_dataset():
    name = "test_safe_write_panoptic"
    MetadataCatalog.get(name).set(
        thing_dataset_id_to_contiguous_id={1: 0}, stuff_dataset_id_to_contiguous_id={5: 0}
    )
    yield name
    MetadataCatalog.remove(name)


def _panoptic_run(out: Path, dataset: str, num_images: int, overwrite: bool) -> None:
    writer = COCOPanopticSubmissionWriter(
        dataset, str(out), split_tag="val", method_name="t", overwrite=overwrite
    )
    writer.reset()
    for i in range(num_images):
        seg = torch.ones(3, 4, dtype=torch.int32)
        writer.process(
            [{"file_name": f"/x/{i}.jpg", "image_id": i}],
            [{"panoptic_seg": (seg, [{"id": 1, "category_id": 0, "isthing": True}])}],
        )
    writer.evaluate()


def test_panoptic_submission_whose_second_run_fails_keeps_the_first_runs_files(
    tmp_path, monkeypatch, panoptic_dataset
):
    _panoptic_run(tmp_path, panoptic_dataset, 2, overwrite=False)
    first = _snapshot(tmp_path)
    assert sorted(first) == [
        "panoptic_val_t_results.json",
        "panoptic_val_t_results.zip",
        "panoptic_val_t_results/0.png",
        "panoptic_val_t_results/1.png",
    ]
    with pytest.raises(
        OutputExistsError, match=re.escape(str(tmp_path / "panoptic_val_t_results"))
    ):
        _panoptic_run(tmp_path, panoptic_dataset, 1, overwrite=False)

    with monkeypatch.context() as m:  # the PNGs are written, then the JSON fails
        m.setattr(
            Path, "write_text", lambda self, text: (_ for _ in ()).throw(OSError("disk full"))
        )
        with pytest.raises(OSError, match="disk full"):
            _panoptic_run(tmp_path, panoptic_dataset, 3, overwrite=True)
    assert _snapshot(tmp_path) == first and _no_temporaries(tmp_path)

    _panoptic_run(tmp_path, panoptic_dataset, 1, overwrite=True)
    assert sorted(_snapshot(tmp_path)) == [
        "panoptic_val_t_results.json",
        "panoptic_val_t_results.zip",
        "panoptic_val_t_results/0.png",
    ]
