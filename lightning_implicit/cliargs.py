"""Command-line helpers shared by the subcommands: ``-- overrides``, comma-separated lists, and the one-line
answer to a mistyped or invalid option (light: no torch, Lightning or jsonargparse import)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["split_passthrough", "comma_list", "closest", "did_you_mean", "explain_parse_error"]

T = TypeVar("T")


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """``[own options] -- [passed-through options]`` -> ``(own, passed_through)`` (the latter empty without ``--``)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1 :]


def comma_list(text: str | None, cast: Callable[[str], T] = str) -> list[T] | None:
    """``"a, b,,c"`` -> ``[cast("a"), cast("b"), cast("c")]``; ``None`` or ``""`` -> ``None``."""
    if not text:
        return None
    return [cast(x.strip()) for x in text.split(",") if x.strip()]


# ---- user mistakes: one line that names the fix --------------------------------------------------------------------
def closest(typed: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``typed`` (difflib, cutoff 0.6), ``None`` when none is close."""
    close = difflib.get_close_matches(typed, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(typed: str, choices: Iterable[str]) -> str:
    """``"; did you mean --a.kappa?"`` for the closest of ``choices`` to ``typed``, else ``""``."""
    match = closest(typed, choices)
    return f"; did you mean {match}?" if match else ""


_NESTED = re.compile(r"NestedArg\(key='(?P<key>[^']*)', val=(?P<val>.*)\)\s*$", re.M)
_SECTION = re.compile(r'Parser key "(?P<section>[^"]+)":')
_CLASS = re.compile(r"Problem with given class_path '(?P<cls>[^']+)'")
_UNKNOWN_INNER = re.compile(
    r"Option '(?P<key>[^']+)' is not accepted|unrecognized arguments: --(?P<key2>[^\s=]+)"
)
_UNKNOWN_TOP = re.compile(r"^unrecognized arguments: (?P<opt>--\S+)", re.I)
_EXPECTED = re.compile(r"Expected an? (?P<type><class '[^']+'>|[^\s.]+)(?:\. Got value: (?P<got>.*))?$", re.M)
_NO_MODULE = re.compile(r"No module named '(?P<module>[^']+)'")
_GIVEN = re.compile(r"^\s*Given value: (?P<got>.*)$", re.M)

PRINT_CONFIG_HINT = "every key: lightning-implicit train --task T --model M --print_config"


def explain_parse_error(message: str, keys: Callable[[str | None, str | None], Iterable[str]]) -> str:
    """jsonargparse's multi-line parse error of a LightningCLI run -> one line naming the option and the fix.

    ``keys(section, class_path)`` lists the accepted ``--a.b`` options: of the parser (``section`` ``None``) or of
    the class configured under ``section`` (``--model.init_args.*`` of ``class_path``), for "did you mean"."""
    top = _UNKNOWN_TOP.search(message.strip())
    if top:
        opt = top["opt"]
        return f"unknown option {opt}{did_you_mean(opt, keys(None, None))} ({PRINT_CONFIG_HINT})"
    section, nested, cls = _SECTION.search(message), _NESTED.search(message), _CLASS.search(message)
    missing = _NO_MODULE.search(message)
    if section and cls and missing:
        return (
            f"--{section['section']}: cannot import {cls['cls']!r} (no module named {missing['module']!r}): a task "
            f"or model from your own config directory needs that directory on the search path: "
            f"LIGHTNING_IMPLICIT_CONF_PATH=<dir> (make CONF_PATH=<dir>; a logged run names it in its tag conf_path)"
        )
    prefix = f"--{section['section']}" + (".init_args" if cls else "") if section else ""
    unknown = _UNKNOWN_INNER.search(message)
    if section and unknown:
        opt = f"{prefix}.{nested['key'] if nested else unknown['key'] or unknown['key2']}"
        return (
            f"unknown option {opt}{did_you_mean(opt, keys(section['section'], cls and cls['cls']))} "
            f"({PRINT_CONFIG_HINT})"
        )
    expected = [m for m in _EXPECTED.finditer(message) if "NoneType" not in m["type"]]
    if section and expected:
        kinds = " or ".join(sorted({m["type"].replace("<class '", "").replace("'>", "") for m in expected}))
        inner = [m["section"] for m in _SECTION.finditer(message)][1:]
        key = f"{prefix}.{nested['key']}" if nested else f"{prefix}.{inner[0]}" if inner else prefix
        given = expected[0]["got"] or (_GIVEN.search(message) or {"got": "?"})["got"]
        if nested:  # the value as the user wrote it (1e400, not the inf it parsed to)
            given = nested["val"].strip().strip("'\"")
        wanted = {"float": "a finite number", "int": "a whole number", "bool": "true or false"}
        return f"{key} {given}: must be {' or '.join(wanted.get(k, k) for k in kinds.split(' or '))}"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:3]) + (" ..." if len(lines) > 3 else "")
