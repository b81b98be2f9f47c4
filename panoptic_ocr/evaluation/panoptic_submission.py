"""COCO panoptic submission writer (test-dev, or val for a local check) for Panoptic-FPN models.

The COCO panoptic server takes ``panoptic_<split>_<method>_results.zip`` holding, at its top
level, ``panoptic_<split>_<method>_results.json`` (``{"annotations": [{"image_id",
"file_name", "segments_info": [{"id", "category_id", ...}]}]}``, category ids of the dataset)
and the folder ``panoptic_<split>_<method>_results/`` of RGB id PNGs
(id = R + 256 G + 256^2 B, 0 = void). :class:`COCOPanopticSubmissionWriter` writes the JSON,
the folder and the zip side by side in ``output_dir``; the JSON and folder are what
panopticapi's ``pq_compute(gt_json, pred_json, gt_folder, pred_folder)`` reads.

Files appear only once complete: each is written as a hidden temporary sibling and all are
renamed into place together at the end (:mod:`panoptic_ocr.utils.safe_write`). An existing
submission is never replaced unless ``overwrite=True``; an overwrite that fails restores it.
"""

import collections
import itertools
import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from detectron2.evaluation import COCOPanopticEvaluator
from detectron2.utils import comm

from ..utils.safe_write import PendingOutputs, check_writable

__all__ = ["COCOPanopticSubmissionWriter", "submission_name"]

logger = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_OVERWRITE_HINT = (
    "Move it away, choose another output folder or method name, or overwrite "
    "(overwrite=True, --overwrite)."
)


def submission_name(split_tag: str, method_name: str) -> str:
    """``panoptic_<split_tag>_<method_name>_results``, the stem of every submission file.

    Raises:
        ValueError: either part is empty or holds characters other than letters, digits,
            ``_``, ``.`` and ``-`` (so that the files stay inside the output folder).
    """
    for what, value in (("split_tag", split_tag), ("method_name", method_name)):
        if not isinstance(value, str) or not _SAFE_NAME.match(value):
            raise ValueError(
                f"{what} {value!r} must be a non-empty name of letters, digits, '_', '.' or '-'"
            )
    return f"panoptic_{split_tag}_{method_name}_results"


class COCOPanopticSubmissionWriter(COCOPanopticEvaluator):
    """Save Panoptic-FPN predictions as a COCO panoptic submission; scores nothing.

    :meth:`process` is Detectron2's: ``(panoptic_seg, segments_info)`` with contiguous ids and
    ``isthing`` becomes PNG bytes and ``segments_info`` with dataset category ids. On the main
    process, :meth:`evaluate` writes ``<stem>.json``, ``<stem>/*.png`` and ``<stem>.zip`` in
    ``output_dir`` (``stem`` = :func:`submission_name`).
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: str,
        *,
        split_tag: Optional[str] = None,
        method_name: str = "panoptic_ocr",
        overwrite: bool = False,
    ):
        """
        Args:
            dataset_name: a registered dataset with Detectron2's panoptic metadata
                (``thing_dataset_id_to_contiguous_id``, ``stuff_dataset_id_to_contiguous_id``).
            output_dir: folder of the submission files, created if needed.
            split_tag: the split in the file names, e.g. "test-dev2017" or "val2017"
                (default: the dataset's ``submission_split`` metadata, else ``dataset_name``).
            method_name: the algorithm name in the file names.
            overwrite: replace an existing submission of the same name; otherwise (default)
                refuse, here and again just before writing.

        Raises:
            OutputExistsError: (a ``FileExistsError``) naming a submission file that exists, when
                ``overwrite`` is False.
            ValueError: ``split_tag`` or ``method_name`` is not a plain file-name part.
        """
        super().__init__(dataset_name, output_dir)
        if split_tag is None:
            split_tag = self._metadata.get("submission_split", None) or dataset_name
        self._dataset_name = dataset_name
        self._stem = submission_name(split_tag, method_name)
        self._output_dir = str(output_dir)
        self._overwrite = overwrite
        self._predictions: List[Dict] = []
        self._check_not_existing()

    @property
    def json_path(self) -> Path:
        return Path(self._output_dir) / f"{self._stem}.json"

    @property
    def png_dir(self) -> Path:
        return Path(self._output_dir) / self._stem

    @property
    def zip_path(self) -> Path:
        return Path(self._output_dir) / f"{self._stem}.zip"

    def _targets(self) -> Tuple[Path, Path, Path]:
        # Renamed into place in this order: the zip, the complete upload, comes last.
        return self.png_dir, self.json_path, self.zip_path

    def _check_not_existing(self) -> None:
        for path in self._targets():
            check_writable(path, overwrite=self._overwrite, hint=_OVERWRITE_HINT)

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        # The parent converts category ids in place (and pops "isthing"); give it copies so
        # that other evaluators of the same outputs still see the model's own segments_info.
        copies = []
        for inp, output in zip(inputs, outputs):
            if "panoptic_seg" not in output:
                raise ValueError(
                    f"The model's output for '{inp.get('file_name')}' has no 'panoptic_seg' "
                    f"(keys {sorted(output)}): a panoptic model (e.g. PanopticFPN with "
                    "MODEL.PANOPTIC_FPN.COMBINE.ENABLED) is needed"
                )
            panoptic_seg, segments_info = output["panoptic_seg"]
            if segments_info is not None:
                segments_info = [dict(s) for s in segments_info]
            copies.append({"panoptic_seg": (panoptic_seg, segments_info)})
        super().process(inputs, copies)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Gather every process's predictions and write the submission on the main process.

        Returns:
            ``{"panoptic_submission": {"num_images": N}}`` on the main process, ``{}`` on the
            others (what ``inference_on_dataset`` and ``DatasetEvaluators`` expect).
        """
        comm.synchronize()
        predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
        if not comm.is_main_process():
            return {}
        for key in ("file_name", "image_id"):
            counts = collections.Counter(p[key] for p in predictions)
            duplicates = sorted(str(k) for k, n in counts.items() if n > 1)
            if duplicates:
                raise ValueError(
                    f"Several predictions of '{self._dataset_name}' share the {key}(s) "
                    f"{duplicates[:5]}: each image must be predicted once"
                )
        predictions.sort(key=lambda p: p["image_id"])
        self._write(predictions)
        logger.info(
            "Wrote the COCO panoptic submission of %d images: %s (upload this), %s, %s/",
            len(predictions),
            self.zip_path,
            self.json_path,
            self.png_dir,
        )
        return {"panoptic_submission": {"num_images": float(len(predictions))}}

    def _write(self, predictions: List[Dict]) -> None:
        with PendingOutputs(overwrite=self._overwrite, hint=_OVERWRITE_HINT) as pending:
            # Registered, hence renamed into place, in the order of _targets(): zip last.
            png_dir, json_path, zip_path = (
                Path(pending.directory(self.png_dir)),
                Path(pending.file(self.json_path)),
                Path(pending.file(self.zip_path)),
            )
            annotations = []
            for p in predictions:
                (png_dir / p["file_name"]).write_bytes(p["png_string"])
                annotations.append({k: v for k, v in p.items() if k != "png_string"})
            json_path.write_text(json.dumps({"annotations": annotations}, default=_to_builtin))
            with zipfile.ZipFile(zip_path, "w") as archive:
                archive.write(json_path, f"{self._stem}.json", compress_type=zipfile.ZIP_DEFLATED)
                archive.writestr(zipfile.ZipInfo(f"{self._stem}/"), b"")
                for p in predictions:  # PNGs are compressed already: store them
                    archive.write(png_dir / p["file_name"], f"{self._stem}/{p['file_name']}")


def _to_builtin(value):
    """JSON fallback for numpy / torch scalars in ``segments_info``."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
