"""Command-line helpers shared by the subcommands: ``-- overrides`` and comma-separated lists."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["split_passthrough", "comma_list"]

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
