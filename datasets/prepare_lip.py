#!/usr/bin/env python
"""Check and convert LIP (single-person human parsing) labels for lip_sem_seg_{train,val}.

    .venv/bin/python datasets/prepare_lip.py                  # $DETECTRON2_DATASETS/lip
    .venv/bin/python datasets/prepare_lip.py --root /data/lip --overwrite

Reads   <root>/TrainVal_parsing_annotations/{train,val}_segmentations/*.png
                                                        (0..19, 0 = background)
        <root>/TrainVal_images/{train,val}_images/*.jpg                        (for the size check)
Writes  <root>/annotations_detectron2/{train,val}/*.png   single-channel ("L"), values 0..19.
The released values are kept (background 0 is a class); the conversion makes every label a plain
"L" PNG and checks it. Stops, writing nothing, if an output folder is not empty (unless
--overwrite) or if a label is unreadable, of another size than its image, or holds a value above 19.
"""

import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.datasets.register_lip import LIP_CATEGORIES
from panoptic_ocr.data.label_files import (
    LabelLUT,
    convert_splits,
    exit_on_error,
    missing_split_error,
    prepare_argument_parser,
    read_label_png,
)

SPLITS = ("train", "val")
LIP_LUT = LabelLUT([i for i, _, _ in LIP_CATEGORIES], "LIP class ids")


def main(argv=None) -> int:
    parser = prepare_argument_parser(__doc__, ("lip",), "the unzipped LIP release", SPLITS)
    args = parser.parse_args(argv)

    def run() -> str:
        root = Path(args.root)
        jobs, outputs = {}, []
        for split in args.splits:
            src_dir = root / "TrainVal_parsing_annotations" / f"{split}_segmentations"
            if not src_dir.is_dir():
                present = [
                    s
                    for s in SPLITS
                    if (root / "TrainVal_parsing_annotations" / f"{s}_segmentations").is_dir()
                ]
                raise missing_split_error(split, src_dir, present, SPLITS)
            image_dir = root / "TrainVal_images" / f"{split}_images"
            out_dir = root / "annotations_detectron2" / split
            outputs.append(out_dir)
            jobs[split] = [
                (p, image_dir / (p.stem + ".jpg"), out_dir / p.name)
                for p in sorted(src_dir.glob("*.png"))
            ]
        counts = convert_splits(jobs, read_label_png, LIP_LUT, outputs, args.overwrite)
        return f"Wrote {counts} labels to {root / 'annotations_detectron2'}"

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
