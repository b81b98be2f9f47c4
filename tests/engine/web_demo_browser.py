"""The web demo's page driven by a real headless Chromium (Playwright), in a process of its own so
that neither the page's server threads nor Playwright's driver outlive it in a test worker.

    python tests/engine/web_demo_browser.py CONFIG WEIGHTS IMAGE BROWSER [KEY VALUE ...]

prints one JSON line: the returned overlay's shape, whether it differs from the image, the
number of object-region images shown and the legend text.
"""

import io
import json
import socket
import sys

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

from panoptic_ocr.engine.web_demo import WebDemo, serve


def main(argv) -> int:
    config, weights, image_path, browser_path, *opts = argv
    demo = WebDemo({"quickstart": config}, opts)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page_server = serve(demo, default_weights=weights, port=port, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=browser_path, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#input-image input[type=file]").set_input_files(image_path)
            page.locator("#input-image img").wait_for(timeout=30000)
            page.click("#segment")
            overlay = page.locator("#overlay img")
            overlay.wait_for(timeout=120000)
            response = page.request.get(overlay.get_attribute("src"))
            drawn = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))
            image = np.asarray(Image.open(image_path).convert("RGB"))
            page.locator("#regions img").first.wait_for(timeout=30000)
            result = {
                "ok": response.ok,
                "shape": list(drawn.shape),
                "image_shape": list(image.shape),
                "differs": bool(not np.array_equal(drawn, image)),
                "regions": page.locator("#regions img").count(),
                "legend": page.locator("#legend").inner_text(),
            }
            browser.close()
    finally:
        page_server.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
