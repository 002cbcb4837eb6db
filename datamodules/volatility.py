"""AMC volatility (paper section 2.2, Table 1): from 60 minute-VWAPs, predict the variance of the next 10.

The data layer (sources, validation, sessions, windows, data card) is :mod:`lightning_implicit.datamodules.market`.
This module makes it a task: inputs ``(batch, 60, 1)``, targets ``(batch, 1)``; the temporal shift is the
test period (``shift`` = its first year, 2021 in the paper). Inputs are standardised with one scalar mean/std
of the training prices, targets divided by one training scale (positive, so the variance stays a variance);
metrics are computed in raw units ($^2): MAPE (the paper's), RMSE, QLIKE and MSE of log-variance, and the naive
forecasts (zero; persistence = variance of the last 10 input prices) are scored on the same windows in every
run, because MAPE rewards under-prediction (predicting zero scores exactly 1.0).
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pandas as pd
import torch

from lightning_implicit.data import DataSplits, ShiftDataModule, TestSet
from lightning_implicit.task import TaskSpec

from .market import PAPER_TEST_RANGE, PAPER_TRAIN_RANGE, MarketOptions, load_volatility_dataset
from .market.options import date_range

__all__ = ["VolatilityDataModule", "variance_metrics"]


@functools.lru_cache(maxsize=8)
def _say_once(notice: str) -> None:
    """Print a notice once per process (a sweep builds the same data for every trial)."""
    print(notice, file=sys.stderr, flush=True)


def variance_metrics(pred: np.ndarray, y: np.ndarray, prefix: str = "") -> dict[str, float]:
    """MAPE, RMSE, QLIKE and MSE of log-variance of variance forecasts ``pred`` for truths ``y`` ($^2).

    QLIKE and the log loss need positive forecasts: predictions are floored at 1e-12 $^2 (counted as
    ``clipped_frac``). Zero-variance truths are excluded from MAPE/QLIKE/log (counted as ``zero_truth``).
    """
    pred, y = np.asarray(pred, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    pos = y > 0
    floor = 1e-12
    p = np.maximum(pred, floor)
    ratio = y[pos] / p[pos]
    return {
        f"{prefix}mape": float(np.mean(np.abs(pred[pos] - y[pos]) / y[pos])),
        f"{prefix}rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        f"{prefix}qlike": float(np.mean(ratio - np.log(ratio) - 1.0)),
        f"{prefix}mse_logvar": float(np.mean((np.log(p[pos]) - np.log(y[pos])) ** 2)),
        f"{prefix}clipped_frac": float(np.mean(pred < floor)),
        f"{prefix}zero_truth": float(np.mean(~pos)),
    }


class VolatilityDataModule(ShiftDataModule):
    """The AMC volatility task on real minute data (or the labelled daily / synthetic variants).

    Args:
        data: a CSV/parquet minute file (yfinance, Alpha Vantage, Polygon or generic layout), ``"synthetic"``
            (labelled synthetic everywhere), or ``None``: the cache, then a yfinance download when allowed.
        interval: ``1d`` (the daily variant: the only download that covers 2015-2021) or ``1m`` (Yahoo's last
            ~30 days of minute bars, accumulated in the cache; split by ``test_fraction``).
        cache_dir, allow_download, ticker, price_basis: see ``market.load_volatility_dataset``.
        train_range, test_range: inclusive session-date ranges, ``(FROM, TO)`` or ``"FROM..TO"`` (``TRAIN_RANGE=``,
            ``TEST_RANGE=``; the paper: 2015-02-01..2020-12-31, 2021).
        test_fraction: split the last fraction of sessions off as test instead of date ranges (``SPLIT=``). Without
            it a file that does not cover both date ranges is split chronologically (last 20% of sessions), with
            a notice; the data card says which rule was used.
        assume_tz: the zone of naive timestamps (``DATA_TZ=``); default the vendor's (Alpha Vantage: New York).
        input_len, horizon: minutes (or days in the daily variant) in and out.  stride: between window starts.
        synthetic_range: dates of the ``data="synthetic"`` series (its regime change is at ``test_range[0]``).
    """

    def __init__(
        self,
        *,
        data: str | None = None,
        interval: str = "1d",
        cache_dir: str | None = "data/market",
        allow_download: bool = True,
        ticker: str = "AMC",
        price_basis: str | None = None,
        train_range: tuple[str, str] | str = PAPER_TRAIN_RANGE,
        test_range: tuple[str, str] | str = PAPER_TEST_RANGE,
        test_fraction: float | None = None,
        assume_tz: str | None = None,
        input_len: int = 60,
        horizon: int = 10,
        stride: int = 1,
        synthetic_range: tuple[str, str] = ("2020-10-01", "2021-03-31"),
        **kw,
    ) -> None:
        super().__init__(**kw)
        if interval not in ("1d", "1m"):
            raise ValueError(f"interval must be '1d' or '1m', got {interval!r}")
        self.data, self.interval, self.cache_dir, self.allow_download = (
            data,
            interval,
            cache_dir,
            allow_download,
        )
        self.ticker, self.price_basis = ticker, price_basis
        self.train_range, self.test_range, self.test_fraction = (
            date_range(train_range, "train_range"),
            date_range(test_range, "test_range"),
            test_fraction,
        )
        if test_fraction is not None and not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction (SPLIT=) must be in (0, 1), got {test_fraction}")
        self.assume_tz = assume_tz
        self.input_len, self.horizon, self.stride = input_len, horizon, stride
        self.synthetic_range = tuple(synthetic_range)
        self.spec = TaskSpec(
            name="volatility",
            kind="regression",
            in_shape=(input_len, 1),
            target_shape=(1,),
            shift_name="test period (first year)",
            metrics=("mse_scaled",),
        )

    def build(self) -> DataSplits:
        d = load_volatility_dataset(
            MarketOptions(
                data=self.data,
                cache_dir=self.cache_dir,
                allow_download=self.allow_download,
                ticker=self.ticker,
                interval=self.interval,
                train_range=self.train_range,
                test_range=self.test_range,
                test_fraction=self.test_fraction,
                input_len=self.input_len,
                horizon=self.horizon,
                stride=self.stride,
                price_basis=self.price_basis,
                seed=self.seed,
                synthetic_range=self.synthetic_range,
                assume_tz=self.assume_tz,
                explicit_ranges=(self.train_range, self.test_range)
                != (tuple(PAPER_TRAIN_RANGE), tuple(PAPER_TEST_RANGE)),
            )
        )
        _say_once(d.card["changes"]["summary"])  # every row dropped, filled or excluded, by reason
        rule = d.card["splits"]["rule"]
        if rule.startswith("chronological, automatic"):
            _say_once(f"note: split {rule}")
        self.x_mean, self.x_std = float(d.X_train.mean()), float(d.X_train.std()) or 1.0
        self.y_scale = float(np.sqrt(np.mean(d.y_train**2))) or 1.0
        self.raw_test = (d.X_test, d.y_test)
        year = int(pd.Timestamp(d.t_test[0]).year) if len(d.t_test) else 1
        test = TestSet(shift=year, x=self._x(d.X_test), y=d.y_test[:, None] / self.y_scale)
        card = dict(d.card)
        card["scaling"] = {
            "x": "(price - mean) / std, one scalar each from training prices",
            "x_mean": self.x_mean,
            "x_std": self.x_std,
            "y": "variance / rms(training variance)",
            "y_scale": self.y_scale,
        }
        return DataSplits(
            x_train=self._x(d.X_train), y_train=d.y_train[:, None] / self.y_scale, tests=[test], card=card
        )

    def _x(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.x_mean) / self.x_std)[..., None].astype(np.float32)

    def train_metrics(self, pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Metrics on the training windows (``pred`` and ``y`` in model units): MSE there, MAPE and RMSE in $^2."""
        p = pred.reshape(-1).double().cpu().numpy() * self.y_scale
        t = y.reshape(-1).double().cpu().numpy() * self.y_scale
        m = variance_metrics(p, t)
        return {"mse": float(((pred - y) ** 2).mean()), "mape": m["mape"], "rmse": m["rmse"]}

    def evaluate(self, pred, y, shift, idx=None):
        out = super().evaluate(pred, y, shift, idx)
        Xraw, yraw = self.raw_test
        if idx is not None:
            Xraw, yraw = Xraw[idx.numpy()], yraw[idx.numpy()]
        p = pred.reshape(-1).double().cpu().numpy() * self.y_scale
        out.update(variance_metrics(p, yraw))
        out.update(variance_metrics(np.zeros_like(yraw), yraw, prefix="naive_zero_"))
        persistence = Xraw[:, -self.horizon :].var(axis=1)  # population variance (ddof=0) of the last prices
        out.update(variance_metrics(persistence, yraw, prefix="naive_persistence_"))
        out["synthetic"] = float(bool(self.splits.card.get("synthetic", False))) if self.splits else 0.0
        return out

    def data_card(self) -> dict:
        card = super().data_card()
        if card.get("synthetic"):
            card["label"] = "SYNTHETIC DATA — not AMC market data"
        return card
