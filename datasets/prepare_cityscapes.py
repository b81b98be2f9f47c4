#!/usr/bin/env python
"""Make the *_labelTrainIds.png files that Detectron2's Cityscapes loaders read.

    .venv/bin/python datasets/prepare_cityscapes.py  # $DETECTRON2_DATASETS/cityscapes
    .venv/bin/python datasets/prepare_cityscapes.py --root /data/cityscapes --annotations gtFine \\
        --overwrite

Reads   <root>/{gtFine,gtCoarse}/<split>/<city>/*_{gtFine,gtCoarse}_labelIds.png   (ids 0..33)
        <root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png   (for the size check)
Writes  *_{gtFine,gtCoarse}_labelTrainIds.png next to each labelIds file, single-channel:
        the 19 evaluated classes -> 0..18, every other id -> 255, with the official table of
        cityscapesScripts (the same files its preparation/createTrainIdLabelImgs.py writes).
Every split found is converted (gtFine: train, val, test; gtCoarse: train, train_extra, val).
Stops, writing nothing, if a labelTrainIds file exists already (unless --overwrite) or if a label
is unreadable, of another size than its image, or holds an id outside 0..33.
"""

import sys
from pathlib import Path

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.datasets.register_cityscapes import CITYSCAPES_LABEL_ID_TO_TRAIN_ID
from panoptic_ocr.data.label_files import (
    LabelLUT,
    convert_splits,
    exit_on_error,
    prepare_argument_parser,
    read_label_png,
)

ANNOTATIONS = ("gtFine", "gtCoarse")
CITYSCAPES_LUT = LabelLUT.from_dict(
    CITYSCAPES_LABEL_ID_TO_TRAIN_ID, max(CITYSCAPES_LABEL_ID_TO_TRAIN_ID) + 1, "Cityscapes labelIds"
)


def find_jobs(root: Path, annotation: str):
    """``{"<annotation>/<split>": [(labelIds, image, labelTrainIds), ...]}``, every split found."""
    jobs = {}
    suffix = f"_{annotation}_labelIds.png"
    for split_dir in sorted(p for p in (root / annotation).iterdir() if p.is_dir()):
        split_jobs = []
        for src in sorted(split_dir.glob(f"*/*{suffix}")):
            stem = src.name[: -len(suffix)]
            image = (
                root / "leftImg8bit" / split_dir.name / src.parent.name / f"{stem}_leftImg8bit.png"
            )
            split_jobs.append((src, image, src.with_name(f"{stem}_{annotation}_labelTrainIds.png")))
        jobs[f"{annotation}/{split_dir.name}"] = split_jobs
    return jobs


def main(argv=None) -> int:
    parser = prepare_argument_parser(
        __doc__, ("cityscapes",), "the unzipped Cityscapes release", None
    )
    parser.add_argument(
        "--annotations",
        nargs="+",
        default=None,
        choices=ANNOTATIONS,
        help="default: those present under --root",
    )
    args = parser.parse_args(argv)

    def run() -> str:
        root = Path(args.root)
        annotations = args.annotations or [a for a in ANNOTATIONS if (root / a).is_dir()]
        if not annotations:
            raise FileNotFoundError(
                f"Neither '{root / 'gtFine'}' nor '{root / 'gtCoarse'}' exists: "
                f"see datasets/README.md"
            )
        jobs = {}
        for annotation in annotations:
            if not (root / annotation).is_dir():
                raise FileNotFoundError(
                    f"'{root / annotation}' does not exist: see datasets/README.md"
                )
            jobs.update(find_jobs(root, annotation))
        outputs = [dst for split_jobs in jobs.values() for _, _, dst in split_jobs]
        counts = convert_splits(jobs, read_label_png, CITYSCAPES_LUT, outputs, args.overwrite)
        return f"Wrote labelTrainIds files under {root}: {counts}"

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
