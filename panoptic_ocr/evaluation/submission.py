"""Test-set submission writers: ``DatasetEvaluator``s that save each prediction as a benchmark PNG.

Detectron2's ``CityscapesSemSegEvaluator`` writes the right PNGs but into a temporary folder that
it deletes after scoring against labels, and nothing writes ADE20K or LIP test PNGs. These writers
keep their files in ``output_dir``, score nothing (test labels are not public) and never replace an
earlier submission unless asked to (``overwrite=True``); the folder appears complete or not at all.

Formats (``submission_format`` metadata key of the dataset):

========== ================================= ==================================================
format     file name (one per test image)    pixel values ("L" PNG, at the image's resolution)
========== ================================= ==================================================
cityscapes ``<city>_<seq>_<frame>_leftImg8bit ``labelIds`` of the 19 classes (7, 8, 11, ... 33),
           _pred.png`` (the server matches   from trainIds via cityscapesScripts' table
           ``<city>_<seq>_<frame>*.png``)
ade20k     ``ADE_test_<8 digits>.png``        class index + 1 (1..150), the SceneParsing format
lip        ``<image id>.png``                class index (0..19, 0 = background)
========== ================================= ==================================================
"""

import collections
import io
import itertools
import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from PIL import Image

from ..data.datasets.register_cityscapes import CITYSCAPES_TRAIN_ID_TO_LABEL_ID
from ..utils.safe_write import atomic_directory, check_writable

__all__ = [
    "ADE20KSubmissionWriter",
    "CityscapesSubmissionWriter",
    "LIPSubmissionWriter",
    "SemSegSubmissionWriter",
    "build_submission_writer",
]

logger = logging.getLogger(__name__)

_OVERWRITE_HINT = "Move it away, choose another OUTPUT_DIR, or pass overwrite=True (--overwrite)."


def _stem(file_name: str) -> str:
    return os.path.splitext(os.path.basename(file_name))[0]


class SemSegSubmissionWriter(DatasetEvaluator):
    """Write ``lut[argmax(sem_seg)]`` of every image as a single-channel PNG in ``output_dir``.

    Each process encodes the PNGs of its own images in memory; :meth:`evaluate` gathers them,
    checks that no two images got the same file name, writes them on the main process into a
    temporary sibling of ``output_dir`` that then takes its place
    (:func:`panoptic_ocr.utils.safe_write.atomic_directory`), and returns
    ``{"sem_seg_submission": {"num_images": N}}``. A run that fails leaves an earlier submission
    as it was.
    """

    def __init__(
        self,
        output_dir: str,
        *,
        lut: Sequence[int],
        file_name_fn: Callable[[str], str] = lambda f: _stem(f) + ".png",
        overwrite: bool = False,
    ):
        """
        Args:
            output_dir: the submission folder, created (with its parents) when written.
            lut: ``lut[k]`` = the value written for predicted class ``k``; its length is the
                number of classes the model must predict.
            file_name_fn: input ``file_name`` -> PNG name inside ``output_dir``.
            overwrite: replace a non-empty ``output_dir`` (the whole folder) once the new
                submission is written; otherwise (default) refuse, so that no earlier submission
                is lost.

        Raises:
            OutputExistsError: (a ``FileExistsError``) naming ``output_dir``, which holds files,
                when ``overwrite`` is False.
        """
        self._output_dir = Path(output_dir)
        self._lut = np.asarray(lut, dtype=np.uint8)
        self._file_name_fn = file_name_fn
        self._overwrite = overwrite
        # Every process checks, so that all raise alike; evaluate() checks again before writing.
        check_writable(self._output_dir, overwrite=overwrite, hint=_OVERWRITE_HINT)
        self._pngs: List[Tuple[str, bytes]] = []

    @property
    def output_dir(self) -> Path:
        return self._output_dir

    def reset(self) -> None:
        self._pngs = []

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        for inp, out in zip(inputs, outputs):
            logits = out["sem_seg"]
            if logits.shape[0] != len(self._lut):
                raise ValueError(
                    f"Prediction for '{inp['file_name']}' has {logits.shape[0]} classes; "
                    f"this submission format expects {len(self._lut)}"
                )
            pred = logits.argmax(dim=0).cpu().numpy()
            if "height" in inp and "width" in inp and pred.shape != (inp["height"], inp["width"]):
                raise ValueError(
                    f"Prediction for '{inp['file_name']}' is {pred.shape[1]}x{pred.shape[0]}, "
                    f"not the image's {inp['width']}x{inp['height']}: submissions need "
                    f"full-resolution labels"
                )
            buffer = io.BytesIO()
            Image.fromarray(self._lut[pred]).save(buffer, format="PNG")
            self._pngs.append((self._file_name_fn(inp["file_name"]), buffer.getvalue()))

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        comm.synchronize()
        pngs = list(itertools.chain(*comm.gather(self._pngs, dst=0)))
        if not comm.is_main_process():
            return {}
        names = [name for name, _ in pngs]
        duplicates = sorted(n for n, count in collections.Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(
                f"Several test images map to the same file(s) {duplicates[:5]} of "
                f"'{self._output_dir}': nothing was written"
            )
        with atomic_directory(self._output_dir, overwrite=self._overwrite) as temp_dir:
            for name, data in pngs:
                (Path(temp_dir) / name).write_bytes(data)
        logger.info("Wrote %d submission PNGs to %s", len(names), self._output_dir)
        return {"sem_seg_submission": {"num_images": float(len(names))}}


class CityscapesSubmissionWriter(SemSegSubmissionWriter):
    """Cityscapes pixel-level benchmark: labelIds PNGs named ``<image stem>_pred.png`` (as
    Detectron2's ``CityscapesSemSegEvaluator`` names them). Zip ``output_dir`` to upload it."""

    def __init__(self, output_dir: str, *, overwrite: bool = False):
        super().__init__(
            output_dir,
            lut=CITYSCAPES_TRAIN_ID_TO_LABEL_ID,
            file_name_fn=lambda f: _stem(f) + "_pred.png",
            overwrite=overwrite,
        )


class ADE20KSubmissionWriter(SemSegSubmissionWriter):
    """ADE20K SceneParsing: ``<image stem>.png`` with values 1..150 (predicted class + 1)."""

    def __init__(self, output_dir: str, *, overwrite: bool = False):
        super().__init__(output_dir, lut=np.arange(1, 151), overwrite=overwrite)


class LIPSubmissionWriter(SemSegSubmissionWriter):
    """LIP single-person parsing: ``<image id>.png`` with class ids 0..19."""

    def __init__(self, output_dir: str, *, overwrite: bool = False):
        super().__init__(output_dir, lut=np.arange(20), overwrite=overwrite)


_WRITERS = {
    "cityscapes": CityscapesSubmissionWriter,
    "ade20k": ADE20KSubmissionWriter,
    "lip": LIPSubmissionWriter,
}


def build_submission_writer(
    dataset_name: str, output_dir: str, overwrite: bool = False
) -> SemSegSubmissionWriter:
    """The writer named by the dataset's ``submission_format`` metadata.

    Raises:
        ValueError: the dataset has no, or an unknown, ``submission_format``.
    """
    fmt: Optional[str] = MetadataCatalog.get(dataset_name).get("submission_format", None)
    if fmt not in _WRITERS:
        raise ValueError(
            f"Dataset '{dataset_name}' has submission_format {fmt!r}; "
            f"expected one of {sorted(_WRITERS)}"
        )
    return _WRITERS[fmt](output_dir, overwrite=overwrite)
