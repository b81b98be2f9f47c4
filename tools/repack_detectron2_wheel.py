#!/usr/bin/env python3
"""Turn PyPI's ``sal-detectron2`` 0.7.2 wheel into a pure-Python ``detectron2`` wheel.

Why: Detectron2's authors publish no wheel on PyPI. ``sal-detectron2==0.7.2`` carries upstream
detectron2 (commit a59f0563) but is tagged cp310 and ships a ``_C`` extension built for CUDA 12
and Python 3.10, which cannot load elsewhere. Upstream's Python code already copes with a missing
``_C`` (see ``../shared/notes/detectron2-install.md``), so this script keeps the Python sources
and model-zoo configs, drops the extension and the top-level ``tools`` package (it would shadow
other packages named ``tools``), renames the distribution ``detectron2``, declares the
``fvcore``/``iopath`` requirements upstream's ``setup.py`` declares, and retags it
``py3-none-any`` with a regenerated RECORD.

Usage: python tools/repack_detectron2_wheel.py SRC.whl OUT_DIR
"""

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

SRC_DIST_INFO = "sal_detectron2-0.7.2.dist-info/"
DST_DIST_INFO = "detectron2-0.7.2.dist-info/"
EXTRA_REQUIRES = ["fvcore>=0.1.5,<0.1.6", "iopath>=0.1.7,<0.1.10"]


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _rewrite_metadata(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("Name: "):
            line = "Name: detectron2"
        lines.append(line)
        if line.startswith("Requires-Dist: packaging"):
            lines.extend(f"Requires-Dist: {req}" for req in EXTRA_REQUIRES)
    return "\n".join(lines) + "\n"


def _rewrite_wheel(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("Root-Is-Purelib:"):
            line = "Root-Is-Purelib: true"
        elif line.startswith("Tag:"):
            line = "Tag: py3-none-any"
        out.append(line)
    return "\n".join(out) + "\n"


def repack(src: Path, out_dir: Path) -> Path:
    """Write ``detectron2-0.7.2-py3-none-any.whl`` into ``out_dir`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / "detectron2-0.7.2-py3-none-any.whl"
    tmp = dst.with_suffix(".tmp")
    records = []
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        names = zin.namelist()
        if SRC_DIST_INFO + "METADATA" not in names:
            raise SystemExit(f"{src}: not the sal-detectron2 0.7.2 wheel (no {SRC_DIST_INFO})")
        for name in names:
            if name.startswith("tools/") or name.endswith(".so") or name.endswith("RECORD"):
                continue
            data = zin.read(name)
            if name.startswith(SRC_DIST_INFO):
                base = name[len(SRC_DIST_INFO) :]
                name = DST_DIST_INFO + base
                if base == "METADATA":
                    data = _rewrite_metadata(data.decode()).encode()
                elif base == "WHEEL":
                    data = _rewrite_wheel(data.decode()).encode()
                elif base == "top_level.txt":
                    data = b"detectron2\n"
            zout.writestr(name, data)
            records.append(f"{name},{_record_hash(data)},{len(data)}")
        records.append(f"{DST_DIST_INFO}RECORD,,")
        zout.writestr(DST_DIST_INFO + "RECORD", "\n".join(records) + "\n")
    tmp.replace(dst)
    return dst


if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(repack(Path(sys.argv[1]), Path(sys.argv[2])))
