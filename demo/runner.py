"""The demo's work (``demo/demo.py`` parses the command line): expand the inputs, name the
outputs, run the :class:`~panoptic_ocr.engine.predictor.Predictor`, draw with Detectron2's
``Visualizer`` / ``VideoVisualizer`` and write, never over an existing file unless asked.

Outputs for an image ``<stem>.<ext>`` (into the ``--output`` folder; for a single input
``--output`` may also be a file, which names the visualisation and whose stem the others):

- ``<stem>.png``: the prediction drawn over the image (semantic: ``draw_sem_seg``;
  Panoptic-FPN: ``draw_panoptic_seg``, instances above ``--confidence-threshold``);
- ``--raw``: semantic ``<stem>_sem_seg.png`` (label PNG of class indices; 16-bit when there
  are more than 256 classes); Panoptic-FPN ``<stem>_panoptic.png`` (COCO panoptic RGB, id =
  R + 256 G + 256^2 B, 0 = void) and ``<stem>_panoptic.json`` (COCO's per-image annotation:
  ``file_name``, ``segments_info`` with ``id``, dataset ``category_id``, ``iscrowd``,
  ``bbox``, ``area``, ``isthing``) and ``<stem>_sem_seg.png``;
- ``--regions CLASS ...`` (OCR heads): ``<stem>_regions_<k>_<name>.png``, the three panels of
  :mod:`panoptic_ocr.utils.object_regions` (prediction | soft object region | p(class));
- ``--attention`` (multi-scale attention models): ``<stem>_attention_<s>x.png`` for each test
  scale s whose attention is used (all but the largest): prediction | the attention of scale s
  (how much that scale's prediction is trusted, 0 blue .. 1 red) at the image's size.

An input whose outputs all exist is skipped (``--overwrite`` replaces them); one with some
missing gets only those. The visualisation's format follows the ``--output`` file's extension
(PNG, JPEG, BMP, TIFF, WebP); label PNGs stay PNG.

A video ``<stem>.<ext>`` becomes ``<stem>.mp4`` (or the ``--output`` file), drawn frame by
frame (OpenCV reads and writes it, ``mp4v`` codec).
"""

import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np
import torch
import tqdm
from detectron2.data import detection_utils as utils
from detectron2.structures import Instances
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode
from PIL import Image

from panoptic_ocr.data.image_files import read_image
from panoptic_ocr.engine.predictor import Predictor
from panoptic_ocr.utils import object_regions
from panoptic_ocr.utils.safe_write import atomic_file, check_writable
from panoptic_ocr.utils.visualization import LegibleVisualizer, titled_side_by_side

__all__ = [
    "IMAGE_EXTENSIONS",
    "DemoSummary",
    "draw_output",
    "expand_inputs",
    "output_paths",
    "panoptic_to_coco",
    "run_images",
    "run_video",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# PIL format of each visualisation extension
IMAGE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


@dataclass
class DemoSummary:
    """What a demo run wrote and skipped: ``skipped`` the unreadable inputs ``(input,
    reason)``, ``existing`` the inputs whose outputs all existed (kept, not recomputed)."""

    written: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    existing: List[str] = field(default_factory=list)
    inputs: int = 0

    def __str__(self) -> str:
        text = (
            f"{self.inputs} input(s): wrote {len(self.written)} file(s), "
            f"skipped {len(self.skipped)} unreadable, "
            f"{len(self.existing)} with existing outputs (--overwrite replaces them)"
        )
        for name, reason in self.skipped:
            text += f"\n  skipped {name}: {reason}"
        return text


def expand_inputs(items: Sequence[str]) -> List[str]:
    """Files, glob patterns and folders (their images with :data:`IMAGE_EXTENSIONS`, sorted,
    not recursive) as one sorted-per-item, de-duplicated list of paths.

    Raises:
        FileNotFoundError: an item matches nothing (names it).
    """
    paths: List[str] = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, n)
                for n in os.listdir(item)
                if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(item, n))
            )
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(p for p in glob.glob(os.path.expanduser(item)) if os.path.isfile(p))
        if not found:
            raise FileNotFoundError(
                f"--input {item!r}: no such file, folder with images, or glob match"
            )
        paths += found
    return list(dict.fromkeys(paths))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "class"


def output_paths(
    input_path: str,
    output: str,
    *,
    single: bool,
    semantic: bool,
    raw: bool,
    regions: Sequence[Tuple[int, str]] = (),
    attention_scales: Sequence[float] = (),
) -> Dict[str, str]:
    """Paths of everything written for one input (keys ``vis``, ``sem_seg``, ``panoptic_png``,
    ``panoptic_json``, ``region_<k>``, ``attention_<s>``); see the module docstring.

    ``output`` is a folder, or (``single`` input only) a file path with an extension."""
    if single and os.path.splitext(output)[1] and not os.path.isdir(output):
        if os.path.splitext(output)[1].lower() not in IMAGE_FORMATS:
            raise ValueError(
                f"--output {output!r}: cannot write {os.path.splitext(output)[1]!r} images; use "
                f"one of {sorted(IMAGE_FORMATS)} or a folder"
            )
        vis = output
        folder, stem = os.path.dirname(output) or ".", os.path.splitext(os.path.basename(output))[0]
    else:
        folder, stem = output, os.path.splitext(os.path.basename(input_path))[0]
        vis = os.path.join(folder, stem + ".png")
    paths = {"vis": vis}
    if raw:
        paths["sem_seg"] = os.path.join(folder, f"{stem}_sem_seg.png")
        if not semantic:
            paths["panoptic_png"] = os.path.join(folder, f"{stem}_panoptic.png")
            paths["panoptic_json"] = os.path.join(folder, f"{stem}_panoptic.json")
    for k, name in regions:
        paths[f"region_{k}"] = os.path.join(folder, f"{stem}_regions_{k}_{_safe(name)}.png")
    for s in attention_scales:
        paths[f"attention_{s:g}"] = os.path.join(folder, f"{stem}_attention_{s:g}x.png")
    return paths


def _filter_instances(output: Dict, threshold: float) -> Optional[Instances]:
    instances = output.get("instances")
    if instances is None:
        return None
    return instances[instances.scores >= threshold].to("cpu")


def draw_output(
    image_rgb: np.ndarray, output: Dict, metadata, confidence_threshold: float = 0.5
) -> np.ndarray:
    """The prediction drawn over ``image_rgb`` (``[H, W, 3]`` uint8) with Detectron2's
    ``Visualizer``: Panoptic-FPN's panoptic segmentation (``draw_panoptic_seg``; segments of
    instances below ``confidence_threshold`` are left out), else the argmax of ``sem_seg``
    (``draw_sem_seg``). Returns ``[H, W, 3]`` uint8 RGB."""
    visualizer = LegibleVisualizer(image_rgb, metadata, instance_mode=ColorMode.IMAGE)
    if "panoptic_seg" in output:
        panoptic_seg, segments_info = _panoptic_above(output, confidence_threshold)
        return visualizer.draw_panoptic_seg(
            panoptic_seg.cpu(), segments_info, alpha=0.5
        ).get_image()
    return visualizer.draw_sem_seg(output["sem_seg"].argmax(dim=0).cpu(), alpha=0.5).get_image()


def _panoptic_above(output: Dict, threshold: float):
    """``panoptic_seg`` without the thing segments whose score is below ``threshold`` (their
    pixels become void, id 0)."""
    panoptic_seg, segments_info = output["panoptic_seg"]
    kept, dropped = [], []
    for s in segments_info:
        (dropped if s.get("isthing") and s.get("score", 1.0) < threshold else kept).append(s)
    if dropped:
        panoptic_seg = panoptic_seg.clone()
        for s in dropped:
            panoptic_seg[panoptic_seg == s["id"]] = 0
    return panoptic_seg, kept


def panoptic_to_coco(
    panoptic_seg: torch.Tensor, segments_info: List[Dict], metadata, file_name: str
) -> Tuple[np.ndarray, Dict]:
    """Detectron2's ``(ids [H, W], segments_info)`` (contiguous category ids) as COCO's panoptic
    format: an ``[H, W, 3]`` uint8 RGB PNG array (id = R + 256 G + 256^2 B, 0 = void) and the
    image's annotation dict with dataset category ids (from the metadata's
    ``thing/stuff_dataset_id_to_contiguous_id``; contiguous ids when it has none)."""
    ids = panoptic_seg.cpu().numpy().astype(np.uint32)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
    things = {
        v: k for k, v in (metadata.get("thing_dataset_id_to_contiguous_id", None) or {}).items()
    }
    stuff = {
        v: k for k, v in (metadata.get("stuff_dataset_id_to_contiguous_id", None) or {}).items()
    }
    segments = []
    for s in segments_info:
        mask = ids == s["id"]
        area = int(mask.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(mask)
        isthing = bool(s["isthing"])
        category = int(s["category_id"])
        category = int((things if isthing else stuff).get(category, category))
        segments.append(
            {
                "id": int(s["id"]),
                "category_id": category,
                "iscrowd": 0,
                "bbox": [
                    int(xs.min()),
                    int(ys.min()),
                    int(xs.max() - xs.min() + 1),
                    int(ys.max() - ys.min() + 1),
                ],
                "area": area,
                "isthing": isthing,
            }
        )
    return rgb, {"file_name": file_name, "segments_info": segments}


def _write_png(array: np.ndarray, path: str, overwrite: bool) -> None:
    """``array`` written to ``path`` in the format of its extension (PNG when unknown)."""
    image_format = IMAGE_FORMATS.get(os.path.splitext(path)[1].lower(), "PNG")
    with atomic_file(path, overwrite=overwrite) as tmp:
        Image.fromarray(array).save(tmp, format=image_format)


def _label_png(label: np.ndarray) -> np.ndarray:
    return label.astype(np.uint8 if label.max(initial=0) < 256 else np.uint16)


def _region_panels(
    predictor: Predictor, rgb: np.ndarray, overlay: np.ndarray, regions, network_size, classes
):
    names = predictor.class_names()
    spatial, probability = predictor.region_maps(regions, network_size, rgb.shape[:2])
    for k in classes:
        yield (
            k,
            titled_side_by_side(
                [
                    ("prediction", overlay),
                    (
                        f"region: {names[k]}",
                        object_regions.heat_overlay(rgb, spatial[k].numpy()),
                    ),
                    (f"p({names[k]})", object_regions.heat_overlay(rgb, probability[k].numpy())),
                ]
            ),
        )


def run_images(
    predictor: Predictor,
    inputs: Sequence[str],
    output: str,
    *,
    raw: bool = False,
    regions: Optional[Sequence[str]] = None,
    attention: bool = False,
    confidence_threshold: float = 0.5,
    overwrite: bool = False,
) -> DemoSummary:
    """Segment every image of ``inputs`` (:func:`expand_inputs` items) and write its outputs
    (:func:`output_paths`) under ``output``. Unreadable files are logged by name and skipped.

    Raises:
        ValueError: ``--regions`` for a head without soft object regions, an unknown class,
            ``attention`` for a model without scale attention, or a file ``output`` for several
            inputs (before anything runs).

    Without ``overwrite`` an input whose outputs all exist is skipped (``summary.existing``)
    and existing files are never replaced; an input with some outputs missing writes those.
    """
    paths = expand_inputs(inputs)
    single = len(paths) == 1
    if not single and os.path.splitext(output)[1] and not os.path.isdir(output):
        raise ValueError(
            f"--output {output!r} looks like a file, but there are {len(paths)} inputs: "
            "give a folder"
        )
    classes: List[int] = []
    if regions:
        if not predictor.has_regions:
            object_regions.region_context(predictor.model)  # raises with the list of OCR heads
        classes = predictor.resolve_classes(regions) or []
    if attention and not predictor.has_scale_attention:
        raise ValueError(
            "--attention: the model has no scale attention (MODEL.META_ARCHITECTURE "
            "HMSASemanticSegmentor, docs/multi_scale_attention.md)"
        )
    attention_scales = predictor.attention_scales if attention else ()
    names = predictor.class_names()
    region_names = [(k, names[k]) for k in classes]
    planned = {
        p: output_paths(
            p,
            output,
            single=single,
            semantic=predictor.semantic,
            raw=raw,
            regions=region_names,
            attention_scales=attention_scales,
        )
        for p in paths
    }
    seen: Dict[str, str] = {}
    for p, outs in planned.items():
        for target in outs.values():
            if target in seen:
                raise ValueError(
                    f"{p} and {seen[target]} would both write {target}: rename one of them"
                )
            seen[target] = p
    folder = os.path.dirname(planned[paths[0]]["vis"]) or "."
    os.makedirs(folder, exist_ok=True)

    summary = DemoSummary(inputs=len(paths))
    for path in tqdm.tqdm(paths, desc="demo", unit="image", disable=len(paths) < 2):
        outs = planned[path]
        wanted = {k for k, t in outs.items() if overwrite or not os.path.exists(t)}
        if not wanted:
            summary.existing.append(path)
            continue
        try:
            image = read_image(path, format=predictor.input_format)
        except Exception as e:  # PIL and OSError variants of unreadable files
            logger.warning("Skipping %s: cannot read it as an image (%s)", path, e)
            summary.skipped.append((path, f"unreadable image ({type(e).__name__})"))
            continue
        rgb = utils.convert_image_to_rgb(image, predictor.input_format)
        _write_outputs(
            predictor,
            image,
            rgb,
            outs,
            wanted,
            summary,
            raw,
            classes,
            attention_scales,
            confidence_threshold,
            overwrite,
        )
    return summary


def _write_outputs(
    predictor: Predictor,
    image: np.ndarray,
    rgb: np.ndarray,
    outs: Dict[str, str],
    wanted: Set[str],
    summary: DemoSummary,
    raw: bool,
    classes: Sequence[int],
    attention_scales: Sequence[float],
    confidence_threshold: float,
    overwrite: bool,
) -> None:
    """Segment one image and write its outputs ``outs`` (:func:`output_paths`) of the keys in
    ``wanted`` (the others exist and are kept)."""

    def write(key: str, array: np.ndarray) -> None:
        if key in wanted:
            _write_png(array, outs[key], overwrite)
            summary.written.append(outs[key])

    if classes:
        output_dict, region_logits, network_size = predictor.predict_with_regions(image)
    else:
        output_dict = predictor(image)
    overlay = draw_output(rgb, output_dict, predictor.metadata, confidence_threshold)
    write("vis", overlay)
    if raw:
        write("sem_seg", _label_png(output_dict["sem_seg"].argmax(dim=0).cpu().numpy()))
        if "panoptic_seg" in output_dict:
            png, annotation = panoptic_to_coco(
                *output_dict["panoptic_seg"],
                predictor.metadata,
                os.path.basename(outs["panoptic_png"]),
            )
            write("panoptic_png", png)
            if "panoptic_json" in wanted:
                with (
                    atomic_file(outs["panoptic_json"], overwrite=overwrite) as tmp,
                    open(tmp, "w") as f,
                ):
                    json.dump(annotation, f, indent=2)
                summary.written.append(outs["panoptic_json"])
    if classes:
        for k, panels in _region_panels(
            predictor, rgb, overlay, region_logits, network_size, classes
        ):
            write(f"region_{k}", panels)
    if attention_scales:
        for s, heat in predictor.attention_maps(image).items():
            panel = object_regions.heat_overlay(rgb, heat.cpu().numpy())
            write(
                f"attention_{s:g}",
                titled_side_by_side([("prediction", overlay), (f"attention at {s:g}x", panel)]),
            )


def run_video(
    predictor: Predictor,
    video: str,
    output: str,
    *,
    confidence_threshold: float = 0.5,
    overwrite: bool = False,
    codec: str = "mp4v",
) -> DemoSummary:
    """Segment every frame of ``video`` and write the drawn frames as a video: ``output``
    itself when it has an extension, else ``output/<stem>.mp4``. Frames are drawn with
    Detectron2's ``VideoVisualizer`` (``draw_sem_seg`` / ``draw_panoptic_seg_predictions``).

    Raises:
        FileNotFoundError / ValueError: the video is missing or OpenCV cannot read it.
        OutputExistsError: the output exists and ``overwrite`` is False.
    """
    if not os.path.isfile(video):
        raise FileNotFoundError(f"--video-input {video!r}: no such file")
    if os.path.splitext(output)[1] and not os.path.isdir(output):
        target = output
    else:
        target = os.path.join(output, os.path.splitext(os.path.basename(video))[0] + ".mp4")
    check_writable(target, overwrite=overwrite)
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise ValueError(f"--video-input {video!r}: OpenCV cannot open it as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    visualizer = VideoVisualizer(predictor.metadata, ColorMode.IMAGE)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    summary = DemoSummary(inputs=1)
    frames = 0
    try:
        with atomic_file(target, overwrite=overwrite) as tmp:
            writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), fps, (width, height))
            if not writer.isOpened():
                raise OSError(f"OpenCV cannot write {target!r} with codec {codec!r}")
            try:
                for _ in tqdm.tqdm(iter(int, 1), total=total, desc="video", unit="frame"):
                    ok, frame_bgr = capture.read()
                    if not ok:
                        break
                    image = utils.convert_PIL_to_numpy(
                        Image.fromarray(frame_bgr[:, :, ::-1]), predictor.input_format
                    )
                    output = predictor(image)
                    rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
                    if "panoptic_seg" in output:
                        seg, info = _panoptic_above(output, confidence_threshold)
                        drawn = visualizer.draw_panoptic_seg_predictions(rgb, seg.cpu(), info)
                    else:
                        drawn = visualizer.draw_sem_seg(rgb, output["sem_seg"].argmax(dim=0).cpu())
                    writer.write(drawn.get_image()[:, :, ::-1])
                    frames += 1
            finally:
                writer.release()
            if frames == 0:
                raise ValueError(f"--video-input {video!r}: no frame could be read")
    finally:
        capture.release()
    summary.written.append(target)
    logger.info("%s: %d frames -> %s", video, frames, target)
    return summary
