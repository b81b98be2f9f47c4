"""Adapt a config to the machine it runs on (CPU-only machines, CPU multi-process runs)."""
import logging

import torch
from detectron2.config import CfgNode

__all__ = ["adapt_config_to_device"]

logger = logging.getLogger(__name__)


def _norm_keys(cfg: CfgNode, prefix: str = ""):
    for key, value in cfg.items():
        if isinstance(value, CfgNode):
            yield from _norm_keys(value, f"{prefix}{key}.")
        elif key == "NORM" and isinstance(value, str):
            yield cfg, key, f"{prefix}{key}"


def adapt_config_to_device(cfg: CfgNode) -> CfgNode:
    """Make ``cfg`` runnable here, logging every change.

    - ``MODEL.DEVICE`` "cuda" on a machine without CUDA becomes "cpu".
    - On CPU, every ``*.NORM`` "SyncBN" becomes "naiveSyncBN": PyTorch's SyncBatchNorm only
      runs on CUDA, while Detectron2's NaiveSyncBatchNorm all-reduces through any backend
      (gloo included) and equals BN in a single process.
    """
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %r but CUDA is not available: using 'cpu'", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.DEVICE == "cpu":
        for node, key, full_key in _norm_keys(cfg):
            if node[key] == "SyncBN":
                logger.info("%s: SyncBN needs CUDA; using naiveSyncBN on CPU", full_key)
                node[key] = "naiveSyncBN"
    if was_frozen:
        cfg.freeze()
    return cfg
