"""The tests' fault injection: :func:`environment` for a subprocess that may SIGKILL itself.

The machinery is ``sitecustomize.py`` of this folder (not imported here, so the test process
itself is never patched); its docstring lists the points.
"""

import os
from pathlib import Path
from typing import Dict, Mapping, Optional

__all__ = ["ENV", "FOLDER", "environment", "killed_at"]

ENV = "PANOPTIC_OCR_FAULT"
FOLDER = Path(__file__).resolve().parent


def environment(
    fault: Optional[str] = None, base: Optional[Mapping[str, str]] = None
) -> Dict[str, str]:
    """``base`` (default: ``os.environ``) with this folder first on ``PYTHONPATH`` and
    ``$PANOPTIC_OCR_FAULT`` set to ``fault`` (``<point>:<value>[@<rank>]``), or removed."""
    env = dict(os.environ if base is None else base)
    env.pop(ENV, None)
    if fault:
        env[ENV] = fault
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FOLDER), env.get("PYTHONPATH")]))
    return env


def killed_at(fault: str) -> str:
    """The line a process writes to stderr just before it kills itself at ``fault``."""
    return f"fault injection: {fault}"
