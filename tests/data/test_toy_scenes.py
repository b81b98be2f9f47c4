"""Toy scenes: deterministic, valid COCO panoptic / sem_seg / instances files, registered."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from panoptic_ocr.data.datasets.toy_scenes import (
    TOY_CATEGORIES,
    ensure_toy_scenes,
    generate_toy_scenes,
)

SIZES = {"train": 6, "val": 4}


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return generate_toy_scenes(tmp_path_factory.mktemp("toy") / "toy_scenes", SIZES, seed=7)


def _digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generation_is_deterministic(toy_root, tmp_path):
    again = generate_toy_scenes(tmp_path / "toy_scenes", SIZES, seed=7)
    assert _digest(toy_root) == _digest(again)
    other_seed = generate_toy_scenes(tmp_path / "other", {"train": 1}, seed=8)
    assert (other_seed / "sem_seg/train/toy_train_000000.png").read_bytes() != (
        toy_root / "sem_seg/train/toy_train_000000.png"
    ).read_bytes()


def test_generation_refuses_to_overwrite(toy_root):
    with pytest.raises(FileExistsError, match=str(toy_root)):
        generate_toy_scenes(toy_root, SIZES)


def test_incomplete_root_error_names_path_and_command(tmp_path):
    (tmp_path / "toy_scenes").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"toy_scenes.*python datasets/prepare_toy_scenes.py"
    ):
        ensure_toy_scenes(tmp_path / "toy_scenes")


@pytest.mark.parametrize("split", ["train", "val"])
def test_panoptic_png_matches_json(toy_root, split):
    data = json.loads((toy_root / f"panoptic_{split}.json").read_text())
    assert {c["id"] for c in data["categories"]} == {c["id"] for c in TOY_CATEGORIES}
    images = {im["id"]: im for im in data["images"]}
    assert len(data["annotations"]) == SIZES[split]
    for ann in data["annotations"]:
        rgb = np.asarray(
            Image.open(toy_root / f"panoptic_{split}" / ann["file_name"]), dtype=np.int64
        )
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
        image = images[ann["image_id"]]
        assert ids.shape == (image["height"], image["width"])
        assert 200 <= image["height"] <= 300 and 200 <= image["width"] <= 300
        segments = {s["id"]: s for s in ann["segments_info"]}
        present = set(np.unique(ids).tolist()) - {0}
        assert present == set(segments), "PNG ids and JSON segments differ"
        for seg_id, seg in segments.items():
            mask = ids == seg_id
            assert seg["area"] == int(mask.sum())
            ys, xs = np.nonzero(mask)
            assert seg["bbox"] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
        things = [s for s in segments.values() if s["category_id"] <= 3]
        assert things, "every scene has at least one visible thing"


@pytest.mark.parametrize("split", ["train", "val"])
def test_semantic_and_stuff_pngs_agree_with_panoptic(toy_root, split):
    data = json.loads((toy_root / f"panoptic_{split}.json").read_text())
    contiguous = {c["id"]: i for i, c in enumerate(TOY_CATEGORIES)}
    stuff_ids = [c["id"] for c in TOY_CATEGORIES if not c["isthing"]]
    for ann in data["annotations"]:
        stem = Path(ann["file_name"]).stem
        sem = Image.open(toy_root / "sem_seg" / split / f"{stem}.png")
        stuff = Image.open(toy_root / f"panoptic_stuff_{split}" / f"{stem}.png")
        assert sem.mode == "L" and stuff.mode == "L"
        sem, stuff = np.asarray(sem), np.asarray(stuff)
        assert set(np.unique(sem).tolist()) <= set(range(len(TOY_CATEGORIES))) | {255}
        rgb = np.asarray(
            Image.open(toy_root / f"panoptic_{split}" / ann["file_name"]), dtype=np.int64
        )
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
        assert np.all(sem[ids == 0] == 255) and np.all(stuff[ids == 0] == 255)
        for seg in ann["segments_info"]:
            mask = ids == seg["id"]
            assert np.all(sem[mask] == contiguous[seg["category_id"]])
            expected_stuff = (
                0
                if seg["category_id"] not in stuff_ids
                else stuff_ids.index(seg["category_id"]) + 1
            )
            assert np.all(stuff[mask] == expected_stuff)


def test_instances_json_masks_equal_panoptic_things(toy_root):
    panoptic = json.loads((toy_root / "panoptic_val.json").read_text())
    instances = json.loads((toy_root / "instances_val.json").read_text())
    assert all(c["isthing"] for c in instances["categories"])
    by_image = {}
    for ann in instances["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for ann in panoptic["annotations"]:
        rgb = np.asarray(Image.open(toy_root / "panoptic_val" / ann["file_name"]), dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
        things = [s for s in ann["segments_info"] if s["category_id"] <= 3]
        inst = by_image.get(ann["image_id"], [])
        assert len(inst) == len(things)
        for seg, coco_ann in zip(things, inst):
            assert coco_ann["category_id"] == seg["category_id"] and coco_ann["area"] == seg["area"]
            assert np.array_equal(
                mask_util.decode(coco_ann["segmentation"]).astype(bool), ids == seg["id"]
            )


def test_registered_datasets_load_with_full_metadata():
    sem = DatasetCatalog.get("toy_scenes_sem_seg_val")
    assert len(sem) == 40 and all(Path(r["sem_seg_file_name"]).exists() for r in sem)
    meta = MetadataCatalog.get("toy_scenes_sem_seg_val")
    assert meta.evaluator_type == "sem_seg" and meta.ignore_label == 255
    assert meta.stuff_classes == [c["name"] for c in TOY_CATEGORIES]
    assert len(meta.stuff_colors) == len(meta.stuff_classes)

    pan = DatasetCatalog.get("toy_scenes_panoptic_val")
    assert len(pan) == 40 and "segments_info" in pan[0] and "pan_seg_file_name" in pan[0]
    # load_coco_panoptic_json converts dataset ids to contiguous ones
    assert {s["category_id"] for r in pan for s in r["segments_info"]} <= set(range(7))
    pmeta = MetadataCatalog.get("toy_scenes_panoptic_val")
    assert pmeta.evaluator_type == "coco_panoptic_seg" and pmeta.label_divisor == 1000
    assert pmeta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}

    sep = DatasetCatalog.get("toy_scenes_panoptic_val_separated")
    assert len(sep) == 40 and "annotations" in sep[0] and "sem_seg_file_name" in sep[0]
    smeta = MetadataCatalog.get("toy_scenes_panoptic_val_separated")
    assert smeta.stuff_classes[0] == "things" and len(smeta.stuff_classes) == 5
    assert smeta.stuff_dataset_id_to_contiguous_id[0] == 0
