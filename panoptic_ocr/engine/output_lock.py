"""One run per output folder.

Two runs writing one ``OUTPUT_DIR`` mix their checkpoints, ``metrics.json`` and ``log.txt``
without either failing. :class:`OutputDirLock` makes the second refuse to start: the first run
creates ``OUTPUT_DIR/run.lock`` (atomically, with its pid, host and command) and removes it when
it ends. A lock whose holder is a dead process of this host (a run killed with ``kill -9``) is
taken over with a warning; a lock of another host cannot be checked and is refused.
"""

import json
import logging
import os
import socket
import sys
import time
from typing import Dict, Optional

__all__ = ["LOCK_NAME", "OutputDirLock", "OutputDirLockedError", "OutputDirNotWritableError"]

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class OutputDirLockedError(RuntimeError):
    """Another run holds the output folder."""


class OutputDirNotWritableError(OSError):
    """The output folder cannot be created or written."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class OutputDirLock:
    """``with OutputDirLock(output_dir): ...`` holds ``output_dir/run.lock`` for the block.

    Raises (on entering):
        OutputDirLockedError: a live process (or a process of another host) holds the lock;
            the message names its pid, host, start time and command.
        OutputDirNotWritableError: ``output_dir`` cannot be created or written (read-only
            file system, permissions, no space), before anything else is written.
    """

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_NAME)
        self._held = False

    def _record(self) -> Dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }

    def _holder(self) -> Optional[Dict]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: treated as a lock of unknown holder

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._record(), f)
        return True

    def acquire(self) -> None:
        try:
            os.makedirs(self.output_dir, exist_ok=True)
            if self._create():
                self._held = True
                return
        except OSError as e:
            raise OutputDirNotWritableError(
                f"OUTPUT_DIR '{self.output_dir}' cannot be written ({e.strerror or e}): "
                "choose a writable folder with OUTPUT_DIR"
            ) from e
        holder = self._holder()
        if holder is None:  # released between our attempt and the read
            return self.acquire()
        host, pid = holder.get("host"), holder.get("pid")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            logger.warning(
                "OUTPUT_DIR '%s': taking over the lock of process %d (started %s), "
                "which is no longer running",
                self.output_dir,
                pid,
                holder.get("started", "?"),
            )
            os.replace(self._write_temp(), self.path)
            self._held = True
            return
        who = (
            f"process {pid} on host '{host}', started {holder.get('started', '?')}: "
            f"{holder.get('command', '?')}"
            if holder
            else "an unreadable lock file"
        )
        raise OutputDirLockedError(
            f"OUTPUT_DIR '{self.output_dir}' is in use by another run ({who}). "
            "Two runs in one folder "
            f"overwrite each other's checkpoints and metrics: pass another OUTPUT_DIR, "
            "or wait for that run; "
            f"if it is not running any more (e.g. it ran on another host), delete '{self.path}'"
        )

    def _write_temp(self) -> str:
        temp = f"{self.path}.{os.getpid()}.tmp"
        with open(temp, "w") as f:
            json.dump(self._record(), f)
        return temp

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        holder = self._holder()
        if (
            holder
            and holder.get("pid") == os.getpid()
            and holder.get("host") == socket.gethostname()
        ):
            os.remove(self.path)

    def __enter__(self) -> "OutputDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
