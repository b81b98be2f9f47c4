"""Read, check, convert and write semantic label files: the core of ``datasets/prepare_*.py``.

Every converter follows the same steps for each (source label, image) pair:

1. read the source label (PNG, or a MATLAB ``.mat`` field) as an ``[H, W]`` integer array;
2. check that its size equals the image's (the image header is read, not decoded; grayscale,
   palette and RGBA images are fine since the loaders read images as RGB);
3. map it through a lookup table from source values to train ids (``255`` = ignore), refusing
   values the table does not know;
4. write a single-channel ("L") PNG.

Outputs are first written as hidden temporary siblings (:mod:`panoptic_ocr.utils.safe_write`) and
renamed into place only when every file of the run converted, so a failed run leaves earlier
outputs untouched and no half-converted split.
Any problem raises :class:`LabelConversionError` naming the offending file.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..utils.safe_write import OutputExistsError, PendingOutputs, output_exists

__all__ = [
    "AlreadyPrepared",
    "IGNORE_LABEL",
    "LabelConversionError",
    "LabelLUT",
    "PendingWrites",
    "check_outputs_absent",
    "convert_pairs",
    "convert_splits",
    "exit_on_error",
    "missing_split_error",
    "image_size",
    "read_label_mat",
    "read_label_png",
    "read_lines",
]

IGNORE_LABEL = 255
_OVERWRITE_HINT = "Remove it, or pass --overwrite to replace the converted labels."
PathLike = Union[str, os.PathLike]


class LabelConversionError(ValueError):
    """A source file is missing, unreadable or invalid; the message names the file."""


class AlreadyPrepared(Exception):
    """Every output of a prepare step exists already: nothing to do (exit status 0, not an error).
    The message says what is there and how to convert again."""


def missing_split_error(
    split: str, path: PathLike, present: Sequence[str], all_splits: Sequence[str]
) -> FileNotFoundError:
    """The error for a requested split whose source folder ``path`` is missing: names it, the
    splits found (``present``) and the ``--splits`` line that converts only those."""
    if present:
        hint = f"found only {', '.join(present)}: convert those with --splits {' '.join(present)}"
    else:
        hint = f"none of the splits {', '.join(all_splits)} was found"
    return FileNotFoundError(
        f"Split '{split}': '{path}' does not exist; {hint} "
        "(see datasets/README.md for the expected tree)"
    )


class LabelLUT:
    """Lookup table from source label values to train ids.

    Args:
        table: ``table[v]`` is the train id (``0..254``) or ``IGNORE_LABEL`` of source value
            ``v``; ``-1`` marks a value that must not occur. Values ``>= len(table)`` must not
            occur either.
        description: what the source values are, for error messages (e.g. "Cityscapes labelIds").
    """

    def __init__(self, table: Sequence[int], description: str):
        self.table = np.asarray(table, dtype=np.int16)
        if self.table.ndim != 1 or self.table.max() > IGNORE_LABEL or self.table.min() < -1:
            raise ValueError(f"LabelLUT for {description}: entries must be -1, 0..254 or 255")
        self.description = description

    @classmethod
    def from_dict(cls, mapping: Dict[int, int], size: int, description: str) -> "LabelLUT":
        """``mapping`` source value -> train id; unlisted values below ``size`` are invalid."""
        table = np.full(size, -1, dtype=np.int16)
        for src, dst in mapping.items():
            table[src] = dst
        return cls(table, description)

    def valid_values(self) -> List[int]:
        return [int(v) for v in np.nonzero(self.table >= 0)[0]]

    def __call__(self, label: np.ndarray, file_name: PathLike) -> np.ndarray:
        """Map ``label`` ``[H, W]`` (any integer dtype) to a uint8 train-id map.

        Raises:
            LabelConversionError: naming ``file_name`` and the values the table does not know.
        """
        if label.dtype.kind not in "iu":
            raise LabelConversionError(
                f"Label file '{file_name}' holds {label.dtype} values, not integers"
            )
        values = np.unique(label)
        bad = values[(values < 0) | (values >= len(self.table))]
        inside = values[(values >= 0) & (values < len(self.table))]
        bad = np.concatenate([bad, inside[self.table[inside] < 0]])
        if bad.size:
            raise LabelConversionError(
                f"Label file '{file_name}' holds values {sorted(bad.tolist())[:10]} that are not "
                f"{self.description} (allowed: {_ranges(self.valid_values())})"
            )
        return self.table[label].astype(np.uint8)


def _ranges(values: List[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0..2, 5"``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}..{v}")
            start = None
    return ", ".join(parts)


def image_size(file_name: PathLike) -> Tuple[int, int]:
    """``(height, width)`` of an image, from its header.

    Raises:
        LabelConversionError: the file is missing or not an image PIL can open.
    """
    if not os.path.isfile(file_name):
        raise LabelConversionError(f"Image file '{file_name}' does not exist")
    try:
        with Image.open(file_name) as im:
            width, height = im.size
    except Exception as e:  # PIL raises several types; the file name is what the user needs
        raise LabelConversionError(f"Cannot read image file '{file_name}': {e}") from e
    return height, width


def read_label_png(file_name: PathLike) -> np.ndarray:
    """A single-channel label image ("L", "P", "I" or "I;16") as an ``[H, W]`` integer array.

    Palette images give their indices, which is what palette label PNGs store.
    """
    try:
        with Image.open(file_name) as im:
            label = np.asarray(im)
    except Exception as e:
        raise LabelConversionError(f"Cannot read label file '{file_name}': {e}") from e
    if label.ndim != 2:
        raise LabelConversionError(
            f"Label file '{file_name}' must be single-channel, got shape {label.shape}"
        )
    return label


def read_label_mat(file_name: PathLike, field: str) -> np.ndarray:
    """The ``[H, W]`` integer array ``field`` of a MATLAB (v4-v7.2) ``.mat`` file."""
    try:
        from scipy.io import loadmat
    except ImportError as e:  # scipy is a dependency of panoptic_ocr; be explicit if it is absent
        raise ImportError("Reading .mat label files needs scipy: pip install scipy") from e
    try:
        data = loadmat(str(file_name), variable_names=[field])
    except Exception as e:
        raise LabelConversionError(f"Cannot read MATLAB file '{file_name}': {e}") from e
    if field not in data:
        raise LabelConversionError(f"MATLAB file '{file_name}' has no field '{field}'")
    label = np.asarray(data[field])
    if label.ndim != 2:
        raise LabelConversionError(
            f"Field '{field}' of '{file_name}' must be 2-D, got shape {label.shape}"
        )
    if label.dtype.kind == "f":  # MATLAB's default double; accept only whole numbers
        if not np.all(np.isfinite(label)) or not np.all(label == np.round(label)):
            raise LabelConversionError(f"Field '{field}' of '{file_name}' holds non-integer values")
        label = label.astype(np.int64)
    return label


def read_lines(file_name: PathLike) -> List[str]:
    """Non-empty, stripped lines of an image list such as ``imageLists/train.txt``."""
    if not os.path.isfile(file_name):
        raise LabelConversionError(f"Image list '{file_name}' does not exist")
    with open(file_name) as f:
        return [line.strip() for line in f if line.strip()]


def check_outputs_absent(paths: Iterable[PathLike], overwrite: bool) -> None:
    """Refuse to replace existing outputs unless ``overwrite``.

    ``paths`` are output files, or output folders (an existing non-empty folder counts).

    Raises:
        OutputExistsError: (a ``FileExistsError``) naming the first existing output and how many
            there are.
    """
    if overwrite:
        return
    existing = [Path(p) for p in paths if output_exists(p)]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(
            existing[0],
            f"Output '{existing[0]}' already exists{more}; nothing was written. {_OVERWRITE_HINT}",
        )


class PendingWrites(PendingOutputs):
    """Label PNGs written to temporary siblings and renamed into place together on
    :meth:`commit` (see :class:`panoptic_ocr.utils.safe_write.PendingOutputs`).

    Used as a context manager: leaving the block with an exception deletes the temporaries (and
    the folders this object created), so the output tree is as it was before the run.
    """

    def __init__(self, *, overwrite: bool = False):
        super().__init__(overwrite=overwrite, hint=_OVERWRITE_HINT)

    def write(self, label: np.ndarray, file_name: PathLike) -> None:
        """Queue ``label`` (``[H, W]`` uint8) to be written to ``file_name`` as an "L" PNG."""
        temp = self.file(file_name)
        Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(temp, format="PNG")


def convert_pairs(
    jobs: Sequence[Tuple[PathLike, PathLike, PathLike]],
    read_label,
    lut: LabelLUT,
    writer: PendingWrites,
    desc: Optional[str] = None,
) -> int:
    """Convert each ``(source label, image, output PNG)`` of ``jobs`` with a progress bar.

    Args:
        read_label: ``read_label(path) -> [H, W]`` integer array.
        lut: source values -> train ids.
        writer: where converted labels are queued.
    Returns:
        the number of labels converted.
    """
    for src, image, dst in tqdm(jobs, desc=desc, unit="label", dynamic_ncols=True):
        label = read_label(src)
        height, width = image_size(image)
        if label.shape != (height, width):
            raise LabelConversionError(
                f"Label file '{src}' is {label.shape[1]}x{label.shape[0]} but its image '{image}' "
                f"is {width}x{height} (WxH)"
            )
        writer.write(lut(label, src), dst)
    return len(jobs)


def convert_splits(
    jobs_by_split: Dict[str, Sequence[Tuple[PathLike, PathLike, PathLike]]],
    read_label,
    lut: LabelLUT,
    outputs: Iterable[PathLike],
    overwrite: bool,
) -> Dict[str, int]:
    """Check that ``outputs`` (files or folders) may be written, then convert every split's
    ``(source label, image, output PNG)`` jobs; nothing is written unless all of them convert.

    Returns:
        the number of labels written per split.
    Raises:
        AlreadyPrepared: every output file exists, none is older than its source, and
            ``overwrite`` is False (a finished run; a changed source makes it an OutputExistsError).
        OutputExistsError: (a ``FileExistsError``) some outputs exist and ``overwrite`` is False.
        LabelConversionError: a split has no label, or a file is missing or invalid.
    """
    for split, jobs in jobs_by_split.items():
        if not jobs:
            raise LabelConversionError(f"Split '{split}' has no label file to convert")
    if not overwrite and all(
        _up_to_date(src, dst) for jobs in jobs_by_split.values() for src, _, dst in jobs
    ):
        counts = {split: len(jobs) for split, jobs in jobs_by_split.items()}
        raise AlreadyPrepared(
            f"Already prepared: every output exists ({counts}); nothing to do. "
            "Pass --overwrite to convert again."
        )
    check_outputs_absent(outputs, overwrite)
    with PendingWrites(overwrite=overwrite) as writer:
        return {
            split: convert_pairs(jobs, read_label, lut, writer, desc=split)
            for split, jobs in jobs_by_split.items()
        }


def _up_to_date(source: PathLike, output: PathLike) -> bool:
    """Whether ``output`` exists and is not older than ``source`` (a finished conversion of it)."""
    try:
        return os.path.getmtime(output) >= os.path.getmtime(source)
    except OSError:
        return False


def prepare_argument_parser(
    description: str, folder: Sequence[str], what: str, splits: Optional[Sequence[str]] = None
) -> argparse.ArgumentParser:
    """The command line shared by ``datasets/prepare_*.py``: ``--root`` (default
    ``$DETECTRON2_DATASETS/<folder...>``, described as ``what``), ``--overwrite`` and, given
    ``splits``, ``--splits``."""
    default_root = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), *folder)
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default=default_root, help=f"{what} (default: {default_root})")
    if splits is not None:
        parser.add_argument("--splits", nargs="+", default=list(splits), choices=splits)
    parser.add_argument("--overwrite", action="store_true", help="replace labels converted before")
    return parser


def exit_on_error(run: Callable[[], str]) -> int:
    """Run a prepare script's body; print its summary (exit status 0), the message of a finished
    step (:class:`AlreadyPrepared`, status 0) or its error (status 1)."""
    try:
        summary = run()
    except AlreadyPrepared as e:
        print(e)
        return 0
    except (LabelConversionError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary)
    return 0
