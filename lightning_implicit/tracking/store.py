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

__all__ = ["resolve_tracking_uri", "make_logger", "git_commit", "StoreError", "store_error"]


class StoreError(RuntimeError):
    """A tracking or study store that cannot be opened (a damaged sqlite file): says which file and what to do."""


def store_error(err: Exception, uri: str, kind: str) -> StoreError | None:
    """A :class:`StoreError` naming the file when ``err`` says that the sqlite file behind ``uri`` is damaged."""
    text = str(err).lower()
    if not uri.startswith("sqlite:///") or not any(
        s in text for s in ("file is not a database", "malformed", "database disk image", "no such table")
    ):
        return None
    from lightning_implicit.redact import redact

    path = uri[len("sqlite:///") :]
    return StoreError(
        f"the {kind} store {path} is damaged ({str(err).splitlines()[0][:200]}). Repair it with "
        f"`sqlite3 {path} .recover | sqlite3 {path}.recovered` and move the result in its place, or move it aside "
        f"(`mv {path} {path}.bad`) to start a new one; uri {redact(uri)}"
    )


def resolve_tracking_uri(uri: str | None = None, root: str | os.PathLike | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the local sqlite store under ``root/mlruns``."""
    if uri:
        return _absolute_sqlite(_reject_file_store(uri))
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return _absolute_sqlite(_reject_file_store(env))
    folder = Path(root or os.getcwd()).resolve() / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///mlruns/mlflow.db`` (relative to the working directory, as SQLAlchemy reads it) made absolute, so
    that the artifact location next to it can be a file URI; its folder is created."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and uri != "sqlite:///:memory:":
        path = Path(uri[len("sqlite:///") :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return uri


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
    try:
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
