"""Checkpoints that survive a crash, weight files that fail clearly, metrics that stay clean.

:class:`ProjectCheckpointer` is Detectron2's ``DetectionCheckpointer`` with:

* atomic saves: ``model_*.pth`` and ``last_checkpoint`` are written to a hidden temporary sibling
  (:mod:`panoptic_ocr.utils.safe_write`) and renamed into place, so a process killed while saving
  leaves the previous files intact (and, at worst, a ``.partial-*`` file that is never loaded);
* a crash-safe resume: the newest checkpoint that loads is used; an unreadable or outdated
  ``last_checkpoint`` is reported, a corrupt newest checkpoint is skipped with a warning naming
  it, and the next newest is tried. Nothing is deleted;
* one :class:`WeightFileError` for a weight file that is missing, truncated, not a checkpoint or
  of the wrong format, naming the file and which of these it is;
* ``strict_shapes=True`` (evaluation, export): a checkpoint tensor whose shape differs from the
  model's (e.g. a classifier for another class count) is an error instead of Detectron2's
  fine-tuning behaviour (skipped with a warning), which training keeps.

:func:`trim_metrics_for_resume` makes ``metrics.json`` of a resumed run the record of one
uninterrupted run: entries of the iterations that will be trained again are moved to a backup.
"""
import json
import logging
import os
import pickle
import signal
import zipfile
from typing import IO, Any, Dict, List, Optional, Tuple, cast

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm

from ..utils.safe_write import TEMP_PREFIX, atomic_file

__all__ = [
    "FAULT_ENV",
    "ProjectCheckpointer",
    "WeightFileError",
    "check_weight_file",
    "fault_requested",
    "kill_self",
    "load_inference_weights",
    "trim_metrics_for_resume",
]

logger = logging.getLogger(__name__)

# Test-only fault injection: "<point>:<value>[@<rank>]" makes the process SIGKILL itself there.
# Points: "after_iter:<i>" (after iteration i, see hooks.FaultInjectionHook), and for a save of
# checkpoint <name> (e.g. model_0000005): "during_save:<name>" (half the file written),
# "before_rename:<name>" (temporary complete, not renamed), "before_tag:<name>" (renamed,
# last_checkpoint not updated).
FAULT_ENV = "PANOPTIC_OCR_FAULT"

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2_PLUS = b"\x80"
LAST_CHECKPOINT = "last_checkpoint"


def fault_requested(point: str, value: str) -> bool:
    """Whether ``$PANOPTIC_OCR_FAULT`` asks this process (rank) to die at ``point:value``."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return False
    for item in spec.split(","):
        where, _, rank = item.partition("@")
        if where == f"{point}:{value}" and (not rank or int(rank) == comm.get_rank()):
            return True
    return False


def kill_self() -> None:
    """SIGKILL this process (fault injection of the tests): no clean-up, no exit handler runs."""
    logger.warning("%s: killing this process (fault injection)", FAULT_ENV)
    logging.shutdown()
    os.kill(os.getpid(), signal.SIGKILL)


class _KillHalfway:
    """A binary file that SIGKILLs the process once ``limit`` bytes are written (fault tests)."""

    def __init__(self, f: IO[bytes], limit: int):
        self._f, self._limit, self._written = f, limit, 0

    def write(self, data) -> int:
        n = self._f.write(data)
        self._written += n
        if self._written >= self._limit:
            self._f.flush()
            kill_self()
        return n

    def flush(self) -> None:
        self._f.flush()


class WeightFileError(ValueError):
    """A weight file cannot be used. ``path`` is the file; ``kind`` one of :attr:`KINDS`."""

    KINDS = ("missing", "truncated", "not a checkpoint", "wrong format")

    def __init__(self, path: str, kind: str, detail: str):
        assert kind in self.KINDS, kind
        self.path, self.kind = path, kind
        super().__init__(f"Weight file '{path}' is {_KIND_TEXT[kind]}: {detail}")


_KIND_TEXT = {
    "missing": "missing",
    "truncated": "truncated",
    "not a checkpoint": "not a checkpoint",
    "wrong format": "a checkpoint of the wrong format",
}


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
        raise WeightFileError(path, "missing", f"{what} (MODEL.WEIGHTS or the checkpoint named by last_checkpoint)")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if size == 0:
        raise WeightFileError(path, "truncated", "the file is empty (0 bytes)")
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise WeightFileError(
                path, "truncated", f"a torch zip archive of {size} bytes without its end (central directory); "
                "it was probably cut off while being written or copied"
            )
        if error is not None:
            raise WeightFileError(path, "truncated", f"a damaged torch zip archive ({type(error).__name__}: {error})")
        return
    if head.startswith(_PICKLE_PROTOCOL_2_PLUS):
        if isinstance(error, (EOFError, pickle.UnpicklingError)) or (error is not None and "truncated" in str(error)):
            raise WeightFileError(path, "truncated", f"a pickle that ends early ({type(error).__name__}: {error})")
        return
    raise WeightFileError(
        path, "not a checkpoint",
        f"neither a torch checkpoint (zip archive) nor a pickle; its first bytes are {head[:12]!r}",
    )


def _check_loaded(path: str, loaded: Any) -> None:
    """Raise ``WeightFileError("wrong format")`` unless ``loaded["model"]`` maps names to arrays."""
    model = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(model, dict) or not model:
        raise WeightFileError(
            path, "wrong format",
            f"it holds a {type(model if isinstance(loaded, dict) and 'model' in loaded else loaded).__name__} without a state dict (expected a dict with 'model', or a state dict "
            "of tensors, as torch.save(model.state_dict()) writes)",
        )
    bad = [k for k, v in model.items() if not (torch.is_tensor(v) or hasattr(v, "shape"))]
    if bad:
        raise WeightFileError(
            path, "wrong format",
            f"its state dict entry {bad[0]!r} is a {type(model[bad[0]]).__name__}, not a tensor ({len(bad)} such entries)",
        )


class ProjectCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves, a resume that falls back past corrupt
    checkpoints, clear weight-file errors and (``strict_shapes``) shape mismatches as errors.

    Attributes:
        resumed_from: the checkpoint :meth:`resume_or_load` resumed from, else ``None``.
        skipped: ``(path, reason)`` of the checkpoints the resume could not use.
    """

    def __init__(self, model, save_dir: str = "", *, strict_shapes: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.strict_shapes = strict_shapes
        self.resumed_from: Optional[str] = None
        self._loading = ""  # the file being loaded, for messages
        self.skipped: List[Tuple[str, str]] = []

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """As Detectron2's ``save``, but through a temporary sibling renamed into place."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        with atomic_file(save_file, overwrite=True) as tmp:
            with open(tmp, "wb") as f:
                if fault_requested("during_save", name):
                    probe = _CountingWriter()
                    torch.save(data, cast(IO[bytes], probe))
                    torch.save(data, cast(IO[bytes], _KillHalfway(f, probe.size // 2)))
                torch.save(data, cast(IO[bytes], f))
            if fault_requested("before_rename", name):
                kill_self()
        if fault_requested("before_tag", name):
            kill_self()
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Write ``last_checkpoint`` atomically."""
        with atomic_file(os.path.join(self.save_dir, LAST_CHECKPOINT), overwrite=True) as tmp:
            with open(tmp, "w") as f:
                f.write(last_filename_basename)

    # ----------------------------------------------------------------- loading
    def load(self, path: str, *args, **kwargs) -> Dict[str, Any]:
        if path and "://" not in path and not os.path.isfile(path):
            check_weight_file(path)  # raises "missing"
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        except BaseException:
            self._parsed_url_during_load = None  # Detectron2 resets it only after a successful load
            raise

    def _load_file(self, filename: str) -> Dict[str, Any]:
        try:
            loaded = super()._load_file(filename)
        except WeightFileError:
            raise
        except Exception as e:  # torch/pickle raise many types; say what is wrong with the file
            check_weight_file(filename, e)
            raise WeightFileError(filename, "wrong format", f"{type(e).__name__}: {e}") from e
        _check_loaded(filename, loaded)
        return loaded

    def _load_model(self, checkpoint: Any):
        incompatible = super()._load_model(checkpoint)
        if self.strict_shapes and incompatible is not None and incompatible.incorrect_shapes:
            shapes = "; ".join(f"'{k}' {tuple(c)} in the file, {tuple(m)} in the model" for k, c, m in incompatible.incorrect_shapes[:5])
            raise ValueError(
                f"Checkpoint '{self._loading}' does not fit the model: {len(incompatible.incorrect_shapes)} tensor(s) "
                f"differ in shape ({shapes}). A classifier of another size means MODEL.SEM_SEG_HEAD.NUM_CLASSES "
                f"(or MODEL.ROI_HEADS.NUM_CLASSES) differs from the checkpoint's; evaluation and export need the "
                f"checkpoint's class count (fine-tune with train_net.py to change it)"
            )
        return incompatible

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume``, load the newest checkpoint of ``save_dir`` that loads (see
        :meth:`resume_candidates`), warning about each one skipped; without checkpoints, or
        without ``resume``, load ``path`` (model weights only), as Detectron2 does.

        Raises:
            RuntimeError: checkpoints exist but none of them loads (each is named; none is removed).
        """
        self.resumed_from, self.skipped = None, []
        if resume:
            candidates = self.resume_candidates()
            for candidate in candidates:
                try:
                    loaded = self.load(candidate)
                except WeightFileError as e:
                    self.skipped.append((candidate, str(e)))
                    logger.warning("Resume: skipping checkpoint '%s': %s", candidate, e)
                    continue
                if self.skipped:
                    logger.warning(
                        "Resumed from '%s' instead of the newer %s (kept on disk, not deleted)",
                        candidate, ", ".join(f"'{p}'" for p, _ in self.skipped),
                    )
                self.resumed_from = candidate
                return loaded
            if candidates:
                raise RuntimeError(
                    f"--resume: no checkpoint in '{self.save_dir}' loads; tried "
                    + "; ".join(reason for _, reason in self.skipped)
                    + ". Nothing was deleted: move them away to start again from MODEL.WEIGHTS"
                )
        return self.load(path, checkpointables=[])

    def resume_candidates(self) -> List[str]:
        """Checkpoints to resume from, newest first: every ``*.pth`` of ``save_dir`` by
        modification time (saves are atomic, so the newest complete file is the latest state,
        even when the process died before updating ``last_checkpoint``; the file that
        ``last_checkpoint`` names wins a tie). A ``last_checkpoint`` that is unreadable, empty,
        names a missing file or names an older file than the newest is reported in a warning.
        Temporaries of interrupted saves (``.partial-*``) are never candidates."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        names = os.listdir(self.save_dir)
        files = [
            os.path.join(self.save_dir, n)
            for n in names
            if n.endswith(".pth") and not n.startswith(".") and os.path.isfile(os.path.join(self.save_dir, n))
        ]
        if not files:
            return []
        tag = os.path.join(self.save_dir, LAST_CHECKPOINT)
        name, why = "", "missing"
        if os.path.lexists(tag):
            try:
                with open(tag) as f:
                    name = f.read().strip()
                why = "empty" if not name else f"names '{name}', which does not exist"
            except (OSError, UnicodeDecodeError) as e:
                why = f"unreadable ({e})"
        named = os.path.join(self.save_dir, name) if name else None
        files.sort(key=lambda p: (os.path.getmtime(p), p == named, p), reverse=True)
        if named not in files:
            logger.warning("Resume: '%s' is %s; trying the checkpoint files newest first", tag, why)
        elif files[0] != named:
            logger.warning("Resume: '%s' names '%s' but '%s' is newer (its save finished, the tag was not updated)", tag, name, files[0])
        partial = [n for n in names if n.startswith(TEMP_PREFIX)]
        if partial:
            logger.warning("Resume: ignoring %d temporary file(s) of interrupted saves, e.g. '%s' (not deleted)", len(partial), partial[0])
        return files


class _CountingWriter:
    """A write-only sink that counts bytes (the size of a checkpoint, for the fault test)."""

    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def load_inference_weights(model: torch.nn.Module, weights: str, *, save_dir: str = "", resume: bool = False) -> None:
    """Load ``weights`` (or, with ``resume``, the newest checkpoint of ``save_dir`` that loads)
    into ``model`` for evaluation, export or visualisation: a tensor whose shape differs from the
    model's is an error (:class:`ProjectCheckpointer` with ``strict_shapes``).

    Raises:
        WeightFileError: the weight file is missing, truncated, not a checkpoint or of the wrong format.
        ValueError: a checkpoint tensor does not fit the model (e.g. another class count).
    """
    ProjectCheckpointer(model, save_dir=save_dir, strict_shapes=True).resume_or_load(weights, resume=resume)


def trim_metrics_for_resume(metrics_file: str, start_iter: int) -> Optional[str]:
    """Make ``metrics_file`` (Detectron2's ``metrics.json``, one JSON object per line, appended
    to) end before iteration ``start_iter`` of a resumed run: the entries of iterations
    ``>= start_iter`` (trained again after the resume) and an incomplete last line of a killed
    run are copied to ``<metrics_file>.before-resume-<start_iter>[.<n>]``, then cut from the
    file (in place, so that a writer that has it open keeps appending to it).

    Returns:
        the backup's path, or ``None`` when nothing had to be cut.
    """
    if not os.path.isfile(metrics_file):
        return None
    with open(metrics_file, "rb") as f:
        content = f.read()
    offset = 0
    cut = None
    for line in content.splitlines(keepends=True):
        try:
            entry = json.loads(line)
            complete = line.endswith(b"\n") and isinstance(entry, dict)
        except ValueError:
            complete = False
        if line.strip() and (not complete or entry.get("iteration", -1) >= start_iter):
            cut = offset
            break
        offset += len(line)
    if cut is None:
        return None
    backup = f"{metrics_file}.before-resume-{start_iter}"
    n = 1
    while os.path.lexists(backup):
        backup, n = f"{metrics_file}.before-resume-{start_iter}.{n}", n + 1
    with atomic_file(backup) as tmp, open(tmp, "wb") as f:
        f.write(content)
    os.truncate(metrics_file, cut)
    logger.warning(
        "Resume at iteration %d: cut %d byte(s) of later entries from '%s' (its full previous content is in '%s')",
        start_iter, len(content) - cut, metrics_file, backup,
    )
    return backup
