"""Test-set submission writers: ``DatasetEvaluator``s that save each prediction as a benchmark PNG.

Detectron2's ``CityscapesSemSegEvaluator`` writes the right PNGs but into a temporary folder that
it deletes after scoring against labels, and nothing writes ADE20K or LIP test PNGs. These writers
keep their files in ``output_dir``, score nothing (test labels are not public) and never replace an
earlier submission unless asked to (``overwrite=True``).

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
import itertools
import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.datasets.register_cityscapes import CITYSCAPES_TRAIN_ID_TO_LABEL_ID

__all__ = [
    "ADE20KSubmissionWriter",
    "CityscapesSubmissionWriter",
    "LIPSubmissionWriter",
    "SemSegSubmissionWriter",
    "build_submission_writer",
]

logger = logging.getLogger(__name__)


def _stem(file_name: str) -> str:
    return os.path.splitext(os.path.basename(file_name))[0]


class SemSegSubmissionWriter(DatasetEvaluator):
    """Write ``lut[argmax(sem_seg)]`` of every image as a single-channel PNG in ``output_dir``.

    Each process writes the PNGs of its own images; :meth:`evaluate` checks that no two images
    got the same file name and returns ``{"sem_seg_submission": {"num_images": N}}``.
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
            output_dir: the submission folder, created if needed.
            lut: ``lut[k]`` = the value written for predicted class ``k``; its length is the
                number of classes the model must predict.
            file_name_fn: input ``file_name`` -> PNG name inside ``output_dir``.
            overwrite: if ``output_dir`` is not empty, delete its ``*.png`` files and write anew;
                otherwise (default) refuse, so that no earlier submission is lost.

        Raises:
            FileExistsError: ``output_dir`` holds files and ``overwrite`` is False.
        """
        self._output_dir = Path(output_dir)
        self._lut = np.asarray(lut, dtype=np.uint8)
        self._file_name_fn = file_name_fn
        # Every process checks (so that all raise alike); only the main one deletes and creates.
        d = self._output_dir
        existing = sorted(d.iterdir()) if d.is_dir() else []
        if existing and not overwrite:
            raise FileExistsError(
                f"Submission folder '{d}' is not empty ({len(existing)} entries, "
                f"e.g. '{existing[0].name}'): nothing was written. Move it away, choose another "
                f"OUTPUT_DIR, or pass overwrite=True."
            )
        if comm.is_main_process():
            for p in existing:
                if p.suffix == ".png" and p.is_file():
                    p.unlink()
            d.mkdir(parents=True, exist_ok=True)
        comm.synchronize()  # no process writes before the folder is ready
        self._written: List[str] = []

    @property
    def output_dir(self) -> Path:
        return self._output_dir

    def reset(self) -> None:
        self._written = []

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
            name = self._file_name_fn(inp["file_name"])
            Image.fromarray(self._lut[pred]).save(self._output_dir / name)
            self._written.append(name)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        comm.synchronize()
        written = comm.gather(self._written, dst=0)
        if not comm.is_main_process():
            return {}
        names = list(itertools.chain(*written))
        duplicates = sorted(n for n, count in collections.Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(
                f"Several test images were written to the same file(s) {duplicates[:5]} "
                f"in '{self._output_dir}'"
            )
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
