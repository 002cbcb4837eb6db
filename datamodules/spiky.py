"""Spiky time series (paper appendix A.3, Table 1): one-step forecasts of a sine series with spiky regions.

The data layer (generation, windows, spike masks) is :mod:`lightning_implicit.datamodules.spiky_data`. This module turns it
into a task: inputs ``(batch, window, 1)``, targets ``(batch, 1)``; the chronological test part is the single
"shift" of the sweep (``shift = 1``). A Figure 6-style plot of prediction vs truth over a test stretch with spikes.

Units. Models see raw values (``scale: none``, the default, as the authors' public code trains: HoangP8/
Implicit-Deep-Learning ``examples/im_rnn``) or the series min-max scaled to [0, 1] on the training part
(``scale: minmax``). Measured (seed 0, the task's default recipe, authors' generator): test MSE raw / paper
units, implicitRNN 0.915 / 0.00066 on raw values against 1.578 / 0.00115 min-max scaled; LSTM 0.770 / 0.00056
against 1.454 / 0.00106. Every metric is computed from predictions mapped back to raw units:

* ``mse`` (raw units), ``mse_spike`` / ``mse_normal`` (raw, targets inside / outside spiky regions);
* ``mse_paper``: the same MSE in the paper's units, i.e. of the target min-max scaled by the training part's
  range (``mse / range**2``). The paper's Table 1 values (0.004 ... 0.061) are consistent with these units
  only: on them a predictor of the training mean scores about the paper's LSTM/Transformer level;
* reference forecasters on the same test windows, so a model can be placed against them:
  ``ref_mean_*`` (the training mean), ``ref_last_*`` (the window's last value) and ``ref_linear_*`` (a least
  squares linear fit of the target on the window's values and an intercept, fitted on the training windows),
  each as ``..._mse`` (raw) and ``..._mse_paper``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from lightning_implicit.data import DataSplits, ShiftDataModule, TestSet
from lightning_implicit.task import TaskSpec

from .spiky_data import GENERATORS, load_spiky_dataset

__all__ = ["SpikyDataModule"]


class SpikyDataModule(ShiftDataModule):
    """Args:
    window: past values per input (Table 4's sequence models read 10).
    n_train, n_test, n_regions_train: series lengths and spiky regions of 100 points in the training part
        (the paper: 7,000, 3,000, 20; the test part gets a proportional number of regions).
    generator: ``authors`` (grid and noise of the authors' public generator) or ``aliased`` (this
        project's first reading: grid step 0.1, noise std 0.5); see :mod:`lightning_implicit.datamodules.spiky_data`.
    scale: ``none`` (models see raw values, as the authors' code) or ``minmax`` (scaled to [0, 1] by the
        training part's min and max).
    (others: ShiftDataModule)
    """

    def __init__(
        self,
        *,
        window: int = 10,
        n_train: int = 7000,
        n_test: int = 3000,
        n_regions_train: int = 20,
        generator: Literal["authors", "aliased"] = "authors",
        scale: Literal["none", "minmax"] = "none",
        **kw,
    ) -> None:
        super().__init__(**kw)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if generator not in GENERATORS:
            raise ValueError(f"generator must be one of {sorted(GENERATORS)}, got {generator!r}")
        if scale not in ("minmax", "none"):
            raise ValueError(f"scale must be 'minmax' or 'none', got {scale!r}")
        self.window, self.n_train, self.n_test, self.n_regions_train = (
            window,
            n_train,
            n_test,
            n_regions_train,
        )
        self.generator, self.scale = generator, scale
        self.spec = TaskSpec(
            name="spiky",
            kind="regression",
            in_shape=(window, 1),
            target_shape=(1,),
            shift_name="split (1 = chronological test part)",
            metrics=("mse",),
        )

    def build(self) -> DataSplits:
        d = load_spiky_dataset(
            window=self.window,
            seed=self.seed,
            n_train=self.n_train,
            n_test=self.n_test,
            n_regions_train=self.n_regions_train,
            generator=self.generator,
        )
        train_y = d.series.train.y
        self.lo, self.range = float(train_y.min()), float(np.ptp(train_y))
        if self.scale == "none":
            offset, width = 0.0, 1.0
        else:
            offset, width = self.lo, self.range
        self._offset, self._width = offset, width
        refs = _reference_forecasts(d.X_train, d.y_train, d.X_test)
        test = TestSet(
            shift=1,
            x=(d.X_test[..., None] - offset) / width,
            y=(d.y_test[:, None] - offset) / width,
            extras={"is_spike": d.spike_test, "y_raw": d.y_test, "refs": refs},
        )
        card = {
            "source": "generated",
            **d.card,
            "scale": {
                "mode": self.scale,
                "train_min": self.lo,
                "train_range": self.range,
                "note": "models see (v - train_min) / train_range"
                if self.scale == "minmax"
                else "models see raw values",
            },
            "metric_units": "mse, mse_spike, mse_normal: raw units; mse_paper: mse / train_range**2 (the "
            "target min-max scaled by the training part, the paper's Table 1 units)",
            "reference_test_mse": {name: _mse(p, d.y_test) for name, p in refs.items()},
        }
        return DataSplits(
            x_train=(d.X_train[..., None] - offset) / width,
            y_train=(d.y_train[:, None] - offset) / width,
            tests=[test],
            card=card,
        )

    def to_raw(self, v: torch.Tensor) -> torch.Tensor:
        """Model units -> raw series units."""
        return v * self._width + self._offset

    def _squared_errors(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N,)`` squared errors in raw units of predictions ``pred`` for targets ``y`` (model units)."""
        p, t = self.spec.align(pred, y)
        return (self.to_raw(p.double()) - self.to_raw(t.double())).pow(2).reshape(-1).cpu()

    def _mse_metrics(self, err: torch.Tensor) -> dict[str, float]:
        mse = float(err.mean())
        return {"mse": mse, "mse_paper": mse / self.range**2}

    def train_metrics(self, pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Metrics on the training windows (``pred`` and ``y`` in model units), as :meth:`evaluate` names them."""
        return self._mse_metrics(self._squared_errors(pred, y))

    def evaluate(self, pred, y, shift, idx=None):
        err = self._squared_errors(pred, y)
        out = self._mse_metrics(err)
        extras = self.splits.tests[0].extras
        spike = torch.as_tensor(extras["is_spike"])
        sel = slice(None) if idx is None else np.asarray(idx)
        spike = spike if idx is None else spike[idx]
        out["mse_spike"] = float(err[spike].mean()) if spike.any() else float("nan")
        out["mse_normal"] = float(err[~spike].mean()) if (~spike).any() else float("nan")
        y_raw = extras["y_raw"][sel]
        for name, ref in extras["refs"].items():
            mse = _mse(ref[sel], y_raw)
            out[f"ref_{name}_mse"], out[f"ref_{name}_mse_paper"] = mse, mse / self.range**2
        return out

    def write_artifacts(self, outputs, folder, rows):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = outputs.get(1)
        if out is None:
            return []
        y = self.to_raw(out["y"].double()).reshape(-1).numpy()
        pred = self.to_raw(out["pred"].double()).reshape(-1).numpy()
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


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, dtype=np.float64) - y) ** 2))


def _reference_forecasts(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray
) -> dict[str, np.ndarray]:
    """Raw-unit forecasts of the test targets by three references (``X``: ``(N, window)`` raw windows).

    ``mean``: the training targets' mean; ``last``: the window's last value; ``linear``: least squares of the
    target on the window and an intercept, fitted on the training windows.
    """
    design = np.hstack([X_train, np.ones((len(X_train), 1))])
    coef, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    return {
        "mean": np.full(len(X_test), float(y_train.mean())),
        "last": X_test[:, -1].copy(),
        "linear": np.hstack([X_test, np.ones((len(X_test), 1))]) @ coef,
    }
