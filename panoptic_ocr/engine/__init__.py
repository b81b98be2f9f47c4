from .device import adapt_config_to_device
from .hooks import PanopticSummaryHook, PredictionOverlayHook, RecordingEvalHook
from .trainer import Trainer, build_evaluator, wrap_for_distributed
