"""The registry of context modules: the piece between a backbone feature and the classifier
that the paper's comparisons vary (OCR, PPM, ASPP, attention variants, ablations, baselines).

A context module is registered once and built by its own ``from_config(cfg, in_channels,
norm)``. Its class declares what it consumes besides the features, and the heads
(:class:`~panoptic_ocr.modeling.heads.ContextHead`, the Panoptic-FPN context heads) pass
exactly that:

============  ==========================  =====================================================
consumes      call                        what the head provides
============  ==========================  =====================================================
FEATURES      ``context(x)``              nothing else
REGIONS       ``context(x, regions)``     soft object region logits ``[N, K, h, w]``
TARGETS       ``context(x, targets)``     the labels ``[N, H, W]``, in training and inference
============  ==========================  =====================================================

``x`` is ``[N, in_channels, h, w]``; the output is ``[N, out_channels, h, w]``.
"""
from typing import Any, Dict

from detectron2.config import CfgNode
from ..named_registry import NamedRegistry
from torch import nn

__all__ = ["CONTEXT_REGISTRY", "FEATURES", "REGIONS", "TARGETS", "ContextModule", "context_class", "build_context"]

CONTEXT_REGISTRY = NamedRegistry("CONTEXT")
CONTEXT_REGISTRY.__doc__ = """Context modules by name (``MODEL.SEM_SEG_HEAD.CONTEXT``): classes
with ``from_config(cfg, in_channels, norm)`` and the :class:`ContextModule` declarations."""

FEATURES = "features"
REGIONS = "regions"
TARGETS = "targets"
CONSUMED_INPUTS = (FEATURES, REGIONS, TARGETS)


class ContextModule:
    """Declarations of a context module (mixed into an ``nn.Module`` subclass).

    A subclass is built by :meth:`from_config`, which by default passes the config keys its
    :attr:`CONFIG_KEYS` declares.

    Attributes:
        consumes: what the module takes besides the features: :data:`FEATURES` (nothing),
            :data:`REGIONS` (soft object region logits) or :data:`TARGETS` (the labels, also at
            inference: an oracle).
        reads_aux_feature: the module reads the auxiliary feature (stage 3) instead of the main
            one, and the head then has no auxiliary branch (the coarse-only baseline).
        out_channels: channels of the output (set by each instance).
    """

    consumes: str = FEATURES
    reads_aux_feature: bool = False
    out_channels: int
    # The constructor's keyword arguments read from the config: argument -> key, relative to
    # ``MODEL.<CONFIG_NODE>`` or, with dots, a full key such as "MODEL.SEM_SEG_HEAD.NUM_CLASSES".
    CONFIG_NODE: str = ""
    CONFIG_KEYS: Dict[str, str] = {}

    @classmethod
    def config_kwargs(cls, cfg: CfgNode) -> Dict[str, Any]:
        """The keyword arguments that :attr:`CONFIG_KEYS` names, read from ``cfg``."""
        kwargs = {}
        for arg, key in cls.CONFIG_KEYS.items():
            path = key.split(".") if "." in key else ["MODEL", cls.CONFIG_NODE, key]
            node = cfg
            for part in path:
                node = node[part]
            kwargs[arg] = node
        return kwargs

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int, norm: str) -> nn.Module:
        """``cls(in_channels, norm=norm, **config_kwargs(cfg))``; override to add more."""
        return cls(in_channels, norm=norm, **cls.config_kwargs(cfg))


def context_class(name: str) -> type:
    """The context class registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered names).
        TypeError: the class declares no valid ``consumes``.
    """
    if name not in CONTEXT_REGISTRY:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.CONTEXT is {name!r}; registered context modules: "
            f"{', '.join(sorted(n for n, _ in CONTEXT_REGISTRY))}"
        )
    cls = CONTEXT_REGISTRY.get(name)
    if getattr(cls, "consumes", None) not in CONSUMED_INPUTS:
        raise TypeError(f"context module {name!r} must declare `consumes` as one of {CONSUMED_INPUTS}")
    return cls


def build_context(cfg: CfgNode, name: str, in_channels: int, norm: str) -> nn.Module:
    """The context module registered as ``name``, built by its ``from_config`` for an
    ``in_channels`` input normalised with ``norm``."""
    return context_class(name).from_config(cfg, in_channels, norm)
