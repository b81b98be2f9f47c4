"""A Detectron2/fvcore ``Registry`` whose entries can be registered under a chosen name (the
config value, e.g. ``"ocr"``) instead of the class name."""
from typing import Callable, TypeVar

from detectron2.utils.registry import Registry

__all__ = ["NamedRegistry"]

T = TypeVar("T")


class NamedRegistry(Registry):
    """``Registry`` plus :meth:`register_as`; lookups (``get``, ``in``) are fvcore's."""

    def register_as(self, name: str) -> Callable[[T], T]:
        """Decorator registering its object under ``name`` (a duplicate name is an error)."""

        def deco(obj: T) -> T:
            self._do_register(name, obj)
            return obj

        return deco
