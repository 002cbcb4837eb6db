"""Where configs are found: the user's directories first, then the built-in ``conf/``.

A config is ``<root>/<kind>/<name>.yaml`` with ``kind`` one of ``tasks``, ``models``, ``trainer``, ``search``,
``tune``, ``tuned``, ``reproduce``. The search path is

1. the directories of ``$LIGHTNING_IMPLICIT_CONF_PATH`` (``os.pathsep``-separated; ``make ... CONF_PATH=``), in
   order: a user's own tasks, models and profiles, **added** to the built-in ones (a name found there shadows
   the built-in one of that name);
2. the built-in configs: ``$LIGHTNING_IMPLICIT_CONF`` if set (replaces them, e.g. a test's copy), else the
   package's ``conf/`` (in a source checkout the repo's top-level ``conf/``; in an installed wheel
   ``lightning_implicit/conf``).

A user directory is also where that user's Python modules live: :func:`add_user_modules` puts it on
``sys.path`` so that a YAML ``class_path: my_task.MyDataModule`` next to ``my_task.py`` imports. A name may also
be a path to a YAML file; the config is then named by the file's stem.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lightning_implicit.validate import ConfigError

__all__ = [
    "ENV_PATH",
    "ENV_ROOT",
    "builtin_root",
    "user_dirs",
    "search_path",
    "find",
    "names",
    "name_of",
    "add_user_modules",
    "home_of",
]

ENV_PATH = "LIGHTNING_IMPLICIT_CONF_PATH"
ENV_ROOT = "LIGHTNING_IMPLICIT_CONF"


def builtin_root() -> Path:
    """The built-in config directory (``$LIGHTNING_IMPLICIT_CONF`` replaces it)."""
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here / "conf", here.parent / "conf"):  # an installed wheel; a source checkout
        if (cand / "tasks").is_dir():
            return cand
    raise ConfigError(
        f"no built-in conf/ next to {here}: reinstall the package (pip install .), or set {ENV_ROOT}"
    )


def user_dirs() -> list[Path]:
    """The directories of ``$LIGHTNING_IMPLICIT_CONF_PATH``, in order; each must exist."""
    dirs = [
        Path(p).expanduser().resolve() for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p.strip()
    ]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(
                f"{ENV_PATH} names {d}, which is not a directory: fix the path (make CONF_PATH=)"
            )
    return dirs


def search_path() -> list[Path]:
    """User directories first, then the built-in configs."""
    return [*user_dirs(), builtin_root()]


def _is_file_name(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or os.sep in name


def name_of(name: str) -> str:
    """A config's name: ``name`` itself, or the stem of a YAML path (``~/x/tasks/maximum.yaml`` -> ``maximum``)."""
    return Path(name).stem if _is_file_name(name) else name


def names(kind: str) -> list[str]:
    """Every config of ``kind`` on the search path, sorted."""
    return sorted({f.stem for root in search_path() for f in (root / kind).glob("*.yaml")})


def find(kind: str, name: str, *, required: bool = True) -> Path | None:
    """The file of config ``name`` of ``kind`` (the first on the search path, or ``name`` as a YAML path).

    Raises :class:`ConfigError` naming the places looked in and the choices (``required=False``: ``None``)."""
    if _is_file_name(name):
        path = Path(name).expanduser()
        if path.is_file():
            return path
        if required:
            raise ConfigError(f"no {kind} config file {path}")
        return None
    for root in search_path():
        path = root / kind / f"{name}.yaml"
        if path.is_file():
            return path
    if not required:
        return None
    looked = ", ".join(str(r / kind) for r in search_path())
    raise ConfigError(
        f"no {kind} config {name!r} (looked in {looked}); choose one of {names(kind)}, or add a "
        f"directory holding {kind}/{name}.yaml with {ENV_PATH}= (make CONF_PATH=)"
    )


def home_of(kind: str, name: str) -> Path:
    """The config root a config lives in (where results about it, e.g. ``tuned/``, are written): the root of
    its file, or the built-in one when it is not found."""
    path = find(kind, name, required=False)
    if path is None or _is_file_name(name):
        return builtin_root()
    return path.parent.parent


def add_user_modules() -> None:
    """Put the user directories on ``sys.path`` (so their ``class_path`` modules import); idempotent."""
    for d in reversed(user_dirs()):
        if str(d) not in sys.path:
            sys.path.insert(0, str(d))
