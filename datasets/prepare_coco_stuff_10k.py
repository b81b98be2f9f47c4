#!/usr/bin/env python
"""Convert COCO-Stuff-10K (v1.1) .mat labels to the 171 classes of coco_stuff_10k_sem_seg_*.

    .venv/bin/python datasets/prepare_coco_stuff_10k.py  # $DETECTRON2_DATASETS/coco_stuff_10k
    .venv/bin/python datasets/prepare_coco_stuff_10k.py --root /data/cocostuff-10k --overwrite

Reads   <root>/imageLists/{train,test}.txt     image names without extension (9000 / 1000)
        <root>/annotations/<name>.mat          field S: 0 = unlabeled, 1..182 = ids of labels.txt
        <root>/images/<name>.jpg               (for the size check)
Writes  <root>/annotations_detectron2/{train,test}/<name>.png   single-channel: the 171 used
        ids -> 0..170, 0 and the 11 ids COCO removed -> 255.
Stops, writing nothing, if an output folder is not empty (unless --overwrite) or if a label is
missing, unreadable, of another size than its image, or holds a value above 182.
"""

import functools
import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.datasets.register_coco_stuff_10k import coco_stuff_182_to_171
from panoptic_ocr.data.label_files import (
    LabelLUT,
    convert_splits,
    exit_on_error,
    prepare_argument_parser,
    read_label_mat,
    read_lines,
)

SPLITS = ("train", "test")
COCO_STUFF_LUT = LabelLUT(coco_stuff_182_to_171(), "COCO-Stuff ids")


def main(argv=None) -> int:
    parser = prepare_argument_parser(
        __doc__, ("coco_stuff_10k",), "the unzipped cocostuff-10k-v1.1.zip", SPLITS
    )
    args = parser.parse_args(argv)

    def run() -> str:
        root = Path(args.root)
        jobs, outputs = {}, []
        for split in args.splits:
            out_dir = root / "annotations_detectron2" / split
            outputs.append(out_dir)
            names = read_lines(root / "imageLists" / f"{split}.txt")
            jobs[split] = [
                (
                    root / "annotations" / f"{n}.mat",
                    root / "images" / f"{n}.jpg",
                    out_dir / f"{n}.png",
                )
                for n in names
            ]
        read = functools.partial(read_label_mat, field="S")
        counts = convert_splits(jobs, read, COCO_STUFF_LUT, outputs, args.overwrite)
        return f"Wrote {counts} labels to {root / 'annotations_detectron2'}"

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
