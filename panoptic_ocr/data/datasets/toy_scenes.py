"""Toy scenes: a small, seeded, synthetic segmentation dataset in real on-disk formats.

Each image (about 256x256) shows textured *stuff* (sky, ground, water, grass) and flat-coloured,
noisy *thing* instances (circles, rectangles, triangles) of varied size and colour that overlap,
plus a few "clutter" patches labelled void. It is written in the formats that Detectron2's
loaders read, so every pipeline of the project runs on it exactly as on the real datasets:

    toy_scenes/
      images/{train,val}/toy_{split}_NNNNNN.jpg       RGB images
      sem_seg/{train,val}/*.png                         "L" labels: 0..6 classes, 255 void
      panoptic_{train,val}/*.png                        COCO panoptic RGB ids (R + 256 G + 256^2 B)
      panoptic_{train,val}.json                         COCO panoptic annotations
      panoptic_stuff_{train,val}/*.png                  "L": 0 things, 1..4 stuff, 255 void
      instances_{train,val}.json                        COCO instances (RLE masks) of the things
      toy_scenes.json                                   generator version, seed and split sizes

Image ``i`` of a split depends only on (seed, split, i): generation is deterministic.
"""
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

__all__ = [
    "TOY_CATEGORIES",
    "GENERATOR_VERSION",
    "generate_toy_scenes",
    "ensure_toy_scenes",
    "render_scene",
]

GENERATOR_VERSION = 1
DEFAULT_SEED = 2020
DEFAULT_SPLIT_SIZES = {"train": 200, "val": 40}
# Dataset ids are sparse on purpose (as in COCO) so that id mapping bugs cannot hide.
TOY_CATEGORIES: List[Dict] = [
    {"id": 1, "name": "circle", "isthing": 1, "color": [220, 20, 60], "supercategory": "shape"},
    {"id": 2, "name": "rectangle", "isthing": 1, "color": [255, 165, 0], "supercategory": "shape"},
    {"id": 3, "name": "triangle", "isthing": 1, "color": [148, 0, 211], "supercategory": "shape"},
    {"id": 11, "name": "sky", "isthing": 0, "color": [135, 206, 235], "supercategory": "scene"},
    {"id": 12, "name": "ground", "isthing": 0, "color": [139, 90, 43], "supercategory": "scene"},
    {"id": 13, "name": "water", "isthing": 0, "color": [30, 60, 200], "supercategory": "scene"},
    {"id": 14, "name": "grass", "isthing": 0, "color": [50, 160, 50], "supercategory": "scene"},
]
IGNORE_LABEL = 255
MIN_INSTANCE_AREA = 48  # visible pixels below which an occluded instance becomes void
_SIZES = (224, 240, 256, 272, 288)
_CATEGORY_INDEX = {c["name"]: i for i, c in enumerate(TOY_CATEGORIES)}


def _stuff_texture(rng: np.random.Generator, name: str, h: int, w: int) -> np.ndarray:
    """A ``[h, w, 3]`` float texture that identifies a stuff class by pattern, not only colour."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = rng.normal(0.0, 1.0, size=(h, w, 1)).astype(np.float32)
    if name == "sky":
        t = yy[..., None] / max(h, 1)
        top, bottom = np.array([70, 130, 220]), np.array([175, 215, 245])
        img = top * (1 - t) + bottom * t + 4 * noise
    elif name == "ground":
        base = np.array([130, 95, 60]) + rng.integers(-15, 16, size=3)
        img = base + 22 * noise
    elif name == "water":
        phase = rng.uniform(0, 2 * np.pi)
        waves = np.sin(yy / 2.5 + 0.3 * np.sin(xx / 9.0) + phase)[..., None]
        img = np.array([40, 80, 170]) + 25 * waves * np.array([0.6, 0.8, 1.0]) + 5 * noise
    elif name == "grass":
        streaks = rng.normal(0.0, 1.0, size=(1, w, 1)).astype(np.float32)
        img = np.array([60, 150, 55]) + 30 * streaks * np.array([0.4, 1.0, 0.4]) + 10 * noise
    else:
        raise ValueError(f"unknown stuff class {name!r}")
    return img


def _shape_mask(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """Boolean ``[h, w]`` mask of one thing instance (size 16-80 px, anywhere in the image)."""
    size = int(rng.integers(16, 81))
    cx, cy = rng.uniform(0, w), rng.uniform(0.15 * h, h)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        r = size / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif kind == "rectangle":
        aspect = rng.uniform(0.5, 2.0)
        hw, hh = size * np.sqrt(aspect) / 2, size / np.sqrt(aspect) / 2
        draw.rectangle([cx - hw, cy - hh, cx + hw, cy + hh], fill=1)
    elif kind == "triangle":
        angle = rng.uniform(0, 2 * np.pi)
        pts = [
            (cx + size * 0.6 * np.cos(angle + k * 2 * np.pi / 3), cy + size * 0.6 * np.sin(angle + k * 2 * np.pi / 3))
            for k in range(3)
        ]
        draw.polygon(pts, fill=1)
    else:
        raise ValueError(f"unknown thing class {kind!r}")
    return np.asarray(canvas, dtype=bool)


def _ellipse_mask(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def render_scene(seed: int, split: str, index: int) -> Tuple[np.ndarray, np.ndarray, List[Dict]]:
    """Render one scene.

    Returns:
        image: ``[H, W, 3]`` uint8 RGB.
        segment_ids: ``[H, W]`` int32 panoptic segment ids, 0 = void.
        segments: one dict per segment id with ``id``, ``category_id`` and ``isthing``.
    """
    split_code = {"train": 1, "val": 2, "test": 3}.get(split, 9)
    rng = np.random.default_rng([seed, split_code, index])
    h, w = int(rng.choice(_SIZES)), int(rng.choice(_SIZES))
    image = np.zeros((h, w, 3), np.float32)
    stuff_label = np.full((h, w), _CATEGORY_INDEX["ground"], np.int64)

    horizon = int(rng.uniform(0.3, 0.5) * h)
    stuff_label[:horizon] = _CATEGORY_INDEX["sky"]
    if rng.random() < 0.7:
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(horizon + 0.15 * h, 0.9 * h)
        lake = _ellipse_mask(h, w, cx, cy, rng.uniform(0.15, 0.4) * w, rng.uniform(0.06, 0.15) * h)
        stuff_label[lake & (np.arange(h)[:, None] > horizon)] = _CATEGORY_INDEX["water"]
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(0, w), rng.uniform(horizon, h)
        patch = _ellipse_mask(h, w, cx, cy, rng.uniform(0.1, 0.3) * w, rng.uniform(0.05, 0.12) * h)
        stuff_label[patch & (stuff_label == _CATEGORY_INDEX["ground"])] = _CATEGORY_INDEX["grass"]
    for name in ("sky", "ground", "water", "grass"):
        region = stuff_label == _CATEGORY_INDEX[name]
        if region.any():
            image[region] = _stuff_texture(rng, name, h, w)[region]

    void = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(0, 3))):  # clutter: random-noise patches labelled void
        ph, pw = int(rng.integers(8, 24)), int(rng.integers(8, 24))
        y, x = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
        image[y : y + ph, x : x + pw] = rng.uniform(0, 255, size=(ph, pw, 3))
        void[y : y + ph, x : x + pw] = True

    instance_map = np.zeros((h, w), np.int32)  # 0 = no thing, k = k-th instance (1-based)
    kinds = []
    for k in range(int(rng.integers(2, 7))):
        kind = str(rng.choice(["circle", "rectangle", "triangle"]))
        mask = _shape_mask(rng, kind, h, w)
        color = rng.uniform(30, 230, size=3)
        shading = rng.normal(0.0, 6.0, size=(h, w, 1))
        image[mask] = (color + shading)[mask]
        instance_map[mask] = k + 1  # later instances occlude earlier ones
        void[mask] = False
        kinds.append(kind)

    segment_ids = np.zeros((h, w), np.int32)
    segments = []
    for name in ("sky", "ground", "water", "grass"):
        cat = TOY_CATEGORIES[_CATEGORY_INDEX[name]]
        region = (stuff_label == _CATEGORY_INDEX[name]) & (instance_map == 0) & ~void
        if region.any():
            segment_ids[region] = cat["id"] * 1000
            segments.append({"id": cat["id"] * 1000, "category_id": cat["id"], "isthing": 0})
    for k, kind in enumerate(kinds, start=1):
        cat = TOY_CATEGORIES[_CATEGORY_INDEX[kind]]
        region = instance_map == k
        if region.sum() < MIN_INSTANCE_AREA:
            continue  # too occluded to annotate: stays void (id 0)
        seg_id = cat["id"] * 1000 + k
        segment_ids[region] = seg_id
        segments.append({"id": seg_id, "category_id": cat["id"], "isthing": 1})
    return np.clip(image, 0, 255).astype(np.uint8), segment_ids, segments


def _bbox(mask: np.ndarray) -> List[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _write_split(root: Path, split: str, num_images: int, seed: int) -> None:
    for sub in (f"images/{split}", f"sem_seg/{split}", f"panoptic_{split}", f"panoptic_stuff_{split}"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    contiguous = {c["id"]: i for i, c in enumerate(TOY_CATEGORIES)}
    stuff_contiguous = {c["id"]: i + 1 for i, c in enumerate(c for c in TOY_CATEGORIES if not c["isthing"])}
    images, panoptic_anns, instance_anns = [], [], []
    for index in range(num_images):
        image, segment_ids, segments = render_scene(seed, split, index)
        h, w = segment_ids.shape
        stem = f"toy_{split}_{index:06d}"
        image_id = index + 1
        Image.fromarray(image).save(root / "images" / split / f"{stem}.jpg", quality=95)

        semantic = np.full((h, w), IGNORE_LABEL, np.uint8)
        stuff_only = np.full((h, w), IGNORE_LABEL, np.uint8)
        rgb = np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 256**2], axis=-1)
        segments_info = []
        for seg in segments:
            mask = segment_ids == seg["id"]
            semantic[mask] = contiguous[seg["category_id"]]
            stuff_only[mask] = 0 if seg["isthing"] else stuff_contiguous[seg["category_id"]]
            area, bbox = int(mask.sum()), _bbox(mask)
            segments_info.append(
                {"id": seg["id"], "category_id": seg["category_id"], "iscrowd": 0, "bbox": bbox, "area": area}
            )
            if seg["isthing"]:
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                instance_anns.append(
                    {
                        "id": len(instance_anns) + 1,
                        "image_id": image_id,
                        "category_id": seg["category_id"],
                        "segmentation": rle,
                        "area": area,
                        "bbox": bbox,
                        "iscrowd": 0,
                    }
                )
        Image.fromarray(semantic, mode="L").save(root / "sem_seg" / split / f"{stem}.png")
        Image.fromarray(stuff_only, mode="L").save(root / f"panoptic_stuff_{split}" / f"{stem}.png")
        Image.fromarray(rgb.astype(np.uint8), mode="RGB").save(root / f"panoptic_{split}" / f"{stem}.png")
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": h, "width": w})
        panoptic_anns.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments_info})

    categories = [dict(c) for c in TOY_CATEGORIES]
    info = {"description": "panoptic_ocr toy scenes", "version": str(GENERATOR_VERSION)}
    with open(root / f"panoptic_{split}.json", "w") as f:
        json.dump({"info": info, "images": images, "annotations": panoptic_anns, "categories": categories}, f)
    thing_categories = [c for c in categories if c["isthing"]]
    with open(root / f"instances_{split}.json", "w") as f:
        json.dump({"info": info, "images": images, "annotations": instance_anns, "categories": thing_categories}, f)


def generate_toy_scenes(root: os.PathLike, split_sizes: Dict[str, int] = None, seed: int = DEFAULT_SEED) -> Path:
    """Write the toy-scenes dataset to ``root``, which must not exist yet.

    The data is written to a temporary sibling folder and renamed into place at the end, so an
    interrupted run never leaves a half-written dataset, and concurrent runs (one per training
    process) do not clash: the first rename wins and the others discard their copy.
    """
    root = Path(root)
    split_sizes = dict(split_sizes or DEFAULT_SPLIT_SIZES)
    if root.exists():
        raise FileExistsError(f"{root} already exists; remove it to generate the toy scenes again")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        for split, num_images in split_sizes.items():
            _write_split(tmp, split, num_images, seed)
        with open(tmp / "toy_scenes.json", "w") as f:
            json.dump({"generator_version": GENERATOR_VERSION, "seed": seed, "splits": split_sizes}, f)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "toy_scenes.json").exists():
                raise
            logger.info("Another process generated %s first; using its copy", root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def ensure_toy_scenes(root: os.PathLike) -> Path:
    """Generate the default toy scenes at ``root`` unless they are there already."""
    root = Path(root)
    stamp = root / "toy_scenes.json"
    if stamp.exists():
        return root
    if root.exists():
        raise FileNotFoundError(
            f"{root} exists but holds no toy_scenes.json: it is not a complete toy-scenes dataset. "
            f"Move it away, then recreate it with: python datasets/prepare_toy_scenes.py"
        )
    logger.info("Generating the toy-scenes dataset at %s (first use)", root)
    return generate_toy_scenes(root)
