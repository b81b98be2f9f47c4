"""One command-line convention for config overrides in every tool, the demo and
``train_net.py``: ``KEY VALUE`` pairs at the end (Detectron2's ``train_net.py``) or after
``--opts`` (Detectron2's demo), with the tool's own flags recognised wherever they stand
(``... MODEL.WEIGHTS w.pth --resume`` and ``--opts MODEL.WEIGHTS w.pth --overwrite`` both work).

A config key is a token such as ``MODEL.WEIGHTS`` or ``SEED`` (upper-case, dotted); the token
after it is its value, whatever it looks like (``""``, ``-1``, ``[1, 2]``).
"""

import argparse
import re
import sys
from typing import List, Optional, Sequence, Tuple

__all__ = ["CONFIG_KEY", "add_config_overrides", "parse_args_with_overrides", "split_overrides"]

CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Za-z0-9_]+)*$")
OVERRIDES_HELP = (
    "config overrides: KEY VALUE pairs, at the end or after --opts; flags may stand anywhere"
)


def add_config_overrides(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``opts`` (trailing ``KEY VALUE`` pairs) and ``--opts`` (the same
    after a flag) to ``parser``; parse with :func:`parse_args_with_overrides`."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, help=OVERRIDES_HELP)
    parser.add_argument(
        "--opts", dest="_opts_flag", nargs="*", metavar="KEY VALUE", help=OVERRIDES_HELP
    )


def _option_values(action: argparse.Action, argv: Sequence[str], start: int, options) -> int:
    """Index after the values that option ``action`` takes from ``argv[start:]``."""
    nargs = action.nargs
    if nargs == 0:
        return start
    if nargs is None:
        return min(start + 1, len(argv))
    if isinstance(nargs, int):
        return min(start + nargs, len(argv))
    if nargs == argparse.REMAINDER:
        return len(argv)
    end = start
    limit = start + 1 if nargs == argparse.OPTIONAL else len(argv)
    while end < limit and argv[end] not in options and not _is_key(argv[end], options):
        if argv[end].startswith("--") and argv[end].split("=", 1)[0] in options:
            break
        end += 1
    return end


def _is_key(token: str, options) -> bool:
    return token not in options and bool(CONFIG_KEY.match(token))


def split_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> Tuple[List[str], List[str]]:
    """``(argv without the overrides, the overrides as a flat KEY VALUE list)``.

    Raises:
        SystemExit: through ``parser.error``: a key without a value, or an odd number of
            tokens after ``--opts``.
    """
    options = {
        s: a
        for a in parser._actions
        for s in a.option_strings
        if s != "--opts"  # handled here, whatever the parser declares
    }
    rest: List[str] = []
    overrides: List[str] = []
    i = 0
    after_opts_flag = False
    while i < len(argv):
        token = argv[i]
        name = token.split("=", 1)[0] if token.startswith("--") else token
        if token == "--opts":
            after_opts_flag = True
            i += 1
            continue
        if name in options:
            end = _option_values(options[name], argv, i + 1, options) if name == token else i + 1
            rest.extend(argv[i:end])
            i = end
            continue
        if after_opts_flag or _is_key(token, options):
            if i + 1 >= len(argv) or argv[i + 1] in options:
                parser.error(
                    f"config override {token!r} has no value: give KEY VALUE pairs "
                    f"(overrides so far: {overrides})"
                )
            overrides += [token, argv[i + 1]]
            i += 2
            continue
        rest.append(token)
        i += 1
    return rest, overrides


def parse_args_with_overrides(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None
) -> argparse.Namespace:
    """``parser.parse_args`` with the overrides taken out first (:func:`split_overrides`);
    ``args.opts`` holds them. Works for any parser with an ``opts`` destination, Detectron2's
    ``default_argument_parser`` included."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = split_overrides(parser, [str(a) for a in argv])
    args = parser.parse_args(rest)
    leftover = list(getattr(args, "opts", None) or [])
    if leftover:  # tokens argparse left to ``opts`` that are not KEY VALUE pairs
        parser.error(
            f"{leftover} are not config overrides: give KEY VALUE pairs with upper-case keys "
            "such as MODEL.WEIGHTS (at the end or after --opts)"
        )
    args.opts = overrides
    if hasattr(args, "_opts_flag"):
        delattr(args, "_opts_flag")
    return args
