"""The commands of README.md, MODEL_ZOO.md, docs/ and datasets/ run as written after the
README's set-up: they call ``.venv/bin/python`` (never a bare ``python`` that needs an
activated environment), every script, config, test file and make target they name exists, and
every flag they pass is one the script's ``--help`` lists. The help texts are read in this
process (one import of torch for all scripts), so a renamed flag or file fails here."""

import contextlib
import io
import re
import runpy
import shlex
import sys
from functools import lru_cache
from typing import List, Tuple

import pytest
from conftest import REPO_ROOT

DOC_PATHS = [REPO_ROOT / "README.md", REPO_ROOT / "MODEL_ZOO.md"]
DOC_PATHS += sorted((REPO_ROOT / "docs").glob("*.md"))
DOC_PATHS += sorted((REPO_ROOT / "datasets").glob("*.md"))


def doc_commands() -> List[Tuple[str, str]]:
    """``(document, command)`` for each command line in a fenced or indented code block
    (backslash continuations joined) that starts with python, .venv/bin/python or make."""
    commands = []
    for path in DOC_PATHS:
        fenced, pending = False, ""
        for line in path.read_text().split("\n"):
            if line.strip().startswith("```"):
                fenced, pending = not fenced, ""
                continue
            if not (fenced or line.startswith("    ")):
                pending = ""
                continue
            text = (pending + " " + line.strip()).strip()
            if text.endswith("\\"):
                pending = text[:-1]
                continue
            pending = ""
            if re.match(r"(\.venv/bin/)?python3? |make ", text):
                commands.append((str(path.relative_to(REPO_ROOT)), text.split(" #")[0].strip()))
    return commands


COMMANDS = doc_commands()


def _words(command: str) -> List[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in prose-like text: split on blanks
        return command.split()


def _is_placeholder(word: str) -> bool:
    return any(c in word for c in "<>$*{}[]") or "..." in word


@lru_cache(maxsize=None)
def help_text(script: str) -> str:
    """What ``.venv/bin/python SCRIPT --help`` prints, run in this process."""
    path = REPO_ROOT / script
    out = io.StringIO()
    argv, sys_path = sys.argv, list(sys.path)
    sys.argv = [str(path), "--help"]
    sys.path.insert(0, str(path.parent))
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, sys_path
    assert exit_info.value.code in (0, None), f"{script} --help exited {exit_info.value.code}"
    return out.getvalue()


def test_the_docs_have_commands_and_none_needs_an_activated_environment():
    assert len(COMMANDS) > 80
    bare = [f"{doc}: {c}" for doc, c in COMMANDS if re.match(r"python3? ", c)]
    assert not bare, "use .venv/bin/python (the README's set-up makes it):\n" + "\n".join(bare)


def test_named_files_and_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (REPO_ROOT / "Makefile").read_text(), re.M))
    missing = []
    for doc, command in COMMANDS:
        words = _words(command)
        if words[0] == "make":
            missing += [f"{doc}: make {t}" for t in words[1:2] if t not in targets]
            continue
        for word in words[1:]:
            if _is_placeholder(word) or "/" not in word:
                continue
            if re.match(r"(configs|tools|datasets/prepare_|demo|tests)/", word) or word in (
                "train_net.py",
            ):
                if not (REPO_ROOT / word.split("::")[0]).exists():
                    missing.append(f"{doc}: {word} (in: {command})")
    assert not missing, "\n".join(missing)


SCRIPT_COMMANDS = [(doc, c) for doc, c in COMMANDS if re.match(r"\.venv/bin/python [\w/]+\.py", c)]


@pytest.mark.parametrize(
    "script", sorted({_words(c)[1] for _, c in SCRIPT_COMMANDS}), ids=lambda s: s
)
def test_every_flag_in_the_docs_is_one_the_script_takes(script):
    text = help_text(script)
    wrong = []
    for doc, command in SCRIPT_COMMANDS:
        words = _words(command)
        if words[1] != script:
            continue
        for word in words[2:]:
            flag = word.split("=", 1)[0]
            if re.match(r"--[a-z]", flag) and not re.search(re.escape(flag) + r"\b", text):
                wrong.append(f"{doc}: {flag} (in: {command})")
    assert not wrong, f"{script} --help does not list:\n" + "\n".join(wrong)


ENTRY_POINTS = sorted(
    str(path.relative_to(REPO_ROOT))
    for pattern in ("tools/*.py", "demo/*.py", "datasets/*.py", "train_net.py")
    for path in REPO_ROOT.glob(pattern)
    if 'if __name__ == "__main__"' in path.read_text()
)


@pytest.mark.parametrize("script", ENTRY_POINTS, ids=lambda s: s)
def test_every_entry_point_answers_help(script):
    """``--help`` of every script a user may run prints its usage and exits 0 (the wheel repacker
    printed its usage but exited 1)."""
    assert "usage" in help_text(script).lower()
