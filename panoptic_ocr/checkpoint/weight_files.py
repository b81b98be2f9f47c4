"""Reading weight files without running code from them.

A pickle can make the reader call any function it names (``os.system`` included), so no weight
file is read with a plain unpickler unless the user says it is trusted:

* ``.pkl`` files (Detectron2's model zoo, Caffe2/Detectron1 blobs, this project's converter
  output) go through :class:`RestrictedUnpickler`, which admits only what those files hold:
  dicts, lists, tuples, strings, numbers, numpy arrays, dtypes and scalars. Any other object is
  refused, naming it, before it is built.
* every other file (``.pth``, ``.pyth``, ...) goes through ``torch.load(weights_only=True)``.
* ``trusted=True`` (``MODEL.WEIGHTS_TRUSTED``, ``--trust-weights``) reads any pickle, with a
  warning: only for files whose source you trust.

:func:`read_weight_file` raises :class:`WeightFileError` whose ``kind`` tells a refused file
(``"refused"``) from a damaged one (``"truncated"``), one that is not a checkpoint, a missing
one and one of the wrong format.
"""

import logging
import os
import pickle
import re
import zipfile
from typing import Any, Optional

import torch

__all__ = [
    "RestrictedUnpickler",
    "WeightFileError",
    "check_loaded_state_dict",
    "check_weight_file",
    "read_weight_file",
]

logger = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2_PLUS = b"\x80"
TRUST_HINT = (
    "if you trust the file's source, load it with MODEL.WEIGHTS_TRUSTED True "
    "(the tools' --trust-weights flag)"
)


class WeightFileError(ValueError):
    """A weight file cannot be used. ``path`` is the file; ``kind`` one of :attr:`KINDS`."""

    KINDS = ("missing", "truncated", "not a checkpoint", "wrong format", "refused")

    def __init__(self, path: str, kind: str, detail: str):
        assert kind in self.KINDS, kind
        self.path, self.kind = path, kind
        super().__init__(f"Weight file '{path}' {_KIND_TEXT[kind]}: {detail}")


_KIND_TEXT = {
    "missing": "is missing",
    "truncated": "is truncated",
    "not a checkpoint": "is not a checkpoint",
    "wrong format": "is a checkpoint of the wrong format",
    "refused": "was refused (nothing in it was run)",
}

# (module, name) of everything a .pkl weight file needs; numpy 1.x and 2.x spell the module
# of the array reconstructor differently. ``_codecs.encode`` turns Python 2 strings (the
# bytes of arrays in Detectron1/Caffe2 files) into bytes.
_ALLOWED_GLOBALS = frozenset(
    [
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    ]
)
# numpy's dtype classes (numpy.dtypes.Float32DType, ...) appear in pickles of numpy >= 1.25.
_NUMPY_DTYPE_CLASS = re.compile(r"^[A-Z][A-Za-z0-9]*DType$")


class RefusedObjectError(pickle.UnpicklingError):
    """The pickle names an object a weight file never needs. ``name``: ``module.qualname``."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"refused object {name}")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, tuples, strings, numbers and numpy arrays,
    dtypes and scalars (what Detectron2's and the converters' ``.pkl`` files hold); any other
    global is refused with :class:`RefusedObjectError` before it is looked up, and persistent
    ids (torch storages) are refused too."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS or (
            module == "numpy.dtypes" and _NUMPY_DTYPE_CLASS.match(name)
        ):
            return super().find_class(module, name)
        raise RefusedObjectError(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedObjectError(
            f"persistent id {str(pid)[:40]!r} (a torch storage; save torch files as .pth)"
        )


def check_weight_file(path: str, error: Optional[BaseException] = None) -> None:
    """Classify why ``path`` cannot be loaded and raise :class:`WeightFileError`; returns when
    nothing is found wrong with the file itself (``error``, the loader's exception, is then
    re-raised by the caller).

    Raises:
        WeightFileError: ``path`` is missing, truncated (a torch zip archive without its end, or
            a pickle that ends early) or not a checkpoint (neither a zip archive nor a pickle).
    """
    if not os.path.isfile(path):
        what = "a folder, not a file" if os.path.isdir(path) else "no such file"
        raise WeightFileError(
            path, "missing", f"{what} (MODEL.WEIGHTS or the checkpoint named by last_checkpoint)"
        )
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if size == 0:
        raise WeightFileError(path, "truncated", "the file is empty (0 bytes)")
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise WeightFileError(
                path,
                "truncated",
                f"a torch zip archive of {size} bytes without its end (central directory); "
                "it was probably cut off while being written or copied",
            )
        if error is not None:
            raise WeightFileError(
                path, "truncated", f"a damaged torch zip archive ({type(error).__name__}: {error})"
            )
        return
    if head.startswith(_PICKLE_PROTOCOL_2_PLUS):
        text = str(error) if error is not None else ""
        if (
            isinstance(error, EOFError)
            or "truncated" in text
            or "Ran out of input" in text
            or isinstance(error, pickle.UnpicklingError)
        ):
            raise WeightFileError(
                path,
                "truncated",
                "a pickle that ends early or is damaged "
                f"({type(error).__name__}: {_first_line(text)})",
            )
        return
    raise WeightFileError(
        path,
        "not a checkpoint",
        f"neither a torch checkpoint (zip archive) nor a pickle; its first bytes are {head[:12]!r}",
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# torch's weights_only refusals name the global: "Unsupported global: GLOBAL os.system ...",
# "unsupported GLOBAL posix.system whose module posix is blocked".
_TORCH_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_weight_file(path: str, *, trusted: bool = False) -> Any:
    """The object a weight file holds, read without running code from it unless ``trusted``.

    ``.pkl``: :class:`RestrictedUnpickler` (``encoding="latin1"``, as Detectron2 reads them);
    other files: ``torch.load(map_location="cpu", weights_only=True)``.

    Raises:
        WeightFileError: ``"refused"`` (it names an object a weight file never needs; nothing was
            run), ``"missing"``, ``"truncated"`` or ``"not a checkpoint"``.
    """
    if not os.path.isfile(path):
        check_weight_file(path)
    if trusted:
        logger.warning(
            "Loading '%s' as a trusted file (MODEL.WEIGHTS_TRUSTED): any code in it runs", path
        )
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                if trusted:
                    return pickle.Unpickler(f, encoding="latin1").load()
                return RestrictedUnpickler(f, encoding="latin1").load()
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except RefusedObjectError as e:
        raise WeightFileError(
            path,
            "refused",
            f"it holds {e.name}, which a weight file never needs (unpickling it could run code); "
            f"{TRUST_HINT}",
        ) from None
    except Exception as e:  # torch and pickle raise many types; say what is wrong with the file
        refused = (
            _TORCH_REFUSED_GLOBAL.search(str(e)) if "Weights only load failed" in str(e) else None
        )
        if refused:
            raise WeightFileError(
                path,
                "refused",
                f"it holds {refused.group(1)}, which torch.load(weights_only=True) does not admit "
                f"(loading it could run code); {TRUST_HINT}",
            ) from None
        check_weight_file(path, e)
        raise WeightFileError(
            path, "wrong format", f"{type(e).__name__}: {_first_line(str(e))}"
        ) from e


def check_loaded_state_dict(path: str, loaded: Any) -> None:
    """Raise ``WeightFileError("wrong format")`` unless ``loaded["model"]`` maps names to arrays
    (``loaded``: what Detectron2's checkpointer made of the file)."""
    model = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(model, dict) or not model:
        held = model if isinstance(loaded, dict) and "model" in loaded else loaded
        raise WeightFileError(
            path,
            "wrong format",
            f"it holds a {type(held).__name__} without a state dict "
            "(expected a dict with 'model', or a state dict "
            "of tensors, as torch.save(model.state_dict()) writes)",
        )
    bad = [k for k, v in model.items() if not (torch.is_tensor(v) or hasattr(v, "shape"))]
    if bad:
        raise WeightFileError(
            path,
            "wrong format",
            f"its state dict entry {bad[0]!r} is a {type(model[bad[0]]).__name__}, "
            f"not a tensor ({len(bad)} such entries)",
        )
