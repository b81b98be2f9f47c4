"""A small registry of objects under chosen names (the config values, e.g. ``"ocr"`` or
``"cross_entropy"``), shared by the context modules and the losses. A leaf module: it imports
nothing from the project, Detectron2 or fvcore."""

from typing import Callable, Dict, Generic, Iterator, Tuple, TypeVar

__all__ = ["NamedRegistry"]

T = TypeVar("T")


class NamedRegistry(Generic[T]):
    """Objects by name, in registration order.

    ``@REGISTRY.register("name")`` registers a class or function; ``REGISTRY.get("name")``
    returns it; ``"name" in REGISTRY``, ``len(REGISTRY)`` and ``for name, obj in REGISTRY``
    (pairs, as fvcore's ``Registry``) work as expected.

    Args:
        name: the registry's name, used in error messages (e.g. ``"CONTEXT"``).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._objects: Dict[str, T] = {}

    @property
    def name(self) -> str:
        return self._name

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its object under ``name`` and returning it unchanged.

        Raises:
            TypeError: ``name`` is not a non-empty string (e.g. ``@register`` without a name).
            ValueError: ``name`` is already registered.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{self._name} registry: register(name) needs a non-empty string name, got "
                f'{name!r} (write @register("my_name"))'
            )

        def deco(obj: T) -> T:
            if name in self._objects:
                raise ValueError(
                    f"{name!r} is already registered in the {self._name} registry (by "
                    f"{_describe(self._objects[name])}); cannot register {_describe(obj)} too"
                )
            self._objects[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The object registered as ``name``.

        Raises:
            KeyError: ``name`` is not registered (the message lists the registered names).
        """
        if name not in self._objects:
            raise KeyError(
                f"no object named {name!r} in the {self._name} registry; registered: "
                f"{', '.join(self.names()) or '(none)'}"
            )
        return self._objects[name]

    def names(self) -> Tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._objects))

    def __contains__(self, name: object) -> bool:
        return name in self._objects

    def __iter__(self) -> Iterator[Tuple[str, T]]:
        """``(name, obj)`` pairs in registration order."""
        return iter(list(self._objects.items()))

    def __len__(self) -> int:
        return len(self._objects)

    def __repr__(self) -> str:
        return f"NamedRegistry({self._name!r}, names={list(self.names())})"


def _describe(obj: object) -> str:
    """``module.QualName`` of a class or function, else its repr."""
    qualname = getattr(obj, "__qualname__", None)
    return f"{getattr(obj, '__module__', '?')}.{qualname}" if qualname else repr(obj)
