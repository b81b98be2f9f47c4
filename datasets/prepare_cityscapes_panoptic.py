#!/usr/bin/env python
"""Make the Cityscapes panoptic files that Panoptic-FPN trains and is evaluated on.

    .venv/bin/python datasets/prepare_cityscapes_panoptic.py   # $DETECTRON2_DATASETS/cityscapes
    .venv/bin/python datasets/prepare_cityscapes_panoptic.py --root /data/cityscapes --splits val \\
        --workers 8

Reads   <root>/gtFine/<split>/<city>/*_gtFine_instanceIds.png   (the release's instance ids)
        <root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png      (for the size check)
Writes  <root>/gtFine/cityscapes_panoptic_<split>.json + cityscapes_panoptic_<split>/*.png:
        cityscapesScripts' createPanopticImgs (label ids as categories), what Detectron2's
        cityscapes_fine_panoptic_* datasets and the panoptic evaluation read;
        <root>/gtFine/cityscapes_panoptic_stuff_<split>/*.png: the separated semantic labels of
        Panoptic-FPN, single-channel: things -> 0, the 11 stuff classes -> 1..11, void -> 255.
Default splits: train and val (the test split has no labels). Needs cityscapesscripts
(pip install cityscapesscripts; the [cityscapes] extra). Stops, writing nothing, if an instance
file has no image or another size, or if an unfinished output exists (unless --overwrite); a
finished split is left as it is, so a stopped run resumes.
"""

import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.cityscapes_panoptic_preparation import prepare_cityscapes_panoptic
from panoptic_ocr.data.datasets.register_cityscapes_panoptic import CITYSCAPES_PANOPTIC_SPLITS
from panoptic_ocr.data.label_files import exit_on_error, prepare_argument_parser


def main(argv=None) -> int:
    parser = prepare_argument_parser(
        __doc__,
        ("cityscapes",),
        "the unzipped Cityscapes release (gtFine/, leftImg8bit/)",
        CITYSCAPES_PANOPTIC_SPLITS,
    )
    parser.add_argument("--workers", type=int, default=1, help="processes writing the labels")
    args = parser.parse_args(argv)

    def run() -> str:
        done = prepare_cityscapes_panoptic(args.root, args.splits, args.overwrite, args.workers)
        return f"Wrote the Cityscapes panoptic files under {Path(args.root) / 'gtFine'}: {done}"

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
