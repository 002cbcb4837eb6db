"""How a process ends: signals turned into exceptions, exit codes a script can trust, no MLflow run left RUNNING.

* :class:`ExitOnSignal` (around a command in :func:`lightning_implicit.cli.main`): SIGTERM (``timeout``, SLURM,
  torchrun) raises :class:`Terminated` where the process is, so every ``finally`` and ``except KeyboardInterrupt``
  runs (a sweep stops its workers and closes its runs as after Ctrl-C); the command then exits ``128 + signal``
  (143 for SIGTERM, 130 for SIGINT), the shell's convention.
* :func:`end_failed_run`: a run whose training raised is ended FAILED (KILLED after a signal) with the error as
  its ``error`` tag.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["Terminated", "ExitOnSignal", "end_failed_run", "terminated_cause"]


class Terminated(KeyboardInterrupt):
    """The process received ``signum`` (a ``KeyboardInterrupt``, so the code that stops cleanly on Ctrl-C stops
    cleanly on SIGTERM too)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class ExitOnSignal:
    """``with ExitOnSignal() as sig:`` raises :class:`Terminated` on SIGTERM (and on SIGINT where no other handler
    than Python's default is installed); ``sig.received`` is the first signal number seen (``None``: none).
    Main thread only (elsewhere a no-op); the previous handlers are restored on exit."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> ExitOnSignal:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                current = signal.getsignal(s)
                if s == signal.SIGINT and current is not signal.default_int_handler:
                    continue
                self._previous[s] = current
                signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handler(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        raise Terminated(signum)

    def exit_code(self, code: int) -> int:
        """``code``, or ``128 + signal`` when a signal ended the command."""
        return 128 + self.received if self.received is not None else code


def terminated_cause(err: BaseException) -> Terminated | None:
    """The :class:`Terminated` behind ``err`` (Lightning turns a ``KeyboardInterrupt`` in ``fit`` into
    ``sys.exit(1)``; the signal is its context)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, Terminated):
            return err
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
    except Exception:  # noqa: BLE001 - a store that is itself the problem must not hide the error
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
    except Exception:  # noqa: BLE001 - a store that is itself the problem must not hide the error
        pass
