"""Tests for datamodules.spiky_data (paper appendix A.3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datamodules import spiky_data as sd


@pytest.fixture(scope="module")
def series() -> sd.SpikySeries:
    return sd.generate_spiky_series(seed=0)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True values."""
    m = np.concatenate([[False], mask, [False]]).astype(int)
    d = np.diff(m)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))


def test_sizes_and_chronological_split(series):
    assert len(series) == 10_000 and series.split_index == 7_000
    assert len(series.train) == 7_000 and len(series.test) == 3_000
    np.testing.assert_allclose(series.x, np.arange(10_000) * 0.1)
    assert np.all(np.diff(series.x) > 0)
    assert series.train.x[-1] < series.test.x[0]
    np.testing.assert_array_equal(np.concatenate([series.train.y, series.test.y]), series.y)


def test_region_counts_lengths_and_separation(series):
    train_runs = runs(series.is_spike[:7000])
    test_runs = runs(series.is_spike[7000:])
    assert len(train_runs) == 20 and len(test_runs) == round(20 * 3000 / 7000) == 9
    assert all(length == 100 for _, length in train_runs + test_runs)
    # runs are separated (so they are distinct, non-overlapping regions) and stay inside their part
    all_runs = [(s, s + n) for s, n in train_runs] + [(7000 + s, 7000 + s + n) for s, n in test_runs]
    assert all(b[0] - a[1] >= 10 for a, b in zip(all_runs[:-1], all_runs[1:], strict=True))
    assert all(e <= 7000 for _, e in all_runs[:20]) and all(s >= 7000 for s, _ in all_runs[20:])
    np.testing.assert_array_equal(series.region_starts, [s for s, _ in all_runs])
    np.testing.assert_array_equal(series.train.region_starts, [s for s, _ in train_runs])
    np.testing.assert_array_equal(series.test.region_starts, [s for s, _ in test_runs])
    assert series.is_spike.sum() == 29 * 100


def test_magnitudes(series):
    spike = series.is_spike
    assert np.all(np.abs(series.y[spike]) <= 20.0)
    np.testing.assert_allclose(series.y[spike], 5 * (np.sin(2 * series.x[spike]) + np.sin(23 * series.x[spike])
                                                     + np.sin(78 * series.x[spike]) + np.sin(100 * series.x[spike])))
    assert np.abs(series.y[spike]).max() > 10  # genuinely spiky
    resid = series.y[~spike] - np.sin(series.x[~spike])
    assert abs(resid.mean()) < 0.03 and resid.std() == pytest.approx(0.5, rel=0.05)  # noise std 0.5
    quiet = sd.generate_spiky_series(seed=0, noise_std=0.25)
    r2 = quiet.y[~quiet.is_spike] - np.sin(quiet.x[~quiet.is_spike])
    assert r2.std() == pytest.approx(0.25, rel=0.05)


def test_seeded_determinism(series):
    again = sd.generate_spiky_series(seed=0)
    np.testing.assert_array_equal(series.y, again.y)
    np.testing.assert_array_equal(series.is_spike, again.is_spike)
    other = sd.generate_spiky_series(seed=1)
    assert not np.array_equal(series.is_spike, other.is_spike)
    a, b = sd.load_spiky_dataset(seed=3), sd.load_spiky_dataset(seed=3)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_window_target_alignment(series):
    w = 10
    X, y, spike = sd.make_spiky_windows(series.train, window=w)
    assert X.shape == (7000 - w, w) and y.shape == (7000 - w,) and spike.shape == (7000 - w,)
    assert X.dtype == np.float64 and spike.dtype == bool
    for j in (0, 1, 500, 6989):
        np.testing.assert_array_equal(X[j], series.y[j:j + w])
        assert y[j] == series.y[j + w]
        assert spike[j] == series.is_spike[j + w]
    # consecutive windows shift by one point
    np.testing.assert_array_equal(X[1:, :-1], X[:-1, 1:])
    np.testing.assert_array_equal(X[1:, -1], y[:-1])


def test_windows_do_not_cross_split(series):
    w = 10
    Xte, yte, ste = sd.make_spiky_windows(series.test, window=w)
    assert Xte.shape == (3000 - w, w)
    np.testing.assert_array_equal(Xte[0], series.y[7000:7000 + w])  # no training context
    assert yte[0] == series.y[7000 + w]
    Xall, yall, sall = sd.make_spiky_windows(series, window=w)  # whole series: windowed per part
    assert len(yall) == (7000 - w) + (3000 - w)
    np.testing.assert_array_equal(Xall[7000 - w:], Xte)
    # no window contains both a train and a test point: no row matches the straddling slices
    for start in range(7000 - w, 7000):
        assert not np.any(np.all(Xall == series.y[start:start + w], axis=1))
    plain = sd.make_spiky_windows(series.y[:50], window=w)
    assert plain[0].shape == (40, w) and not plain[2].any()


def test_dataset_and_card():
    ds = sd.load_spiky_dataset(window=10, seed=0)
    assert ds.X_train.shape == (6990, 10) and ds.X_test.shape == (2990, 10)
    assert ds.spike_train.sum() == ds.card["spike_targets"]["train"]
    assert ds.spike_train.sum() >= 20 * 100 - 10 and ds.spike_test.sum() >= 9 * 100 - 10
    card = ds.card
    json.dumps(card)
    assert card["n_regions"] == {"train": 20, "test": 9}
    assert card["noise"]["std"] == 0.5 and card["noise"]["variance"] == 0.25
    assert card["dx"] == 0.1 and card["synthetic"] is True
    assert card["n_windows"] == {"train": 6990, "test": 2990}
    assert card["max_abs_spike"] <= 20
