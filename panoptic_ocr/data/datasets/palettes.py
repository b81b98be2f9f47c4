"""Colour palettes of the datasets whose release has none in Detectron2 (numbers as the
reference code bases use them; facts, listed in class order).

- :data:`PASCAL_CONTEXT_59_COLORS`: mmsegmentation's ``PascalContextDataset59`` palette, the one
  PASCAL-Context results are usually drawn with (the ADE20K palette without its first entry).
- :data:`COCO_STUFF_171_STUFF_COLORS`: mmsegmentation's ``COCOStuffDataset`` colours of the 55
  COCO-Stuff classes that COCO panoptic does not have under the same id and name; the other 116
  take COCO's own colours (Detectron2's ``COCO_CATEGORIES``), see :func:`coco_stuff_171_colors`.
"""

from typing import List, Sequence, Tuple

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

__all__ = ["COCO_STUFF_171_STUFF_COLORS", "PASCAL_CONTEXT_59_COLORS", "coco_stuff_171_colors"]

Color = Tuple[int, int, int]

# fmt: off
PASCAL_CONTEXT_59_COLORS: List[Color] = [
    (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61),
    (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7),
    (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255), (8, 255, 214),
    (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255), (224, 255, 8),
    (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20), (255, 8, 41),
    (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
]

COCO_STUFF_171_STUFF_COLORS: List[Color] = [
    (192, 96, 128), (64, 0, 96), (64, 224, 128), (128, 64, 0), (192, 0, 224), (128, 192, 128),
    (64, 0, 224), (192, 224, 128), (128, 192, 64), (192, 0, 96), (192, 96, 0), (0, 128, 96),
    (64, 64, 64), (128, 128, 224), (64, 192, 192), (0, 128, 224), (128, 224, 0), (64, 192, 64),
    (128, 128, 96), (0, 64, 96), (0, 160, 128), (128, 64, 224), (0, 32, 128), (0, 64, 224),
    (128, 160, 128), (128, 64, 32), (192, 0, 128), (64, 192, 32), (64, 0, 0), (192, 192, 160),
    (0, 32, 64), (64, 128, 128), (128, 160, 64), (64, 128, 0), (128, 96, 192), (64, 0, 128),
    (192, 0, 0), (64, 64, 160), (192, 128, 64), (192, 64, 32), (64, 224, 64), (64, 0, 64),
    (64, 96, 64), (0, 192, 160), (192, 224, 64), (64, 128, 64), (128, 192, 32), (64, 64, 192),
    (64, 160, 192), (192, 64, 64), (64, 32, 192), (192, 192, 192), (0, 64, 160), (192, 64, 128),
    (64, 64, 0),
]
# fmt: on


def coco_stuff_171_colors(categories: Sequence[Tuple[int, str, int]]) -> List[List[int]]:
    """One ``[r, g, b]`` per COCO-Stuff class ``(id, name, isthing)`` of ``categories`` (the
    171, in order): COCO's colour where COCO panoptic has the class under the same id and name,
    else the next of :data:`COCO_STUFF_171_STUFF_COLORS`."""
    coco = {c["id"]: c for c in COCO_CATEGORIES}
    others = iter(COCO_STUFF_171_STUFF_COLORS)
    colors = []
    for category_id, name, _ in categories:
        known = coco.get(category_id)
        color = known["color"] if known is not None and known["name"] == name else next(others)
        colors.append([int(v) for v in color])
    return colors
