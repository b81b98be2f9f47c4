"""Evaluators of Panoptic-FPN on Cityscapes panoptic beside PQ (``CheckedCOCOPanopticEvaluator``)
and the semantic branch's mIoU (``CheckedSemSegEvaluator`` on the separated labels):

* :class:`CityscapesPanopticSemSegEvaluator`: the 19-class mIoU of the *merged* panoptic output
  (each segment's class, at every pixel), against the release's ``*_gtFine_labelIds.png`` mapped
  to train ids, reported as ``"panoptic_sem_seg"``. A pixel the merge leaves void (no segment)
  counts as wrong for its ground-truth class: it is predicted as an extra "unassigned" class that
  no ground truth holds, so it enters the class's union but never its intersection. (Detectron2's
  ``SemSegEvaluator`` would otherwise drop such pixels.)
* :func:`build_cityscapes_instance_evaluator`: Detectron2's ``CityscapesInstanceEvaluator``
  (cityscapesScripts' instance-level AP and AP50 on ``*_gtFine_instanceIds.png``), after checking
  that cityscapesScripts is installed and that every image has its instance file, scored in a
  temporary folder (:class:`CityscapesInstanceAPEvaluator`).
"""

import os
import tempfile
from typing import Dict, List

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import CityscapesInstanceEvaluator

from ..data.datasets.register_cityscapes import CITYSCAPES_LABEL_ID_TO_TRAIN_ID
from ..data.label_files import LabelLUT, read_label_png
from .checked_evaluators import CheckedSemSegEvaluator, GroundTruthError
from .cityscapes_evaluation import cityscapesscripts_available

__all__ = [
    "CityscapesInstanceAPEvaluator",
    "CityscapesPanopticSemSegEvaluator",
    "build_cityscapes_instance_evaluator",
    "cityscapes_gt_file",
    "panoptic_to_train_ids",
]

UNASSIGNED = "unassigned"  # the extra class of pixels the panoptic merge leaves void
_LABEL_IDS_LUT = LabelLUT.from_dict(
    CITYSCAPES_LABEL_ID_TO_TRAIN_ID, max(CITYSCAPES_LABEL_ID_TO_TRAIN_ID) + 1, "Cityscapes labelIds"
)


def cityscapes_gt_file(gt_dir: str, image_file: str, kind: str) -> str:
    """``<gt_dir>/<city>/<stem>_gtFine_<kind>.png`` of ``.../<city>/<stem>_leftImg8bit.png``."""
    city = os.path.basename(os.path.dirname(image_file))
    stem = os.path.basename(image_file)[: -len("_leftImg8bit.png")]
    return os.path.join(gt_dir, city, f"{stem}_gtFine_{kind}.png")


def _train_ids_of_categories(metadata) -> Dict[bool, Dict[int, int]]:
    """``{isthing: {contiguous id: Cityscapes train id}}`` from the separated id maps."""
    result = {}
    for isthing, key in (
        (True, "thing_dataset_id_to_contiguous_id"),
        (False, "stuff_dataset_id_to_contiguous_id"),
    ):
        result[isthing] = {
            contiguous: CITYSCAPES_LABEL_ID_TO_TRAIN_ID[dataset_id]
            for dataset_id, contiguous in metadata.get(key).items()
            if dataset_id in CITYSCAPES_LABEL_ID_TO_TRAIN_ID
            and CITYSCAPES_LABEL_ID_TO_TRAIN_ID[dataset_id] != 255
        }
    return result


def panoptic_to_train_ids(
    panoptic_seg: torch.Tensor,
    segments_info: List[Dict],
    train_ids: Dict[bool, Dict[int, int]],
    unassigned: int,
) -> torch.Tensor:
    """The ``[H, W]`` train-id map of a Panoptic-FPN output (segment ids ``[H, W]`` and their
    ``segments_info`` with contiguous ``category_id`` and ``isthing``); pixels of no segment are
    ``unassigned``."""
    lut = torch.full((int(panoptic_seg.max()) + 1,), unassigned, dtype=torch.long)
    for segment in segments_info:
        lut[segment["id"]] = train_ids[bool(segment["isthing"])][segment["category_id"]]
    return lut[panoptic_seg.long().clamp(min=0)]


class _LabelsAsScores:
    """A label map ``[H, W]`` in the place of scores ``[C, H, W]``: ``SemSegEvaluator`` reads
    ``output["sem_seg"].argmax(dim=0)``, which is the map itself (no ``[C, H, W]`` tensor is
    built)."""

    def __init__(self, labels: torch.Tensor):
        self._labels = labels

    def argmax(self, dim: int) -> torch.Tensor:
        if dim != 0:
            raise ValueError(f"class dimension is 0, got {dim}")
        return self._labels


class CityscapesPanopticSemSegEvaluator(CheckedSemSegEvaluator):
    """19-class mIoU (and Detectron2's other semantic metrics) of the merged panoptic output
    against ``<gt_dir>/<city>/*_gtFine_labelIds.png`` (see the module docstring); results under
    ``"panoptic_sem_seg"``. The dataset's metadata gives ``gt_dir``, the separated id maps and
    ``ignore_label``; every label is checked as by :class:`CheckedSemSegEvaluator`.

    Raises (from the constructor):
        FileNotFoundError: a labelIds file of the dataset is missing (names it).
    """

    def __init__(self, dataset_name: str, distributed: bool = True):
        # No output_dir: the semantic branch's evaluator writes its files in the same folder.
        super().__init__(dataset_name, distributed=distributed, output_dir=None)
        meta = MetadataCatalog.get(dataset_name)
        self._train_ids = _train_ids_of_categories(meta)
        names = {}
        for isthing, classes in ((True, meta.thing_classes), (False, meta.stuff_classes)):
            for contiguous, train_id in self._train_ids[isthing].items():
                names[train_id] = classes[contiguous]
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"Dataset '{dataset_name}': train ids {sorted(names)} are not 0..N-1")
        self._class_names = [names[i] for i in range(len(names))] + [UNASSIGNED]
        self._num_classes = len(self._class_names)
        self._unassigned = self._num_classes - 1
        self.input_file_to_gt_file = {
            record["file_name"]: cityscapes_gt_file(meta.gt_dir, record["file_name"], "labelIds")
            for record in DatasetCatalog.get(dataset_name)
        }
        missing = [f for f in self.input_file_to_gt_file.values() if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(
                f"Label file '{missing[0]}' of dataset '{dataset_name}' does not exist "
                f"({len(missing)} of {len(self.input_file_to_gt_file)} labelIds files are missing)"
            )
        self.reset()

    def _read_label(self, gt_file: str) -> np.ndarray:
        return _LABEL_IDS_LUT(read_label_png(gt_file), gt_file)

    def _semantic_outputs(self, inputs: List[Dict], outputs: List) -> List:
        converted = []
        for record, output in zip(inputs, outputs):
            if "panoptic_seg" not in output:
                raise GroundTruthError(
                    f"The output for '{record['file_name']}' has no 'panoptic_seg': the merged "
                    "panoptic mIoU needs a panoptic model (MODEL.PANOPTIC_FPN.COMBINE.ENABLED)"
                )
            panoptic_seg, segments_info = output["panoptic_seg"]
            labels = panoptic_to_train_ids(
                panoptic_seg.cpu(), segments_info, self._train_ids, self._unassigned
            )
            converted.append({"sem_seg": _LabelsAsScores(labels)})
        return converted

    def encode_json_sem_seg(self, sem_seg, input_file_name):
        """Nothing: ``SemSegEvaluator`` keeps RLE predictions for a JSON file that this
        evaluator does not write (and whose ids would be the separated ones)."""
        return []

    def evaluate(self):
        results = super().evaluate()
        if not results:
            return results
        metrics = {k: v for k, v in results["sem_seg"].items() if not k.endswith(f"-{UNASSIGNED}")}
        return {"panoptic_sem_seg": metrics}


class CityscapesInstanceAPEvaluator(CityscapesInstanceEvaluator):
    """Detectron2's ``CityscapesInstanceEvaluator`` whose scoring runs in its own temporary
    folder: cityscapesScripts writes a ``matches.json`` into the current directory."""

    def evaluate(self):
        previous = os.getcwd()
        with tempfile.TemporaryDirectory(prefix="cityscapes_instance_eval_") as scratch:
            os.chdir(scratch)
            try:
                return super().evaluate()
            finally:
                os.chdir(previous)


def build_cityscapes_instance_evaluator(dataset_name: str) -> CityscapesInstanceAPEvaluator:
    """A :class:`CityscapesInstanceAPEvaluator` (AP, AP50 under ``"segm"``) for a dataset with
    ``gt_dir`` metadata.

    Raises:
        ImportError: cityscapesScripts is not installed (it computes the AP).
        FileNotFoundError: an image has no ``*_gtFine_instanceIds.png`` (names it).
    """
    if not cityscapesscripts_available():
        raise ImportError(
            f"Dataset '{dataset_name}': Cityscapes instance AP needs cityscapesscripts: "
            "pip install cityscapesscripts (or the [cityscapes] extra of panoptic_ocr)"
        )
    gt_dir = MetadataCatalog.get(dataset_name).gt_dir
    for record in DatasetCatalog.get(dataset_name):
        instance_file = cityscapes_gt_file(gt_dir, record["file_name"], "instanceIds")
        if not os.path.isfile(instance_file):
            raise FileNotFoundError(
                f"Instance file '{instance_file}' of dataset '{dataset_name}' does not exist"
            )
    return CityscapesInstanceAPEvaluator(dataset_name)
