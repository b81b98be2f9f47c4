"""How well a SegFix model predicts boundaries and directions: boundary precision, recall and
F-score, and the accuracy of the direction on the ground truth's boundary pixels, over a
registered semantic dataset (its labels give the targets, :func:`segfix_targets`)."""

from typing import Dict, List, Optional

import numpy as np

from ..segfix.targets import segfix_targets
from .label_file_evaluator import LabelFileEvaluator

__all__ = ["SegFixEvaluator"]


class SegFixEvaluator(LabelFileEvaluator):
    """From outputs ``{"segfix_boundary": [H, W] probability, "segfix_direction": [8, H, W]}``
    at each label's size: boundary = probability > ``threshold``, counted on the labelled
    pixels against the ground truth's boundary (``MODEL.SEGFIX.MAX_DISTANCE``), and the argmax
    direction against the ground truth's on its boundary pixels.

    ``evaluate()`` returns ``{"segfix": {"boundary_F", "boundary_precision", "boundary_recall",
    "direction_accuracy", "num_images"}}`` in percent (None off the main process).
    """

    def __init__(
        self,
        dataset_name: str,
        max_distance: int = 5,
        threshold: float = 0.5,
        distributed: bool = True,
    ):
        super().__init__(dataset_name, distributed)
        self._max_distance = max_distance
        self._threshold = threshold
        self.reset()

    def reset(self) -> None:
        # true positives, predicted, ground-truth boundary pixels, correct directions, images
        self._counts = np.zeros(5, dtype=np.int64)

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        for record, output in zip(inputs, outputs):
            label = self.label_of(record)
            boundary, direction, _ = segfix_targets(label, self._ignore_label, self._max_distance)
            probability = output["segfix_boundary"].cpu().numpy()
            if probability.shape != label.shape:
                raise ValueError(
                    f"Image '{record['file_name']}': SegFix output {probability.shape} and its "
                    f"label {label.shape} differ in size"
                )
            labelled = boundary != self._ignore_label
            predicted = (probability > self._threshold) & labelled
            truth = boundary == 1
            predicted_direction = output["segfix_direction"].argmax(dim=0).cpu().numpy()
            self._counts += np.array(
                [
                    (predicted & truth).sum(),
                    predicted.sum(),
                    truth.sum(),
                    (truth & (predicted_direction == direction)).sum(),
                    1,
                ]
            )

    def evaluate(self) -> Optional[Dict]:
        counts = self.summed(self._counts)
        if counts is None:
            return None
        tp, predicted, truth, correct, images = (int(c) for c in counts)
        precision = 100.0 * tp / predicted if predicted else float("nan")
        recall = 100.0 * tp / truth if truth else float("nan")
        f_score = (
            2 * precision * recall / (precision + recall) if predicted and truth and tp else 0.0
        )
        return {
            "segfix": {
                "boundary_F": f_score,
                "boundary_precision": precision,
                "boundary_recall": recall,
                "direction_accuracy": 100.0 * correct / truth if truth else float("nan"),
                "num_images": images,
            }
        }
