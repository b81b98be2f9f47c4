#!/usr/bin/env python
"""Make the stuff-only labels that Detectron2's coco_2017_*_panoptic_separated (Panoptic-FPN) read.

    .venv/bin/python datasets/prepare_coco_panoptic_fpn.py              # $DETECTRON2_DATASETS/coco
    .venv/bin/python datasets/prepare_coco_panoptic_fpn.py --root /data/coco --splits val \\
        --workers 8

Reads   <root>/annotations/panoptic_{train,val}2017.json        (segments_info, categories)
        <root>/panoptic_{train,val}2017/*.png                   (RGB, id = R + 256 G + 256^2 B)
Writes  <root>/panoptic_stuff_{train,val}2017/*.png             single-channel ("L"):
        every thing segment -> 0, stuff -> 1..53 (Detectron2's stuff_dataset_id_to_contiguous_id),
        void -> 255.
Default splits: train and val, those whose panoptic JSON exists (val_100, Detectron2's
panoptic_val2017_100 subset, only when asked). Stops, writing nothing, if an output folder is not
empty (unless --overwrite), if a segment's category is not one of the 133 COCO panoptic categories,
or if a PNG's ids differ from its segments_info.
"""

import os
import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.coco_panoptic_stuff import PanopticStuffSplit, write_panoptic_stuff_labels
from panoptic_ocr.data.datasets.register_coco_panoptic import read_panoptic_json
from panoptic_ocr.data.label_files import AlreadyPrepared, exit_on_error, prepare_argument_parser

SPLIT_FOLDERS = {"train": "train2017", "val": "val2017", "val_100": "val2017_100"}
DEFAULT_SPLITS = ("train", "val")


def _finished(job: PanopticStuffSplit) -> bool:
    """Whether ``job.output_dir`` holds the stuff label of every annotation of its JSON, none
    older than the JSON or its panoptic PNG."""
    if not os.path.isdir(job.output_dir):
        return False
    annotations = read_panoptic_json(job.panoptic_json)["annotations"]
    json_time = os.path.getmtime(job.panoptic_json)
    for ann in annotations:
        out = os.path.join(job.output_dir, os.path.splitext(ann["file_name"])[0] + ".png")
        src = os.path.join(job.panoptic_root, ann["file_name"])
        try:
            if os.path.getmtime(out) < max(json_time, os.path.getmtime(src)):
                return False
        except OSError:
            return False
    return bool(annotations)


def main(argv=None) -> int:
    parser = prepare_argument_parser(
        __doc__, ("coco",), "the COCO folder (annotations/, panoptic_*2017/)", tuple(SPLIT_FOLDERS)
    )
    parser.set_defaults(splits=None)
    parser.add_argument("--workers", type=int, default=1, help="processes converting PNGs")
    args = parser.parse_args(argv)

    def run() -> str:
        root = Path(args.root)
        splits = args.splits or [
            s
            for s in DEFAULT_SPLITS
            if (root / "annotations" / f"panoptic_{SPLIT_FOLDERS[s]}.json").is_file()
        ]
        if not splits:
            raise FileNotFoundError(
                f"Neither '{root / 'annotations' / 'panoptic_train2017.json'}' nor "
                f"'{root / 'annotations' / 'panoptic_val2017.json'}' exists: see datasets/README.md"
            )
        jobs = []
        for split in splits:
            folder = SPLIT_FOLDERS[split]
            panoptic_json = root / "annotations" / f"panoptic_{folder}.json"
            panoptic_root = root / f"panoptic_{folder}"
            for path in (panoptic_json, panoptic_root):
                if not path.exists():
                    raise FileNotFoundError(f"'{path}' does not exist: see datasets/README.md")
            jobs.append(
                PanopticStuffSplit(
                    str(panoptic_json), str(panoptic_root), str(root / f"panoptic_stuff_{folder}")
                )
            )
        if not args.overwrite and all(_finished(job) for job in jobs):
            raise AlreadyPrepared(
                f"Already prepared: every stuff label of {', '.join(splits)} exists; "
                "nothing to do. "
                "Pass --overwrite to convert again."
            )
        counts = write_panoptic_stuff_labels(jobs, overwrite=args.overwrite, workers=args.workers)
        return f"Wrote stuff labels: {counts}"

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
