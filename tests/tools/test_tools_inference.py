"""Inference benchmarks and visualisation: ``tools/benchmark_fps.py`` (whole-model FPS,
memory, precision comparison; its measuring loaded as a module) and
:mod:`panoptic_ocr.utils.object_regions` (OCR's soft object regions as heat maps;
``tools/visualize_object_regions.py``).

Both run in-process on tiny inputs with random weights; the FPS tool also runs once as a
script (its tables)."""

import json
import math
import os
import subprocess
import sys

import cv2
import pytest
from conftest import REPO_ROOT, load_tool
from detectron2.data import DatasetCatalog

from panoptic_ocr import setup_cfg
from panoptic_ocr.utils.object_regions import visualize_object_regions
from panoptic_ocr.utils.visualization import title_strip_height

fps = load_tool("benchmark_fps")
FpsSettings, parse_size, run_benchmark = fps.FpsSettings, fps.parse_size, fps.run_benchmark

OCR_CONFIG = str(REPO_ROOT / "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml")
FINE_CONFIG = str(REPO_ROOT / "configs/toy_scenes/fine_only_R18_os16_toy_scenes_600it.yaml")
ORACLE_CONFIG = str(REPO_ROOT / "configs/toy_scenes/ocr_gt_oracle_R18_os16_toy_scenes_600it.yaml")
SMALL = [
    "MODEL.OCR.MID_CHANNELS",
    "64",
    "MODEL.OCR.KEY_CHANNELS",
    "32",
    "MODEL.SEM_SEG_HEAD.AUX_CHANNELS",
    "32",
]

POSITIVE_KEYS = (
    "params",
    "latency_ms",
    "latency_min_ms",
    "fps",
    "peak_memory_mb",
    "weights_mb",
    "backbone_ms",
)


@pytest.fixture(scope="module")
def toy_val_record():
    return DatasetCatalog.get("toy_scenes_sem_seg_val")[0]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_benchmark_fps_json(toy_val_record):
    settings = FpsSettings(
        configs=[OCR_CONFIG, FINE_CONFIG],
        names=["ocr", "fine"],
        size=parse_size("64,96"),
        runs=1,
        warmup=0,
        compare_dtype="bfloat16",
        image=toy_val_record["file_name"],
        label=toy_val_record["sem_seg_file_name"],
        calibrate=True,
        breakdown=True,
        opts=SMALL,
    )
    report = run_benchmark(settings)
    assert json.loads(json.dumps(report)) == report  # --json prints it as it is

    env = report["environment"]
    assert env["size"] == [64, 96] and env["threads"] >= 1 and env["torch"] and env["device"]
    assert env["calibrated"] and env["opts"] == SMALL
    results = report["results"]
    # --dtype (float32) rows first, then the --compare-dtype rows, models in --configs order.
    assert [(r["name"], r["dtype"]) for r in results] == [
        ("ocr", "float32"), ("fine", "float32"), ("ocr", "bfloat16"), ("fine", "bfloat16"),
    ]  # fmt: skip
    for r in results:
        for key in POSITIVE_KEYS:
            assert _positive(r[key]), (r["name"], r["dtype"], key, r[key])
        assert r["fps"] == pytest.approx(1000.0 / r["latency_ms"])
        assert 0.0 <= r["calibration_pixel_accuracy"] <= 1.0
        # bfloat16 goes through the project's fast path (Trainer.test's inference copy).
        assert r["channels_last"] == r["fold_bn"] == (r["dtype"] == "bfloat16")
    assert results[0]["fps_ratio"] == results[2]["fps_ratio"] == 1.0
    assert results[0]["params"] > results[1]["params"]  # OCR adds its module and regions branch
    assert results[2]["weights_mb"] < results[0]["weights_mb"]  # bfloat16 conv weights

    assert [c["name"] for c in report["comparisons"]] == ["ocr", "fine"]
    for c in report["comparisons"]:
        assert c["dtype"] == "bfloat16" and _positive(c["speedup"]) and _positive(c["float32_ms"])
        assert 0.9 <= c["agreement"] <= 1.0  # fitted classifier: few near-ties


def test_benchmark_fps_table_and_argument_errors():
    argv = ["--configs", FINE_CONFIG, "--size", "33,47", "--runs", "1", "--warmup", "0"]
    argv.append("--no-memory")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "benchmark_fps.py"), *argv],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "fine_only_R18_os16_toy_scenes_600it | float32" in out and "FPS ratio" in out
    assert "peak mem" not in out
    assert "built fine_only_R18_os16_toy_scenes_600it" in result.stderr  # progress: not stdout
    for kwargs, message in [
        (dict(configs=[FINE_CONFIG], names=["a", "b"]), "--names has 2 labels for 1"),
        (dict(configs=[FINE_CONFIG], calibrate=True), "--calibrate needs --image and its --label"),
        (dict(configs=["no/such.yaml"]), "does not exist"),
        (dict(configs=[FINE_CONFIG], opts=["MODEL.OCR.MID_CHANNELS"]), "--opts needs KEY VALUE"),
    ]:
        with pytest.raises(ValueError, match=message):
            FpsSettings(**kwargs)
    with pytest.raises(ValueError, match="--size needs H,W"):
        parse_size("64")


def _visualize(config: str, image: str, output, **options):
    cfg = setup_cfg(config, SMALL + ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS_ALLOW_PARTIAL", "True"])
    return visualize_object_regions(cfg, [image], str(output), **options)


def test_visualize_object_regions_writes_panels(tmp_path, toy_val_record, caplog):
    image = toy_val_record["file_name"]
    height, width = cv2.imread(image).shape[:2]
    written = _visualize(OCR_CONFIG, image, tmp_path / "default", top_k=2)
    assert "randomly initialised" in caplog.text
    assert len(written) == 2
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == sorted(
        p.rsplit("/", 1)[-1] for p in written
    )
    for path in written:
        # titled prediction | region | p(class)
        assert cv2.imread(path).shape == (height + title_strip_height(height), 3 * width, 3)

    written = _visualize(OCR_CONFIG, image, tmp_path / "chosen", classes=["SKY", "0"])
    stem = image.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    assert [p.rsplit("/", 1)[-1] for p in written] == [f"{stem}_3_sky.png", f"{stem}_0_circle.png"]
    with pytest.raises(ValueError, match="unknown class 'tree'.*0=circle"):
        _visualize(OCR_CONFIG, image, tmp_path / "bad", classes=["tree"])


def test_visualize_object_regions_tool_says_what_it_wrote(tmp_path, toy_val_record, capsys):
    tool = load_tool("visualize_object_regions")
    argv = ["--config-file", OCR_CONFIG, "--input", toy_val_record["file_name"], "--top-k", "1"]
    argv += ["--output", str(tmp_path), "--allow-partial-weights", "MODEL.DEVICE", "cpu", *SMALL]
    written = tool.main(argv)
    assert len(written) == 1
    assert f"Wrote 1 image(s) to {tmp_path}" in capsys.readouterr().out


@pytest.mark.parametrize("config", [FINE_CONFIG, ORACLE_CONFIG])
def test_visualize_object_regions_needs_predicted_regions(tmp_path, toy_val_record, config):
    with pytest.raises(ValueError, match="has no predicted soft object regions"):
        _visualize(config, toy_val_record["file_name"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
