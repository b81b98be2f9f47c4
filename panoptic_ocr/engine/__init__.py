from .device import adapt_config_to_device
from .trainer import Trainer, build_evaluator
