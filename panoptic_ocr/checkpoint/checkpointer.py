"""Checkpoints that survive a crash, weight files that fail clearly, metrics that stay clean.

:class:`ProjectCheckpointer` is Detectron2's ``DetectionCheckpointer`` with:

* atomic saves: ``model_*.pth`` and ``last_checkpoint`` are written to a hidden temporary sibling
  (:mod:`panoptic_ocr.utils.safe_write`) and renamed into place, so a process killed while saving
  leaves the previous files intact (and, at worst, a ``.partial-*`` file that is never loaded);
* a crash-safe resume: the checkpoint ``last_checkpoint`` names is used; when it does not load
  (or the tag is unreadable) the newest checkpoint that loads is, with a warning naming what was
  skipped. Nothing is deleted;
* safe reading (:mod:`panoptic_ocr.checkpoint.weight_files`): no code in a weight file runs
  unless ``trusted``; one :class:`WeightFileError` for a weight file that is missing, refused,
  truncated, not a checkpoint or of the wrong format, naming the file and which of these it is;
* ``strict=True`` (evaluation, the demo, the exports: :func:`load_inference_weights`): weights
  that do not fill the model exactly (missing or unexpected tensors, another shape, NaN/inf) are
  an :class:`IncompleteWeightsError` naming the keys, instead of Detectron2's fine-tuning
  behaviour (skipped with a warning), which training keeps.

:func:`trim_metrics_for_resume` makes ``metrics.json`` of a resumed run the record of one
uninterrupted run: entries of the iterations that will be trained again are moved to a backup.
"""

import json
import logging
import os
from typing import IO, Any, Dict, List, Optional, Tuple, cast

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.safe_write import TEMP_PREFIX, atomic_file
from .weight_files import (
    WeightFileError,
    check_loaded_state_dict,
    check_weight_file,
    read_weight_file,
)

__all__ = [
    "IncompleteWeightsError",
    "ProjectCheckpointer",
    "WeightFileError",
    "check_weight_file",
    "load_inference_weights",
    "trim_metrics_for_resume",
    "weight_options",
]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"


class ProjectCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves, a resume that falls back past corrupt
    checkpoints, clear weight-file errors and (``strict_shapes``) shape mismatches as errors.

    Attributes:
        resumed_from: the checkpoint :meth:`resume_or_load` resumed from, else ``None``.
        skipped: ``(path, reason)`` of the checkpoints the resume could not use.
    """

    def __init__(
        self, model, save_dir: str = "", *, strict: bool = False, trusted: bool = False, **kwargs
    ):
        super().__init__(model, save_dir, **kwargs)
        self.strict, self.trusted = strict, trusted
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
                torch.save(data, cast(IO[bytes], f))
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
        """Detectron2's file layouts (model-zoo / Caffe2 ``.pkl``, pycls ``.pyth``, torch files),
        read through :func:`~panoptic_ocr.checkpoint.weight_files.read_weight_file`: no code in
        the file runs unless ``trusted``."""
        if filename.endswith(".pkl"):
            loaded = _pkl_checkpoint(filename, read_weight_file(filename, trusted=self.trusted))
        elif filename.endswith(".pyth"):
            data = read_weight_file(filename, trusted=self.trusted)
            if not isinstance(data, dict) or "model_state" not in data:
                raise WeightFileError(
                    filename, "wrong format", "a pycls .pyth checkpoint must hold 'model_state'"
                )
            state = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            loaded = {"model": state, "__author__": "pycls", "matching_heuristics": True}
        else:
            loaded = super()._load_file(filename)  # reads through _torch_load below
        check_loaded_state_dict(filename, loaded)
        return loaded

    def _torch_load(self, f: str) -> Any:
        loaded = read_weight_file(f, trusted=self.trusted)
        if not isinstance(loaded, dict):
            check_loaded_state_dict(f, loaded)  # raises "wrong format", naming what it holds
        return loaded

    def _load_model(self, checkpoint: Any):
        non_finite = _non_finite_tensors(checkpoint.get("model", {}))
        if non_finite:
            message = (
                f"Checkpoint '{self._loading}' holds non-finite values (NaN or inf) in "
                f"{len(non_finite)} tensor(s): "
                + ", ".join(f"'{k}'" for k in non_finite[:5])
                + (" ..." if len(non_finite) > 5 else "")
                + " (a diverged training run, or a damaged file)."
            )
            if self.strict:
                raise IncompleteWeightsError(message + PARTIAL_HINT)
            logger.warning(message)
        incompatible = super()._load_model(checkpoint)
        if self.strict and incompatible is not None:
            self._refuse_incompatible(incompatible)
        return incompatible

    def _refuse_incompatible(self, incompatible) -> None:
        """Raise one error naming the shape mismatches, the missing and the unexpected keys."""
        problems = []
        if incompatible.incorrect_shapes:
            shapes = "; ".join(
                f"'{k}' {tuple(c)} in the file, {tuple(m)} in the model"
                for k, c, m in incompatible.incorrect_shapes[:5]
            )
            # Another class count changes the classifiers' output channels only; another layer
            # width changes the input channels of the layer after it, too.
            class_count = all(
                len(c) == len(m) and tuple(c[1:]) == tuple(m[1:])
                for _, c, m in incompatible.incorrect_shapes
            )
            hint = (
                "A classifier of another size means MODEL.SEM_SEG_HEAD.NUM_CLASSES "
                "(or MODEL.ROI_HEADS.NUM_CLASSES) differs from the checkpoint's; evaluation and "
                "export need the checkpoint's class count (fine-tune with train_net.py to change "
                "it)."
                if class_count
                else "Layers of other widths: the checkpoint was trained with another config "
                "(another head, backbone or channel count); use the config it was trained with "
                "(config.yaml in that training's OUTPUT_DIR)."
            )
            problems.append(
                f"Checkpoint '{self._loading}' does not fit the model: "
                f"{len(incompatible.incorrect_shapes)} tensor(s) differ in shape ({shapes}). "
                + hint
            )
        missing = [k for k in incompatible.missing_keys if not k.endswith("num_batches_tracked")]
        if missing:
            problems.append(
                f"Checkpoint '{self._loading}' does not fill the model: {len(missing)} of its "
                f"{len(self.model.state_dict())} tensors are not in the file "
                f"({_key_list(missing)}); a result from it would come from random weights. "
                "Is it a checkpoint of this config's model "
                "(MODEL.META_ARCHITECTURE, the head, the backbone)?"
            )
        if incompatible.unexpected_keys:
            problems.append(
                f"Checkpoint '{self._loading}' holds {len(incompatible.unexpected_keys)} tensor(s) "
                f"the model does not have ({_key_list(incompatible.unexpected_keys)}): "
                "it was saved from another model or config."
            )
        if problems:
            raise IncompleteWeightsError(" ".join(problems) + PARTIAL_HINT)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume``, load the first checkpoint of :meth:`resume_candidates` that loads
        (the one ``last_checkpoint`` names, else the newest), warning about each one skipped;
        without checkpoints, or without ``resume``, load ``path`` (model weights only), as
        Detectron2 does.

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
                        candidate,
                        ", ".join(f"'{p}'" for p, _ in self.skipped),
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
        """Checkpoints to resume from, in the order they are tried: the one ``last_checkpoint``
        names (the run's own record of its latest state: copying or touching an older file
        does not roll the run back), then, as fallbacks when that one does not load or the tag is
        unreadable, empty or names a missing file (reported in a warning), every other
        ``*.pth`` of ``save_dir``, newest first. Temporaries of interrupted saves
        (``.partial-*``) are never candidates."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        names = os.listdir(self.save_dir)
        files = [
            os.path.join(self.save_dir, n)
            for n in names
            if n.endswith(".pth")
            and not n.startswith(".")
            and os.path.isfile(os.path.join(self.save_dir, n))
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
        files.sort(key=lambda p: (p == named, os.path.getmtime(p), p), reverse=True)
        if named not in files:
            logger.warning("Resume: '%s' is %s; trying the checkpoint files newest first", tag, why)
        else:
            newer = [p for p in files[1:] if os.path.getmtime(p) > os.path.getmtime(named)]
            if newer:
                logger.warning(
                    "Resume: following '%s' to '%s'; %d checkpoint file(s) are newer "
                    "(e.g. '%s': a save whose tag was not updated, or a copied or touched file) "
                    "and are used only if it does not load",
                    tag,
                    named,
                    len(newer),
                    newer[0],
                )
        partial = [n for n in names if n.startswith(TEMP_PREFIX)]
        if partial:
            logger.warning(
                "Resume: ignoring %d temporary file(s) of interrupted saves, e.g. '%s' "
                "(not deleted)",
                len(partial),
                partial[0],
            )
        return files


def load_inference_weights(
    model: torch.nn.Module,
    weights: str,
    *,
    save_dir: str = "",
    resume: bool = False,
    allow_partial: bool = False,
    trusted: bool = False,
) -> None:
    """Load ``weights`` (or, with ``resume``, the checkpoint of ``save_dir`` that
    ``last_checkpoint`` names) into ``model`` for a tool that produces a result (evaluation, the
    demo, the exports, object regions): the weights must fill the model exactly.

    Args:
        allow_partial: load what fits and warn about the rest (``MODEL.WEIGHTS_ALLOW_PARTIAL``,
            ``--allow-partial-weights``), and accept an empty ``weights`` (random weights).
        trusted: read any pickle (``MODEL.WEIGHTS_TRUSTED``): only for files you trust.
    Raises:
        WeightFileError: the weight file is missing, refused, truncated, not a checkpoint or of
            the wrong format.
        IncompleteWeightsError: ``weights`` is empty; or model tensors are missing from the file,
            the file has tensors the model lacks, a shape differs (e.g. another class count) or a
            value is NaN/inf. Nothing is raised for these with ``allow_partial`` (warnings).
    """
    checkpointer = ProjectCheckpointer(
        model, save_dir=save_dir, strict=not allow_partial, trusted=trusted
    )
    if not weights and not (resume and checkpointer.resume_candidates()):
        if not allow_partial:
            raise IncompleteWeightsError(
                "MODEL.WEIGHTS is empty: the model would keep its random initialisation, "
                "and any result of it is meaningless; set MODEL.WEIGHTS to a checkpoint of "
                "this config's model." + PARTIAL_HINT
            )
        logger.warning(
            "MODEL.WEIGHTS is empty: the model is randomly initialised; its outputs are noise"
        )
    checkpointer.resume_or_load(weights, resume=resume)


def weight_options(cfg) -> Dict[str, bool]:
    """``allow_partial`` and ``trusted`` of :func:`load_inference_weights` from ``cfg``
    (``MODEL.WEIGHTS_ALLOW_PARTIAL``, ``MODEL.WEIGHTS_TRUSTED``)."""
    return {
        "allow_partial": bool(cfg.MODEL.WEIGHTS_ALLOW_PARTIAL),
        "trusted": bool(cfg.MODEL.WEIGHTS_TRUSTED),
    }


PARTIAL_HINT = (
    " To use such weights anyway (what fits is loaded, the rest keeps its initialisation), pass "
    "--allow-partial-weights (MODEL.WEIGHTS_ALLOW_PARTIAL True)."
)


class IncompleteWeightsError(ValueError):
    """Weights that do not fill the model exactly, where a result is produced from them."""


def _key_list(keys: List[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _non_finite_tensors(state: Dict[str, Any]) -> List[str]:
    """Names of the floating-point tensors/arrays of ``state`` holding a NaN or an inf."""
    bad = []
    for name, value in state.items():
        tensor = (
            value
            if torch.is_tensor(value)
            else torch.as_tensor(value)
            if hasattr(value, "dtype")
            else None
        )
        if (
            tensor is not None
            and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())
        ):
            bad.append(name)
    return bad


def _pkl_checkpoint(filename: str, data: Any) -> Dict[str, Any]:
    """Detectron2's reading of a ``.pkl`` file's content: model-zoo files (``model`` and
    ``__author__``) as they are; Caffe2/Detectron1 files (``blobs``, or a bare dict of arrays)
    without their ``*_momentum`` entries and with name-matching heuristics."""
    if not isinstance(data, dict):
        raise WeightFileError(
            filename, "wrong format", f"it holds a {type(data).__name__}, not a dict"
        )
    if "model" in data and "__author__" in data:
        logger.info("Reading a file from '%s'", data["__author__"])
        return data
    blobs = data.get("blobs", data)
    if not isinstance(blobs, dict):
        raise WeightFileError(
            filename, "wrong format", f"its 'blobs' is a {type(blobs).__name__}, not a dict"
        )
    model = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    return {"model": model, "__author__": "Caffe2", "matching_heuristics": True}


def trim_metrics_for_resume(
    metrics_file: str, start_iter: int, after_finished_run: bool = False
) -> Optional[str]:
    """Make ``metrics_file`` (Detectron2's ``metrics.json``, one JSON object per line, appended
    to) end before iteration ``start_iter`` of a resumed run: the entries of iterations
    ``>= start_iter`` (trained again after the resume) and an incomplete last line of a killed
    run are copied to ``<metrics_file>.before-resume-<start_iter>[.<n>]``, then cut from the
    file (in place, so that a writer that has it open keeps appending to it).

    With ``after_finished_run`` (resuming from a run's ``model_final``, to train it longer), the
    first entry at ``start_iter`` is kept when it holds no training loss: it is that run's final
    evaluation, written after its last step, of the very weights the resume starts from.

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
            final_evaluation = entry.get("iteration") == start_iter and "total_loss" not in entry
            if not (complete and after_finished_run and final_evaluation):
                cut = offset
                break
            after_finished_run = False  # only the first such entry is the final evaluation
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
        "Resume at iteration %d: cut %d byte(s) of later entries from '%s' "
        "(its full previous content is in '%s')",
        start_iter,
        len(content) - cut,
        metrics_file,
        backup,
    )
    return backup
