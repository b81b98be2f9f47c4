"""Detectron2's official-script Cityscapes evaluator, reporting under its own key."""

import importlib.util
from typing import Dict

from detectron2.evaluation import CityscapesSemSegEvaluator

__all__ = ["CityscapesOfficialSemSegEvaluator", "cityscapesscripts_available"]


def cityscapesscripts_available() -> bool:
    """Whether ``cityscapesscripts`` (``pip install cityscapesscripts``) can be imported."""
    return importlib.util.find_spec("cityscapesscripts") is not None


class CityscapesOfficialSemSegEvaluator(CityscapesSemSegEvaluator):
    """``CityscapesSemSegEvaluator`` (IoU, iIoU, IoU_sup, iIoU_sup from cityscapesScripts on the
    full-resolution labelIds) with results under ``"cityscapes_sem_seg"``, so that it can run in a
    ``DatasetEvaluators`` beside ``SemSegEvaluator``, which reports under ``"sem_seg"``."""

    def evaluate(self) -> Dict:
        results = super().evaluate()
        return {"cityscapes_sem_seg": results["sem_seg"]} if results else results
