#!/usr/bin/env python
"""Convert ADE20K (SceneParsing) annotations to the labels Detectron2's ade20k_sem_seg_* read.

    .venv/bin/python datasets/prepare_ade20k.py  # $DETECTRON2_DATASETS/ADEChallengeData2016
    .venv/bin/python datasets/prepare_ade20k.py --root /data/ADEChallengeData2016 --overwrite

Reads   <root>/annotations/{training,validation}/ADE_*.png   (0 = other, 1..150 = classes)
        <root>/images/{training,validation}/ADE_*.jpg         (for the size check)
Writes  <root>/annotations_detectron2/{training,validation}/ADE_*.png
        single-channel: value - 1 (0..149), 0 -> 255 (ignored).
Stops, writing nothing, if an output folder is not empty (unless --overwrite) or if a label is
unreadable, of another size than its image, or holds a value above 150.
"""

import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.label_files import (
    IGNORE_LABEL,
    LabelLUT,
    convert_splits,
    exit_on_error,
    missing_split_error,
    prepare_argument_parser,
    read_label_png,
)

SPLITS = ("training", "validation")
NUM_CLASSES = 150
# 0 ("other") -> ignore, k -> k - 1
ADE20K_LUT = LabelLUT([IGNORE_LABEL] + list(range(NUM_CLASSES)), "ADE20K SceneParsing ids")


def main(argv=None) -> int:
    parser = prepare_argument_parser(
        __doc__, ("ADEChallengeData2016",), "the unzipped ADEChallengeData2016", SPLITS
    )
    args = parser.parse_args(argv)

    def run() -> str:
        root = Path(args.root)
        jobs, outputs = {}, []
        for split in args.splits:
            src_dir = root / "annotations" / split
            if not src_dir.is_dir():
                present = [s for s in SPLITS if (root / "annotations" / s).is_dir()]
                raise missing_split_error(split, src_dir, present, SPLITS)
            out_dir = root / "annotations_detectron2" / split
            outputs.append(out_dir)
            jobs[split] = [
                (p, root / "images" / split / (p.stem + ".jpg"), out_dir / p.name)
                for p in sorted(src_dir.glob("*.png"))
            ]
        counts = convert_splits(jobs, read_label_png, ADE20K_LUT, outputs, args.overwrite)
        return f"Wrote {counts} labels to {root / 'annotations_detectron2'}"

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
