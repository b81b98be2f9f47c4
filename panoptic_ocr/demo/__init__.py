"""Run a model on your own images and videos (the library behind ``demo/demo.py``)."""
from .predictor import Predictor, demo_metadata
from .runner import DemoSummary, draw_output, expand_inputs, output_paths, panoptic_to_coco, run_images, run_video

__all__ = [
    "DemoSummary",
    "Predictor",
    "demo_metadata",
    "draw_output",
    "expand_inputs",
    "output_paths",
    "panoptic_to_coco",
    "run_images",
    "run_video",
]
