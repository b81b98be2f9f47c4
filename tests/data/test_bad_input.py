"""Bad input gets an error that names the key or file, and what was wrong."""

import numpy as np
import pytest
from conftest import QUICKSTART, make_cfg
from PIL import Image

from panoptic_ocr.data import SemanticDatasetMapper, ensure_dataset_available
from panoptic_ocr.data.dataset_mappers import semantic_dataset_mapper


def test_unknown_config_key_is_detectron2s_error():
    # yacs (under Detectron2's CfgNode) asserts on unknown command-line keys.
    with pytest.raises(AssertionError, match="Non-existent key: MODEL.OCR.NOT_A_KEY"):
        make_cfg(QUICKSTART, ["MODEL.OCR.NOT_A_KEY", "1"])


def test_unknown_key_in_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  OCR:\n    MID_CHANELS: 64\n")
    with pytest.raises(KeyError, match="MID_CHANELS"):
        make_cfg(str(bad))


def test_missing_dataset_root_names_path_and_how_to_create_it():
    # The checked ADE20K registration points under $DETECTRON2_DATASETS, empty here.
    with pytest.raises(
        FileNotFoundError,
        match=r"ade20k_sem_seg_val_checked.*ADEChallengeData2016.*"
        r"python datasets/prepare_ade20k.py.*datasets/README.md",
    ):
        ensure_dataset_available("ade20k_sem_seg_val_checked")


@pytest.fixture
def mapper():
    cfg = make_cfg(QUICKSTART, ["INPUT.CROP.ENABLED", "False", "INPUT.RANDOM_SCALE", "(1.0, 1.0)"])
    return SemanticDatasetMapper(cfg, is_train=True)


def _write_pair(tmp_path, label: np.ndarray, image_size=(40, 30)):
    image = tmp_path / "img.jpg"
    Image.fromarray(np.full((image_size[1], image_size[0], 3), 128, np.uint8)).save(image)
    label_file = tmp_path / "label.png"
    Image.fromarray(label).save(label_file)
    return {"file_name": str(image), "sem_seg_file_name": str(label_file)}


def test_mapper_reads_a_valid_pair(mapper, tmp_path):
    label = np.zeros((30, 40), np.uint8)
    label[:, 20:] = 255
    out = mapper(_write_pair(tmp_path, label))
    assert out["image"].shape == (3, 30, 40) and out["sem_seg"].dtype.is_floating_point is False
    assert set(out["sem_seg"].unique().tolist()) == {0, 255}


def test_unreadable_image_names_the_file(mapper, tmp_path):
    record = _write_pair(tmp_path, np.zeros((30, 40), np.uint8))
    with open(record["file_name"], "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(OSError, match="img.jpg"):
        mapper(record)


def test_unreadable_label_names_the_file(mapper, tmp_path):
    record = _write_pair(tmp_path, np.zeros((30, 40), np.uint8))
    with open(record["sem_seg_file_name"], "wb") as f:
        f.write(b"\x89PNG broken")
    with pytest.raises(OSError, match="label.png"):
        mapper(record)


def test_label_values_outside_classes_name_file_and_values(mapper, tmp_path):
    label = np.zeros((30, 40), np.uint8)
    label[0, 0] = 42
    with pytest.raises(ValueError, match=r"label.png.*\[42\]"):
        mapper(_write_pair(tmp_path, label))


def test_label_size_mismatch_names_both_files(mapper, tmp_path):
    with pytest.raises(ValueError, match=r"label.png.*img.jpg"):
        mapper(_write_pair(tmp_path, np.zeros((31, 40), np.uint8)))


def test_rgb_label_is_rejected(mapper, tmp_path):
    with pytest.raises(OSError, match="single-channel"):
        mapper(_write_pair(tmp_path, np.zeros((30, 40, 3), np.uint8)))


@pytest.mark.parametrize(
    "dtype, bad_value",
    [(np.uint8, 7), (np.uint8, 254), (np.int32, 300), (np.int32, -1)],  # quick start: 7 classes
)
def test_label_check_catches_a_single_bad_pixel_beside_ignored_ones(dtype, bad_value):
    label = np.zeros((30, 40), dtype)
    label[:, :5] = 255  # ignored pixels: the min/max bound alone cannot decide
    label[29, 39] = bad_value
    with pytest.raises(ValueError, match=rf"'x/label.png' holds values \[{bad_value}\]"):
        semantic_dataset_mapper.check_label_values(label, "x/label.png", 7, 255)
    label[29, 39] = 6
    semantic_dataset_mapper.check_label_values(label, "x/label.png", 7, 255)  # valid


def test_label_check_sorts_no_valid_label(monkeypatch):
    def no_unique(*args, **kwargs):
        raise AssertionError("np.unique called on a valid label")

    label = np.full((64, 64), 255, np.uint8)
    label[:32] = 3
    monkeypatch.setattr(semantic_dataset_mapper.np, "unique", no_unique)
    semantic_dataset_mapper.check_label_values(label, "label.png", 7, 255)
    semantic_dataset_mapper.check_label_values(label[:32], "label.png", 7, 255)


def test_each_label_file_is_checked_once(mapper, tmp_path, monkeypatch):
    calls = []
    check = semantic_dataset_mapper.check_label_values

    def counting_check(label, file_name, *args):
        calls.append(file_name)
        return check(label, file_name, *args)

    monkeypatch.setattr(semantic_dataset_mapper, "check_label_values", counting_check)
    label = np.zeros((30, 40), np.uint8)
    label[:, 20:] = 255
    record = _write_pair(tmp_path, label)
    mapper(record)
    out = mapper(record)  # a second epoch: read again, not checked again
    assert calls == [record["sem_seg_file_name"]]
    assert set(out["sem_seg"].unique().tolist()) == {0, 255}

    # Another file is checked; a file that failed is checked (and fails) at every read.
    (tmp_path / "other").mkdir()
    label[0, 0] = 42
    bad = _write_pair(tmp_path / "other", label)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"other/label.png.*\[42\]"):
            mapper(bad)
    assert calls == [record["sem_seg_file_name"]] + [bad["sem_seg_file_name"]] * 2
