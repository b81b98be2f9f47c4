"""The calling thread's alternate signal stack (``sigaltstack(2)``), kept across native calls.

OpenVINO's CPU plugin installs a signal stack of its own on the thread that loads it and, when
the plugin is released, puts back the one it found. Two compiled models released in the order
they were made leave the first plugin's stack installed after that plugin has freed it; the next
Python signal handler (Ctrl-C, the SIGCHLD of a DataLoader worker or a subprocess that ends) then
kills the process with a segmentation fault that faulthandler cannot report. Wrapping every
call that may load the plugin in :func:`signal_stack_kept` leaves the thread's own stack
installed, so every plugin records, and later puts back, a stack that stays valid.
"""

import contextlib
import ctypes
import sys
from typing import Iterator, Optional, Tuple

__all__ = ["current_signal_stack", "signal_stack_kept"]

_SS_ONSTACK = 1  # <signal.h>: the thread is running on its signal stack now


class _StackT(ctypes.Structure):
    """Linux's ``stack_t``."""

    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


def _sigaltstack():
    """libc's ``sigaltstack``, or None where this module does not handle the platform."""
    if not sys.platform.startswith("linux"):  # stack_t's field order differs elsewhere
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
    function.restype = ctypes.c_int
    return function


def _fields(stack: _StackT) -> Tuple[int, int, int]:
    return stack.ss_sp or 0, stack.ss_flags, stack.ss_size


def _read(sigaltstack) -> Optional[_StackT]:
    stack = _StackT()
    return stack if sigaltstack(None, ctypes.byref(stack)) == 0 else None


def current_signal_stack() -> Optional[Tuple[int, int, int]]:
    """``(address, flags, size)`` of this thread's signal stack (flags 2, SS_DISABLE: none);
    None where it cannot be read (not Linux)."""
    sigaltstack = _sigaltstack()
    stack = _read(sigaltstack) if sigaltstack else None
    return None if stack is None else _fields(stack)


@contextlib.contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Run the block, then put back the signal stack this thread had before it if the block
    replaced it (a no-op where it cannot be read)."""
    sigaltstack = _sigaltstack()
    saved = _read(sigaltstack) if sigaltstack else None
    try:
        yield
    finally:
        now = _read(sigaltstack) if saved is not None else None
        replaced = now is not None and _fields(now) != _fields(saved)
        if replaced and not saved.ss_flags & _SS_ONSTACK:
            sigaltstack(ctypes.byref(saved), None)
