"""The Cityscapes panoptic files Panoptic-FPN trains and is evaluated on, made from the release.

Per split, under ``<root>/gtFine``:

1. ``cityscapes_panoptic_<split>.json`` and ``cityscapes_panoptic_<split>/*_gtFine_panoptic.png``:
   cityscapesScripts' ``createPanopticImgs`` (``convert2panoptic``, label ids as categories) run
   on ``<split>/<city>/*_gtFine_instanceIds.png``. These are what Detectron2's
   ``cityscapes_fine_panoptic_*`` datasets and the Cityscapes panoptic evaluation read.
2. ``cityscapes_panoptic_stuff_<split>/*_gtFine_panoptic.png``: the separated semantic labels
   (every thing segment -> 0, stuff -> 1..11, void -> 255), made from step 1 by
   :func:`panoptic_ocr.data.coco_panoptic_stuff.write_panoptic_stuff_labels`.

Before anything is written, every ``*_instanceIds.png`` is checked to have its
``leftImg8bit`` image, of the same size. Each step writes into temporary siblings renamed into
place only when the split is complete (:mod:`panoptic_ocr.utils.safe_write`); a finished step is
not redone (without ``overwrite``), so an interrupted run resumes where it stopped.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

from ..utils.safe_write import PendingOutputs
from .coco_panoptic_stuff import PanopticStuffSplit, write_panoptic_stuff_labels
from .datasets.register_cityscapes_panoptic import (
    cityscapes_image_id,
    get_cityscapes_panoptic_separated_meta,
    panoptic_paths,
)
from .label_files import (
    _OVERWRITE_HINT,
    AlreadyPrepared,
    LabelConversionError,
    check_outputs_absent,
    image_size,
)

__all__ = ["instance_files", "prepare_cityscapes_panoptic"]

INSTANCE_SUFFIX = "_gtFine_instanceIds.png"


def instance_files(root: Path, split: str) -> List[Path]:
    """The ``gtFine/<split>/<city>/*_gtFine_instanceIds.png`` files, checked against their
    ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` images (present, same size).

    Raises:
        FileNotFoundError: the split has no instance file, or an image is missing.
        ValueError: (a ``LabelConversionError``) an instance file and its image differ in size.
    """
    files = sorted((root / "gtFine" / split).glob(f"*/*{INSTANCE_SUFFIX}"))
    if not files:
        raise FileNotFoundError(
            f"No '*{INSTANCE_SUFFIX}' file in '{root / 'gtFine' / split}/<city>/': "
            "unzip gtFine_trainvaltest.zip there (see datasets/README.md)"
        )
    for label in files:
        stem = label.name[: -len(INSTANCE_SUFFIX)]
        image = root / "leftImg8bit" / split / label.parent.name / f"{stem}_leftImg8bit.png"
        if not image.is_file():
            raise FileNotFoundError(f"Instance file '{label}' has no image '{image}'")
        label_size, size = image_size(label), image_size(image)
        if label_size != size:
            raise LabelConversionError(
                f"Instance file '{label}' is {label_size[1]}x{label_size[0]} but its image "
                f"'{image}' is {size[1]}x{size[0]} (WxH)"
            )
    return files


def _panoptic_done(paths: Dict[str, str], sources: Sequence[Path]) -> bool:
    """Whether the panoptic JSON and folder exist, annotate exactly the images of ``sources``
    and are not older than any of them."""
    json_path, png_dir = Path(paths["panoptic_json"]), Path(paths["panoptic_root"])
    if not (json_path.is_file() and png_dir.is_dir()):
        return False
    if json_path.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        return False
    try:
        annotations = json.loads(json_path.read_text())["annotations"]
    except (ValueError, KeyError):
        return False
    return {a["image_id"] for a in annotations} == {cityscapes_image_id(p.name) for p in sources}


def _stuff_done(paths: Dict[str, str]) -> bool:
    """Whether every annotation of the panoptic JSON has its separated label, none older than
    the JSON."""
    json_path, stuff_dir = Path(paths["panoptic_json"]), Path(paths["sem_seg_root"])
    if not stuff_dir.is_dir():
        return False
    json_time = json_path.stat().st_mtime
    for ann in json.loads(json_path.read_text())["annotations"]:
        label = stuff_dir / ann["file_name"]
        if not label.is_file() or label.stat().st_mtime < json_time:
            return False
    return True


def _write_panoptic(root: Path, split: str, paths: Dict[str, str], overwrite: bool) -> None:
    """Run cityscapesScripts' ``convert2panoptic`` for ``split`` into a scratch folder of
    ``gtFine``, then rename its JSON and PNG folder into place together."""
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    gt_root = root / "gtFine"
    scratch = Path(tempfile.mkdtemp(prefix=".panoptic-", dir=gt_root))
    try:
        convert2panoptic(str(gt_root), str(scratch), useTrainId=False, setNames=[split])
        produced_json = scratch / f"cityscapes_panoptic_{split}.json"
        produced_dir = scratch / f"cityscapes_panoptic_{split}"
        with PendingOutputs(overwrite=overwrite, hint=_OVERWRITE_HINT) as pending:
            png_dir = pending.directory(paths["panoptic_root"])
            os.rmdir(png_dir)  # an empty reserved name: the produced folder takes its place
            os.replace(produced_dir, png_dir)
            os.replace(produced_json, pending.file(paths["panoptic_json"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare_cityscapes_panoptic(
    root: str, splits: Sequence[str], overwrite: bool = False, workers: int = 1
) -> Dict[str, str]:
    """Write the panoptic files and separated labels of ``splits`` under ``<root>/gtFine``.

    Returns:
        ``{split: what was written}`` for the splits that were not complete.
    Raises:
        AlreadyPrepared: every split is complete and ``overwrite`` is False.
        OutputExistsError: (a ``FileExistsError``) an unfinished output exists and ``overwrite``
            is False.
        FileNotFoundError, ValueError: a release file is missing or inconsistent (see
            :func:`instance_files`); nothing is written then.
    """
    root_path = Path(root)
    sources = {split: instance_files(root_path, split) for split in splits}
    paths = {split: panoptic_paths(str(root_path / "gtFine"), split) for split in splits}
    todo = {}
    for split in splits:
        panoptic = overwrite or not _panoptic_done(paths[split], sources[split])
        stuff = panoptic or not _stuff_done(paths[split])
        if panoptic or stuff:
            todo[split] = (panoptic, stuff)
    if not todo:
        raise AlreadyPrepared(
            f"Already prepared: the panoptic files of {', '.join(splits)} exist under "
            f"'{root_path / 'gtFine'}'; nothing to do. Pass --overwrite to convert again."
        )
    for split, (panoptic, _) in todo.items():
        p = paths[split]
        outputs = [p["sem_seg_root"]]
        if panoptic:
            outputs += [p["panoptic_json"], p["panoptic_root"]]
        check_outputs_absent(outputs, overwrite)
    meta = get_cityscapes_panoptic_separated_meta()
    done = {}
    for split, (panoptic, _) in todo.items():
        p = paths[split]
        if panoptic:
            _write_panoptic(root_path, split, p, overwrite)
        write_panoptic_stuff_labels(
            [PanopticStuffSplit(p["panoptic_json"], p["panoptic_root"], p["sem_seg_root"])],
            metadata=meta,
            overwrite=overwrite,
            workers=workers,
        )
        done[split] = (
            f"{len(sources[split])} panoptic PNGs + JSON and separated labels"
            if panoptic
            else f"{len(sources[split])} separated labels"
        )
    return done
