"""Shared test set-up: CPU only, a small thread count, toy data in a per-session folder."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The toy scenes are generated once per test session (a few seconds) into a shared folder,
# unless the caller points DETECTRON2_DATASETS somewhere already.
os.environ.setdefault("DETECTRON2_DATASETS", str(REPO_ROOT / "datasets"))

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import panoptic_ocr  # noqa: E402,F401  (registers everything)
from detectron2.config import get_cfg  # noqa: E402


def make_cfg(config_file: str = None, opts=None):
    """A mutable project config, optionally merged from ``config_file`` (repo-relative) and opts."""
    cfg = get_cfg()
    panoptic_ocr.add_ocr_config(cfg)
    if config_file:
        cfg.merge_from_file(str(REPO_ROOT / config_file))
    if opts:
        cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture
def cfg_factory():
    return make_cfg


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny tensors: one thread is as fast as two and suffers no OpenMP
    barrier stalls when the machine's cores are shared. Use with ``pytestmark``/autouse."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_batchnorm(module: torch.nn.Module, seed: int = 0, spread: float = 0.2) -> None:
    """Give every BatchNorm2d non-trivial statistics and affine parameters, so that code that
    must apply them (a reference computation, BN folding) is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * spread)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * spread)
