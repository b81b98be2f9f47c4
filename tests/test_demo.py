"""demo/demo.py on a folder (RGB, grayscale, RGBA and a corrupt file) and on a short video, for a
semantic and a Panoptic-FPN config: it writes what it says and skips what it cannot read."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT

SEMANTIC = "configs/quickstart/ocr_R18_os16_toy_scenes_600it.yaml"
PANOPTIC = "configs/toy_scenes/panoptic_fpn_R18_toy_scenes_600it.yaml"
SMALL_SEMANTIC = ["MODEL.WEIGHTS", "", "MODEL.WEIGHTS_ALLOW_PARTIAL", "True", "MODEL.OCR.MID_CHANNELS", "64", "MODEL.OCR.KEY_CHANNELS", "32",
                  "MODEL.SEM_SEG_HEAD.AUX_CHANNELS", "64"]
SMALL_PANOPTIC = ["MODEL.WEIGHTS", "", "MODEL.WEIGHTS_ALLOW_PARTIAL", "True", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
                  "TEST.DETECTIONS_PER_IMAGE", "5", "MODEL.RPN.POST_NMS_TOPK_TEST", "50"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 76, 3), dtype=np.uint8)).save(root / "rgb.jpg")
    Image.fromarray(rng.integers(0, 256, (50, 64), dtype=np.uint8)).save(root / "gray.png")
    Image.fromarray(rng.integers(0, 256, (40, 52, 4), dtype=np.uint8)).save(root / "rgba.png")
    (root / "corrupt.jpg").write_bytes(b"this is not an image")
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root


def _demo(*args):
    cmd = [sys.executable, "demo/demo.py", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_semantic_folder_raw_and_regions(folder, tmp_path):
    out = tmp_path / "vis"
    run = _demo("--config-file", SEMANTIC, "--input", str(folder), "--output", str(out), "--raw",
                "--regions", "sky", "0", "--opts", *SMALL_SEMANTIC)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "3 input(s)" not in run.stdout and "4 input(s): wrote 12 file(s), skipped 1" in run.stdout
    assert "corrupt.jpg" in run.stdout
    names = sorted(p.name for p in out.iterdir())
    expected = sorted(f"{s}{suffix}" for s in ("rgb", "gray", "rgba")
                      for suffix in (".png", "_sem_seg.png", "_regions_3_sky.png", "_regions_0_circle.png"))
    assert names == expected
    for stem, size in (("rgb", (60, 76)), ("gray", (50, 64)), ("rgba", (40, 52))):
        vis = np.asarray(Image.open(out / f"{stem}.png"))
        label = np.asarray(Image.open(out / f"{stem}_sem_seg.png"))
        assert vis.shape == (*size, 3) and label.shape == size and label.max() < 7
        assert np.asarray(Image.open(out / f"{stem}_regions_3_sky.png")).shape == (size[0], 3 * size[1], 3)
    # A second run refuses to overwrite, and writes nothing.
    again = _demo("--config-file", SEMANTIC, "--input", str(folder / "rgb.jpg"), "--output", str(out),
                  "--opts", *SMALL_SEMANTIC)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_panoptic_folder_raw_coco_format(folder, tmp_path):
    out = tmp_path / "pan"
    run = _demo("--config-file", PANOPTIC, "--input", str(folder / "*.png"), str(folder / "rgb.jpg"),
                "--output", str(out), "--raw", "--confidence-threshold", "0.0", "--opts", *SMALL_PANOPTIC)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "3 input(s): wrote 12 file(s), skipped 0" in run.stdout
    for stem, size in (("rgb", (60, 76)), ("gray", (50, 64))):
        png = np.asarray(Image.open(out / f"{stem}_panoptic.png")).astype(np.int64)
        ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
        info = json.loads((out / f"{stem}_panoptic.json").read_text())
        assert png.shape == (*size, 3) and info["file_name"] == f"{stem}_panoptic.png"
        for s in info["segments_info"]:
            assert s["area"] == int((ids == s["id"]).sum()) > 0
        assert set(np.unique(ids)) - {0} == {s["id"] for s in info["segments_info"]}


@pytest.mark.parametrize("config,opts", [(SEMANTIC, SMALL_SEMANTIC), (PANOPTIC, SMALL_PANOPTIC)])
def test_video(tmp_path, config, opts):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (80, 48))
    for i in range(3):
        frame = np.full((48, 80, 3), 60 * i, np.uint8)
        cv2.circle(frame, (20 + 10 * i, 24), 10, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    out = tmp_path / "out.mp4"
    run = _demo("--config-file", config, "--video-input", str(clip), "--output", str(out), "--opts", *opts)
    assert run.returncode == 0, run.stderr[-3000:]
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 3 and frames[0].shape == (48, 80, 3)
