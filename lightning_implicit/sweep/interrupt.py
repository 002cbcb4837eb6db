"""Ctrl-C during a sweep, taken at a safe point: never in the middle of a database write.

A ``KeyboardInterrupt`` raised wherever the signal lands can leave an MLflow (or Optuna) sqlite connection inside an
open write transaction; the sweep's own bookkeeping after the interrupt (the trial's run marked KILLED, the
summary) then waits on that lock from another connection of the same process, and the process hangs ("database
is locked", measured about once in six interrupted sweeps on a loaded 2-core machine). Here the first Ctrl-C only
sets a flag; :meth:`DeferredInterrupt.check` raises ``KeyboardInterrupt`` at the next safe point (the end of a
training, validation or test batch, or between trials); a second Ctrl-C raises at once.
"""

from __future__ import annotations

import signal
import threading

import lightning as L

__all__ = ["DeferredInterrupt", "InterruptAtBatchEnd"]


class DeferredInterrupt:
    """``with DeferredInterrupt() as interrupt:`` defers SIGINT (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.pending = False
        self._previous = None
        self._installed = False

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handler(self, signum, frame) -> None:
        if self.pending:  # a second Ctrl-C: at once
            raise KeyboardInterrupt
        self.pending = True
        print("\nCtrl-C: stopping at the end of the current batch (Ctrl-C again to stop at once)", flush=True)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a Ctrl-C is pending (call it where no write is in flight)."""
        if self.pending:
            raise KeyboardInterrupt


class InterruptAtBatchEnd(L.Callback):
    """Raises a pending deferred Ctrl-C at the end of every training, validation and test batch."""

    def __init__(self, interrupt: DeferredInterrupt) -> None:
        self.interrupt = interrupt

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.interrupt.check()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        self.interrupt.check()

    def on_test_batch_end(self, *args, **kwargs) -> None:
        self.interrupt.check()
