"""The local web demo: its segmentation function, and the page in a real headless Chromium that
uploads a shared image and checks the returned overlay, legend and object regions."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import QUICKSTART, REPO_ROOT, SHARED_DATA, TINY_OCR, save_run_weights
from detectron2.modeling import build_model
from PIL import Image

from panoptic_ocr.config import setup_cfg
from panoptic_ocr.engine.web_demo import WebDemo, legend_html

IMAGE = SHARED_DATA / "lip" / "val_images" / "86_185913.jpg"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A full set of (random) weights for the quick-start model narrowed by TINY_OCR."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("web_weights")
    cfg = setup_cfg(str(REPO_ROOT / QUICKSTART), TINY_OCR + ["MODEL.WEIGHTS", ""])
    save_run_weights(folder, build_model(cfg))
    return str(folder / "model_final.pth")


@pytest.fixture(scope="module")
def demo():
    return WebDemo({"quickstart": str(REPO_ROOT / QUICKSTART)}, TINY_OCR + ["MODEL.DEVICE", "cpu"])


def test_segment_returns_overlay_regions_and_legend(demo, weights):
    image = np.asarray(Image.open(IMAGE).convert("RGB"))
    overlay, panels, legend = demo.segment(image, "quickstart", weights, "")
    assert overlay.shape == image.shape and not np.array_equal(overlay, image)
    predicted = legend.count("<tr>")  # one row per class present in the prediction
    assert len(panels) == min(3, predicted) >= 1
    assert all(p.shape == image.shape for p, _ in panels)
    assert all(caption.startswith("object region: ") for _, caption in panels)
    assert "%" in legend
    _, panels, _ = demo.segment(image, "quickstart", weights, "sky, 0")
    assert [c for _, c in panels] == ["object region: sky", "object region: circle"]
    with pytest.raises(ValueError, match="regions: unknown class 'bogus'"):
        demo.segment(image, "quickstart", weights, "bogus")
    with pytest.raises(ValueError, match="weights file"):
        demo.segment(image, "quickstart", "", "")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        demo.segment(image, "quickstart", "/nonexistent.pth", "")
    with pytest.raises(ValueError, match="unknown config"):
        demo.segment(image, "other", weights, "")


def test_legend_lists_present_classes_largest_first():
    label = np.array([[1, 1, 1], [0, 2, 1]])
    text = legend_html(["a", "b<c", "d"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]], label)
    assert text.index("b&lt;c") < text.index(">a<") < text.index(">d<")
    assert "rgb(4,5,6)" in text and "66.7%" in text


def test_page_segments_an_uploaded_image_in_chromium(demo, weights):
    """tests/engine/web_demo_browser.py (its own process) uploads the image in Chromium and reads
    back the overlay, the object regions and the legend."""
    pytest.importorskip("gradio", reason="the [web] extra (gradio) is not installed")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    image = np.asarray(Image.open(IMAGE).convert("RGB"))
    regions = len(demo.segment(image, "quickstart", weights, "")[1])
    script = REPO_ROOT / "tests" / "engine" / "web_demo_browser.py"
    argv = [sys.executable, str(script), str(REPO_ROOT / QUICKSTART), weights, str(IMAGE)]
    argv += [browser_path, *TINY_OCR, "MODEL.DEVICE", "cpu"]
    done = subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["shape"] == result["image_shape"] == list(image.shape)
    assert result["differs"] and result["regions"] == regions and "%" in result["legend"]
