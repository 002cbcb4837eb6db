"""A pending signal taken at the end of a training, validation or test batch (the safe points of a sweep's
trials; the signal handling itself is :class:`lightning_implicit.lifecycle.DeferredSignals`)."""

from __future__ import annotations

import lightning as L

from lightning_implicit.lifecycle import DeferredSignals

__all__ = ["InterruptAtBatchEnd"]


class InterruptAtBatchEnd(L.Callback):
    """Raises a pending deferred signal (:class:`~lightning_implicit.lifecycle.Terminated`) when fit starts and at
    the end of every training, validation and test batch."""

    def __init__(self, interrupt: DeferredSignals) -> None:
        self.interrupt = interrupt

    def on_fit_start(self, *args, **kwargs) -> None:  # (before the first batch: a start-up is seconds)
        self.interrupt.check()

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.interrupt.check()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        self.interrupt.check()

    def on_test_batch_end(self, *args, **kwargs) -> None:
        self.interrupt.check()
