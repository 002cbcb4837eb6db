"""Spiky time series (paper appendix A.3, Table 1): one-step forecasts of a sine series with spiky regions.

The data layer (generation, windows, spike masks) is :mod:`datamodules.spiky_data`. This module turns it
into a task: inputs ``(batch, window, 1)``, targets ``(batch, 1)``; the chronological test part is the single
"shift" of the sweep (``shift = 1``). Metrics: MSE (the paper's) and MSE on targets inside and outside
spiky regions; a Figure 6-style plot of prediction vs truth over a test stretch with spikes.
"""

from __future__ import annotations

import numpy as np
import torch

from lightning_implicit.task import TaskSpec

from .base import DataSplits, ShiftDataModule, TestSet
from .spiky_data import load_spiky_dataset

__all__ = ["SpikyDataModule"]


class SpikyDataModule(ShiftDataModule):
    """Args:
        window: past values per input (Table 4's sequence models read 10).
        n_train, n_test, n_regions_train: series lengths and spiky regions of 100 points in the training part
            (the paper: 7,000, 3,000, 20; the test part gets a proportional number of regions).
        (others: ShiftDataModule)
    """

    def __init__(self, *, window: int = 10, n_train: int = 7000, n_test: int = 3000, n_regions_train: int = 20,
                 **kw) -> None:  # fmt: skip
        super().__init__(**kw)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window, self.n_train, self.n_test, self.n_regions_train = window, n_train, n_test, n_regions_train
        self.spec = TaskSpec(
            name="spiky", kind="regression", in_shape=(window, 1), target_shape=(1,),
            shift_name="split (1 = chronological test part)", metrics=("mse",),
            presets={"implicit_rnn": {"hidden_features": 20, "state_features": 20},
                     "implicit": {"hidden_features": 20},
                     "lstm": {"arch": "lstm", "hidden": [20, 20]},
                     "masked_decoder": {"arch": "masked_decoder", "d_model": 10, "nhead": 2,
                                        "dim_feedforward": 2048}},
        )  # fmt: skip

    def build(self) -> DataSplits:
        d = load_spiky_dataset(window=self.window, seed=self.seed, n_train=self.n_train, n_test=self.n_test,
                               n_regions_train=self.n_regions_train)  # fmt: skip
        test = TestSet(shift=1, x=d.X_test[..., None], y=d.y_test[:, None], extras={"is_spike": d.spike_test})
        return DataSplits(x_train=d.X_train[..., None], y_train=d.y_train[:, None], tests=[test],
                          card={"source": "generated", **d.card})  # fmt: skip

    def evaluate(self, pred, y, shift, idx=None):
        out = super().evaluate(pred, y, shift, idx)
        spike = torch.as_tensor(self.splits.tests[0].extras["is_spike"])
        spike = spike if idx is None else spike[idx]
        p, t = self.spec.align(pred, y)
        err = (p - t).pow(2).squeeze(-1).cpu()
        out["mse_spike"] = float(err[spike].mean()) if spike.any() else float("nan")
        out["mse_normal"] = float(err[~spike].mean()) if (~spike).any() else float("nan")
        return out

    def write_artifacts(self, outputs, folder, rows):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = outputs.get(1)
        if out is None:
            return []
        y = out["y"].reshape(-1).numpy()
        pred = out["pred"].reshape(-1).numpy()
        spike = np.asarray(self.splits.tests[0].extras["is_spike"])
        first = int(np.argmax(spike)) if spike.any() else 0
        lo, hi = max(0, first - 150), min(len(y), first + 250)
        fig, ax = plt.subplots(figsize=(9, 3.2))
        t = np.arange(lo, hi)
        ax.plot(t, y[lo:hi], label="truth", lw=1.2)
        ax.plot(t, pred[lo:hi], label="prediction", lw=1.0)
        ax.fill_between(t, -20, 20, where=spike[lo:hi], color="grey", alpha=0.15, label="spiky region")
        ax.set_xlabel("test window index (time)")
        ax.set_ylabel("y")
        ax.set_title("Spiky series: one-step forecasts over a test stretch (paper Figure 6)")
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        path = folder / "spiky_forecast.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return [path]
