"""One way to write outputs without clobbering them: write a temporary sibling, then rename.

Every writer of the project (label converters, panoptic PNG folders, submissions, converted
checkpoints) goes through this module, so they all behave the same way:

* the new output is written to a hidden temporary sibling (same folder, hence the final rename
  is atomic), named ``.partial-<random>-<name>`` so its extension is kept;
* an existing output (a file, or a non-empty folder) is replaced only when ``overwrite=True``;
  otherwise :class:`OutputExistsError` (a ``FileExistsError``) names it and nothing is written;
* if the write fails or is interrupted (any exception, ``KeyboardInterrupt`` included), the
  temporaries and the folders created for them are removed and the previous output is intact;
* several outputs written together (:class:`PendingOutputs`) are renamed into place all or none:
  a replaced output is first moved to a hidden ``.replaced-<random>`` sibling folder and moved
  back if a later rename fails.

This protects against this process failing; files are not ``fsync``-ed, so it promises nothing
about a power cut.

Example::

    with atomic_file("model_final.pth", overwrite=args.overwrite) as tmp:
        torch.save(state, tmp)
"""

import errno
import json
import logging
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

__all__ = [
    "BACKUP_PREFIX",
    "TEMP_PREFIX",
    "OutputExistsError",
    "OutputWriteError",
    "PendingOutputs",
    "atomic_directory",
    "atomic_file",
    "check_writable",
    "explained_write_errors",
    "output_exists",
    "save_torch",
    "write_json",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
TEMP_PREFIX = ".partial-"
BACKUP_PREFIX = ".replaced-"
_DEFAULT_HINT = "Remove it, or pass overwrite=True (--overwrite) to replace it."
_MAX_NAME = 200  # keep temporary names under the usual 255-byte limit


class OutputExistsError(FileExistsError):
    """An output exists and ``overwrite`` is False; ``filename`` is its path."""

    def __init__(self, path: PathLike, message: str):
        super().__init__(message)
        self.filename = os.fspath(path)

    def __str__(self) -> str:
        return self.args[0]


def output_exists(path: PathLike) -> bool:
    """Whether ``path`` is an output that must not be replaced silently: an existing file or
    link, or a non-empty folder (an empty folder counts as absent)."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        return any(p.iterdir())
    return os.path.lexists(p)


def check_writable(path: PathLike, *, overwrite: bool, hint: Optional[str] = None) -> None:
    """Refuse to replace an existing output unless ``overwrite``.

    Args:
        path: the output file or folder.
        overwrite: allow replacing it.
        hint: what the user can do, appended to the message (default: remove it or pass
            ``--overwrite``).
    Raises:
        OutputExistsError: ``path`` exists (see :func:`output_exists`) and ``overwrite`` is False.
    """
    if overwrite or not output_exists(path):
        return
    raise OutputExistsError(
        path, f"Output '{path}' already exists; nothing was written. {hint or _DEFAULT_HINT}"
    )


def _reserve(parent: Path, prefix: str, name: str, is_dir: bool) -> Path:
    """Create an empty file or folder ``parent/<prefix><random>-<name>`` (umask permissions)."""
    name = name[-_MAX_NAME:]
    while True:
        candidate = parent / f"{prefix}{secrets.token_hex(4)}-{name}"
        try:
            if is_dir:
                os.mkdir(candidate)
            else:
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return candidate
        except FileExistsError:
            continue


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


class _Entry:
    def __init__(self, temp: Path, target: Path):
        self.temp = temp
        self.target = target
        self.backup: Optional[Path] = None
        self.placed = False


class PendingOutputs:
    """Outputs written to temporary siblings and renamed into place together on :meth:`commit`.

    Used as a context manager: leaving the block normally commits; leaving it with an exception
    calls :meth:`abort`, which deletes the temporaries and the folders this object created.

    Args:
        overwrite: allow replacing existing outputs.
        hint: appended to the :class:`OutputExistsError` message (see :func:`check_writable`).
    """

    def __init__(self, *, overwrite: bool = False, hint: Optional[str] = None):
        self.overwrite = overwrite
        self._hint = hint
        self._entries: List[_Entry] = []
        self._targets: set = set()
        self._created_dirs: List[Path] = []

    def __len__(self) -> int:
        return len(self._entries)

    def file(self, path: PathLike) -> str:
        """Register output file ``path``; returns the (empty, existing) temporary file to write."""
        return str(self._add(path, is_dir=False))

    def directory(self, path: PathLike) -> str:
        """Register output folder ``path``; returns the (empty) temporary folder to fill."""
        return str(self._add(path, is_dir=True))

    def _add(self, path: PathLike, is_dir: bool) -> Path:
        target = Path(path)
        key = os.path.abspath(target)
        if key in self._targets:
            raise ValueError(f"Output '{target}' is written twice in the same run")
        check_writable(target, overwrite=self.overwrite, hint=self._hint)
        self._make_parents(target.parent)
        temp = _reserve(target.parent, TEMP_PREFIX, target.name, is_dir)
        self._entries.append(_Entry(temp, target))
        self._targets.add(key)
        return temp

    def _make_parents(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            self._created_dirs.append(d)

    def commit(self) -> int:
        """Rename every temporary into place, all or none.

        Returns:
            the number of outputs written.
        Raises:
            OutputExistsError: an output appeared meanwhile and ``overwrite`` is False.
            OSError: a rename failed; the outputs already placed are rolled back.
        """
        backup_dirs: Dict[Path, Path] = {}
        try:
            for e in self._entries:
                if not os.path.lexists(e.temp):
                    raise FileNotFoundError(
                        f"Temporary output '{e.temp}' for '{e.target}' is missing; "
                        f"nothing was replaced"
                    )
                check_writable(e.target, overwrite=self.overwrite, hint=self._hint)
                if os.path.lexists(e.target):
                    parent = e.target.parent
                    if parent not in backup_dirs:
                        backup_dirs[parent] = _reserve(parent, BACKUP_PREFIX, "", is_dir=True)
                    backup = backup_dirs[parent] / e.target.name
                    os.replace(e.target, backup)
                    e.backup = backup
                os.replace(e.temp, e.target)
                e.placed = True
        except BaseException:
            self._roll_back()
            for d in backup_dirs.values():
                try:
                    d.rmdir()  # kept if a previous output could not be restored
                except OSError:
                    pass
            self.abort()
            raise
        for d in backup_dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        n = len(self._entries)
        self._entries, self._targets, self._created_dirs = [], set(), []
        return n

    def _roll_back(self) -> None:
        """Undo a partial commit. A previous output that cannot be restored is left in its
        ``.replaced-*`` folder, which is logged."""
        for e in reversed(self._entries):
            try:
                if e.placed:
                    os.replace(e.target, e.temp)  # removed by abort()
                    e.placed = False
                if e.backup is not None:
                    os.replace(e.backup, e.target)
                    e.backup = None
            except OSError as err:
                logger.error(
                    "Could not restore '%s' after a failed write (%s); the previous output is "
                    "in '%s'",
                    e.target,
                    err,
                    e.backup,
                )

    def abort(self) -> None:
        """Delete the temporaries and the folders created for them (if empty)."""
        for e in self._entries:
            _remove(e.temp)
        for d in reversed(self._created_dirs):
            try:
                d.rmdir()
            except OSError:
                pass  # not empty: something else lives there
        self._entries, self._targets, self._created_dirs = [], set(), []

    def __enter__(self) -> "PendingOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextmanager
def atomic_file(path: PathLike, *, overwrite: bool = False) -> Iterator[str]:
    """Write file ``path`` safely: yields a temporary sibling path to write; on leaving the block
    without an exception it is renamed to ``path``.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False (checked before the block
            runs and again before the rename).
    """
    with explained_write_errors(path), PendingOutputs(overwrite=overwrite) as pending:
        yield pending.file(path)


@contextmanager
def atomic_directory(path: PathLike, *, overwrite: bool = False) -> Iterator[str]:
    """Write folder ``path`` safely: yields an empty temporary sibling folder to fill; on leaving
    the block without an exception it takes the place of ``path``. An existing ``path`` is kept
    until the new folder is in place, then removed.

    Raises:
        OutputExistsError: ``path`` is a non-empty folder (or a file) and ``overwrite`` is False.
    """
    with explained_write_errors(path), PendingOutputs(overwrite=overwrite) as pending:
        yield pending.directory(path)


class OutputWriteError(OSError):
    """An output could not be written because of its file system (full, read-only, no
    permission); the message says which, and that the previous output is unchanged."""

    def __str__(self) -> str:
        return str(self.strerror)


_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
# torch.save reports a failed write as a RuntimeError of its C++ zip writer ("enforce fail at
# inline_container.cc ... file write failed"), without the errno.
_TORCH_WRITE_FAILURE = ("file write failed", "inline_container", "No space left")


def _write_failure(path: PathLike, error: BaseException) -> Optional[str]:
    """What about the file system made writing ``path`` fail, or None if it was not that."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    torch_write = isinstance(error, RuntimeError) and any(
        t in str(error) for t in _TORCH_WRITE_FAILURE
    )
    if code is None and not torch_write:
        return None
    existing = folder
    while existing and not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    free = shutil.disk_usage(existing).free if existing else None
    if code in _NO_SPACE or (torch_write and free is not None and free < 64 * 2**20):
        return f"no space left on the device of '{folder}' ({(free or 0) / 2**20:.1f} MiB free)"
    if code == errno.EROFS:
        return f"'{folder}' is on a read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied in '{folder}'"
    if torch_write:
        return f"the write failed ({str(error).strip().splitlines()[0][:200]})"
    return None


@contextmanager
def explained_write_errors(path: PathLike) -> Iterator[None]:
    """Turn a failed write of ``path`` caused by its file system (full disk, read-only, no
    permission) into an :class:`OutputWriteError` whose message says so and that the previous
    ``path`` (if any) is unchanged; other errors pass unchanged."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if isinstance(e, (OutputWriteError, OutputExistsError)):
            raise
        reason = _write_failure(path, e)
        if reason is None:
            raise
        kept = "the previous file is unchanged" if os.path.lexists(path) else "nothing was written"
        raise OutputWriteError(
            getattr(e, "errno", None) or errno.EIO, f"Cannot write '{path}': {reason}; {kept}"
        ) from e


def write_json(
    obj: Any, path: PathLike, *, overwrite: bool = False, indent: Optional[int] = 2
) -> None:
    """``json.dump`` ``obj`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path, overwrite=overwrite) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=indent)


def save_torch(obj: Any, path: PathLike, *, overwrite: bool = False) -> None:
    """``torch.save`` ``obj`` to ``path`` through :func:`atomic_file`."""
    import torch

    with atomic_file(path, overwrite=overwrite) as tmp:
        torch.save(obj, tmp)
