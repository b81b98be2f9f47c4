"""mmsegmentation's OCRNet-HR48 in its own Python process, driven line by line, so that
``tools/benchmark_runtimes.py`` times the peer in the same rounds as the project's runtimes.

The peer runs ``tools/mmseg_peer_worker.py`` under mmsegmentation's interpreter (its own
virtual environment: ``../shared/notes/peer-timing.md``). It writes the weights it was
initialised with; :func:`convert_peer_weights` maps them onto the project's HRNetV2-W48 + OCR
(the ``mmseg`` converter), so both sides compute the same function on the same image.
"""

import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from detectron2.config import CfgNode
from torch import Tensor

from ..checkpoint.convert import save_checkpoint
from ..checkpoint.released import convert_released, load_released

__all__ = ["PEER_SETTINGS", "PeerCommand", "PeerError", "PeerProcess", "convert_peer_weights"]

# variant name -> the worker's --setting
PEER_SETTINGS = {
    "mmsegmentation float32": "float32",
    "mmsegmentation bfloat16 + channels-last": "bfloat16-channels-last",
}


class PeerError(RuntimeError):
    """The peer process failed to start or to answer; the message holds its stderr's tail."""


@dataclass(frozen=True)
class PeerCommand:
    """How to start the peer: its interpreter and the worker script."""

    python: str
    worker: str


class PeerProcess:
    """One worker process at one setting on one image (``[1, 3, H, W]``, in ``input_format``;
    the worker gets it as BGR). ``peak_mb``: the resident-set growth of its first call (nan
    before it). Use as a context manager; the process is stopped on exit."""

    def __init__(
        self,
        command: PeerCommand,
        setting: str,
        image: Tensor,
        input_format: str,
        threads: int,
        *,
        save_weights: Optional[str] = None,
    ):
        self._tmp = tempfile.TemporaryDirectory()
        self._input = os.path.join(self._tmp.name, "input.npy")
        bgr = image.numpy() if input_format == "BGR" else image.numpy()[:, ::-1]
        np.save(self._input, np.ascontiguousarray(bgr, dtype=np.float32))
        self._stderr = open(os.path.join(self._tmp.name, "stderr.txt"), "w+")
        argv = [command.python, command.worker, "--input", self._input]
        argv += ["--setting", setting, "--threads", str(threads)]
        if save_weights:
            argv += ["--save-weights", save_weights]
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                bufsize=1,
            )
        except OSError as e:
            self.close()
            raise PeerError(f"cannot start the peer ({command.python}): {e}") from e
        self.peak_mb = float("nan")
        self._read_until("ready")

    def _read_until(self, prefix: str) -> str:
        """The first stdout line that starts with ``prefix`` (``peak_mb`` lines are kept, other
        lines of mmseg's logging skipped)."""
        for line in self._process.stdout:
            if line.startswith("peak_mb "):
                self.peak_mb = float(line.split()[1])
            elif line.startswith(prefix):
                return line
        self._process.wait()
        self._stderr.seek(0)
        tail = self._stderr.read()[-3000:]
        raise PeerError(f"the peer exited ({self._process.returncode}) before {prefix!r}:\n{tail}")

    def _send(self, line: str) -> None:
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            self._read_until("\0")  # raises with the peer's stderr

    def run(self) -> float:
        """One prediction; the peer's own wall time in ms."""
        self._send("run")
        return float(self._read_until("ms ").split()[1])

    def logits(self) -> Tensor:
        """``[1, C, H, W]`` float32 logits of one prediction."""
        path = os.path.join(self._tmp.name, "logits.npy")
        self._send(f"logits {path}")
        self._read_until("saved")
        return torch.from_numpy(np.load(path))[None]

    def close(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            try:
                self._send("quit")
                process.stdin.close()
                process.wait(timeout=30)
            except (PeerError, OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        self._stderr.close()
        self._tmp.cleanup()

    def __enter__(self) -> "PeerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def convert_peer_weights(source: str, cfg: CfgNode, output: str) -> int:
    """Map the peer's mmseg checkpoint ``source`` onto ``cfg``'s model (the ``mmseg``
    converter, every tensor checked) and write it to ``output``; returns the tensor count.

    Raises:
        panoptic_ocr.checkpoint.convert.ConversionError: ``cfg`` is not the peer's
            architecture (HRNetV2-W48 + OCR, 19 classes).
    """
    with tempfile.TemporaryDirectory() as tmp:
        config_file = os.path.join(tmp, "config.yaml")
        with open(config_file, "w") as f:
            f.write(cfg.dump())
        converted, _, _ = convert_released("mmseg", load_released(source), config_file=config_file)
    save_checkpoint(converted, output, "mmsegmentation peer (random init), panoptic_ocr")
    return len(converted)
