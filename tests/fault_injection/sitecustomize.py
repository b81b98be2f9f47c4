"""Fault injection for the tests' training subprocesses: SIGKILL at a chosen point.

A test puts this folder first on a subprocess's ``PYTHONPATH`` and sets ``$PANOPTIC_OCR_FAULT``
(see :func:`fault_injection.environment`); Python imports this module at start-up, in that
process and in the worker processes that Detectron2's ``launch`` spawns (they inherit the
environment). Without the variable nothing happens. With it, an import hook patches, in this
process only and once they are imported, ``panoptic_ocr.engine.trainer.Trainer.build_hooks``
(a last hook that kills after an iteration) and ``ProjectCheckpointer`` of
``panoptic_ocr.checkpoint.checkpointer`` (kills during a save).

``$PANOPTIC_OCR_FAULT`` is ``<point>:<value>[@<rank>]`` (several: comma-separated); the rank
defaults to every process. Points, for a checkpoint ``<name>`` such as ``model_0000014``:

* ``after_iter:<i>``: after iteration ``i``, once every other hook (the checkpointer too) ran;
* ``during_save:<name>``: when half of the checkpoint's temporary file is written;
* ``before_rename:<name>``: the temporary file complete, not yet renamed into place;
* ``before_tag:<name>``: the checkpoint in place, ``last_checkpoint`` not updated.

Just before the kill, ``fault injection: <point>:<value>`` is written to stderr.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import signal
import sys
from typing import Callable, Dict, Optional

ENV = "PANOPTIC_OCR_FAULT"
MESSAGE = "fault injection: {}"  # fault_injection.killed_at


def requested(point: str, value: str) -> bool:
    """Whether ``$PANOPTIC_OCR_FAULT`` asks this process (rank) to die at ``point:value``."""
    for item in filter(None, os.environ.get(ENV, "").split(",")):
        where, _, rank = item.partition("@")
        if where == f"{point}:{value}" and (not rank or int(rank) == _rank()):
            return True
    return False


def _rank() -> int:
    from detectron2.utils import comm

    return comm.get_rank()


def kill(fault: str) -> None:
    """SIGKILL this process at ``fault`` (``<point>:<value>``): no clean-up, no exit handler;
    the logs are flushed first."""
    logging.shutdown()
    sys.stderr.write(MESSAGE.format(fault) + "\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _KillHalfway:
    """A binary file that SIGKILLs the process once ``limit`` bytes are written."""

    def __init__(self, f, limit: int, fault: str):
        self._f, self._limit, self._written, self._fault = f, limit, 0, fault

    def write(self, data) -> int:
        n = self._f.write(data)
        self._written += n
        if self._written >= self._limit:
            self._f.flush()
            kill(self._fault)
        return n

    def flush(self) -> None:
        self._f.flush()


class _CountingSink:
    """A write-only sink that counts bytes (the size the checkpoint will have)."""

    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _patch_trainer(module) -> None:
    """``Trainer.build_hooks`` + a last hook that kills after iteration ``after_iter:<i>``."""
    from detectron2.engine import HookBase

    class KillAfterIteration(HookBase):
        def after_step(self):
            if requested("after_iter", str(self.trainer.iter)):
                kill(f"after_iter:{self.trainer.iter}")

    build_hooks = module.Trainer.build_hooks

    def build_hooks_then_kill(self):
        return [*build_hooks(self), KillAfterIteration()]

    module.Trainer.build_hooks = build_hooks_then_kill


def _patch_checkpointer(module) -> None:
    """``ProjectCheckpointer.save``: ``torch.save`` replaced while saving a checkpoint named by
    ``during_save``/``before_rename``; ``tag_last_checkpoint``: kill first for ``before_tag``."""
    from unittest import mock

    import torch

    cls = module.ProjectCheckpointer
    save, tag_last_checkpoint = cls.save, cls.tag_last_checkpoint
    torch_save = torch.save

    def save_halfway(fault: str) -> Callable:
        def torch_save_halfway(obj, f, *args, **kwargs):
            sink = _CountingSink()
            torch_save(obj, sink, *args, **kwargs)
            with _open(f) as out:
                torch_save(obj, _KillHalfway(out, sink.size // 2, fault), *args, **kwargs)

        return torch_save_halfway

    def save_completely(fault: str) -> Callable:
        def torch_save_then_kill(obj, f, *args, **kwargs):
            with _open(f) as out:
                torch_save(obj, out, *args, **kwargs)
                out.flush()
                kill(fault)

        return torch_save_then_kill

    faulty_saves = [("during_save", save_halfway), ("before_rename", save_completely)]

    def faulty_save(self, name: str, **kwargs):
        for point, torch_save_for in faulty_saves:
            if requested(point, name):
                with mock.patch.object(torch, "save", torch_save_for(f"{point}:{name}")):
                    return save(self, name, **kwargs)
        return save(self, name, **kwargs)

    def faulty_tag(self, last_filename_basename: str):
        name = os.path.splitext(last_filename_basename)[0]
        if requested("before_tag", name):
            kill(f"before_tag:{name}")
        return tag_last_checkpoint(self, last_filename_basename)

    cls.save, cls.tag_last_checkpoint = faulty_save, faulty_tag


class _Unclosed:
    """An open file given to ``torch.save``, as a context manager that leaves it open."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self.f

    def __exit__(self, *exc) -> None:
        self.f.flush()


def _open(f):
    return open(f, "wb") if isinstance(f, (str, os.PathLike)) else _Unclosed(f)


class _PatchingLoader(importlib.abc.Loader):
    """A module's own loader, then ``patch(module)``."""

    def __init__(self, loader, patch: Callable):
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the modules of ``patches`` with the other finders and patches them once loaded."""

    def __init__(self, patches: Dict[str, Callable]):
        self._patches = dict(patches)

    def find_spec(self, fullname, path, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in self._patches:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, self._patches.pop(fullname))
                return spec
        return None


def _chain_next_sitecustomize() -> None:
    """Run the ``sitecustomize`` this module hides (one later on ``sys.path``), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if os.environ.get(ENV):
    sys.meta_path.insert(
        0,
        _PatchOnImport(
            {
                "panoptic_ocr.engine.trainer": _patch_trainer,
                "panoptic_ocr.checkpoint.checkpointer": _patch_checkpointer,
            }
        ),
    )
_chain_next_sitecustomize()
