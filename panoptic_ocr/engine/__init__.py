from .hooks import PanopticSummaryHook, PredictionOverlayHook, RecordingEvalHook
from .trainer import Trainer, build_evaluator, wrap_for_distributed

__all__ = [
    "PanopticSummaryHook",
    "PredictionOverlayHook",
    "RecordingEvalHook",
    "Trainer",
    "build_evaluator",
    "wrap_for_distributed",
]
