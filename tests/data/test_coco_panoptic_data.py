"""COCO panoptic for Panoptic-FPN: stuff-label preparation, validating registration, PQ of the GT.

Runs on the 2 real COCO val2017 samples of ``../shared/data/coco_panoptic/sample_data``, laid out
in a temporary ``coco/`` tree as the real release (images and PNGs symlinked, JSONs copied), and
on the toy split ``toy_scenes_panoptic_val_separated``.
"""

import itertools
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, load_script
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.evaluation import COCOPanopticEvaluator
from panopticapi.utils import rgb2id
from PIL import Image

from panoptic_ocr.data import ensure_dataset_available
from panoptic_ocr.data.coco_panoptic_stuff import PanopticStuffSplit, write_panoptic_stuff_labels
from panoptic_ocr.data.datasets.register_coco_panoptic import (
    PREPARE_COMMAND,
    check_panoptic_annotations,
    check_panoptic_png,
    get_coco_panoptic_separated_meta,
    register_all_coco_panoptic,
    register_coco_panoptic_separated,
)

SAMPLES = SHARED_DATA / "coco_panoptic" / "sample_data"
pytestmark = pytest.mark.skipif(
    not SAMPLES.is_dir(),
    reason=f"COCO panoptic samples not found at {SAMPLES} (shared/ is beside the repository)",
)
_counter = itertools.count()


# --------------------------------------------------------------------------------------------
# A temporary COCO tree in the release layout
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _things_only_instances(detection_json: dict) -> dict:
    """``panoptic_coco_detection_format.json`` holds every segment (stuff too, 133 categories):
    keep the 80 thing categories and their annotations, as in ``instances_val2017.json``."""
    thing_ids = set(
        _get_builtin_metadata("coco_panoptic_separated")["thing_dataset_id_to_contiguous_id"]
    )
    return dict(
        detection_json,
        categories=[c for c in detection_json["categories"] if c["id"] in thing_ids],
        annotations=[a for a in detection_json["annotations"] if a["category_id"] in thing_ids],
    )


@pytest.fixture
def coco(tmp_path) -> Path:
    """``<tmp>/coco`` with val2017/, panoptic_val2017/,
    annotations/{panoptic,instances}_val2017.json."""
    root = tmp_path / "coco"
    for src_dir, dst_dir, suffix in (
        ("input_images", "val2017", "*.jpg"),
        ("panoptic_examples", "panoptic_val2017", "*.png"),
    ):
        (root / dst_dir).mkdir(parents=True)
        for src in sorted((SAMPLES / src_dir).glob(suffix)):
            (root / dst_dir / src.name).symlink_to(src)
    (root / "annotations").mkdir()
    shutil.copy(SAMPLES / "panoptic_examples.json", root / "annotations/panoptic_val2017.json")
    detection = json.loads((SAMPLES / "panoptic_coco_detection_format.json").read_text())
    _write_json(root / "annotations/instances_val2017.json", _things_only_instances(detection))
    return root


def _panoptic(coco: Path) -> dict:
    return json.loads((coco / "annotations/panoptic_val2017.json").read_text())


def _split(coco: Path) -> PanopticStuffSplit:
    return PanopticStuffSplit(
        str(coco / "annotations/panoptic_val2017.json"),
        str(coco / "panoptic_val2017"),
        str(coco / "panoptic_stuff_val2017"),
    )


def _register(coco: Path, name: str) -> None:
    register_coco_panoptic_separated(
        name,
        get_coco_panoptic_separated_meta(),
        str(coco / "val2017"),
        str(coco / "panoptic_val2017"),
        str(coco / "annotations/panoptic_val2017.json"),
        str(coco / "panoptic_stuff_val2017"),
        str(coco / "annotations/instances_val2017.json"),
    )


@pytest.fixture
def dataset_name():
    """A dataset name unique to this test; its registration is removed afterwards."""
    name = f"test_coco_panoptic{next(_counter)}_val_separated"
    yield name
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _panoptic_ids(png_path) -> np.ndarray:
    with Image.open(png_path) as im:
        assert im.mode == "RGB"
        return rgb2id(np.asarray(im))


def _read_label(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L", f"{path} is {im.mode}, not a single-channel 'L' PNG"
        return np.asarray(im)


def _prepare_script():
    return load_script("datasets/prepare_coco_panoptic_fpn.py")


# --------------------------------------------------------------------------------------------
# Preparation, registration, evaluation
# --------------------------------------------------------------------------------------------


def test_prepare_writes_stuff_labels_that_agree_with_the_panoptic_annotations(coco):
    counts = write_panoptic_stuff_labels([_split(coco)])
    assert counts == {str(coco / "panoptic_stuff_val2017"): 2}
    assert not [p for p in coco.iterdir() if p.name.startswith(".")]  # no temporary folder left

    meta = get_coco_panoptic_separated_meta()
    stuff_ids = meta["stuff_dataset_id_to_contiguous_id"]
    panoptic = _panoptic(coco)
    isthing = {
        c["id"]: c["isthing"] for c in panoptic["categories"]
    }  # the JSON's own category list
    for ann in panoptic["annotations"]:
        ids = _panoptic_ids(coco / "panoptic_val2017" / ann["file_name"])
        label = _read_label(coco / "panoptic_stuff_val2017" / ann["file_name"])
        expected = np.full(ids.shape, 255, np.uint8)
        for s in ann["segments_info"]:
            expected[ids == s["id"]] = (
                0 if isthing[s["category_id"]] else stuff_ids[s["category_id"]]
            )
        np.testing.assert_array_equal(label, expected)
        stuff_in_image = {
            stuff_ids[s["category_id"]]
            for s in ann["segments_info"]
            if not isthing[s["category_id"]]
        }
        assert set(np.unique(label).tolist()) == {0, 255} | stuff_in_image
        assert stuff_in_image <= set(range(1, 54))


def test_prepare_script_refuses_to_overwrite(coco, capsys):
    script = _prepare_script()
    assert script.main(["--root", str(coco)]) == 0  # only val exists: the default takes it
    out = coco / "panoptic_stuff_val2017" / "000000142238.png"
    first = _read_label(out)
    assert script.main(["--root", str(coco), "--splits", "val"]) == 0  # finished: a no-op
    assert "Already prepared" in capsys.readouterr().out
    assert script.main(["--root", str(coco), "--splits", "val", "--overwrite"]) == 0
    np.testing.assert_array_equal(_read_label(out), first)
    assert not [p for p in coco.iterdir() if p.name.startswith(".")]


def test_registration_loads_instances_and_stuff_labels(coco, dataset_name):
    _register(coco, dataset_name)  # lazy: nothing exists yet, nothing is read
    write_panoptic_stuff_labels([_split(coco)])
    records = DatasetCatalog.get(dataset_name)

    panoptic = _panoptic(coco)
    isthing = {c["id"]: c["isthing"] for c in panoptic["categories"]}
    things_per_image = {
        a["image_id"]: sum(isthing[s["category_id"]] for s in a["segments_info"])
        for a in panoptic["annotations"]
    }
    assert things_per_image == {142238: 15, 439180: 28}
    assert sorted(r["image_id"] for r in records) == sorted(things_per_image)
    for r in records:
        assert len(r["annotations"]) == things_per_image[r["image_id"]]
        assert all(0 <= a["category_id"] < 80 for a in r["annotations"])
        assert os.path.isfile(r["file_name"]) and os.path.isfile(r["sem_seg_file_name"])
    meta = MetadataCatalog.get(dataset_name)
    assert meta.prepare_command == PREPARE_COMMAND and meta.evaluator_type == "coco_panoptic_seg"
    assert meta.ignore_label == 255 and len(meta.stuff_classes) == 54
    ensure_dataset_available(dataset_name)  # every path of the metadata exists


def test_checked_names_have_the_validating_loader_and_detectron2s_metadata():
    expected = get_coco_panoptic_separated_meta()
    for split in ("train", "val", "val_100"):
        name = f"coco_2017_{split}_panoptic_separated_checked"
        loader = DatasetCatalog[name]
        assert loader.__module__ == "panoptic_ocr.data.datasets.register_coco_panoptic", name
        meta = MetadataCatalog.get(name).as_dict()
        # Detectron2's entry is untouched and its metadata (same class tables, same files) is ours
        # too, plus the command that makes the stuff labels.
        builtin = MetadataCatalog.get(f"coco_2017_{split}_panoptic_separated").as_dict()
        assert "prepare_command" not in builtin
        assert DatasetCatalog[f"coco_2017_{split}_panoptic_separated"].__module__.startswith(
            "detectron2."
        )
        assert meta.pop("prepare_command") == PREPARE_COMMAND
        assert meta.pop("name") == name and builtin.pop("name") == name[: -len("_checked")]
        assert meta == builtin, name
        assert (
            meta["stuff_dataset_id_to_contiguous_id"]
            == expected["stuff_dataset_id_to_contiguous_id"]
        )
        assert (
            meta["thing_classes"] == expected["thing_classes"]
            and meta["evaluator_type"] == "coco_panoptic_seg"
        )
    before = MetadataCatalog.get("coco_2017_val_panoptic_separated_checked").as_dict()
    register_all_coco_panoptic("/elsewhere")  # again: registered names are left as they are
    assert MetadataCatalog.get("coco_2017_val_panoptic_separated_checked").as_dict() == before
    assert before["json_file"].endswith("coco/annotations/instances_val2017.json")


def _gt_as_panoptic_fpn_output(png_path, segments_info, meta) -> dict:
    """Ground truth in PanopticFPN's output format: ids + segments with contiguous categories."""
    things = meta.thing_dataset_id_to_contiguous_id
    stuff = meta.stuff_dataset_id_to_contiguous_id
    info = []
    for s in segments_info:
        is_thing = s["category_id"] in things
        category = (things if is_thing else stuff)[s["category_id"]]
        info.append({"id": s["id"], "category_id": category, "isthing": is_thing})
    ids = torch.from_numpy(_panoptic_ids(png_path).astype(np.int32))
    return {"panoptic_seg": (ids, info)}


def _pq_of_ground_truth(dataset_name: str, output_dir: Path) -> dict:
    meta = MetadataCatalog.get(dataset_name)
    panoptic = json.loads(Path(meta.panoptic_json).read_text())
    annotations = {a["image_id"]: a for a in panoptic["annotations"]}
    evaluator = COCOPanopticEvaluator(dataset_name, output_dir=str(output_dir))
    evaluator.reset()
    for record in DatasetCatalog.get(dataset_name):
        ann = annotations[record["image_id"]]
        output = _gt_as_panoptic_fpn_output(
            Path(meta.panoptic_root) / ann["file_name"], ann["segments_info"], meta
        )
        evaluator.process(
            [{"image_id": record["image_id"], "file_name": record["file_name"]}], [output]
        )
    return evaluator.evaluate()["panoptic_seg"]


def test_ground_truth_as_prediction_scores_pq_100_on_coco(coco, dataset_name, tmp_path):
    write_panoptic_stuff_labels([_split(coco)])
    _register(coco, dataset_name)
    results = _pq_of_ground_truth(dataset_name, tmp_path / "eval")
    assert results["PQ"] == pytest.approx(100.0)
    assert results["PQ_th"] == pytest.approx(100.0) and results["PQ_st"] == pytest.approx(100.0)


def test_ground_truth_as_prediction_scores_pq_100_on_toy_scenes(tmp_path):
    name = "toy_scenes_panoptic_val_separated"
    ensure_dataset_available(name)
    results = _pq_of_ground_truth(name, tmp_path / "eval")
    assert results["PQ"] == pytest.approx(100.0)
    assert results["PQ_th"] == pytest.approx(100.0) and results["PQ_st"] == pytest.approx(100.0)


# --------------------------------------------------------------------------------------------
# Bad input: errors name the file and the offending id
# --------------------------------------------------------------------------------------------


def test_png_with_an_unlisted_id_is_an_error_naming_the_png_and_the_id(coco):
    ann = _panoptic(coco)["annotations"][0]
    png = coco / "panoptic_val2017" / ann["file_name"]
    ids = _panoptic_ids(png)
    changed_id = 7654321
    ids[ids == ann["segments_info"][0]["id"]] = changed_id
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1).astype(np.uint8)
    png.unlink()  # a symlink to the shared sample: replace it, never write through it
    Image.fromarray(rgb).save(png)

    message = rf"{re.escape(str(png))}.*{changed_id}"
    with pytest.raises(ValueError, match=message):
        check_panoptic_png(str(png), ann["segments_info"])
    with pytest.raises(ValueError, match=message):
        write_panoptic_stuff_labels([_split(coco)])
    assert not (coco / "panoptic_stuff_val2017").exists()
    assert not [p for p in coco.iterdir() if p.name.startswith(".")]  # nothing written
    # The segment whose pixels were taken is now absent from the PNG: also named.
    missing_id = ann["segments_info"][0]["id"]
    with pytest.raises(ValueError, match=rf"{re.escape(str(png))}.*{missing_id}"):
        check_panoptic_png(str(png), ann["segments_info"] + [{"id": changed_id}])


def test_unknown_category_is_an_error_naming_the_json_and_the_category(coco, dataset_name):
    panoptic_json = coco / "annotations/panoptic_val2017.json"
    panoptic = _panoptic(coco)
    segment = panoptic["annotations"][1]["segments_info"][3]
    segment["category_id"] = 9999
    _write_json(panoptic_json, panoptic)

    image_id = panoptic["annotations"][1]["image_id"]
    message = (
        rf"{re.escape(str(panoptic_json))}.*image id {image_id}.*segment id {segment['id']}.*9999"
    )
    meta = get_coco_panoptic_separated_meta()
    with pytest.raises(ValueError, match=message):
        check_panoptic_annotations(str(panoptic_json), str(coco / "val2017"), meta)
    with pytest.raises(ValueError, match=message):
        write_panoptic_stuff_labels([_split(coco)])
    _register(coco, dataset_name)
    with pytest.raises(ValueError, match=message):
        DatasetCatalog.get(dataset_name)


def test_missing_image_is_an_error_naming_the_file_and_the_image_id(coco, dataset_name):
    image = coco / "val2017" / "000000439180.jpg"
    image.unlink()
    message = rf"{re.escape(str(image))}.*image id 439180.*panoptic_val2017\.json"
    with pytest.raises(FileNotFoundError, match=message):
        check_panoptic_annotations(
            str(coco / "annotations/panoptic_val2017.json"),
            str(coco / "val2017"),
            get_coco_panoptic_separated_meta(),
        )
    _register(coco, dataset_name)
    with pytest.raises(FileNotFoundError, match=message):
        DatasetCatalog.get(dataset_name)
