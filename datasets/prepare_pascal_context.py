#!/usr/bin/env python
"""Convert PASCAL-Context's 459-label release to the 59-class labels of pascal_context_59_sem_seg_*.

    .venv/bin/python datasets/prepare_pascal_context.py  # $DETECTRON2_DATASETS/VOCdevkit/VOC2010
    .venv/bin/python datasets/prepare_pascal_context.py --root /data/VOCdevkit/VOC2010 --overwrite

Reads   <root>/ImageSets/Main/{train,val}.txt     VOC2010 image ids (4998 / 5105)
        <root>/trainval/<id>.mat                  PASCAL-Context trainval.tar.gz: field LabelMap,
                                                  ids of its labels.txt (0 = unlabeled, 1..459)
        <root>/JPEGImages/<id>.jpg                (for the size check)
Writes  <root>/annotations_detectron2/pascal_context_59/{train,val}/<id>.png   single-channel:
        the 59 classes -> 0..58 (alphabetical), background and the other 400 labels -> 255.
Stops, writing nothing, if an output folder is not empty (unless --overwrite) or if a label is
missing, unreadable, of another size than its image, or holds a value above 459.
"""

import functools
import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.datasets.register_pascal_context import pascal_context_459_to_59
from panoptic_ocr.data.label_files import (
    LabelLUT,
    convert_splits,
    exit_on_error,
    prepare_argument_parser,
    read_label_mat,
    read_lines,
)

SPLITS = ("train", "val")
PASCAL_CONTEXT_LUT = LabelLUT(pascal_context_459_to_59(), "PASCAL-Context 459-label ids")
OUTPUT_DIR = Path("annotations_detectron2") / "pascal_context_59"


def main(argv=None) -> int:
    parser = prepare_argument_parser(
        __doc__, ("VOCdevkit", "VOC2010"), "VOC2010 with the context labels", SPLITS
    )
    parser.add_argument(
        "--labels-dir", default=None, help="folder of the <id>.mat files (default: <root>/trainval)"
    )
    args = parser.parse_args(argv)

    def run() -> str:
        root = Path(args.root)
        labels_dir = Path(args.labels_dir) if args.labels_dir else root / "trainval"
        if not labels_dir.is_dir():
            raise FileNotFoundError(
                f"'{labels_dir}' does not exist: "
                f"unpack PASCAL-Context's trainval.tar.gz into '{root}'"
            )
        jobs, outputs = {}, []
        for split in args.splits:
            out_dir = root / OUTPUT_DIR / split
            outputs.append(out_dir)
            ids = read_lines(root / "ImageSets" / "Main" / f"{split}.txt")
            jobs[split] = [
                (labels_dir / f"{i}.mat", root / "JPEGImages" / f"{i}.jpg", out_dir / f"{i}.png")
                for i in ids
            ]
        read = functools.partial(read_label_mat, field="LabelMap")
        counts = convert_splits(jobs, read, PASCAL_CONTEXT_LUT, outputs, args.overwrite)
        return f"Wrote {counts} labels to {root / OUTPUT_DIR}"

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
