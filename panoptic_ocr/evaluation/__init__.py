"""Evaluators of panoptic_ocr: test-set submission writers and Cityscapes' official scoring."""

from .cityscapes_evaluation import CityscapesOfficialSemSegEvaluator, cityscapesscripts_available
from .submission import (
    ADE20KSubmissionWriter,
    CityscapesSubmissionWriter,
    LIPSubmissionWriter,
    SemSegSubmissionWriter,
    build_submission_writer,
)

__all__ = [
    "ADE20KSubmissionWriter",
    "CityscapesOfficialSemSegEvaluator",
    "CityscapesSubmissionWriter",
    "LIPSubmissionWriter",
    "SemSegSubmissionWriter",
    "build_submission_writer",
    "cityscapesscripts_available",
]
