"""panoptic_ocr.export.signal_stack: OpenVINO models released in the order they were made leave
the thread's signal stack valid, so a later Python signal handler runs instead of the process
dying silently (the crash a make test worker met after the OpenVINO tests, at the SIGCHLD of a
DataLoader worker or a subprocess)."""

import ctypes
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from panoptic_ocr.export.signal_stack import current_signal_stack, signal_stack_kept

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="sigaltstack is handled on Linux only"
)


class _Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]


def _install(buffer) -> None:
    stack = _Stack(ctypes.addressof(buffer), 0, ctypes.sizeof(buffer))
    assert ctypes.CDLL(None).sigaltstack(ctypes.byref(stack), None) == 0


def test_a_stack_replaced_inside_the_block_is_put_back():
    before = current_signal_stack()
    buffer = ctypes.create_string_buffer(64 * 1024)
    with signal_stack_kept():
        _install(buffer)
        assert current_signal_stack() == (ctypes.addressof(buffer), 0, 64 * 1024)
    assert current_signal_stack() == before
    with signal_stack_kept():
        pass
    assert current_signal_stack() == before


# Two compiled models released in creation order, then a Python signal handler. Without the
# fix this process dies of SIGSEGV at the kill (the first plugin's freed stack is installed).
_SCRIPT = r"""
import faulthandler, gc, os, signal, sys
import numpy as np
import openvino as ov
import openvino.opset13 as ops
from panoptic_ocr.export.runtimes import _openvino_model
from panoptic_ocr.export.signal_stack import current_signal_stack

faulthandler.enable()  # installs a signal stack, as pytest does
path = sys.argv[1]
image = ops.parameter([1, 3, 8, 8], np.float32)
ov.save_model(ov.Model([ops.relu(image)], [image]), path)
start = current_signal_stack()
first = _openvino_model(path, 1, "f32")
second = _openvino_model(path, 1, "f32")
assert float(first(np.ones((1, 3, 8, 8), np.float32)).sum()) == 192.0
del first
gc.collect()
del second
gc.collect()
assert current_signal_stack() == start, (current_signal_stack(), start)
signal.signal(signal.SIGUSR1, lambda *_: print("handler ran"))
os.kill(os.getpid(), signal.SIGUSR1)
print("alive")
"""


def test_openvino_models_released_in_creation_order_leave_a_valid_signal_stack(tmp_path):
    pytest.importorskip("openvino")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "relu.xml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["handler", "ran", "alive"]
