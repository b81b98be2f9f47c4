"""Colors for datasets that publish no palette of their own (PASCAL-Context 59, COCO-Stuff 171)."""

from typing import List

__all__ = ["voc_colormap"]


def voc_colormap(num_colors: int, skip_black: bool = True) -> List[List[int]]:
    """The PASCAL VOC palette: color ``i`` spreads the bits of ``i`` over R, G and B, from the
    most significant bit down, so that neighbouring ids get distinct colors.

    Args:
        num_colors: how many colors.
        skip_black: start at VOC index 1, leaving black (index 0, "background" in VOC) unused.
    """
    colors = []
    for index in range(int(skip_black), num_colors + int(skip_black)):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append([r, g, b])
    return colors
