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

A context module is one file (in this package, whose ``__init__`` imports every module, or any
module imported before the config is built): its class, its registration and its config node
with the defaults (:class:`ContextModule`); ``panoptic_ocr.config.add_ocr_config`` collects the
nodes of every registered class (:func:`context_config_nodes`).
"""

import copy
from typing import Any, Dict, List, Mapping, Tuple

from detectron2.config import CfgNode
from torch import nn

from ..named_registry import NamedRegistry

__all__ = [
    "CONTEXT_REGISTRY",
    "FEATURES",
    "REGIONS",
    "TARGETS",
    "ContextModule",
    "context_class",
    "context_config_nodes",
    "build_context",
]

CONTEXT_REGISTRY = NamedRegistry("CONTEXT")
CONTEXT_REGISTRY.__doc__ = """Context modules by name (``MODEL.SEM_SEG_HEAD.CONTEXT``): classes
with ``from_config(cfg, in_channels, norm)`` and the :class:`ContextModule` declarations."""

FEATURES = "features"
REGIONS = "regions"
TARGETS = "targets"
CONSUMED_INPUTS = (FEATURES, REGIONS, TARGETS)
_MISSING = object()


class ContextModule:
    """Declarations of a context module (mixed into an ``nn.Module`` subclass).

    A subclass is built by :meth:`from_config`, which by default passes the config keys its
    :attr:`CONFIG_KEYS` declares.

    Config: a module owning a node ``MODEL.<CONFIG_NODE>`` declares the node's keys and
    defaults in :attr:`CONFIG_DEFAULTS`, a dict literal with a comment above each key saying
    what it does (the config's documentation lives there). ``add_ocr_config`` adds the node of
    every registered class, once per node: classes sharing a node (the OCR variants read
    ``MODEL.OCR``) declare it with equal defaults, best by reusing the owner's dict
    (``CONFIG_DEFAULTS = OCRContext.CONFIG_DEFAULTS``); different defaults are an error naming
    both classes. Keys outside the module's own node (``MODEL.SEM_SEG_HEAD.*``) stay in
    ``panoptic_ocr/config.py``. Example::

        @CONTEXT_REGISTRY.register("my_context")
        class MyContext(ContextModule, nn.Module):
            CONFIG_NODE = "MY_CONTEXT"
            CONFIG_DEFAULTS = {
                # Output channels of the 1x1 conv.
                "CHANNELS": 256,
            }
            CONFIG_KEYS = {"channels": "CHANNELS"}

    Attributes:
        consumes: what the module takes besides the features: :data:`FEATURES` (nothing),
            :data:`REGIONS` (soft object region logits) or :data:`TARGETS` (the labels, also at
            inference: an oracle).
        reads_aux_feature: the module reads the auxiliary feature (stage 3) instead of the main
            one, and the head then has no auxiliary branch (the coarse-only baseline).
        out_channels: channels of the output (set by each instance).
        CONFIG_NODE: the module's own node under ``MODEL`` ("" = none).
        CONFIG_DEFAULTS: that node's keys and their defaults (values yacs accepts).
        CONFIG_KEYS: the constructor's keyword arguments read from the config: argument ->
            key, relative to ``MODEL.<CONFIG_NODE>`` (then one of :attr:`CONFIG_DEFAULTS`) or,
            with dots, a full key such as ``"MODEL.SEM_SEG_HEAD.NUM_CLASSES"``.
    """

    consumes: str = FEATURES
    reads_aux_feature: bool = False
    out_channels: int
    CONFIG_NODE: str = ""
    CONFIG_DEFAULTS: Mapping[str, Any] = {}
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


def _describe(name: str, cls: type) -> str:
    return f"{name!r} ({cls.__module__}.{cls.__qualname__})"


def _declared_node(name: str, cls: type) -> Tuple[str, Mapping[str, Any]]:
    """``(CONFIG_NODE, CONFIG_DEFAULTS)`` of the class registered as ``name``, checked."""
    node = getattr(cls, "CONFIG_NODE", "") or ""
    defaults = getattr(cls, "CONFIG_DEFAULTS", {}) or {}
    if not isinstance(defaults, Mapping):
        raise TypeError(f"context module {_describe(name, cls)}: CONFIG_DEFAULTS must be a dict")
    if defaults and not node:
        raise ValueError(
            f"context module {_describe(name, cls)} declares CONFIG_DEFAULTS but no CONFIG_NODE "
            "(the node MODEL.<CONFIG_NODE> they belong to)"
        )
    if node and not defaults:
        raise ValueError(
            f"context module {_describe(name, cls)} reads MODEL.{node} but declares no "
            f"CONFIG_DEFAULTS for it (reuse its owner's, e.g. OCRContext.CONFIG_DEFAULTS)"
        )
    for arg, key in getattr(cls, "CONFIG_KEYS", {}).items():
        if "." not in key and key not in defaults:
            raise ValueError(
                f"context module {_describe(name, cls)}: CONFIG_KEYS[{arg!r}] is "
                f"MODEL.{node}.{key}, which its CONFIG_DEFAULTS do not declare "
                f"({', '.join(defaults)})"
            )
    return node, defaults


def context_config_nodes() -> Dict[str, Dict[str, Any]]:
    """The config nodes that the registered context modules declare: node name (under
    ``MODEL``) -> a copy of its defaults, each node once, in registration order.

    Raises:
        ValueError: two classes declare one node with different defaults (the message names
            both and the differing keys), or a class's declaration is inconsistent.
    """
    nodes: Dict[str, Dict[str, Any]] = {}
    owners: Dict[str, List[str]] = {}
    for name, cls in CONTEXT_REGISTRY:
        node, defaults = _declared_node(name, cls)
        if not node:
            continue
        if node not in nodes:
            nodes[node], owners[node] = copy.deepcopy(dict(defaults)), [_describe(name, cls)]
            continue
        if dict(defaults) != nodes[node]:
            keys = sorted(set(defaults) | set(nodes[node]))
            diff = [k for k in keys if defaults.get(k, _MISSING) != nodes[node].get(k, _MISSING)]
            raise ValueError(
                f"MODEL.{node} is declared with different defaults by {owners[node][0]} and "
                f"{_describe(name, cls)} (keys {', '.join(diff)}): a shared node needs one "
                "declaration, e.g. CONFIG_DEFAULTS = <owner class>.CONFIG_DEFAULTS"
            )
        owners[node].append(_describe(name, cls))
    return nodes


def context_class(name: str) -> type:
    """The context class registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered names).
        TypeError: the class declares no valid ``consumes``.
    """
    if name not in CONTEXT_REGISTRY:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.CONTEXT is {name!r}; registered context modules: "
            f"{', '.join(CONTEXT_REGISTRY.names())}"
        )
    cls = CONTEXT_REGISTRY.get(name)
    if getattr(cls, "consumes", None) not in CONSUMED_INPUTS:
        raise TypeError(
            f"context module {name!r} must declare `consumes` as one of {CONSUMED_INPUTS}"
        )
    return cls


def build_context(cfg: CfgNode, name: str, in_channels: int, norm: str) -> nn.Module:
    """The context module registered as ``name``, built by its ``from_config`` for an
    ``in_channels`` input normalised with ``norm``."""
    return context_class(name).from_config(cfg, in_channels, norm)
