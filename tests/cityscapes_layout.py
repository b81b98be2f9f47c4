"""A small dataset in the Cityscapes release's on-disk layout, for tests of the Cityscapes
panoptic pipeline: the toy scenes (:func:`panoptic_ocr.data.datasets.toy_scenes.render_scene`)
relabelled with Cityscapes label ids and written as ``leftImg8bit`` images and
``gtFine_{labelIds,instanceIds}.png`` files, as the release has them (no polygons JSON)."""

from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

from panoptic_ocr.data.datasets.toy_scenes import TOY_CATEGORIES, render_scene

# toy category id -> Cityscapes label id: three thing classes, four stuff classes.
TOY_TO_CITYSCAPES: Dict[int, int] = {
    1: 26,  # circle -> car
    2: 24,  # rectangle -> person
    3: 33,  # triangle -> bicycle
    11: 23,  # sky -> sky
    12: 7,  # ground -> road
    13: 11,  # water -> building
    14: 21,  # grass -> vegetation
}
UNLABELED = 0  # Cityscapes "unlabeled": void in every evaluation
_IS_THING = {c["id"]: bool(c["isthing"]) for c in TOY_CATEGORIES}


def write_cityscapes_layout(
    cityscapes_root: Path, split_sizes: Dict[str, int], city: str = "toyville", seed: int = 7
) -> Path:
    """Write ``<cityscapes_root>/{leftImg8bit,gtFine}/<split>/<city>/`` files for each split of
    ``split_sizes`` (``{"train": 4, "val": 2}``); returns ``cityscapes_root``.

    ``labelIds`` hold Cityscapes label ids (0 = unlabeled); ``instanceIds`` hold the label id of
    stuff and void pixels and ``label id * 1000 + k`` for the k-th instance, as in the release;
    in odd-numbered images the first thing is a crowd region (its label id alone, as the
    release's "car group")."""
    for split, size in split_sizes.items():
        images = cityscapes_root / "leftImg8bit" / split / city
        labels = cityscapes_root / "gtFine" / split / city
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for index in range(size):
            image, segment_ids, segments = render_scene(seed, split, index)
            label_ids = np.full(segment_ids.shape, UNLABELED, np.uint8)
            instance_ids = np.full(segment_ids.shape, UNLABELED, np.uint16)
            crowd_marked = index % 2 == 0  # no crowd region in even images
            for k, segment in enumerate(segments, start=1):
                region = segment_ids == segment["id"]
                label = TOY_TO_CITYSCAPES[segment["category_id"]]
                label_ids[region] = label
                instance_ids[region] = label
                if _IS_THING[segment["category_id"]]:
                    if crowd_marked:
                        instance_ids[region] = label * 1000 + k
                    crowd_marked = True  # odd images: the first thing is a crowd ("group")
            stem = f"{city}_{index:06d}_{19 + index:06d}"
            Image.fromarray(image).save(images / f"{stem}_leftImg8bit.png")
            Image.fromarray(label_ids).save(labels / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(instance_ids).save(labels / f"{stem}_gtFine_instanceIds.png")
    return cityscapes_root
