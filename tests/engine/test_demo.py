"""demo/demo.py on a folder (RGB, grayscale, RGBA and a corrupt file) and on a short video, for a
semantic and a Panoptic-FPN config: it writes what it says and skips what it cannot read."""

import json

import cv2
import numpy as np
import pytest
from conftest import QUICKSTART, RANDOM_WEIGHTS, REPO_ROOT, TINY_OCR, load_script
from PIL import Image

from panoptic_ocr.utils.visualization import title_strip_height

SEMANTIC = QUICKSTART
PANOPTIC = "configs/toy_scenes/panoptic_fpn_R18_toy_scenes_600it.yaml"
SMALL_SEMANTIC = RANDOM_WEIGHTS + TINY_OCR
SMALL_PANOPTIC = RANDOM_WEIGHTS + [
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "96",
    "TEST.DETECTIONS_PER_IMAGE",
    "5",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
]


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


@pytest.fixture
def demo(run_main, monkeypatch):
    """``demo(*args)``: ``python demo/demo.py args`` from the repository root, run in this
    process (``main(argv)``): ``(status, stdout, stderr)``."""
    monkeypatch.chdir(REPO_ROOT)
    main = load_script("demo/demo.py").main
    return lambda *args: run_main(main, args)


def test_semantic_folder_raw_and_regions(folder, tmp_path, demo):
    out = tmp_path / "vis"
    status, stdout, stderr = demo(
        "--config-file",
        SEMANTIC,
        "--input",
        folder,
        "--output",
        out,
        "--raw",
        "--regions",
        "sky",
        "0",
        "--opts",
        *SMALL_SEMANTIC,
    )
    assert status == 0, stderr[-3000:]
    assert "3 input(s)" not in stdout
    assert "4 input(s): wrote 12 file(s), skipped 1 unreadable, 0 with existing" in stdout
    assert "corrupt.jpg" in stdout
    names = sorted(p.name for p in out.iterdir())
    suffixes = (".png", "_sem_seg.png", "_regions_3_sky.png", "_regions_0_circle.png")
    expected = sorted(f"{s}{suffix}" for s in ("rgb", "gray", "rgba") for suffix in suffixes)
    assert names == expected
    for stem, size in (("rgb", (60, 76)), ("gray", (50, 64)), ("rgba", (40, 52))):
        vis = np.asarray(Image.open(out / f"{stem}.png"))
        label = np.asarray(Image.open(out / f"{stem}_sem_seg.png"))
        assert vis.shape == (*size, 3) and label.shape == size and label.max() < 7
        regions = np.asarray(Image.open(out / f"{stem}_regions_3_sky.png"))
        assert regions.shape == (size[0] + title_strip_height(size[0]), 3 * size[1], 3)
    # A second run into the same folder with one new image writes only that image's outputs
    # (overrides at the end this time, a flag after them) and keeps every existing file.
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    new = tmp_path / "new.png"
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(new)
    status, stdout, stderr = demo(
        "--config-file",
        SEMANTIC,
        "--input",
        folder / "rgb.jpg",
        new,
        "--output",
        out,
        *SMALL_SEMANTIC,
        "--raw",
    )
    assert status == 0, stderr[-3000:]
    assert "2 input(s): wrote 2 file(s), skipped 0 unreadable, 1 with existing" in stdout
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert set(after) == set(written) | {"new.png", "new_sem_seg.png"}
    assert {k: after[k] for k in written} == written


def test_panoptic_folder_raw_coco_format(folder, tmp_path, demo):
    out = tmp_path / "pan"
    status, stdout, stderr = demo(
        "--config-file",
        PANOPTIC,
        "--input",
        folder / "*.png",
        folder / "rgb.jpg",
        "--output",
        out,
        "--raw",
        "--confidence-threshold",
        "0.0",
        "--opts",
        *SMALL_PANOPTIC,
    )
    assert status == 0, stderr[-3000:]
    assert "3 input(s): wrote 12 file(s), skipped 0" in stdout
    for stem, size in (("rgb", (60, 76)), ("gray", (50, 64))):
        png = np.asarray(Image.open(out / f"{stem}_panoptic.png")).astype(np.int64)
        ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
        info = json.loads((out / f"{stem}_panoptic.json").read_text())
        assert png.shape == (*size, 3) and info["file_name"] == f"{stem}_panoptic.png"
        for s in info["segments_info"]:
            assert s["area"] == int((ids == s["id"]).sum()) > 0
        assert set(np.unique(ids)) - {0} == {s["id"] for s in info["segments_info"]}


@pytest.mark.parametrize("config,opts", [(SEMANTIC, SMALL_SEMANTIC), (PANOPTIC, SMALL_PANOPTIC)])
def test_video(tmp_path, config, opts, demo):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (80, 48))
    for i in range(3):
        frame = np.full((48, 80, 3), 60 * i, np.uint8)
        cv2.circle(frame, (20 + 10 * i, 24), 10, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    out = tmp_path / "out.mp4"
    status, _, stderr = demo(
        "--config-file", config, "--video-input", clip, "--output", out, "--opts", *opts
    )
    assert status == 0, stderr[-3000:]
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 3 and frames[0].shape == (48, 80, 3)


def test_attention_maps_of_a_multi_scale_model(folder, tmp_path, demo):
    """``--attention`` writes, per image, the attention of every scale the combination uses
    (all test scales but the largest); a model without scale attention is refused up front."""
    out = tmp_path / "attention"
    status, stdout, stderr = demo(
        "--config-file",
        "configs/toy_scenes/hmsa_ocr_R18_os16_toy_scenes_600it.yaml",
        "--input",
        folder / "rgb.jpg",
        folder / "gray.png",
        "--output",
        out,
        "--attention",
        "--opts",
        *SMALL_SEMANTIC,
        "MODEL.HMSA.ATTENTION_CHANNELS",
        "8",
    )
    assert status == 0, stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    expected = [
        f"{s}{x}"
        for s in ("gray", "rgb")
        for x in (".png", "_attention_0.5x.png", "_attention_1x.png")
    ]
    assert names == expected
    panel = np.asarray(Image.open(out / "rgb_attention_0.5x.png"))
    assert panel.shape == (60 + title_strip_height(60), 2 * 76, 3)
    status, _, stderr = demo(
        "--config-file",
        SEMANTIC,
        "--input",
        folder / "rgb.jpg",
        "--output",
        tmp_path / "plain",
        "--attention",
        "--opts",
        *SMALL_SEMANTIC,
    )
    assert status == 2 and "no scale attention" in stderr
    assert not (tmp_path / "plain").exists()


def test_single_output_file_format_follows_its_extension(folder, tmp_path, demo):
    args = ["--config-file", SEMANTIC, "--input", folder / "rgb.jpg", *SMALL_SEMANTIC]
    status, _, stderr = demo(*args, "--output", tmp_path / "single.jpg")
    assert status == 0, stderr[-3000:]
    assert (tmp_path / "single.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG
    status, _, stderr = demo(*args, "--output", tmp_path / "single.gif")
    assert status == 2 and "cannot write '.gif' images" in stderr
    assert not (tmp_path / "single.gif").exists()


def test_regions_of_panoptic_fpn_with_ocr(folder, tmp_path, demo):
    """Panoptic-FPN + OCR: the semantic branch's regions, beside the panoptic overlay; an unknown
    class names --regions."""
    config = "configs/toy_scenes/panoptic_fpn_ocr_R18_toy_scenes_600it.yaml"
    out = tmp_path / "regions"
    args = ["--config-file", config, "--input", folder / "rgb.jpg", "--output", out]
    status, stdout, stderr = demo(*args, "--regions", "sky", "--opts", *SMALL_PANOPTIC)
    assert status == 0, stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["rgb.png", "rgb_regions_1_sky.png"]
    regions = np.asarray(Image.open(out / "rgb_regions_1_sky.png"))
    assert regions.shape == (60 + title_strip_height(60), 3 * 76, 3)
    status, _, stderr = demo(*args, "--regions", "bogus", "--overwrite", *SMALL_PANOPTIC)
    assert status == 2 and "--regions: unknown class 'bogus'" in stderr


def test_a_missing_input_is_named_before_the_model_is_built(tmp_path, demo):
    status, _, stderr = demo(
        "--config-file",
        SEMANTIC,
        "--input",
        tmp_path / "photos",
        "--output",
        tmp_path / "v",
        "MODEL.WEIGHTS",
        tmp_path / "missing.pth",
    )  # the weights do not exist either: the input is checked first
    assert (
        status == 2 and "--input" in stderr and "photos" in stderr and "missing.pth" not in stderr
    )
