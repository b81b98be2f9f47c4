#!/usr/bin/env python
"""Check and convert Mapillary Vistas v1.2 labels for mapillary_vistas_v1.2_sem_seg_{train,val}.

    .venv/bin/python datasets/prepare_mapillary_vistas.py  # $DETECTRON2_DATASETS/mapillary_vistas
    .venv/bin/python datasets/prepare_mapillary_vistas.py --root /data/mapillary_vistas --overwrite

Reads   <root>/{training,validation}/v1.2/labels/*.png   (v2.0 release), or else
        <root>/{training,validation}/labels/*.png        (v1.1/v1.2 releases):
                                                         v1.2 ids, 0..64 = classes, 65 = Unlabeled
        <root>/{training,validation}/images/*.jpg        (for the pairing and size checks)
Writes  <root>/annotations_detectron2/v1.2/{training,validation}/*.png
        single-channel ("L"): 0..64 kept, 65 -> 255 (ignored).
Stops, writing nothing, if a split's images and labels do not pair one to one, if an output
folder is not empty (unless --overwrite) or if a label is unreadable, of another size than its
image, or holds a value above 65.
"""

import sys
from pathlib import Path
from typing import List, Optional, Tuple

if (
    __package__ is None and __name__ == "__main__"
):  # run as a file: use this checkout's panoptic_ocr
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic_ocr.data.datasets.register_mapillary_vistas import (
    VERSION,
    mapillary_vistas_v1_2_lut,
)
from panoptic_ocr.data.label_files import (
    LabelConversionError,
    LabelLUT,
    convert_splits,
    exit_on_error,
    prepare_argument_parser,
    read_label_png,
)

SPLITS = ("training", "validation")
MAPILLARY_VISTAS_LUT = LabelLUT(mapillary_vistas_v1_2_lut(), "Mapillary Vistas v1.2 ids")
OUTPUT_DIR = Path("annotations_detectron2") / VERSION
# Missing files named per side when a split does not pair.
_NAMED_MISSING = 3


def label_dir_candidates(split_dir: Path) -> Tuple[Path, Path]:
    """Where a split's v1.2 labels are: the v2.0 release's folder first, then the v1.x one."""
    return split_dir / VERSION / "labels", split_dir / "labels"


def find_label_dir(split_dir: Path) -> Optional[Path]:
    return next((d for d in label_dir_candidates(split_dir) if d.is_dir()), None)


def _missing_split(root: Path, split: str) -> FileNotFoundError:
    v2_dir, v1_dir = label_dir_candidates(root / split)
    present = [s for s in SPLITS if find_label_dir(root / s) is not None]
    if present:
        hint = f"found only {', '.join(present)}: convert those with --splits {' '.join(present)}"
    else:
        hint = f"none of the splits {', '.join(SPLITS)} was found"
    return FileNotFoundError(
        f"Split '{split}': neither '{v2_dir}' (v2.0 release) nor '{v1_dir}' (v1.1/v1.2 release) "
        f"exists; {hint} (see datasets/README.md for the expected tree)"
    )


def _paired_stems(split: str, label_dir: Path, image_dir: Path) -> List[str]:
    """The stems of the split, after checking that every image has a label and every label an
    image (the release pairs them one to one: 18000 training, 2000 validation)."""
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Split '{split}': the image folder '{image_dir}' does not exist")
    labels = {p.stem for p in label_dir.glob("*.png")}
    images = {p.stem for p in image_dir.glob("*.jpg")}
    without_label = sorted(images - labels)
    without_image = sorted(labels - images)
    if without_label or without_image:
        missing = [str(label_dir / f"{s}.png") for s in without_label[:_NAMED_MISSING]]
        missing += [str(image_dir / f"{s}.jpg") for s in without_image[:_NAMED_MISSING]]
        raise LabelConversionError(
            f"Split '{split}': the images '{image_dir}' and labels '{label_dir}' do not pair one "
            f"to one: {len(without_label)} of {len(images)} image(s) have no label, "
            f"{len(without_image)} of {len(labels)} label(s) have no image; missing: "
            f"{', '.join(repr(m) for m in missing)}"
        )
    return sorted(labels)


def main(argv=None) -> int:
    parser = prepare_argument_parser(
        __doc__, ("mapillary_vistas",), "the unzipped Mapillary Vistas release", SPLITS
    )
    args = parser.parse_args(argv)

    def run() -> str:
        root = Path(args.root)
        jobs, outputs, sources = {}, [], {}
        for split in args.splits:
            label_dir = find_label_dir(root / split)
            if label_dir is None:
                raise _missing_split(root, split)
            image_dir = root / split / "images"
            out_dir = root / OUTPUT_DIR / split
            outputs.append(out_dir)
            sources[split] = str(label_dir.relative_to(root))
            jobs[split] = [
                (label_dir / f"{s}.png", image_dir / f"{s}.jpg", out_dir / f"{s}.png")
                for s in _paired_stems(split, label_dir, image_dir)
            ]
        counts = convert_splits(jobs, read_label_png, MAPILLARY_VISTAS_LUT, outputs, args.overwrite)
        return (
            f"Wrote {counts} labels to {root / OUTPUT_DIR} (from {sources}; 65 classes, "
            "65 'Unlabeled' -> 255)"
        )

    return exit_on_error(run)


if __name__ == "__main__":
    sys.exit(main())
