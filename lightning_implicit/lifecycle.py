"""How a process ends: signals turned into exceptions, exit codes a script can trust, no MLflow run left RUNNING.

* :class:`ExitOnSignal` (around a command in :func:`lightning_implicit.cli.main`): SIGTERM (``timeout``, SLURM,
  torchrun) raises :class:`Terminated` where the process is, so every ``finally`` and ``except KeyboardInterrupt``
  runs (a sweep stops its workers and closes its runs as after Ctrl-C); the command then exits ``128 + signal``
  (143 for SIGTERM, 130 for SIGINT), the shell's convention.
* :class:`DeferredSignals` (around a sweep and each of its trials, in the sweep's processes): SIGTERM and SIGINT
  only set a flag, said on screen with the signal's name; :meth:`DeferredSignals.check` raises :class:`Terminated`
  at the next safe point (a batch end, between trials), never inside a database write; a second signal raises at
  once.
* :func:`end_failed_run`: a run whose training raised is ended FAILED (KILLED after a signal) with the error as
  its ``error`` tag.

These are the project's only signal handlers: the job executor (:mod:`lightning_implicit.jobs`) forwards SIGTERM
to its workers, whose jobs take it through the same classes.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import NoReturn

__all__ = [
    "Terminated",
    "ExitOnSignal",
    "DeferredSignals",
    "end_failed_run",
    "exit_process",
    "signal_name",
    "terminated_cause",
]


def signal_name(signum: int) -> str:
    """``SIGTERM``, ``SIGINT``, ... (the number where Python has no name for it)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Terminated(KeyboardInterrupt):
    """The process received ``signum`` (a ``KeyboardInterrupt``, so the code that stops cleanly on Ctrl-C stops
    cleanly on SIGTERM too)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal_name(signum)}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Handlers:
    """Installs :meth:`_handler` for ``signals`` on entry (main thread only; elsewhere a no-op), leaving alone a
    signal whose current handler :meth:`_keep` says to keep, and restores the previous handlers on exit."""

    signals: tuple[int, ...]

    def _keep(self, signum: int, current) -> bool:
        return False

    def __enter__(self):
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                current = signal.getsignal(s)
                if not self._keep(s, current):
                    self._previous[s] = current
                    signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


class ExitOnSignal(_Handlers):
    """``with ExitOnSignal() as sig:`` raises :class:`Terminated` on SIGTERM (and on SIGINT where no other handler
    than Python's default is installed); ``sig.received`` is the first signal number seen (``None``: none).
    Main thread only (elsewhere a no-op); the previous handlers are restored on exit."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self.received: int | None = None

    def _keep(self, signum: int, current) -> bool:
        return (
            signum == signal.SIGINT and current is not signal.default_int_handler
        )  # (someone else's Ctrl-C)

    def _handler(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        raise Terminated(signum)

    def exit_code(self, code: int) -> int:
        """``code``, or ``128 + signal`` when a signal ended the command."""
        return 128 + self.received if self.received is not None else code


class DeferredSignals(_Handlers):
    """``with DeferredSignals() as signals:`` defers SIGTERM and SIGINT to :meth:`check` (main thread only;
    elsewhere a no-op).

    A signal raised wherever it lands can leave an MLflow or Optuna sqlite connection inside an open write
    transaction; the bookkeeping that follows (the trial failed 'interrupted', its run ended) then waits on that
    lock from another connection of the same process and the process hangs ("database is locked", measured
    about once in six interrupted sweeps on a loaded 2-core machine). So the first signal only sets
    :attr:`pending` and says so on stdout; :meth:`check` raises :class:`Terminated` at the next safe point; a
    second signal raises at once. A signal ignored on entry (``SIG_IGN``: a background job's SIGINT, a sweep
    worker's Ctrl-C that its parent handles) stays ignored. The previous handlers are restored on exit.
    """

    def __init__(
        self,
        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
        *,
        what: str = "batch",
        announce: bool = True,
    ) -> None:
        self.signals = signals
        self.what = what
        self.announce = announce  # say the signal on stdout (a sweep worker's parent says it instead)
        self.pending: int | None = None

    def _keep(self, signum: int, current) -> bool:
        return current is signal.SIG_IGN  # (a background job's SIGINT, a worker's Ctrl-C its parent handles)

    def _handler(self, signum, frame) -> None:
        if self.pending is not None:  # a second signal: at once
            raise Terminated(signum)
        self.pending = signum
        name = signal_name(signum)
        if self.announce:
            print(
                f"\nreceived {name}: stopping at the end of the current {self.what} ({name} again to stop at once)",
                file=sys.stdout,
                flush=True,
            )

    def check(self) -> None:
        """Raise :class:`Terminated` if a signal is pending (call it where no write is in flight)."""
        if self.pending is not None:
            raise Terminated(self.pending)


def exit_process(code: int) -> NoReturn:
    """End the command-line process with ``code`` (its entry points only, never a library call).

    After a signal (``code`` > 128) the interpreter's own teardown of torch, Lightning and MLflow (2-7 s measured
    on a busy 2-core machine, after the command's work is done and its runs are closed) is skipped: the
    ``atexit`` handlers run (logging, multiprocessing's children, weakref finalizers), stdout and stderr are
    flushed, and the process ends at once, so that a stop takes seconds. Otherwise: :func:`sys.exit`."""
    if code <= 128:
        sys.exit(code)
    import atexit
    import os

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe: nothing more to say
                pass
        os._exit(code)


def terminated_cause(err: BaseException) -> Terminated | None:
    """The :class:`Terminated` behind ``err`` (Lightning turns a ``KeyboardInterrupt`` in ``fit`` into
    ``sys.exit(1)``; the signal is its context). Lightning's own ``SIGTERMException`` (its loops raise it at a
    batch end after its SIGTERM handler ran: a ``SystemExit`` whose code is ``None``, i.e. exit 0) is the
    SIGTERM it stands for, so that a terminated run never exits as if it had finished."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, Terminated):
            return err
        if isinstance(err, SystemExit) and type(err).__name__ == "SIGTERMException":
            return Terminated(signal.SIGTERM)
        seen.add(id(err))
        err = err.__context__
    return None


def end_failed_run(logger, err: BaseException) -> None:
    """End ``logger``'s MLflow run FAILED (KILLED after a signal or Ctrl-C) with ``err`` as its ``error`` tag.
    Never raises: the original error is what the user must see."""
    from lightning.pytorch.loggers import MLFlowLogger

    if not isinstance(logger, MLFlowLogger):
        return
    try:  # (the run exists: make_logger opens it before the fit)
        run_id, client = logger.run_id, logger.experiment
    except Exception:  # a store that is itself the problem must not hide the error
        return
    if not run_id:
        return
    cause = terminated_cause(err) or err
    killed = isinstance(cause, KeyboardInterrupt)
    message = f"{type(cause).__name__}: {cause}"
    try:
        flush = getattr(logger, "finalize", None)
        if flush is not None and client.get_run(run_id).info.status == "RUNNING":
            flush("failed")
        client.set_tag(run_id, "error", message[:5000])
        client.set_terminated(run_id, "KILLED" if killed else "FAILED")
    except Exception:  # a store that is itself the problem must not hide the error
        pass
