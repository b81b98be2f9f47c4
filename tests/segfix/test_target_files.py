"""Cached SegFix targets: the packed format, its augmentation (flips permute the directions),
the staleness checks, the prepare step and the "cached" mapper."""

import os

import numpy as np
import pytest
from conftest import load_script
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from PIL import Image
from scipy import ndimage

from panoptic_ocr.data.dataset_mappers import SegFixDatasetMapper
from panoptic_ocr.segfix import DIRECTION_VECTORS, segfix_targets
from panoptic_ocr.segfix.prepare_targets import write_dataset_targets
from panoptic_ocr.segfix.target_files import (
    NO_TARGET,
    NOT_BOUNDARY,
    StaleTargetFile,
    augment_targets,
    decode_targets,
    direction_permutation,
    encode_targets,
    read_target_file,
    target_file_path,
    targets_of_label,
)


def _blobs(seed, shape=(60, 90), classes=4):
    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(rng.random((classes,) + shape), sigma=(0, 5, 5))
    label = fields.argmax(0).astype(np.uint8)
    label[20:26, 30:44] = 255
    return label


def test_packed_targets_round_trip():
    label = _blobs(0)
    boundary, direction, _ = segfix_targets(label)
    packed = encode_targets(boundary, direction)
    assert set(np.unique(packed).tolist()) == set(range(NOT_BOUNDARY + 1)) | {NO_TARGET}
    got_boundary, got_direction = decode_targets(packed)
    np.testing.assert_array_equal(got_boundary, boundary)
    np.testing.assert_array_equal(got_direction, direction)
    np.testing.assert_array_equal(targets_of_label(label, 255, 5), packed)


def test_flips_permute_the_direction_vectors():
    for transform, flipped in (
        (T.HFlipTransform(10), lambda dy, dx: (dy, -dx)),
        (T.VFlipTransform(10), lambda dy, dx: (-dy, dx)),
    ):
        table = direction_permutation(transform)
        for i, (dy, dx) in enumerate(DIRECTION_VECTORS):
            assert DIRECTION_VECTORS[table[i]] == flipped(dy, dx)
        assert table[NOT_BOUNDARY] == NOT_BOUNDARY and table[NO_TARGET] == NO_TARGET
    for keeps in (
        T.ResizeTransform(10, 20, 15, 7),
        T.CropTransform(2, 3, 5, 5),
        T.PadTransform(1, 2, 3, 4),
        T.NoOpTransform(),
        T.ColorTransform(lambda x: x),
    ):
        assert direction_permutation(keeps) is None
    with pytest.raises(ValueError, match="RotationTransform rotates"):
        direction_permutation(T.RotationTransform(20, 20, 30))


def test_flipped_cached_targets_are_the_targets_of_the_flipped_label():
    label = _blobs(1)
    packed = targets_of_label(label, 255, 5)
    for flip, flip_label in ((T.HFlipTransform(90), np.fliplr), (T.VFlipTransform(60), np.flipud)):
        expected = targets_of_label(np.ascontiguousarray(flip_label(label)), 255, 5)
        got = augment_targets(packed, [flip])
        # Equal but for gradients exactly on a sector edge, which the half-open sectors send
        # to the other side once mirrored.
        assert (got == expected).mean() > 0.998
        assert ((got == expected) | (got < NOT_BOUNDARY)).all()


def test_two_flips_cancel_and_crops_and_pads_follow_the_label():
    label = _blobs(2)
    packed = targets_of_label(label, 255, 5)
    twice = augment_targets(packed, T.TransformList([T.HFlipTransform(90), T.HFlipTransform(90)]))
    np.testing.assert_array_equal(twice, packed)
    crop_pad = [T.CropTransform(10, 5, 40, 30), T.PadTransform(0, 0, 8, 6, seg_pad_value=0)]
    got = augment_targets(packed, crop_pad)
    assert got.shape == (36, 48)
    np.testing.assert_array_equal(got[:30, :40], packed[5:35, 10:50])
    assert (got[30:] == NO_TARGET).all() and (got[:, 40:] == NO_TARGET).all()  # not 0: dir 0
    resized = augment_targets(packed, [T.ResizeTransform(60, 90, 120, 180)])
    np.testing.assert_array_equal(resized, np.kron(packed, np.ones((2, 2), np.uint8)))


def test_target_paths_and_stale_files(tmp_path, d2root):
    label_file = d2root / "a" / "x_labelTrainIds.png"
    default = d2root / "segfix_targets" / "a" / "x_labelTrainIds_segfix5.png"
    assert target_file_path(label_file, 5) == str(default)
    assert target_file_path(label_file, 3, tmp_path / "c") == str(
        tmp_path / "c" / "a" / "x_labelTrainIds_segfix3.png"
    )
    outside = tmp_path / "elsewhere" / "y.png"  # not under $DETECTRON2_DATASETS: absolute path
    assert target_file_path(outside, 5, "/cache") == "/cache" + str(outside)[:-4] + "_segfix5.png"
    label_file.parent.mkdir()
    label = _blobs(3)
    Image.fromarray(label).save(label_file)
    path = target_file_path(label_file, 5)
    os.makedirs(os.path.dirname(path))
    with pytest.raises(StaleTargetFile, match="No cached SegFix targets .*prepare_segfix_targets"):
        read_target_file(path, label_file, label.shape)
    Image.fromarray(targets_of_label(label, 255, 5)).save(path)
    os.utime(label_file, (os.path.getmtime(path) + 10,) * 2)
    with pytest.raises(StaleTargetFile, match="older than their label"):
        read_target_file(path, label_file, label.shape)
    os.utime(path, (os.path.getmtime(label_file) + 10,) * 2)
    np.testing.assert_array_equal(
        read_target_file(path, label_file, label.shape), targets_of_label(label, 255, 5)
    )
    with pytest.raises(StaleTargetFile, match=r"are uint8 \(90, 60\) .* is \(91, 60\)"):
        read_target_file(path, label_file, (60, 91))


@pytest.fixture
def tiny_dataset(tmp_path, fresh_prefix):
    """A registered two-image semantic dataset of blob labels (ignore 255)."""
    records = []
    for i in range(2):
        label = _blobs(10 + i)
        image = np.repeat(label[:, :, None] * 40, 3, axis=2).astype(np.uint8)
        record = {
            "file_name": str(tmp_path / f"img{i}.png"),
            "sem_seg_file_name": str(tmp_path / f"lab{i}.png"),
            "height": label.shape[0],
            "width": label.shape[1],
        }
        Image.fromarray(image).save(record["file_name"])
        Image.fromarray(label).save(record["sem_seg_file_name"])
        records.append(record)
    name = f"{fresh_prefix}_blobs_sem_seg"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=list("abcd"), ignore_label=255)
    return name, records


def test_prepare_writes_keeps_and_refreshes(tiny_dataset, tmp_path):
    name, records = tiny_dataset
    cache = tmp_path / "cache"
    assert write_dataset_targets([name], 5, cache) == {name: {"written": 2, "up_to_date": 0}}
    for r in records:
        path = target_file_path(r["sem_seg_file_name"], 5, cache)
        label = np.asarray(Image.open(r["sem_seg_file_name"]))
        np.testing.assert_array_equal(np.asarray(Image.open(path)), targets_of_label(label, 255, 5))
    assert write_dataset_targets([name], 5, cache) == {name: {"written": 0, "up_to_date": 2}}
    later = os.path.getmtime(target_file_path(records[0]["sem_seg_file_name"], 5, cache)) + 10
    os.utime(records[0]["sem_seg_file_name"], (later, later))
    assert write_dataset_targets([name], 5, cache, workers=2) == {
        name: {"written": 1, "up_to_date": 1}
    }
    assert not [p for p in cache.rglob("*") if p.name.startswith(".partial")]
    with pytest.raises(KeyError, match="'nope' is not registered"):
        write_dataset_targets(["nope"], 5, cache)


def test_prepare_script(tiny_dataset, tmp_path, capsys):
    name, records = tiny_dataset
    script = load_script("datasets/prepare_segfix_targets.py")
    assert script.main([name, "--targets-dir", str(tmp_path / "c"), "--max-distance", "3"]) == 0
    assert f"{name}: wrote 2, kept 0 up to date" in capsys.readouterr().out
    assert os.path.isfile(target_file_path(records[1]["sem_seg_file_name"], 3, tmp_path / "c"))
    assert script.main(["not_a_dataset"]) == 1
    assert "'not_a_dataset' is not registered" in capsys.readouterr().err


def _mappers(augmentations, targets_dir):
    kwargs = dict(
        augmentations=augmentations,
        image_format="RGB",
        ignore_label=255,
        num_classes=4,
        targets_dir=str(targets_dir),
    )
    return (
        SegFixDatasetMapper(True, targets="online", **kwargs),
        SegFixDatasetMapper(True, targets="cached", **kwargs),
    )


def test_cached_mapper_gives_the_online_targets_of_whole_flipped_images(tiny_dataset, tmp_path):
    name, records = tiny_dataset
    online, cached = _mappers([T.RandomFlip(prob=1.0)], tmp_path / "cache")
    with pytest.raises(StaleTargetFile, match="prepare_segfix_targets.py"):
        cached(records[0])
    write_dataset_targets([name], 5, tmp_path / "cache")
    for r in records:
        a, b = online(r), cached(r)
        assert "sem_seg" in a and "sem_seg" not in b  # the cached path does not read the label
        np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
        np.testing.assert_array_equal(a["segfix_boundary"], b["segfix_boundary"])
        same = (a["segfix_direction"] == b["segfix_direction"]).float().mean()
        assert same > 0.998


def test_cached_mapper_follows_random_scale_and_crop(tiny_dataset, tmp_path):
    name, records = tiny_dataset
    write_dataset_targets([name], 5, tmp_path / "cache")
    augmentations = [
        T.ResizeScale(1.5, 1.5, 60, 90),
        T.FixedSizeCrop((50, 70), pad=True, seg_pad_value=255),
        T.RandomFlip(prob=1.0),
    ]
    online, cached = _mappers(augmentations, tmp_path / "cache")
    np.random.seed(3)
    a = online(records[0])
    np.random.seed(3)
    b = cached(records[0])
    np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
    # the cached targets are the full label's, rescaled: they agree with the crop's own targets
    # away from the crop's edges and the widened band
    agree = (a["segfix_boundary"] == b["segfix_boundary"]).float().mean()
    assert 0.7 < agree < 1.0
    assert b["segfix_boundary"].shape == (50, 70)


def test_unknown_target_source_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"MODEL.SEGFIX.TARGETS must be one of .*'offline'"):
        SegFixDatasetMapper(
            True,
            augmentations=[],
            image_format="RGB",
            ignore_label=255,
            num_classes=4,
            targets="offline",
        )
