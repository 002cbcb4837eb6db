"""Tests for lightning_implicit.datamodules.spiky_data (paper appendix A.3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lightning_implicit.datamodules import spiky_data as sd


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
    np.testing.assert_allclose(series.x, np.linspace(0, 100, 10_000), rtol=0, atol=1e-12)  # the authors' grid
    aliased = sd.generate_spiky_series(seed=0, generator="aliased")
    np.testing.assert_allclose(aliased.x, np.arange(10_000) * 0.1)
    assert series.card["generator"] == "authors" and aliased.card["generator"] == "aliased"
    with pytest.raises(ValueError, match="unknown spiky generator"):
        sd.generate_spiky_series(generator="author")
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
    np.testing.assert_allclose(
        series.y[spike],
        5
        * (
            np.sin(2 * series.x[spike])
            + np.sin(23 * series.x[spike])
            + np.sin(78 * series.x[spike])
            + np.sin(100 * series.x[spike])
        ),
    )
    assert np.abs(series.y[spike]).max() > 10  # genuinely spiky
    resid = series.y[~spike] - np.sin(series.x[~spike])
    assert abs(resid.mean()) < 0.03 and resid.std() == pytest.approx(0.25, rel=0.05)  # the authors' noise std
    loud = sd.generate_spiky_series(seed=0, generator="aliased")
    r2 = loud.y[~loud.is_spike] - np.sin(loud.x[~loud.is_spike])
    assert r2.std() == pytest.approx(0.5, rel=0.05)
    custom = sd.generate_spiky_series(seed=0, noise_std=0.1)
    r3 = custom.y[~custom.is_spike] - np.sin(custom.x[~custom.is_spike])
    assert r3.std() == pytest.approx(0.1, rel=0.05)


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
        np.testing.assert_array_equal(X[j], series.y[j : j + w])
        assert y[j] == series.y[j + w]
        assert spike[j] == series.is_spike[j + w]
    # consecutive windows shift by one point
    np.testing.assert_array_equal(X[1:, :-1], X[:-1, 1:])
    np.testing.assert_array_equal(X[1:, -1], y[:-1])


def test_windows_do_not_cross_split(series):
    w = 10
    Xte, yte, ste = sd.make_spiky_windows(series.test, window=w)
    assert Xte.shape == (3000 - w, w)
    np.testing.assert_array_equal(Xte[0], series.y[7000 : 7000 + w])  # no training context
    assert yte[0] == series.y[7000 + w]
    Xall, yall, sall = sd.make_spiky_windows(series, window=w)  # whole series: windowed per part
    assert len(yall) == (7000 - w) + (3000 - w)
    np.testing.assert_array_equal(Xall[7000 - w :], Xte)
    # no window contains both a train and a test point: no row matches the straddling slices
    for start in range(7000 - w, 7000):
        assert not np.any(np.all(Xall == series.y[start : start + w], axis=1))
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
    assert card["noise"]["std"] == 0.25 and card["noise"]["variance"] == 0.0625
    assert card["dx"] == pytest.approx(100 / 9999) and card["synthetic"] is True
    assert card["n_windows"] == {"train": 6990, "test": 2990}
    assert card["max_abs_spike"] <= 20


def test_task_units_and_references_against_a_direct_computation():
    """Trained on min-max scaled (or raw) values, the task reports raw MSE, the paper's units and three
    references, each recomputed here from the raw windows."""
    import torch
    from lightning_implicit.datamodules.spiky import SpikyDataModule

    dm = SpikyDataModule(n_train=1400, n_test=600, n_regions_train=4, scale="minmax")
    dm.setup()
    raw = sd.load_spiky_dataset(window=10, seed=0, n_train=1400, n_test=600, n_regions_train=4)
    lo, width = raw.series.train.y.min(), np.ptp(raw.series.train.y)
    assert dm.splits.x_train.min() == pytest.approx(0.0, abs=1e-12) and dm.splits.x_train.max() <= 1.0
    np.testing.assert_allclose(dm.splits.tests[0].y[:, 0] * width + lo, raw.y_test, rtol=1e-12)
    # a forecaster that repeats the window's last value, given in model units, scores the 'last' reference
    test = dm.splits.tests[0]
    pred = torch.as_tensor(test.x[:, -1, :])
    out = dm.evaluate(pred, torch.as_tensor(test.y), 1)
    last_mse = float(np.mean((raw.X_test[:, -1] - raw.y_test) ** 2))
    assert out["mse"] == pytest.approx(last_mse, rel=1e-9) == pytest.approx(out["ref_last_mse"], rel=1e-9)
    assert out["mse_paper"] == pytest.approx(last_mse / width**2, rel=1e-9)
    assert out["ref_mean_mse"] == pytest.approx(
        float(np.mean((raw.y_train.mean() - raw.y_test) ** 2)), rel=1e-9
    )
    design = np.hstack([raw.X_train, np.ones((len(raw.X_train), 1))])
    coef = np.linalg.solve(design.T @ design, design.T @ raw.y_train)
    linear = np.hstack([raw.X_test, np.ones((len(raw.X_test), 1))]) @ coef
    assert out["ref_linear_mse"] == pytest.approx(float(np.mean((linear - raw.y_test) ** 2)), rel=1e-6)
    # unscaled training gives the same raw metrics for the same raw predictions
    flat = SpikyDataModule(n_train=1400, n_test=600, n_regions_train=4, scale="none")
    flat.setup()
    out_raw = flat.evaluate(
        torch.as_tensor(flat.splits.tests[0].x[:, -1, :]), torch.as_tensor(flat.splits.tests[0].y), 1
    )
    assert out_raw["mse"] == pytest.approx(out["mse"], rel=1e-9)
    assert dm.data_card()["scale"]["mode"] == "minmax" and "mse_paper" in dm.data_card()["metric_units"]
    assert SpikyDataModule(n_train=1400, n_test=600, n_regions_train=4).scale == "none"  # the authors' code
