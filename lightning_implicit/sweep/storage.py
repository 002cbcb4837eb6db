"""Where studies live, and how trials of dead workers are recovered.

Storage (first that applies): ``--storage URL``, ``$OPTUNA_STORAGE``, else ``sqlite:///<cwd>/mlruns/optuna.db``.

* ``sqlite:///path`` / ``postgresql://...`` / ``mysql://...``: :class:`optuna.storages.RDBStorage` with
  heartbeats. SQLite gets WAL journaling and a 60 s lock timeout, which is enough for a handful of worker
  processes on one machine (several machines: use PostgreSQL or MySQL).
* ``journal:<path>`` (or a path ending in ``.log`` / ``.journal``): :class:`optuna.storages.JournalStorage`
  on a :class:`~optuna.storages.journal.JournalFileBackend`, multi-process safe on one machine. Optuna 5
  implements heartbeats only for RDB storages, so here dead workers are found by process id alone (below).

Recovering a dead worker's trials (:func:`recover_stale_trials`, run by every worker before each trial and
by the sweep after its workers exit): a RUNNING trial is *stale* when

* it was started on this host by a process that no longer exists (``worker_host`` / ``worker_pid`` user
  attributes; immediate, any storage), or
* its heartbeat is older than the grace period (RDB storages; any host).

A stale trial becomes FAIL (found by process id: with ``fail_reason``; by heartbeat: by Optuna's own
``optuna.storages.fail_stale_trials``, the reason on its retry as ``retry_reason``), and a fresh copy of its
parameters is enqueued as a WAITING trial (what :class:`optuna.storages.RetryFailedTrialCallback` does, at most ``--max-retry`` times per
original trial), which the next free worker runs. Its MLflow run
(and its fold runs) are marked FAILED with the reason.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .default_trial import DEFAULT_ATTR

__all__ = [
    "resolve_storage_url",
    "open_storage",
    "recover_stale_trials",
    "pid_alive",
    "mask_url",
    "claim_retrain",
    "HOST",
]

HOST = socket.gethostname()
log = logging.getLogger(__name__)


def resolve_storage_url(url: str | None = None, root: str | os.PathLike | None = None) -> str:
    """``url``, else ``$OPTUNA_STORAGE``, else the sqlite file ``<root or cwd>/mlruns/optuna.db``."""
    url = url or os.environ.get("OPTUNA_STORAGE")
    if url:
        return url
    folder = Path(root or os.getcwd()).resolve() / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def mask_url(url: str) -> str:
    """The URL without its password (for tags and messages)."""
    from lightning_implicit.redact import redact

    return redact(url)


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal:"):
        return Path(url[len("journal:") :].removeprefix("//"))
    if "://" not in url and url.endswith((".log", ".journal")):
        return Path(url)
    return None


def open_storage(
    url: str,
    *,
    heartbeat: int = 10,
    grace: int | None = 30,
    max_retry: int | None = 1,
    on_failed: Callable[[optuna.trial.FrozenTrial, str], None] | None = None,
):
    """An Optuna storage for ``url`` (see the module doc). ``heartbeat`` 0 disables heartbeats.

    ``max_retry``, ``on_failed``: for trials that Optuna's own heartbeat check fails (it runs inside
    ``study.optimize`` right after :func:`recover_stale_trials`, so it only sees trials that went stale in
    between): retried and reported like the ones recovered here.
    """
    jpath = _journal_path(url)
    if jpath is not None:
        from optuna.storages.journal import JournalFileBackend

        jpath.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(jpath)))
    if "://" not in url:
        raise ValueError(
            f"Optuna storage {url!r} is neither a database URL (sqlite:///path/optuna.db, postgresql://user@host/db) "
            "nor a journal file (journal:path/study.log)"
        )
    url = _driver(url)
    from lightning_implicit.tracking.store import check_store

    check_store(url, "Optuna")  # read-only, damaged, full, unreachable: named at once, not after retries
    engine_kwargs = None
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///") :])
        try:
            with sqlite3.connect(
                db, timeout=60
            ) as con:  # WAL: readers do not block the writer (persists in the file)
                con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as err:
            _raise_named(err, url)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    hb = {}
    if heartbeat and heartbeat > 0:
        reason = "worker died (no heartbeat within the grace period)"

        def stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if on_failed is not None:
                on_failed(trial, reason)
            _retry(study, trial, reason, max_retry)

        hb = dict(heartbeat_interval=heartbeat, grace_period=grace, heartbeat_stale_trial_callback=stale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        try:
            from lightning_implicit.tracking.store import first_use

            # (a new store's tables are created once: two sweeps started together raced on them)
            return first_use(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb), url)
        except Exception as err:
            _raise_named(err, url)


def _raise_named(err: Exception, url: str):
    """Re-raise ``err`` as a :class:`~lightning_implicit.tracking.store.StoreError` when it says the sqlite file
    is damaged (what to delete or how to repair), else as it is."""
    from lightning_implicit.tracking.store import store_error

    named = store_error(err, url, "Optuna")
    if named is None:
        raise err
    raise named from None


def _driver(url: str) -> str:
    """``postgresql://`` with an installed driver (:func:`~lightning_implicit.tracking.store.database_driver`)."""
    from lightning_implicit.tracking.store import database_driver

    return database_driver(url)


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running on this host (zombies count as dead)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _fail_heartbeat_stale(study: optuna.Study, storage, study_id: int, running: list) -> list[int]:
    """Optuna's own heartbeat check (``optuna.storages.fail_stale_trials``: RDB storages with heartbeats; the
    storage's stale-trial callback of :func:`open_storage` reports and retries them); returns the numbers of the
    trials in ``running`` it failed."""
    if not isinstance(storage, optuna.storages.RDBStorage) or not storage.get_heartbeat_interval():
        return []
    try:
        optuna.storages.fail_stale_trials(study)
        failed = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,))
    except Exception as exc:  # never let the check itself stop a sweep
        log.warning("heartbeat check failed: %s", exc)
        return []
    was_running = {t.number for t in running}
    return sorted(t.number for t in failed if t.number in was_running)


def recover_stale_trials(
    study: optuna.Study,
    storage,
    *,
    max_retry: int | None = 1,
    reason_dead: str = "worker died",
    only_pid: int | None = None,
    on_failed: Callable[[optuna.trial.FrozenTrial, str], None] | None = None,
    retry: bool = True,
) -> list[int]:
    """Fail the RUNNING trials of dead workers (see the module doc) and enqueue retries.

    ``only_pid``: fail this process's own RUNNING trials (cleanup after Ctrl-C) instead of dead ones.
    ``on_failed(trial, reason)``: called for each trial failed here (e.g. to close its MLflow run).
    Returns the numbers of the trials failed.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    failed = []
    for t in running:
        host, pid = t.user_attrs.get("worker_host"), t.user_attrs.get("worker_pid")
        if only_pid is not None:
            if host != HOST or pid != only_pid:
                continue
            reason = reason_dead
        elif host == HOST and isinstance(pid, int) and pid != os.getpid() and not pid_alive(pid):
            reason = f"{reason_dead} (pid {pid} on {host} is gone)"
        else:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        frozen = storage.get_trial(trial_id)
        failed.append(frozen.number)
        if on_failed is not None:
            try:
                on_failed(frozen, reason)
            except Exception as exc:
                log.warning("could not record the failure of trial %s: %s", frozen.number, exc)
        if retry:
            _retry(study, frozen, reason, max_retry)
    if only_pid is None and retry:  # the others: silent past the grace period (any host)
        left = [t for t in running if t.number not in failed]
        failed += _fail_heartbeat_stale(study, storage, study_id, left)
    return failed


def _retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str, max_retry: int | None) -> None:
    """:class:`optuna.storages.RetryFailedTrialCallback`'s re-enqueue (same ``failed_trial`` and
    ``retry_history`` system attributes, so its ``retried_trial_number`` works), without copying the dead
    trial's user attributes (worker id, fail reason) onto the retry."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retry is not None and len(history) > max_retry:
        return
    system_attrs = {
        **trial.system_attrs,
        "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
        "retry_history": history,
    }
    user_attrs = {"retry_of": trial.number, "retry_reason": reason}
    if DEFAULT_ATTR in trial.user_attrs and "fixed_params" in system_attrs:
        # the recipe trial (.default_trial) may hold values outside their ranges, which a trial's params may not:
        # re-enqueued as it was enqueued, by its fixed_params, and still marked as the recipe
        user_attrs[DEFAULT_ATTR] = trial.user_attrs[DEFAULT_ATTR]
        study.add_trial(
            optuna.create_trial(state=TrialState.WAITING, user_attrs=user_attrs, system_attrs=system_attrs)
        )
        return
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )


RETRAIN_ATTR = "best_retrain_claim"


def claim_retrain(study: optuna.Study, trial_number: int, settle: float = 1.0) -> str | None:
    """Claim the retraining of the study's best trial ``trial_number`` for this process; ``None`` when it is
    ours, else who holds it (``host pid``). Two sweeps of one study each retrained the same best config.

    The claim is a study user attribute (``best_retrain_claim:t<number>``); of two claims written within
    ``settle`` seconds the later wins (each writer reads the attribute back after ``settle`` s). A claim of a
    process on this host that no longer runs is taken over (a sweep killed while retraining)."""
    key, me = f"{RETRAIN_ATTR}:t{trial_number}", f"{HOST} {os.getpid()}"

    def holder() -> str | None:
        return study.user_attrs.get(key)  # (read from the storage at each access)

    current = holder()
    if current is not None and current != me and _claim_alive(current):
        return current
    study.set_user_attr(key, me)
    time.sleep(settle)
    current = holder()
    return None if current == me else current


def _claim_alive(claim: str) -> bool:
    host, _, pid = claim.rpartition(" ")
    return host != HOST or not pid.isdigit() or pid_alive(int(pid))
