"""Bad input gets an error that names the key or file, and what was wrong."""
import numpy as np
import pytest
from PIL import Image

from conftest import make_cfg
from panoptic_ocr.data import SemanticDatasetMapper, ensure_dataset_available

QUICKSTART = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"


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
    # Detectron2's builtin ADE20K registration points under $DETECTRON2_DATASETS, empty here.
    with pytest.raises(FileNotFoundError, match=r"ade20k_sem_seg_val.*ADEChallengeData2016.*datasets/README.md"):
        ensure_dataset_available("ade20k_sem_seg_val")


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
