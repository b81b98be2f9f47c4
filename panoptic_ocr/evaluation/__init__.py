"""Evaluators of panoptic_ocr: ground-truth-checking semantic/panoptic evaluators, test-set
submission writers and Cityscapes' official scoring."""

from .boundary_iou import BoundaryIoUEvaluator
from .checked_evaluators import (
    CheckedCOCOPanopticEvaluator,
    CheckedSemSegEvaluator,
    GroundTruthError,
    IncompleteEvaluationError,
)
from .cityscapes_evaluation import CityscapesOfficialSemSegEvaluator, cityscapesscripts_available
from .cityscapes_panoptic_evaluation import (
    CityscapesPanopticSemSegEvaluator,
    build_cityscapes_instance_evaluator,
)
from .panoptic_submission import COCOPanopticSubmissionWriter, submission_name
from .segfix_evaluation import SegFixEvaluator
from .submission import (
    ADE20KSubmissionWriter,
    CityscapesSubmissionWriter,
    LIPSubmissionWriter,
    SemSegSubmissionWriter,
    build_submission_writer,
)

__all__ = [
    "BoundaryIoUEvaluator",
    "SegFixEvaluator",
    "CheckedCOCOPanopticEvaluator",
    "CheckedSemSegEvaluator",
    "GroundTruthError",
    "IncompleteEvaluationError",
    "ADE20KSubmissionWriter",
    "COCOPanopticSubmissionWriter",
    "CityscapesOfficialSemSegEvaluator",
    "CityscapesPanopticSemSegEvaluator",
    "CityscapesSubmissionWriter",
    "LIPSubmissionWriter",
    "SemSegSubmissionWriter",
    "build_cityscapes_instance_evaluator",
    "build_submission_writer",
    "cityscapesscripts_available",
    "submission_name",
]
