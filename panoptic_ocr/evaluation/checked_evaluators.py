"""Detectron2's semantic and COCO panoptic evaluators, with the ground-truth checks of training.

Every ground-truth file an evaluator reads is checked before it counts towards a metric, so a
bad file stops the evaluation with an error naming it (and, being raised in ``process``, before
``evaluate`` writes any metric):

* :class:`CheckedSemSegEvaluator`: at construction, every label file of the dataset exists; per
  image, the label is single-channel, has the image's size and holds only class ids in
  ``[0, len(stuff_classes))`` or the ignore value (the mapper's
  :func:`~panoptic_ocr.data.dataset_mappers.semantic_dataset_mapper.check_label_values`).
  Without it, a label of another size died in numpy's ``operands could not be broadcast together``
  and a value of 200 in a 150-class label silently gave a wrong mIoU. At ``evaluate``, every image
  of the dataset must have been evaluated: ``results["sem_seg"]["num_images"]``, the distinct
  images of all processes, must equal the dataset's number of distinct images
  (``len(DatasetCatalog.get(name))`` when no image is listed twice), or no metric is returned.
* :class:`CheckedCOCOPanopticEvaluator`: at construction, the panoptic JSON's segments (unique
  ids, known categories: the COCO panoptic loader's
  :func:`~panoptic_ocr.data.datasets.register_coco_panoptic.check_panoptic_segments`); per image,
  its annotation exists, its PNG exists, has the image's size and holds exactly the segment ids of
  its ``segments_info``. The model's outputs are left as they were (Detectron2's evaluator
  rewrites their ``segments_info`` in place), so evaluators after it read the same outputs.
"""

import os
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOPanopticEvaluator, SemSegEvaluator
from detectron2.utils.comm import all_gather, synchronize

from ..data.dataset_mappers.semantic_dataset_mapper import read_semantic_label
from ..data.datasets.register_coco_panoptic import (
    check_panoptic_ids,
    check_panoptic_segments,
    read_panoptic_json,
    read_panoptic_png,
)

__all__ = [
    "CheckedCOCOPanopticEvaluator",
    "CheckedSemSegEvaluator",
    "GroundTruthError",
    "IncompleteEvaluationError",
]


class GroundTruthError(ValueError):
    """A ground-truth file read at evaluation is missing or invalid; the message names it."""


class IncompleteEvaluationError(RuntimeError):
    """An evaluator saw fewer (or other) images than its dataset lists; no metric is returned."""


def _size_error(
    what: str, gt_file: str, gt_shape: Tuple[int, int], image: str, height: int, width: int
) -> GroundTruthError:
    return GroundTruthError(
        f"{what} '{gt_file}' is {gt_shape[1]}x{gt_shape[0]} but its image '{image}' is "
        f"{width}x{height} (WxH)"
    )


class CheckedSemSegEvaluator(SemSegEvaluator):
    """``SemSegEvaluator`` that checks every label it reads (see the module docstring).

    Raises (from the constructor):
        FileNotFoundError: a label file of the dataset is missing (names it and how many are).
    Raises (from ``evaluate``, before any metric is written):
        IncompleteEvaluationError: the number of distinct images evaluated (all processes) is
            not the dataset's length.
    """

    def __init__(self, dataset_name: str, distributed: bool = True, output_dir: str = None):
        self._checked: Dict[str, np.ndarray] = {}
        self._evaluated: Set[str] = set()
        super().__init__(
            dataset_name,
            distributed=distributed,
            output_dir=output_dir,
            sem_seg_loading_fn=self._checked_label,
        )
        # The dataset's distinct images (DatasetCatalog.get(name) was read by the constructor
        # above).
        self._dataset_length = len(self.input_file_to_gt_file)
        missing = [f for f in self.input_file_to_gt_file.values() if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(
                f"Label file '{missing[0]}' of dataset '{dataset_name}' does not exist "
                f"({len(missing)} of {len(self.input_file_to_gt_file)} label files are missing)"
            )

    def _checked_label(self, file_name: str, dtype=int) -> np.ndarray:
        return self._checked.pop(file_name).astype(dtype)

    def process(self, inputs: List[Dict], outputs: List) -> None:
        """Check the labels of ``inputs`` (size against the input's ``height``/``width``, values),
        then count them as ``SemSegEvaluator`` does."""
        try:
            for record in inputs:
                gt_file = self.input_file_to_gt_file.get(record["file_name"])
                if gt_file is None:
                    raise GroundTruthError(
                        f"Image '{record['file_name']}' has no label in dataset "
                        f"'{self._dataset_name}'"
                    )
                label = self._read_label(gt_file)
                if label.shape != (record["height"], record["width"]):
                    raise _size_error(
                        "Label file",
                        gt_file,
                        label.shape,
                        record["file_name"],
                        record["height"],
                        record["width"],
                    )
                self._checked[gt_file] = label
            super().process(inputs, self._semantic_outputs(inputs, outputs))
            self._evaluated.update(record["file_name"] for record in inputs)
        finally:
            self._checked.clear()

    def _read_label(self, gt_file: str) -> np.ndarray:
        """The checked ``[H, W]`` label of ``gt_file``: class ids or the ignore value."""
        return read_semantic_label(gt_file, self._num_classes, self._ignore_label)

    def _semantic_outputs(self, inputs: List[Dict], outputs: List) -> List:
        """What ``SemSegEvaluator.process`` scores: dicts with ``"sem_seg"`` scores
        ``[C, H, W]`` (the model's outputs here; a subclass may derive them)."""
        return outputs

    def reset(self) -> None:
        super().reset()
        self._evaluated = set()

    def evaluate(self) -> Optional[Dict]:
        """``SemSegEvaluator``'s results (``None`` off the main process) with
        ``results["sem_seg"]["num_images"]``, the distinct images evaluated by all processes.

        Raises:
            IncompleteEvaluationError: that number is not the dataset's length (every process
                raises, before any metric file is written).
        """
        evaluated = self._evaluated
        if self._distributed:
            synchronize()
            evaluated = set().union(*all_gather(self._evaluated))
        num_images = len(evaluated)
        self._logger.info(
            "Dataset '%s': %d of its %d images evaluated",
            self._dataset_name,
            num_images,
            self._dataset_length,
        )
        if num_images != self._dataset_length:
            raise self._count_error(evaluated)
        results = super().evaluate()
        if results is not None:
            results["sem_seg"]["num_images"] = num_images
        return results

    def _count_error(self, evaluated: Set[str]) -> IncompleteEvaluationError:
        missing = sorted(set(self.input_file_to_gt_file) - evaluated)
        unlisted = sorted(evaluated - set(self.input_file_to_gt_file))
        details = []
        if missing:
            details.append(
                f"{len(missing)} listed image(s) were not evaluated, e.g. '{missing[0]}'"
            )
        if unlisted:
            details.append(
                f"{len(unlisted)} evaluated image(s) are not in the dataset, e.g. '{unlisted[0]}'"
            )
        return IncompleteEvaluationError(
            f"Dataset '{self._dataset_name}': {len(evaluated)} distinct image(s) were evaluated "
            "but "
            f"the dataset has {self._dataset_length} ({'; '.join(details)}); a metric over part of "
            "a dataset is not its metric, so none is returned. Evaluate the whole dataset (every "
            "record of DatasetCatalog.get(name), once)"
        )


class CheckedCOCOPanopticEvaluator(COCOPanopticEvaluator):
    """``COCOPanopticEvaluator`` that checks the panoptic ground truth (see the module docstring).

    Raises (from the constructor):
        FileNotFoundError: the panoptic JSON is missing.
        ValueError: a segment of the JSON is invalid (names the JSON, image, segment, category).
    """

    def __init__(self, dataset_name: str, output_dir: str = None):
        super().__init__(dataset_name, output_dir)
        meta = MetadataCatalog.get(dataset_name)
        self._gt_json = meta.panoptic_json
        self._gt_root = meta.panoptic_root
        data = read_panoptic_json(self._gt_json)
        check_panoptic_segments(data, self._gt_json, meta.as_dict())
        self._gt_annotations = {ann["image_id"]: ann for ann in data["annotations"]}

    def process(self, inputs: List[Dict], outputs: List) -> None:
        for record in inputs:
            ann = self._gt_annotations.get(record["image_id"])
            if ann is None:
                raise GroundTruthError(
                    f"Image '{record['file_name']}' (image id {record['image_id']}) "
                    f"has no annotation in '{self._gt_json}'"
                )
            png = os.path.join(self._gt_root, ann["file_name"])
            if not os.path.isfile(png):
                raise FileNotFoundError(
                    f"Panoptic PNG '{png}' listed in '{self._gt_json}' does not exist"
                )
            ids = read_panoptic_png(png)
            if ids.shape != (record["height"], record["width"]):
                raise _size_error(
                    "Panoptic PNG",
                    png,
                    ids.shape,
                    record["file_name"],
                    record["height"],
                    record["width"],
                )
            check_panoptic_ids(np.unique(ids), ann["segments_info"], png)
        # Detectron2's process converts each segment's category id in place and pops its
        # "isthing": give it copies, so that the evaluators after it see the model's output.
        copies = []
        for output in outputs:
            panoptic_seg, segments_info = output["panoptic_seg"]
            if segments_info is not None:
                segments_info = [dict(s) for s in segments_info]
            copies.append(dict(output, panoptic_seg=(panoptic_seg, segments_info)))
        super().process(inputs, copies)
