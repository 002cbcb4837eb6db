"""The mathematical tasks follow the paper's Table 3 exactly."""

from __future__ import annotations

import numpy as np
import pytest
from lightning_implicit.datamodules.synthetic import (
    ArithmeticDataModule,
    IdentityDataModule,
    RollingArgmaxDataModule,
    RollingAverageDataModule,
    log_grid,
)


def built(cls, **kw):
    dm = cls(n_train=2000, n_test=1000, **kw)
    return dm, dm.build()


def test_identity_ranges_and_targets():
    dm, s = built(IdentityDataModule, shifts=[10, 80])
    assert s.x_train.shape == (2000, 10) and np.array_equal(s.x_train, s.y_train)
    assert -5 <= s.x_train.min() < -4.9 and 4.9 < s.x_train.max() <= 5
    for t in s.tests:
        assert np.abs(t.x).max() <= t.shift and np.abs(t.x).max() > 0.98 * t.shift
        assert np.array_equal(t.x, t.y)


@pytest.mark.parametrize("operation", ["add", "sub"])
def test_arithmetic_exact_targets(operation):
    dm, s = built(ArithmeticDataModule, operation=operation, shifts=[10, 100_000])
    i, j, k, l = dm.indices
    assert 1 <= i < j <= 50 and 1 <= k < l <= 50
    x = s.x_train
    a = sum(x[:, m - 1] for m in range(i, j + 1))
    b = sum(x[:, m - 1] for m in range(k, l + 1))
    expected = a + b if operation == "add" else a - b
    np.testing.assert_allclose(s.y_train[:, 0], expected, rtol=1e-12, atol=1e-12)
    assert np.abs(x).max() <= 1
    big = s.tests[-1]
    assert np.abs(big.x).max() <= 50_000 and np.abs(big.x).max() > 49_000
    assert dm.spec.name == ("addition" if operation == "add" else "subtraction")


def test_arithmetic_indices_fixed_per_dataset_seed():
    assert ArithmeticDataModule(seed=3).indices == ArithmeticDataModule(seed=3).indices
    assert len({ArithmeticDataModule(seed=s).indices for s in range(6)}) > 1


def test_rolling_average_means_and_running_mean():
    dm, s = built(RollingAverageDataModule, shifts=[5, 100])
    assert s.x_train.shape == (2000, 10, 1) and s.y_train.shape == (2000, 10, 1)
    assert abs(s.x_train.mean() - 3.0) < 0.05 and abs(s.x_train.std() - 1.0) < 0.05
    np.testing.assert_allclose(s.y_train[:, 3, 0], s.x_train[:, :4, 0].mean(axis=1), rtol=1e-12)
    for t in s.tests:
        assert abs(t.x.mean() - (3 + t.shift)) < 0.1 and abs(t.x.std() - 1.0) < 0.1


def test_rolling_argmax_labels():
    dm, s = built(RollingArgmaxDataModule, shifts=[10, 100_000])
    x, y = s.x_train[..., 0], s.y_train
    assert y.dtype == np.int64 and y.shape == (2000, 10)
    for t in range(10):
        np.testing.assert_array_equal(y[:, t], np.argmax(x[:, : t + 1], axis=1))
    assert 0 <= x.min() and x.max() <= 1
    assert s.tests[-1].x.max() <= 100_000 and s.tests[-1].x.max() > 90_000
    # labels of the last step are roughly uniform over the 10 positions
    counts = np.bincount(y[:, -1], minlength=10)
    assert counts.min() > 100


def test_same_seed_same_data_and_different_seed_differs():
    a = ArithmeticDataModule(seed=1, n_train=100, n_test=10, shifts=[10]).build()
    b = ArithmeticDataModule(seed=1, n_train=100, n_test=10, shifts=[10]).build()
    c = ArithmeticDataModule(seed=2, n_train=100, n_test=10, shifts=[10]).build()
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.tests[0].x, b.tests[0].x)
    assert not np.array_equal(a.x_train, c.x_train)


def test_default_grids_cover_the_paper_ranges():
    assert IdentityDataModule().shift_grid[0] == 10 and IdentityDataModule().shift_grid[-1] == 80
    g = ArithmeticDataModule().shift_grid
    assert g[0] == 10 and g[-1] == 100_000 and len(g) >= 9
    assert RollingAverageDataModule().shift_grid[0] == 5 and RollingAverageDataModule().shift_grid[-1] == 100
    assert log_grid(10, 1000, 1) == [10, 100, 1000]


def test_folds_partition_the_in_distribution_data():
    seen = []
    for fold in range(5):
        dm = IdentityDataModule(n_train=100, n_test=10, shifts=[10], fold=fold)
        dm.setup()
        assert len(dm.train_set) == 80 and len(dm.val_set) == 20
        seen.append(dm.val_set.tensors[0])
    allval = np.concatenate([v.numpy() for v in seen])
    assert len(np.unique(allval[:, 0])) == 100  # every sample is validation data exactly once


def test_bad_configuration_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="shifts"):
        IdentityDataModule(shifts=[-1.5])  # any positive number is a shift (issue 19); not a negative one
    with pytest.raises(ValueError, match="fold"):
        IdentityDataModule(fold=5, n_folds=5)
    with pytest.raises(ValueError, match="operation"):
        ArithmeticDataModule(operation="mul")
