"""COCO panoptic submission export: the writer (files, zip, PQ round trip, overwrite rule), the
test-dev registration, :mod:`panoptic_ocr.engine.panoptic_export` and
``tools/export_coco_panoptic.py`` (its main)."""

import contextlib
import io
import itertools
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, load_tool, make_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOPanopticEvaluator, DatasetEvaluators, inference_on_dataset
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from panopticapi.evaluation import pq_compute
from panopticapi.utils import rgb2id
from PIL import Image

from panoptic_ocr.data import ensure_dataset_available
from panoptic_ocr.data.datasets.register_coco_panoptic_test_dev import (
    load_coco_image_info_json,
    register_coco_panoptic_test_dev,
)
from panoptic_ocr.engine import build_evaluator, panoptic_export
from panoptic_ocr.engine.panoptic_export import ExportError, ExportOptions, check_export
from panoptic_ocr.evaluation import COCOPanopticSubmissionWriter
from panoptic_ocr.modeling.precision import AutocastInference
from panoptic_ocr.utils.safe_write import TEMP_PREFIX

TOY = "toy_scenes_panoptic_val_separated"
TOY_DATASET_IDS = {1, 2, 3, 11, 12, 13, 14}
STEM = f"panoptic_{TOY}_panoptic_ocr_results"
PANOPTIC_FPN_CONFIG = "configs/toy_scenes/Base-Panoptic-FPN-toy-scenes.yaml"
_names = itertools.count()


class PerturbedGroundTruth(torch.nn.Module):
    """Stand-in for PanopticFPN: each image's ground truth in PanopticFPN's output format
    (contiguous ids + ``isthing``), perturbed so that PQ is strictly between 0 and 100: the
    first thing segment is dropped (void) and the first stuff segment gets another stuff class.
    Images without ``image_id`` in the ground truth get one stuff segment over the image."""

    def __init__(self, dataset_name: str):
        super().__init__()
        meta = MetadataCatalog.get(dataset_name)
        self.things = meta.thing_dataset_id_to_contiguous_id
        self.stuff = meta.stuff_dataset_id_to_contiguous_id
        self.num_stuff = len(meta.stuff_classes) - 1  # separated: contiguous 0 = things
        self.annotations, self.panoptic_root = {}, None
        if meta.get("panoptic_json", None):
            with open(meta.panoptic_json) as f:
                self.annotations = {a["image_id"]: a for a in json.load(f)["annotations"]}
            self.panoptic_root = meta.panoptic_root

    def forward(self, batched_inputs):
        return [{"panoptic_seg": self._predict(x)} for x in batched_inputs]

    def _predict(self, inp):
        ann = self.annotations.get(inp["image_id"])
        if ann is None:
            panoptic = torch.ones((inp["height"], inp["width"]), dtype=torch.int32)
            return panoptic, [
                {"id": 1, "isthing": False, "category_id": 1, "area": panoptic.numel()}
            ]
        png = Image.open(os.path.join(self.panoptic_root, ann["file_name"]))
        gt = rgb2id(np.asarray(png, dtype=np.uint32))
        segments = ann["segments_info"]
        dropped = next((s["id"] for s in segments if s["category_id"] in self.things), None)
        relabelled = next(s["id"] for s in segments if s["category_id"] not in self.things)
        panoptic = np.zeros(gt.shape, dtype=np.int32)
        predicted = []
        for s in segments:
            if s["id"] == dropped:
                continue
            isthing = s["category_id"] in self.things
            category = (self.things if isthing else self.stuff)[s["category_id"]]
            if s["id"] == relabelled:
                category = category % self.num_stuff + 1
            new_id = len(predicted) + 1
            panoptic[gt == s["id"]] = new_id
            predicted.append(
                {"id": new_id, "isthing": isthing, "category_id": category, "score": 1.0}
            )
        return torch.from_numpy(panoptic), predicted


def _batches(dataset_name, count=None):
    records = DatasetCatalog.get(dataset_name)
    return [[r] for r in records[:count]]


def _export(model, loader, writer):
    return inference_on_dataset(model, loader, writer)


def _snapshot(folder: Path):
    """Every file under ``folder`` (relative path -> bytes), hidden ones included."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """The toy val split through Detectron2's evaluator and the writer in one pass."""
    out = tmp_path_factory.mktemp("round_trip")
    ensure_dataset_available(TOY)
    evaluator = COCOPanopticEvaluator(TOY, str(out / "evaluator"))
    writer = COCOPanopticSubmissionWriter(TOY, str(out / "submission"))
    with contextlib.redirect_stdout(io.StringIO()):
        results = inference_on_dataset(
            PerturbedGroundTruth(TOY), _batches(TOY), DatasetEvaluators([evaluator, writer])
        )
    return results, writer


def test_exported_files_give_the_evaluators_pq(round_trip):
    results, writer = round_trip
    assert results["panoptic_submission"] == {"num_images": 40.0}
    expected = results["panoptic_seg"]
    assert 0 < expected["PQ"] < 100 and 0 < expected["PQ_th"] < 100 and 0 < expected["PQ_st"] < 100
    meta = MetadataCatalog.get(TOY)
    with contextlib.redirect_stdout(io.StringIO()):
        pq = pq_compute(
            meta.panoptic_json, str(writer.json_path), meta.panoptic_root, str(writer.png_dir)
        )
    for key, group in (("PQ", "All"), ("PQ_th", "Things"), ("PQ_st", "Stuff")):
        assert abs(100 * pq[group]["pq"] - expected[key]) < 1e-6, key


def test_submission_layout_zip_and_dataset_category_ids(round_trip):
    _, writer = round_trip
    out = writer.json_path.parent
    assert writer.json_path.name == f"{STEM}.json" and writer.zip_path.name == f"{STEM}.zip"
    assert sorted(p.name for p in out.iterdir()) == sorted([STEM, f"{STEM}.json", f"{STEM}.zip"])

    annotations = json.loads(writer.json_path.read_text())["annotations"]
    assert len(annotations) == 40
    file_names = {a["file_name"] for a in annotations}
    assert file_names == {p.name for p in writer.png_dir.iterdir()}
    assert all(n.endswith(".png") for n in file_names)
    categories = {s["category_id"] for a in annotations for s in a["segments_info"]}
    # Dataset ids (1, 2, 3, 11..14), not the model's contiguous ones (0..2 things, 1..4 stuff).
    assert categories <= TOY_DATASET_IDS and categories & {11, 12, 13, 14} and 0 not in categories

    with zipfile.ZipFile(writer.zip_path) as archive:
        names = archive.namelist()
        assert {n.split("/")[0] for n in names} == {f"{STEM}.json", STEM}
        assert {
            n[len(STEM) + 1 :] for n in names if n.startswith(STEM + "/") and n != STEM + "/"
        } == file_names
        assert json.loads(archive.read(f"{STEM}.json"))["annotations"] == annotations
        first = sorted(file_names)[0]
        assert archive.read(f"{STEM}/{first}") == (writer.png_dir / first).read_bytes()


def test_writer_leaves_the_models_segments_info_alone(tmp_path):
    writer = COCOPanopticSubmissionWriter(TOY, str(tmp_path))
    writer.reset()
    inputs = _batches(TOY, 1)[0]
    outputs = PerturbedGroundTruth(TOY)(inputs)
    before = [dict(s) for s in outputs[0]["panoptic_seg"][1]]
    writer.process(inputs, outputs)
    assert outputs[0]["panoptic_seg"][1] == before


def test_refuses_to_overwrite_unless_asked(tmp_path, monkeypatch):
    model = PerturbedGroundTruth(TOY)
    late = COCOPanopticSubmissionWriter(TOY, str(tmp_path))  # built before the first export
    first = COCOPanopticSubmissionWriter(TOY, str(tmp_path))
    _export(model, _batches(TOY, 3), first)
    written = _snapshot(tmp_path)
    assert len(written) == 3 + 2

    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / STEM))):
        COCOPanopticSubmissionWriter(TOY, str(tmp_path))
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / STEM))):
        _export(model, _batches(TOY, 2), late)  # checked again before writing
    assert _snapshot(tmp_path) == written

    # An interrupted overwrite loses nothing and leaves nothing behind.
    def fail(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(zipfile.ZipFile, "write", fail)
        with pytest.raises(OSError, match="disk full"):
            _export(
                model,
                _batches(TOY, 2),
                COCOPanopticSubmissionWriter(TOY, str(tmp_path), overwrite=True),
            )
    assert _snapshot(tmp_path) == written and len(list(tmp_path.iterdir())) == 3

    # Placing the new zip fails after the PNG folder and JSON were replaced: the old ones come back.
    real_replace = os.replace

    def replace_but_not_the_new_zip(src, dst):
        if Path(src).name.startswith(TEMP_PREFIX) and Path(src).name.endswith(f"-{STEM}.zip"):
            raise OSError("rename failed")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace_but_not_the_new_zip)
        with pytest.raises(OSError, match="rename failed"):
            _export(
                model,
                _batches(TOY, 2),
                COCOPanopticSubmissionWriter(TOY, str(tmp_path), overwrite=True),
            )
    assert _snapshot(tmp_path) == written and len(list(tmp_path.iterdir())) == 3

    _export(
        model, _batches(TOY, 2), COCOPanopticSubmissionWriter(TOY, str(tmp_path), overwrite=True)
    )
    assert len(json.loads((tmp_path / f"{STEM}.json").read_text())["annotations"]) == 2
    assert len(list((tmp_path / STEM).iterdir())) == 2 and len(list(tmp_path.iterdir())) == 3
    with zipfile.ZipFile(tmp_path / f"{STEM}.zip") as archive:
        assert len([n for n in archive.namelist() if n.endswith(".png")]) == 2


def test_names_are_checked(tmp_path):
    for bad in ("", "a/b", "../x"):
        with pytest.raises(ValueError, match="method_name"):
            COCOPanopticSubmissionWriter(TOY, str(tmp_path), method_name=bad)
    writer = COCOPanopticSubmissionWriter(
        TOY, str(tmp_path), split_tag="val2017", method_name="mine"
    )
    assert writer.zip_path == tmp_path / "panoptic_val2017_mine_results.zip"


@pytest.fixture
def coco_test_dev(tmp_path):
    """A COCO layout with 2 toy images in test2017 and their image_info_test-dev2017.json,
    registered under a unique name (removed afterwards)."""
    coco = tmp_path / "coco"
    (coco / "test2017").mkdir(parents=True)
    (coco / "annotations").mkdir()
    images = []
    for i, record in enumerate(DatasetCatalog.get(TOY)[:2]):
        name = f"{i + 1:012d}.jpg"
        os.symlink(record["file_name"], coco / "test2017" / name)
        images.append(
            {
                "id": 1000 + i,
                "file_name": name,
                "height": record["height"],
                "width": record["width"],
            }
        )
    info = {
        "info": {"description": "fake test-dev"},
        "images": images,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],  # no "isthing"
    }
    info_json = coco / "annotations" / "image_info_test-dev2017.json"
    info_json.write_text(json.dumps(info))
    name = f"test_coco_test_dev_{next(_names)}"
    register_coco_panoptic_test_dev(str(tmp_path), name=name)
    yield name, info_json, info
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_test_dev_registration_loads_and_exports(coco_test_dev, tmp_path):
    name, info_json, info = coco_test_dev
    meta = MetadataCatalog.get(name)
    assert (
        meta.evaluator_type == "coco_panoptic_submission"
        and meta.submission_split == "test-dev2017"
    )
    assert len(meta.stuff_classes) == 54 and len(meta.thing_classes) == 80
    assert meta.image_info_json == str(info_json) and meta.get("json_file", None) is None
    ensure_dataset_available(name)
    records = DatasetCatalog.get(name)
    assert [(r["image_id"], os.path.basename(r["file_name"])) for r in records] == [
        (1000, "000000000001.jpg"),
        (1001, "000000000002.jpg"),
    ]
    assert all(os.path.isfile(r["file_name"]) for r in records)
    assert [(r["height"], r["width"]) for r in records] == [
        (i["height"], i["width"]) for i in info["images"]
    ]

    # The trainer's evaluator for this split is the writer, with test-dev file names.
    writer = build_evaluator(make_cfg(), name, str(tmp_path / "inference"))
    assert isinstance(writer, COCOPanopticSubmissionWriter)
    inference_on_dataset(PerturbedGroundTruth(name), [[r] for r in records], writer)
    zip_path = tmp_path / "inference" / "panoptic_test-dev2017_panoptic_ocr_results.zip"
    with zipfile.ZipFile(zip_path) as archive:
        annotations = json.loads(archive.read("panoptic_test-dev2017_panoptic_ocr_results.json"))[
            "annotations"
        ]
    assert [a["image_id"] for a in annotations] == [1000, 1001]
    assert {s["category_id"] for a in annotations for s in a["segments_info"]} == {
        92
    }  # COCO's first stuff id


def test_test_dev_registration_errors(coco_test_dev, tmp_path):
    name, info_json, info = coco_test_dev
    info["images"].append({"id": 4242, "file_name": "000000004242.jpg", "height": 1, "width": 1})
    info_json.write_text(json.dumps(info))
    with pytest.raises(FileNotFoundError, match=r"000000004242\.jpg.*image id 4242"):
        DatasetCatalog.get(name)

    no_images = tmp_path / "instances.json"
    no_images.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match=re.escape(str(no_images))):
        load_coco_image_info_json(str(no_images), str(tmp_path))

    info_json.unlink()
    with pytest.raises(FileNotFoundError, match=r"image_info_json.*image_info_test-dev2017\.json"):
        ensure_dataset_available(name)


def test_builtin_test_dev_name_is_registered():
    meta = MetadataCatalog.get("coco_2017_test-dev_panoptic")
    root = os.path.expanduser(os.environ["DETECTRON2_DATASETS"])
    assert meta.image_root == os.path.join(root, "coco", "test2017")
    assert meta.image_info_json == os.path.join(
        root, "coco", "annotations", "image_info_test-dev2017.json"
    )
    assert (
        meta.evaluator_type == "coco_panoptic_submission"
        and meta.submission_split == "test-dev2017"
    )


# Random weights; small images and few proposals/detections keep CPU inference fast.
FAST = [
    "MODEL.WEIGHTS",
    "",
    "MODEL.WEIGHTS_ALLOW_PARTIAL",
    "True",
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "160",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
    "TEST.DETECTIONS_PER_IMAGE",
    "5",
    "DATALOADER.NUM_WORKERS",
    "0",
]
SUBSET = f"{TOY}_first6"


@pytest.fixture
def first6(tmp_path):
    """SUBSET registered: the first 6 toy val images, scored against a ground-truth JSON of
    those images only."""
    ensure_dataset_available(TOY)
    with open(MetadataCatalog.get(TOY).panoptic_json) as f:
        gt = json.load(f)
    image_ids = {r["image_id"] for r in DatasetCatalog.get(TOY)[:6]}
    gt["images"] = [i for i in gt["images"] if i["id"] in image_ids]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in image_ids]
    subset_json = tmp_path / "panoptic_val_first6.json"
    subset_json.write_text(json.dumps(gt))
    DatasetCatalog.register(SUBSET, lambda: DatasetCatalog.get(TOY)[:6])
    meta = dict(MetadataCatalog.get(TOY).as_dict(), panoptic_json=str(subset_json))
    meta.pop("name")
    MetadataCatalog.get(SUBSET).set(**meta)
    yield SUBSET
    DatasetCatalog.remove(SUBSET)
    MetadataCatalog.remove(SUBSET)


def test_cli_exports_and_evaluates(tmp_path, first6, run_main):
    """``python tools/export_coco_panoptic.py ... --evaluate``, its main run in this process."""
    out = tmp_path / "submission"
    argv = [
        "--config-file",
        REPO_ROOT / PANOPTIC_FPN_CONFIG,
        "--output-dir",
        out,
        "--dataset",
        first6,
        "--evaluate",
        *FAST,
    ]
    status, stdout, stderr = run_main(load_tool("export_coco_panoptic").main, argv)
    assert status == 0, stderr[-3000:]
    zip_path = out / f"panoptic_{SUBSET}_panoptic_ocr_results.zip"
    assert zip_path.is_file() and f"COCO panoptic submission: {zip_path}" in stdout
    with zipfile.ZipFile(zip_path) as archive:
        assert len([n for n in archive.namelist() if n.endswith(".png")]) == 6
    assert re.search(r"\|\s*PQ\s*\|\s*SQ\s*\|\s*RQ", stdout), stdout[-2000:]
    assert all(re.search(rf"\|\s*{g}\s*\|", stdout) for g in ("All", "Things", "Stuff"))

    # Bad input: clear errors naming what is wrong (in-process, the checks the tool makes
    # before any process starts; nothing is run).
    config = str(REPO_ROOT / PANOPTIC_FPN_CONFIG)
    (out / f"{STEM}.zip").write_bytes(b"an earlier submission")
    with pytest.raises(ExportError, match=re.escape(str(out / f"{STEM}.zip"))):
        check_export(ExportOptions(config, FAST, output_dir=str(out)))
    assert (out / f"{STEM}.zip").read_bytes() == b"an earlier submission"
    with pytest.raises(ExportError, match=f"toy_scenes_panoptic_vall_separated.*{TOY}"):
        check_export(
            ExportOptions(
                config, FAST, dataset="toy_scenes_panoptic_vall_separated", output_dir=str(out)
            )
        )
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(ExportError, match=re.escape(missing)):
        check_export(
            ExportOptions(
                config, FAST + ["MODEL.WEIGHTS", missing], output_dir=str(out), overwrite=True
            )
        )


def test_export_runs_the_configs_inference_model(tmp_path, monkeypatch, quiet_setup_logger):
    """The test-dev export goes through the inference builder: MODEL.INFERENCE_DTYPE and
    TEST.FOLD_BATCHNORM apply to it as to evaluation."""
    seen = []
    monkeypatch.setattr(
        panoptic_export, "inference_on_dataset", lambda model, loader, writer: seen.append(model)
    )
    opts = FAST + ["MODEL.INFERENCE_DTYPE", "bfloat16", "TEST.FOLD_BATCHNORM", "True"]
    config = str(REPO_ROOT / PANOPTIC_FPN_CONFIG)
    panoptic_export.export_panoptic(
        ExportOptions(config, opts, dataset=TOY, output_dir=str(tmp_path))
    )
    (model,) = seen
    assert isinstance(model, AutocastInference) and model.dtype == torch.bfloat16
    assert sum(isinstance(m, Conv2d) and m.norm is None for m in model.modules()) > 20  # folded
    assert not any(
        isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules()
    )
