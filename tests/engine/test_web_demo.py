"""The local web demo: its segmentation function, and the page in a real headless Chromium that
uploads a shared image and checks the returned overlay, legend and object regions."""

import io
import shutil
import socket

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_segments_an_uploaded_image_in_chromium(demo, weights):
    pytest.importorskip("gradio", reason="the [web] extra (gradio) is not installed")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    from panoptic_ocr.engine.web_demo import serve

    image = np.asarray(Image.open(IMAGE).convert("RGB"))
    regions = len(demo.segment(image, "quickstart", weights, "")[1])
    port = _free_port()
    page_server = serve(demo, default_weights=weights, port=port, block=False)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=browser_path, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#input-image input[type=file]").set_input_files(str(IMAGE))
            page.locator("#input-image img").wait_for(timeout=30000)
            page.click("#segment")
            overlay = page.locator("#overlay img")
            overlay.wait_for(timeout=120000)
            response = page.request.get(overlay.get_attribute("src"))
            assert response.ok

            drawn = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))
            assert drawn.shape == image.shape and not np.array_equal(drawn, image)
            page.locator("#regions img").first.wait_for(timeout=30000)
            assert page.locator("#regions img").count() == regions
            assert "%" in page.locator("#legend").inner_text()
            browser.close()
    finally:
        page_server.close()
