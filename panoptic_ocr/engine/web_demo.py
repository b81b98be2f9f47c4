"""A local web demo (``demo/web_demo.py``, the ``[web]`` extra): drop an image, pick a model
config and its weights, and see the overlay, OCR's soft object regions and the class legend.

The segmentation is the demo's (:class:`~panoptic_ocr.engine.predictor.Predictor`, drawn with
:func:`~panoptic_ocr.utils.visualization.draw_prediction`); the page is Gradio's. Weights load
as everywhere in the project: the whole model, tensors only (no code runs from the file).
"""

import html
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import detection_utils as utils
from PIL import Image

from ..config import setup_cfg
from ..utils import object_regions
from ..utils.visualization import draw_prediction
from .predictor import Predictor

__all__ = ["WebDemo", "build_web_demo", "legend_html", "serve"]

REGION_CLASSES_SHOWN = 3


def legend_html(names: Sequence[str], colors: Sequence[Sequence[int]], label: np.ndarray) -> str:
    """An HTML table of the classes present in ``label`` (``[H, W]`` class indices), largest
    first: colour swatch, name, share of the pixels."""
    classes, counts = np.unique(label, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    rows = []
    for k in order:
        c = int(classes[k])
        if not 0 <= c < len(names):
            continue
        r, g, b = (int(v) for v in colors[c])
        share = 100.0 * counts[k] / label.size
        rows.append(
            f'<tr><td><span class="swatch" style="display:inline-block;width:1.2em;height:1.2em;'
            f'background:rgb({r},{g},{b})"></span></td><td class="class-name">'
            f"{html.escape(names[c])}</td><td>{share:.1f}%</td></tr>"
        )
    return '<table class="legend">' + "".join(rows) + "</table>"


class WebDemo:
    """The demo's state: one :class:`Predictor` per ``(config, weights)`` pair, built on first
    use. ``configs``: the names offered in the page -> config files; ``opts``: overrides for
    every config (e.g. ``MODEL.DEVICE cpu``)."""

    def __init__(self, configs: Dict[str, str], opts: Sequence[str] = (), max_size: int = 2048):
        if not configs:
            raise ValueError("web demo: give at least one --config-file")
        self.configs = dict(configs)
        self.opts = list(opts)
        self.max_size = max_size
        self._predictors: Dict[Tuple[str, str], Predictor] = {}

    def predictor(self, config: str, weights: str) -> Predictor:
        """The predictor of a config name and a weights file (raises ``ValueError`` /
        ``FileNotFoundError`` naming what is wrong)."""
        if config not in self.configs:
            raise ValueError(f"unknown config {config!r}; offered: {sorted(self.configs)}")
        weights = (weights or "").strip()
        if not weights:
            raise ValueError("give the model's weights file (MODEL.WEIGHTS)")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
        key = (config, os.path.abspath(weights))
        if key not in self._predictors:
            cfg = setup_cfg(self.configs[config], self.opts + ["MODEL.WEIGHTS", weights])
            self._predictors[key] = Predictor(cfg, max_size=self.max_size)
        return self._predictors[key]

    def segment(
        self, image_rgb: Optional[np.ndarray], config: str, weights: str, regions: str = ""
    ) -> Tuple[np.ndarray, List[Tuple[np.ndarray, str]], str]:
        """``(overlay [H, W, 3] uint8, [(region panel, caption)], legend HTML)`` of one RGB
        image. ``regions``: class names or indices (blank: the largest classes predicted)."""
        if image_rgb is None:
            raise ValueError("drop an image first")
        image_rgb = np.ascontiguousarray(image_rgb[..., :3], dtype=np.uint8)
        predictor = self.predictor(config, weights)
        image = utils.convert_PIL_to_numpy(Image.fromarray(image_rgb), predictor.input_format)
        panels: List[Tuple[np.ndarray, str]] = []
        if predictor.has_regions:
            output, region_logits, network_size = predictor.predict_with_regions(image)
        else:
            output = predictor(image)
        label = output["sem_seg"].argmax(dim=0).cpu().numpy()
        overlay = draw_prediction(image_rgb, output, predictor.metadata)
        names = predictor.class_names()
        if predictor.has_regions:
            requested = [r for r in regions.replace(",", " ").split() if r]
            classes = predictor.resolve_classes(requested, "regions") or (
                object_regions.largest_classes(label, REGION_CLASSES_SHOWN)
            )
            spatial, _ = predictor.region_maps(region_logits, network_size, image_rgb.shape[:2])
            for k in classes:
                heat = object_regions.heat_overlay(image_rgb, spatial[k].numpy())
                panels.append((heat, f"object region: {names[k]}"))
        colors = predictor.metadata.get("stuff_colors", None) or _gray_colors(len(names))
        return overlay, panels, legend_html(names, colors, label)


def _gray_colors(count: int) -> List[List[int]]:
    return [[int(255 * i / max(1, count - 1))] * 3 for i in range(count)]


def build_web_demo(demo: WebDemo, default_weights: str = "", title: str = "panoptic_ocr"):
    """The Gradio page of ``demo``: an image input, the config and weights, the class names of
    the regions to show; outputs the overlay, the object regions and the legend. Errors are
    shown in the page, naming what was wrong."""
    import gradio as gr

    def run(image, config, weights, regions):
        try:
            return demo.segment(image, config, weights, regions)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from e

    names = sorted(demo.configs)
    with gr.Blocks(title=title) as page:
        gr.Markdown(f"# {title}: OCR segmentation\nDrop an image, pick a config and weights.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="numpy", label="image", elem_id="input-image")
                config = gr.Dropdown(names, value=names[0], label="config", elem_id="config")
                weights = gr.Textbox(value=default_weights, label="weights (MODEL.WEIGHTS)")
                regions = gr.Textbox(value="", label="object regions of (blank: largest classes)")
                button = gr.Button("Segment", elem_id="segment", variant="primary")
            with gr.Column():
                overlay = gr.Image(type="numpy", label="prediction", elem_id="overlay")
                legend = gr.HTML(elem_id="legend")
                gallery = gr.Gallery(label="OCR object regions", elem_id="regions", columns=3)
        button.click(run, [image, config, weights, regions], [overlay, gallery, legend])
    return page


def serve(
    demo: WebDemo,
    *,
    default_weights: str = "",
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
):
    """Build and launch the page on ``host:port``; ``block`` False returns the running page
    (``page.close()`` stops it)."""
    page = build_web_demo(demo, default_weights)
    page.launch(server_name=host, server_port=port, prevent_thread_lock=not block)
    return page
