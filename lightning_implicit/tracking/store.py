"""Where runs go: the MLflow tracking URI and the logger factory.

Default store: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts under ``mlruns/`` (MLflow 3 refuses the
plain file store). ``MLFLOW_TRACKING_URI`` or an explicit ``uri`` (e.g. ``http://host:5000`` for a tracking
server) override it; the URI is always passed explicitly to the logger (Lightning reads the environment only
at import time).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from argparse import Namespace
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "resolve_tracking_uri",
    "make_logger",
    "git_commit",
    "StoreError",
    "store_error",
    "store_failure",
    "check_store",
    "database_driver",
    "schema_lock",
    "first_use",
]


class StoreError(RuntimeError):
    """A tracking or study store that cannot be used (damaged, read-only, full, unreachable, no driver): says
    which store (password redacted) and what to do; the command line prints it as one ``error:`` line, exit 2."""


# what to change, per store kind: the flags and variables that choose the store
FIXES = {
    "MLflow": "or point the run at another store (--tracking.uri / --tracking-uri, or MLFLOW_TRACKING_URI)",
    "Optuna": "or point the sweep at another study store (--storage, or OPTUNA_STORAGE)",
}

# (what, phrases of the error, advice): the first match names the failure
_KINDS = (
    (
        "damaged",
        ("file is not a database", "malformed", "database disk image", "no such table"),
        None,  # (sqlite only: the advice names the file)
    ),
    (
        "full",
        ("database or disk is full", "disk i/o error", "no space left on device", "disk quota exceeded"),
        "its disk is full: free space there",
    ),
    (
        "read-only",
        ("readonly database", "read-only file system", "unable to open database file", "permission denied"),
        "it cannot be written: make the file and its folder writable (chmod, chattr -i, a read-write mount)",
    ),
    (
        "no driver",
        ("no module named 'psycopg", "no module named 'pymysql", "no module named 'mysqldb"),
        "its database driver is not installed: pip install psycopg2-binary (PostgreSQL; or psycopg[binary]), "
        "pymysql (MySQL)",
    ),
    (
        "unreachable",
        (
            "could not connect",
            "connection refused",
            "password authentication failed",
            "authentication failed",
            "timeout expired",
            "timed out",
            "could not translate host name",
            "name or service not known",
            "max retries exceeded",
            "failed to establish a new connection",
            "connection reset",
            "server closed the connection",
            "no route to host",
            "api request to",
        ),
        "it cannot be reached: check that its server runs and accepts this user and password",
    ),
)


def _chain(err: BaseException):
    """``err``, then breadth first the errors behind it: SQLAlchemy's wrapped DBAPI error (``orig``), the cause
    and the context, each once."""
    todo, seen = [err], set()
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]


def _chain_text(err: BaseException) -> str:
    """The messages of ``err``, its causes and contexts (and SQLAlchemy's wrapped DBAPI error), lower case."""
    return "\n".join(f"{type(e).__name__}: {e}" for e in _chain(err)).lower()


# the database drivers, whose own message names the real fault
_DRIVER_MODULES = ("sqlite3", "psycopg2", "psycopg", "pymysql", "MySQLdb")


def _first_line(err: BaseException) -> str:
    """The first line of the database driver's own message in ``err``'s chain (else of ``err``), redacted."""
    from lightning_implicit.redact import redact

    err = next((e for e in _chain(err) if type(e).__module__.split(".")[0] in _DRIVER_MODULES), err)
    text = str(err).strip().splitlines()
    return redact((text[0] if text else type(err).__name__)[:200])


def store_error(err: BaseException, uri: str, kind: str) -> StoreError | None:
    """A :class:`StoreError` naming the store behind ``uri`` (``kind``: "MLflow" or "Optuna") when ``err`` (or
    an error in its chain) says that the store is damaged, full, read-only, unreachable or lacks its driver;
    ``None`` for any other error."""
    from lightning_implicit.redact import redact

    text = _chain_text(err)
    sqlite = uri.startswith("sqlite:///")
    path = uri[len("sqlite:///") :] if sqlite else None
    for what, phrases, advice in _KINDS:
        if not any(p in text for p in phrases):
            continue
        if what == "damaged":
            if not sqlite:
                continue
            return StoreError(
                f"the {kind} store {path} is damaged ({_first_line(err)}). Repair it with "
                f"`sqlite3 {path} .recover | sqlite3 {path}.recovered` and move the result in its place, or move "
                f"it aside (`mv {path} {path}.bad`) to start a new one; uri {redact(uri)}"
            )
        name = path if sqlite else redact(uri)
        return StoreError(f"the {kind} store {name} failed ({_first_line(err)}): {advice}, {FIXES[kind]}")
    return None


_STORE_MODULES = ("sqlite3", "sqlalchemy", "mlflow", "optuna", "psycopg2", "psycopg", "requests", "urllib3")


def store_failure(err: BaseException, uri: str, kind: str) -> StoreError | None:
    """:func:`store_error` for an error raised mid-run, when the error's chain comes from the store's own
    stack (sqlite, SQLAlchemy, MLflow, a database driver, HTTP): a full disk or a timeout elsewhere (a
    checkpoint, a collective) is not the store's."""
    if not uri or not isinstance(err, Exception):
        return None
    if any(
        type(e).__module__.split(".")[0] in _STORE_MODULES or _raised_in_store_code(e) for e in _chain(err)
    ):
        return store_error(err, uri, kind)
    return None


def _raised_in_store_code(err: BaseException) -> bool:
    """An OS error (a full disk, a read-only file system) raised while MLflow or the tracking code wrote."""
    import errno

    if not isinstance(err, OSError) or err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return False
    tb = err.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if name.startswith(("mlflow", "lightning_implicit.tracking")):
            return True
        tb = tb.tb_next
    return False


def check_store(uri: str, kind: str, timeout: float = 10.0) -> None:
    """Raise a :class:`StoreError` at once when the database behind ``uri`` cannot be used: a sqlite file that
    cannot be opened, read or written (read-only, damaged, full), a database server that does not answer or
    refuses the user (one connection attempt, ``PGCONNECT_TIMEOUT``), a missing driver. MLflow itself retries
    for minutes before it says so. HTTP tracking servers are left to MLflow's bounded retries
    (:func:`lightning_implicit.store_waits.bound_store_waits`)."""
    import sqlite3

    if "://" in uri and not uri.startswith(("sqlite:", "http:", "https:", "databricks", "file:")):
        _check_server(uri, kind)
        return
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return
    path = Path(uri[len("sqlite:///") :])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=timeout)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchall()
            # a write, rolled back: fails on a read-only file, folder or mount and on a full disk
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE lightning_implicit_write_probe (x)")
            con.execute("ROLLBACK")
        finally:
            con.close()
    except (sqlite3.Error, OSError) as err:
        if "locked" in str(err) or "busy" in str(err):
            return  # another process writes: the store works (MLflow and Optuna wait for their turn)
        raise _store_failed(err, uri, kind, str(path)) from None


@contextmanager
def schema_lock(uri: str):
    """Held while a process may create or migrate the schema of the sqlite store behind ``uri``: two sweeps
    started together on a fresh store each ran MLflow's (or Optuna's) alembic migrations, and the later failed
    ("Online migration expected to match one row"). A file lock beside the database (``<db>.lock``); other
    URIs: no lock (their first use is retried, :func:`first_use`)."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        yield
        return
    from filelock import FileLock

    with FileLock(uri[len("sqlite:///") :] + ".lock", timeout=300):
        yield


def first_use(open_store, uri: str, attempts: int = 3):
    """``open_store()`` (which creates the store's schema when it is new) under :func:`schema_lock`; on a
    database server, a lost race of two first uses (an alembic migration error) is retried."""
    import time

    for attempt in range(attempts):
        try:
            with schema_lock(uri):
                return open_store()
        except Exception as err:
            text = _chain_text(err)
            racing = any(p in text for p in ("online migration", "already exists", "duplicate key", "unique"))
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _ensure_mlflow_schema(uri: str) -> None:
    """The MLflow store behind ``uri`` opened once (its tables created or migrated), one process at a time."""
    import mlflow

    first_use(lambda: mlflow.MlflowClient(uri).search_experiments(max_results=1), uri)


def _check_server(uri: str, kind: str) -> None:
    """One connection to a database server (PostgreSQL, MySQL) through SQLAlchemy."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as err:  # named, or said as it is
        from lightning_implicit.redact import redact

        raise _store_failed(err, uri, kind, redact(uri)) from None


def _store_failed(err: BaseException, uri: str, kind: str, where: str) -> StoreError:
    """The :class:`StoreError` of a store that failed its probe: :func:`store_error`'s named case, else the
    error's first line with the fix (``where``: the store as shown, its password redacted)."""
    return store_error(err, uri, kind) or StoreError(
        f"the {kind} store {where} cannot be used ({_first_line(err)}): {FIXES[kind]}"
    )


def resolve_tracking_uri(uri: str | None = None, root: str | os.PathLike | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the local sqlite store under ``root/mlruns``."""
    if uri:
        return database_driver(_absolute_sqlite(_reject_file_store(uri)))
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return database_driver(_absolute_sqlite(_reject_file_store(env)))
    folder = Path(root or os.getcwd()).resolve() / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///mlruns/mlflow.db`` (relative to the working directory, as SQLAlchemy reads it) made absolute, so
    that the artifact location next to it can be a file URI; its folder is created."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and uri != "sqlite:///:memory:":
        path = Path(uri[len("sqlite:///") :]).resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # (a read-only place: check_store names it)
        return f"sqlite:///{path}"
    return uri


def database_driver(url: str) -> str:
    """``postgresql://`` with psycopg2 when psycopg (3) is missing (SQLAlchemy >= 2.1 defaults to psycopg 3; the
    project's dev extra installs psycopg2-binary); a :class:`StoreError` saying what to install when neither is.
    Other URLs are returned as they are."""
    import importlib.util

    if (
        not url.startswith(("postgresql://", "postgres://"))
        or importlib.util.find_spec("psycopg") is not None
    ):
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    from lightning_implicit.redact import redact

    raise StoreError(
        f"the store {redact(url)} is a PostgreSQL database, and no PostgreSQL driver is installed: "
        "pip install psycopg2-binary (or psycopg[binary])"
    )


def _reject_file_store(uri: str) -> str:
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(
            f"tracking URI {uri!r} is MLflow's plain file store, which MLflow 3 refuses "
            "('filesystem tracking backend is in maintenance mode'); use sqlite:///mlruns/mlflow.db, "
            "a database URL or an http(s) tracking server"
        )
    return uri


def artifact_location(uri: str) -> str | None:
    """Artifacts next to a local sqlite store (``mlruns/``); a server decides for itself."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent.as_uri()
    return None


def make_logger(experiment: str, run_name: str, tags: dict[str, str], uri: str | None = None):
    """An ``MLFlowLogger`` on the resolved store; one experiment per task, one run per (model, seed)."""

    tracking_uri = resolve_tracking_uri(uri)
    check_store(tracking_uri, "MLflow")
    try:
        _ensure_mlflow_schema(tracking_uri)
        return _make_logger(experiment, run_name, tags, tracking_uri)
    except Exception as err:
        named = store_error(err, tracking_uri, "MLflow")
        if named is None:
            raise
        raise named from None


def _make_logger(experiment: str, run_name: str, tags: dict[str, str], tracking_uri: str):
    import mlflow

    location = artifact_location(tracking_uri)
    if location is not None:
        client = mlflow.MlflowClient(tracking_uri)
        if client.get_experiment_by_name(experiment) is None:
            try:
                client.create_experiment(experiment, artifact_location=location + f"/{experiment}")
            except mlflow.exceptions.MlflowException:
                pass  # created concurrently by another process
    # synchronous=False: step metrics are queued and written by MLflow's background thread (a sqlite commit costs
    # ~25 ms, as much as an epoch's training at the paper's sizes); ``finalize`` (set_terminated) flushes the queue.
    # Without a buffering interval that thread polls its queue with a 1 s timeout, and every ``finalize`` (one after
    # fit, one after the shift sweep) waits out that second; with one it wakes as soon as it is told to stop and
    # writes the interval's metrics in one batch. (MLflow reads the variable at each poll; a user's value is kept.)
    os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")  # (whole seconds)
    logger = _OwnParamsLogger(
        experiment_name=experiment,
        run_name=run_name,
        tracking_uri=tracking_uri,
        tags=tags,
        log_model=False,
        synchronous=False,
    )
    # Create the run now: ddp_spawn/ddp_fork workers get a copy of the logger, and without a run id each
    # fit/test launch would open a run of its own.
    with _process_tracking_uri_unchanged():
        _ = logger.experiment
    return logger


def _own_params(params) -> dict:
    """Hyper-parameters without the task's Table 4 presets of every other model (issue 20: only this model's
    resolved sizes are logged, by the tracking callback), named as every param is (``tracking.callback``)."""
    from .callback import named_params

    return named_params(_flat(_without_presets(params)))


def _flat(value, prefix: str = "") -> dict:
    """Nested mappings as one level with ``a/b`` keys (as the MLflow logger flattens them)."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    out: dict = {}
    for k, v in value.items():
        out.update(_flat(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def _without_presets(value):
    """``value`` (nested dicts, namespaces, dataclasses and lists of them) without any key naming presets."""
    if isinstance(value, Namespace):
        value = vars(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {k: _without_presets(v) for k, v in value.items() if "presets" not in str(k)}
    if isinstance(value, list) and value and all(isinstance(v, Mapping | Namespace) for v in value):
        return [_without_presets(v) for v in value]
    return value


def _own_params_logger_class():
    from lightning.pytorch.loggers import MLFlowLogger

    class OwnParamsMLFlowLogger(MLFlowLogger):
        def log_hyperparams(self, params) -> None:
            super().log_hyperparams(_own_params(params))

    return OwnParamsMLFlowLogger


def _OwnParamsLogger(**kwargs):
    return _own_params_logger_class()(**kwargs)


@contextmanager
def _process_tracking_uri_unchanged():
    """Undo the process-wide side effect of ``MLFlowLogger.experiment``.

    Lightning calls ``mlflow.set_tracking_uri(uri)``, which in MLflow 3 also sets ``$MLFLOW_TRACKING_URI``: one
    run with an explicit ``--tracking.uri`` would silently redirect every later run of the process.
    """
    import mlflow

    # MLflow's set_tracking_uri also sets the variable: where it is unset, so was the process's URI
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    uri = mlflow.get_tracking_uri() if env_uri is not None else None
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # unset (MLflow also unsets the variable)
        if env_uri is not None:
            if uri != env_uri:  # a URI set by mlflow.set_tracking_uri, then the variable changed
                mlflow.set_tracking_uri(uri)
            os.environ["MLFLOW_TRACKING_URI"] = env_uri


def git_commit() -> str:
    """The code version recorded with every run (``unknown`` outside a git checkout)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
