"""Lightning's own per-step floor: a plain PyTorch loop against the barest Lightning ``Trainer`` on one small step.

Issue 30 asks the framework's default path (a full ``make train`` Trainer: automatic optimisation, progress bar,
checkpoint, MLflow) to be within 1.3x a plain loop per epoch for the implicit model at batch 64, whose step costs
about 0.5 ms here. This benchmark measures what Lightning alone costs per step with everything else removed, so
that the framework's ratio can be read against it: the same small module (a 50-20-1 ReLU MLP, about the implicit
model's step cost on addition), the same mini-batches (a ``DataLoader`` of batch 64 over in-memory tensors, 300
steps an epoch), Adam, one thread, trained

* by a plain loop (``zero_grad``, forward, MSE, ``backward``, ``step``);
* by ``Trainer(barebones=True)`` (no logger, checkpoint, progress bar, model summary, profiler or callbacks) with
  automatic optimisation, Lightning's default;
* by the same Trainer with manual optimisation (``self.manual_backward``, ``optimizer.step()`` in
  ``training_step``), the leaner public path.

The three alternate ``--repeats`` times; the medians per step and their ratios to the plain loop are printed, with
the CPU used by other processes (a figure measured on a busy machine says so).

Run alone: ``python -m benchmarks.bench_lightning_floor [--repeats 3] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.machine import OtherCPU

BATCH, STEPS_PER_EPOCH, FEATURES, HIDDEN = 64, 300, 50, 20


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))


class _Module(L.LightningModule):
    def __init__(self, manual: bool) -> None:
        super().__init__()
        self.net = _net()
        self.automatic_optimization = not manual

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


def _loader(data: tuple[torch.Tensor, torch.Tensor]) -> DataLoader:
    return DataLoader(TensorDataset(*data), batch_size=BATCH)


def plain(data, epochs: int) -> float:
    """Milliseconds per step of the plain loop."""
    net = _net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in _loader(data):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    return (time.perf_counter() - t0) / (epochs * STEPS_PER_EPOCH) * 1e3


def lightning(data, epochs: int, manual: bool) -> float:
    """Milliseconds per step of ``Trainer(barebones=True).fit`` (``manual``: manual optimisation)."""
    trainer = L.Trainer(
        max_epochs=epochs,
        barebones=True,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
    )
    module = _Module(manual)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the loader has no workers: Lightning says so)
        trainer.fit(module, _loader(data))
    return (time.perf_counter() - t0) / (epochs * STEPS_PER_EPOCH) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_lightning_floor", description=__doc__.splitlines()[0]
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv or [])
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # (its start/stop lines per fit)
    g = torch.Generator().manual_seed(0)
    data = (
        torch.randn(BATCH * STEPS_PER_EPOCH, FEATURES, generator=g),
        torch.randn(BATCH * STEPS_PER_EPOCH, 1, generator=g),
    )
    others = OtherCPU()
    times: dict[str, list[float]] = {"plain": [], "automatic": [], "manual": []}
    for _ in range(args.repeats):
        times["plain"].append(plain(data, args.epochs))
        times["automatic"].append(lightning(data, args.epochs, manual=False))
        times["manual"].append(lightning(data, args.epochs, manual=True))
    med = {k: statistics.median(v) for k, v in times.items()}
    other = others.cores()
    print(
        f"[lightning floor] batch {BATCH}, {STEPS_PER_EPOCH} steps x {args.epochs} epochs, median of {args.repeats}: "
        f"plain loop {med['plain']:.3f} ms/step; Trainer(barebones) automatic {med['automatic']:.3f} ms/step "
        f"= {med['automatic'] / med['plain']:.2f}x (+{med['automatic'] - med['plain']:.3f} ms), manual "
        f"{med['manual']:.3f} ms/step = {med['manual'] / med['plain']:.2f}x (+{med['manual'] - med['plain']:.3f} ms); "
        + (
            "other processes: unknown"
            if other is None
            else f"other processes used {other:.2f} cores meanwhile"
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
