"""Spiky time series (paper appendix A.3): sin(x) + noise with short bursts of a high-frequency signal.

Paper: 7,000 training points then 3,000 test points; the training part has 20 spiky regions of 100
points and the test part a proportionate number; spiky points follow
``y = 5 (sin 2x + sin 23x + sin 78x + sin 100x)`` (so ``|y| <= 20``); other points follow
``y = sin x + eps``, ``eps ~ N(0, 0.25)``.

Choices the paper leaves open (all recorded in the data card):

* **Grid and noise** (``generator``): ``authors`` (the default) follows the authors' public generator
  (HoangP8/Implicit-Deep-Learning ``examples/im_rnn/spiky_data.py``): ``x = linspace(0, 100, 10000)``
  (``dx = 100/9999``, about 628 points per period of ``sin x`` and 6.3 per period of ``sin 100x``) and noise
  **std 0.25** (the paper's ``N(0, 0.25)`` read as ``N(mean, std)``, as that code does). ``aliased`` is this
  project's first reading: ``x_i = i * 0.1`` (the spiky frequencies alias on that grid: ``sin 78x`` and
  ``sin 100x`` are sampled below 1 point per period) and noise std 0.5 (``N(mean, variance)``). The paper's
  MSEs (<= 0.061) are on a min-max scaled target (see :mod:`lightning_implicit.datamodules.spiky`), so they cannot settle it.
* **Spiky points are noise-free** (the paper gives no noise for them), so ``|y| <= 20`` holds exactly.
* **Regions**: 20 in the training part and ``round(20 * 3000 / 7000) = 9`` in the test part, each exactly
  100 consecutive points, placed uniformly at random (seeded) inside their part, non-overlapping and
  separated by at least ``min_gap = 10`` ordinary points so that regions never merge.
* **Windows at the split**: a window (``window`` inputs + 1 target) never crosses the train/test
  boundary and test windows do *not* borrow the last training points as context: the first
  ``window`` test points serve only as inputs.  Train yields ``7000 - window`` windows, test
  ``3000 - window``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SpikyDataset",
    "SpikySeries",
    "generate_spiky_series",
    "load_spiky_dataset",
    "make_spiky_windows",
    "spike_signal",
]

SPIKE_FREQUENCIES = (2.0, 23.0, 78.0, 100.0)
SPIKE_AMPLITUDE = 5.0
# named generators: grid step dx and noise std of the ordinary points
GENERATORS = {
    "authors": {
        "dx": 100.0 / 9999.0,
        "noise_std": 0.25,
        "source": "authors' public generator: x = linspace(0, 100, 10000), noise std 0.25",
    },
    "aliased": {
        "dx": 0.1,
        "noise_std": 0.5,
        "source": "x_i = 0.1 i (spiky frequencies aliased), noise N(0, 0.25) read as variance 0.25",
    },
}


def spike_signal(x: np.ndarray) -> np.ndarray:
    """``5 (sin 2x + sin 23x + sin 78x + sin 100x)``, elementwise; ``|value| <= 20``."""
    x = np.asarray(x, dtype=np.float64)
    return SPIKE_AMPLITUDE * sum(np.sin(f * x) for f in SPIKE_FREQUENCIES)


@dataclass(frozen=True)
class SpikySeries:
    """A spiky series or one chronological part of it.

    ``x``: ``(n,)`` float64 grid; ``y``: ``(n,)`` float64 values; ``is_spike``: ``(n,)`` bool (point in a
    spiky region); ``region_starts``: ``(k,)`` int start indices of the spiky regions (relative to this
    series); ``split_index``: index of the first test point (``n`` for a training-only part, ``0`` for a
    test-only part); ``card``: data card of the generated series.
    """

    x: np.ndarray
    y: np.ndarray
    is_spike: np.ndarray
    region_starts: np.ndarray
    split_index: int
    card: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def _part(self, lo: int, hi: int, split_index: int) -> SpikySeries:
        rs = self.region_starts[(self.region_starts >= lo) & (self.region_starts < hi)] - lo
        return SpikySeries(self.x[lo:hi], self.y[lo:hi], self.is_spike[lo:hi], rs, split_index, self.card)

    @property
    def train(self) -> SpikySeries:
        """The first ``split_index`` points (training part)."""
        return self._part(0, self.split_index, self.split_index)

    @property
    def test(self) -> SpikySeries:
        """The points from ``split_index`` on (test part)."""
        return self._part(self.split_index, len(self), 0)


def _place_regions(rng: np.random.Generator, n: int, k: int, length: int, min_gap: int) -> np.ndarray:
    """``k`` sorted starts of non-overlapping length-``length`` regions in ``[0, n)``, >= ``min_gap`` apart.

    Uniform over all admissible placements: the free slack is split into ``k + 1`` parts by choosing
    ``k`` of ``slack + k`` slots without replacement (stars and bars).
    """
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    slack = n - k * length - (k - 1) * min_gap
    if slack < 0:
        raise ValueError(f"cannot fit {k} regions of {length} points (gap {min_gap}) into {n} points")
    slots = np.sort(rng.choice(slack + k, size=k, replace=False))
    return (slots - np.arange(k) + np.arange(k) * (length + min_gap)).astype(np.int64)


def generate_spiky_series(
    n_train: int = 7000,
    n_test: int = 3000,
    *,
    n_regions_train: int = 20,
    n_regions_test: int | None = None,
    region_len: int = 100,
    generator: str = "authors",
    dx: float | None = None,
    noise_std: float | None = None,
    min_gap: int = 10,
    seed: int = 0,
) -> SpikySeries:
    """Generate the seeded spiky series of paper appendix A.3 (defaults = the paper's sizes).

    ``generator`` names the grid step and noise (:data:`GENERATORS`); ``dx`` / ``noise_std`` override it.
    ``x_i = i * dx`` (dimensionless); ordinary points ``sin x_i + N(0, noise_std**2)``; spiky points
    (``region_len``-point regions, ``n_regions_train`` in the first ``n_train`` points and
    ``n_regions_test`` -- default ``round(n_regions_train * n_test / n_train)`` = 9 -- in the last
    ``n_test``) follow :func:`spike_signal` without noise.  Same seed -> identical series.
    """
    if generator not in GENERATORS:
        raise ValueError(f"unknown spiky generator {generator!r}; choose one of {sorted(GENERATORS)}")
    named = GENERATORS[generator]
    custom = dx is not None or noise_std is not None
    dx = named["dx"] if dx is None else float(dx)
    noise_std = named["noise_std"] if noise_std is None else float(noise_std)
    if n_regions_test is None:
        n_regions_test = round(n_regions_train * n_test / n_train)
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    x = np.arange(n, dtype=np.float64) * dx
    y = np.sin(x) + rng.normal(0.0, noise_std, size=n)
    starts_train = _place_regions(rng, n_train, n_regions_train, region_len, min_gap)
    starts_test = _place_regions(rng, n_test, n_regions_test, region_len, min_gap) + n_train
    starts = np.concatenate([starts_train, starts_test])
    is_spike = np.zeros(n, dtype=bool)
    for s in starts:
        is_spike[s : s + region_len] = True
    y[is_spike] = spike_signal(x[is_spike])
    card = {
        "task": "spiky",
        "source": "synthetic (paper appendix A.3)",
        "synthetic": True,
        "seed": seed,
        "n": n,
        "n_train": n_train,
        "n_test": n_test,
        "split": "chronological: first n_train points train, last n_test points test",
        "generator": generator + (" (dx/noise_std overridden)" if custom else ""),
        "generator_source": named["source"],
        "x_grid": f"x_i = i * {dx:.6g} for i = 0..{n - 1} (x in [0, {x[-1]:.6g}])",
        "dx": dx,
        "base_signal": "sin(x) + eps",
        "noise": {"distribution": "normal", "mean": 0.0, "std": noise_std, "variance": noise_std**2},
        "spike_signal": "5*(sin(2x) + sin(23x) + sin(78x) + sin(100x)), noise-free, |y| <= 20",
        "region_len": region_len,
        "min_gap": min_gap,
        "n_regions": {"train": int(n_regions_train), "test": int(n_regions_test)},
        "region_starts": {"train": starts_train.tolist(), "test": starts_test.tolist()},
        "spike_points": {"train": int(is_spike[:n_train].sum()), "test": int(is_spike[n_train:].sum())},
        "max_abs_spike": float(np.abs(y[is_spike]).max()) if is_spike.any() else 0.0,
    }
    return SpikySeries(x, y, is_spike, starts, n_train, card)


def _segment_windows(y: np.ndarray, spike: np.ndarray, window: int):
    n = len(y)
    if n <= window:
        return np.zeros((0, window)), np.zeros(0), np.zeros(0, dtype=bool)
    X = np.lib.stride_tricks.sliding_window_view(y[:-1], window).copy()
    return X, y[window:].copy(), spike[window:].copy()


def make_spiky_windows(
    series: SpikySeries | np.ndarray, window: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-step-ahead windows: ``X[j] = y[j : j + window]``, target ``y[j + window]``.

    Windows never cross ``series.split_index`` (a full series is windowed per part, train windows
    first); a plain array is one segment.

    Returns ``X`` ``(N, window)`` float64, ``y`` ``(N,)`` float64, ``is_spike`` ``(N,)`` bool (target point
    lies in a spiky region), with ``N = sum(len(part) - window)`` over the parts.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    if isinstance(series, SpikySeries):
        y, spike = series.y, series.is_spike
        cuts = sorted({0, int(series.split_index), len(series)})
    else:
        y = np.asarray(series, dtype=np.float64)
        spike = np.zeros(len(y), dtype=bool)
        cuts = [0, len(y)]
    parts = [
        _segment_windows(y[a:b], spike[a:b], window)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        if b > a
    ]
    if not parts:
        return np.zeros((0, window)), np.zeros(0), np.zeros(0, dtype=bool)
    X, t, s = (np.concatenate(p) for p in zip(*parts, strict=True))
    return X.astype(np.float64), t.astype(np.float64), s.astype(bool)


@dataclass(frozen=True)
class SpikyDataset:
    """Train/test windows (shapes ``(N, window)`` / ``(N,)`` / ``(N,)`` bool), the series and its card."""

    X_train: np.ndarray
    y_train: np.ndarray
    spike_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    spike_test: np.ndarray
    series: SpikySeries
    card: dict[str, Any]


def load_spiky_dataset(window: int = 10, seed: int = 0, **kwargs: Any) -> SpikyDataset:
    """Generate the series (:func:`generate_spiky_series` ``**kwargs``) and window each part separately."""
    series = generate_spiky_series(seed=seed, **kwargs)
    Xtr, ytr, str_ = make_spiky_windows(series.train, window)
    Xte, yte, ste = make_spiky_windows(series.test, window)
    card = dict(series.card) | {
        "window": window,
        "target": "next point y[j + window] (one step ahead)",
        "windows_at_split": "no window crosses the split; test windows use no training points as context",
        "n_windows": {"train": len(ytr), "test": len(yte)},
        "spike_targets": {"train": int(str_.sum()), "test": int(ste.sum())},
    }
    return SpikyDataset(Xtr, ytr, str_, Xte, yte, ste, series, card)
