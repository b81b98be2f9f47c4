"""The poly LR schedule as a stateless fvcore ``ParamScheduler`` inside Detectron2's
``LRMultiplier``.

Detectron2 DeepLab's ``WarmupPolyLR`` keeps ``max_iters`` in its state dict, so resuming a run
with a larger ``SOLVER.MAX_ITER`` restored the old length and the first iteration past it failed
(``ValueError: math domain error``). ``LRMultiplier``'s state holds only ``base_lrs`` and
``last_epoch``; the schedule itself is rebuilt from the config at every start, so a resumed run
follows the config's ``MAX_ITER``.

The values are those of ``WarmupPolyLR`` for the same config:
``lr(t) = base_lr * warmup(t) * (1 - t / MAX_ITER) ** POLY_LR_POWER`` with Detectron2's warmup
factor (multiplied, not interpolated: Detectron2's ``WarmupParamScheduler`` interpolates towards
the value at the end of the warmup, which would change the warmup LRs), and after the warmup
``max(poly, POLY_LR_CONSTANT_ENDING)`` when ``POLY_LR_CONSTANT_ENDING > 0``.
"""

import torch
from detectron2.solver import LRMultiplier
from detectron2.solver import build_lr_scheduler as build_d2_lr_scheduler
from detectron2.solver.lr_scheduler import _get_warmup_factor_at_iter
from fvcore.common.param_scheduler import ParamScheduler, PolynomialDecayParamScheduler

__all__ = ["WarmupPolyParamScheduler", "build_lr_scheduler"]


class WarmupPolyParamScheduler(ParamScheduler):
    """fvcore's ``PolynomialDecayParamScheduler(1, power)`` times Detectron2's warmup factor, with
    an optional constant ending; ``where`` in ``[0, 1)`` is ``iteration / max_iter``.

    Args:
        power: exponent of the decay (``SOLVER.POLY_LR_POWER``).
        warmup_length: warmup iterations / max_iter (``SOLVER.WARMUP_ITERS / SOLVER.MAX_ITER``).
        warmup_factor: factor at iteration 0 (``SOLVER.WARMUP_FACTOR``).
        warmup_method: "linear" or "constant" (``SOLVER.WARMUP_METHOD``).
        constant_ending: after the warmup the multiplier never drops below this when > 0
            (``SOLVER.POLY_LR_CONSTANT_ENDING``).
    """

    def __init__(
        self,
        power: float,
        warmup_length: float = 0.0,
        warmup_factor: float = 0.001,
        warmup_method: str = "linear",
        constant_ending: float = 0.0,
    ):
        if warmup_method not in ("linear", "constant"):
            raise ValueError(
                f"SOLVER.WARMUP_METHOD must be 'linear' or 'constant', got {warmup_method!r}"
            )
        self._poly = PolynomialDecayParamScheduler(1.0, power)
        self._warmup_length = warmup_length
        self._warmup_factor = warmup_factor
        self._warmup_method = warmup_method
        self._constant_ending = constant_ending

    def __call__(self, where: float) -> float:
        where = min(
            max(where, 0.0), 1.0
        )  # past the end (a run resumed beyond MAX_ITER): 0, not complex
        if self._warmup_length > 0 and where < self._warmup_length:
            # Detectron2's factor at "iteration" where / warmup_length of a 1-iteration warmup.
            factor = _get_warmup_factor_at_iter(
                self._warmup_method, where / self._warmup_length, 1, self._warmup_factor
            )
        else:
            factor = 1.0
        poly = self._poly(where)
        if self._constant_ending > 0 and factor == 1.0 and poly < self._constant_ending:
            return self._constant_ending
        return factor * poly


def build_lr_scheduler(
    cfg, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """``SOLVER.LR_SCHEDULER_NAME`` "WarmupPolyLR": an ``LRMultiplier`` of
    :class:`WarmupPolyParamScheduler` for ``SOLVER.MAX_ITER`` iterations; any other name:
    Detectron2's ``build_lr_scheduler`` (itself ``LRMultiplier``-based)."""
    if cfg.SOLVER.LR_SCHEDULER_NAME != "WarmupPolyLR":
        return build_d2_lr_scheduler(cfg, optimizer)
    max_iter = cfg.SOLVER.MAX_ITER
    if max_iter <= 0:
        raise ValueError(
            f"SOLVER.MAX_ITER must be > 0 for the WarmupPolyLR schedule, got {max_iter}"
        )
    multiplier = WarmupPolyParamScheduler(
        power=cfg.SOLVER.POLY_LR_POWER,
        warmup_length=min(cfg.SOLVER.WARMUP_ITERS / max_iter, 1.0),
        warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
        warmup_method=cfg.SOLVER.WARMUP_METHOD,
        constant_ending=cfg.SOLVER.POLY_LR_CONSTANT_ENDING,
    )
    return LRMultiplier(optimizer, multiplier, max_iter)
