"""The public API for tasks: the base datamodule (in-distribution train/val loaders, one test loader per shift)
and :class:`~lightning_implicit.task.TaskSpec`.

A task subclasses :class:`ShiftDataModule`, sets :attr:`spec` (a :class:`~lightning_implicit.task.TaskSpec`)
and implements :meth:`build`, returning the training data and the shifted test sets; a task defined by a
sampler subclasses :class:`SyntheticShiftDataModule` and implements ``sample``. The base does the
rest: seeded k-fold train/validation split, loaders, shift bookkeeping and the data card.

Every dataset yields ``(x, y, index)``; the index lets the shift sweep count every test sample exactly once
under a distributed sampler (which pads ranks with duplicates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from torchmetrics import functional as tmf

from lightning_implicit.task import TaskSpec

__all__ = [
    "table4_sizes",
    "TaskSpec",
    "ShiftDataModule",
    "SyntheticShiftDataModule",
    "DataSplits",
    "TestSet",
    "Standardizer",
    "log_grid",
]


def _stream_key(shift: float) -> tuple[int, ...]:
    """The random stream of a shift's test set: the integer itself, or (a tag and) the float's 64 bits."""
    if float(shift).is_integer():
        return (int(shift),)
    lo, hi = np.frombuffer(np.float64(shift).tobytes(), dtype=np.uint32)
    return (2**32 - 1, int(lo), int(hi))


def table4_sizes(task: str) -> dict[str, dict]:
    """The ``data.init_args.sizes`` of the task config ``task`` on the config search path (``{}`` if none)."""
    import yaml

    from lightning_implicit import confpath

    path = confpath.find("tasks", task, required=False)
    if path is None:
        return {}
    data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
    return {str(m): dict(v or {}) for m, v in ((data.get("init_args") or {}).get("sizes") or {}).items()}


@dataclass
class TestSet:
    """One test split: ``shift`` (the sweep axis: kappa or region k, any positive number), inputs and targets."""

    shift: float
    x: np.ndarray
    y: np.ndarray
    extras: dict = field(default_factory=dict)


@dataclass
class DataSplits:
    """What :meth:`ShiftDataModule.build` returns: in-distribution training data, shifted tests, a card."""

    x_train: np.ndarray
    y_train: np.ndarray
    tests: list[TestSet]
    card: dict = field(default_factory=dict)


@dataclass
class Standardizer:
    """Column-wise ``(v - mean) / std`` fitted on training data only (shape ``(features,)``)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, v: np.ndarray) -> Standardizer:
        flat = v.reshape(-1, v.shape[-1])
        std = flat.std(axis=0)
        return cls(mean=flat.mean(axis=0), std=np.where(std > 0, std, 1.0))

    def transform(self, v: np.ndarray) -> np.ndarray:
        return (v - self.mean) / self.std

    def inverse(self, v):
        mean = torch.as_tensor(self.mean, dtype=v.dtype, device=v.device) if torch.is_tensor(v) else self.mean
        std = torch.as_tensor(self.std, dtype=v.dtype, device=v.device) if torch.is_tensor(v) else self.std
        return v * std + mean


class BatchTensorDataset(TensorDataset):
    """A :class:`TensorDataset` whose batches are one index per tensor: the DataLoader's fetcher calls
    ``__getitems__`` with the batch's indices (any sampler, a distributed one included), and
    :func:`_batch_collate` passes the tensors through, instead of indexing and stacking sample by sample
    (which cost about as much as an implicit model's training step at batch 64)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


class _DrawsLikeOneStep(RandomSampler):
    """The training order of the speed path (``steps_per_call > 1``): the permutation a DataLoader of
    ``batch_size`` samples draws, and the same draws from ``generator`` after it. (A :class:`RandomSampler` draws
    a second permutation when it is read past the first; Lightning reads a loader of ``batch_size`` past it only
    for a last, partial batch, a loader of ``k`` batches whenever ``k * batch_size`` does not divide the set.)"""

    def __init__(self, data_source, generator: torch.Generator, batch_size: int) -> None:
        super().__init__(data_source, generator=generator)
        self.batch_size = batch_size

    def __iter__(self):
        n = len(self.data_source)
        yield from torch.randperm(n, generator=self.generator).tolist()
        if n % self.batch_size:
            torch.randperm(n, generator=self.generator)


def _batch_collate(batch):
    return batch if isinstance(batch, tuple) else torch.utils.data.default_collate(batch)


def _dataset(x: np.ndarray, y: np.ndarray, spec: TaskSpec) -> TensorDataset:
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    ydt = torch.long if spec.kind == "classification" else torch.float32
    yt = torch.as_tensor(np.ascontiguousarray(y), dtype=ydt)
    return BatchTensorDataset(xt, yt, torch.arange(len(xt)))


class ShiftDataModule(L.LightningDataModule):
    """Base datamodule of a shift-sweep task.

    Args:
        seed: data seed (the generated or subsampled data depend on it alone).
        batch_size: training batch size, or ``"full"``: every training sample in one batch (full-batch gradient
            descent, as the authors' notebooks train).  eval_batch_size: validation/test batch size.
        n_folds, fold: the in-distribution data are split into ``n_folds`` seeded folds; fold ``fold`` is
            the validation set (the paper's 5-fold cross-validation runs ``fold = 0 .. n_folds - 1``).
        num_workers: DataLoader workers.
        steps_per_call: opt-in speed path (default 1: Lightning's own loop, one mini-batch per training step).
            ``k > 1``: each Lightning training step receives ``k`` consecutive mini-batches of the same random
            order and the model takes one optimiser step per mini-batch itself (:mod:`~lightning_implicit.
            modules.multistep`): the same steps and weights, with Lightning's per-step cost paid once per ``k``.
            One device only, without the Trainer's clipping, accumulation, ``limit_train_batches`` or a
            step-based ``val_check_interval`` (refused with an error); Lightning's own step counters
            (``log(on_step=True)``, ``LearningRateMonitor``) count calls.
        sizes: model sizes for this task, ``{model: {argument: value}}`` (the paper's Table 4 sizes are the
            ``sizes`` of each conf/tasks/<task>.yaml); a model's module takes its size from here unless given.
    """

    def __init__(
        self,
        *,
        sizes: dict[str, dict] | None = None,
        seed: int = 0,
        batch_size: int | Literal["full"] = 64,
        eval_batch_size: int = 1024,
        n_folds: int = 5,
        fold: int = 0,
        num_workers: int = 0,
        steps_per_call: int = 1,
    ) -> None:
        super().__init__()
        if not (isinstance(steps_per_call, int) and steps_per_call >= 1):
            raise ValueError(f"steps_per_call must be an integer >= 1, got {steps_per_call!r}")
        self.steps_per_call = steps_per_call
        if n_folds < 2:
            raise ValueError(f"n_folds must be >= 2 (one fold is held out for validation), got {n_folds}")
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold must be in [0, {n_folds}), got {fold}")
        if (batch_size != "full" and (isinstance(batch_size, str) or batch_size < 1)) or eval_batch_size < 1:
            raise ValueError(
                f"batch sizes must be >= 1 (or batch_size 'full'), got {batch_size!r}, {eval_batch_size!r}"
            )
        self.seed, self.batch_size, self.eval_batch_size = seed, batch_size, eval_batch_size
        self.n_folds, self.fold, self.num_workers = n_folds, fold, num_workers
        self.splits: DataSplits | None = None
        self._sizes = None if sizes is None else {str(m): dict(v or {}) for m, v in dict(sizes).items()}

    @property
    def spec(self) -> TaskSpec:
        """The task's :class:`TaskSpec`; its ``presets`` are the model sizes (see :meth:`ShiftDataModule`)."""
        try:
            return self._spec
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no task spec: set self.spec = TaskSpec(...) in its __init__"
            ) from None

    @spec.setter
    def spec(self, spec: TaskSpec) -> None:
        # Model sizes, in order: the ``sizes`` argument (the task config's ``data.init_args.sizes``), the
        # TaskSpec's own presets (a task written in Python), the ``sizes`` of the task config of that name
        # (conf/tasks/<name>.yaml: where the paper's Table 4 sizes live, also for a datamodule built in Python).
        given = getattr(self, "_sizes", None)  # (None also when set before ShiftDataModule.__init__ ran)
        sizes = given if given is not None else (spec.presets or table4_sizes(spec.name))
        self._spec = replace(spec, presets=sizes)

    # ---- to implement by a task -------------------------------------------------------------------
    def build(self) -> DataSplits:
        """Generate or load the data (deterministic given ``self.seed``)."""
        raise NotImplementedError

    def rng(self, *stream: int) -> np.random.Generator:
        """An independent, reproducible random stream for ``(seed, *stream)``."""
        return np.random.default_rng([self.seed, *[int(s) for s in stream]])

    # ---- Lightning hooks ----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = self.build()
        n = len(splits.x_train)
        perm = self.rng(10_000).permutation(n)
        val_idx = np.sort(np.array_split(perm, self.n_folds)[self.fold])
        train_mask = np.ones(n, dtype=bool)
        train_mask[val_idx] = False
        self.train_set = _dataset(splits.x_train[train_mask], splits.y_train[train_mask], self.spec)
        self.val_set = _dataset(splits.x_train[val_idx], splits.y_train[val_idx], self.spec)
        self.test_sets = [_dataset(t.x, t.y, self.spec) for t in splits.tests]
        self.splits = splits

    @property
    def shifts(self) -> list[int]:
        """The shift value of each test dataloader, in order (dataloader index -> shift)."""
        if self.splits is None:
            self.setup()
        return [t.shift for t in self.splits.tests]

    @property
    def train_batch_size(self) -> int:
        """The training batch size in samples (``"full"`` resolved to the training set's size)."""
        return len(self.train_set) if self.batch_size == "full" else int(self.batch_size)

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Optimiser steps per epoch on each of ``world_size`` devices (the last mini-batch may be smaller)."""
        per_rank = math.ceil(len(self.train_set) / max(1, world_size))
        return max(1, math.ceil(per_rank / self.train_batch_size))

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        # steps_per_call k > 1: one batch holds the next k mini-batches of the same random permutation (the sampler
        # draws it whatever the batch size); the model splits it back into mini-batches of train_batch_size
        k = min(self.steps_per_call, self.steps_per_epoch())
        sampler = None if k == 1 else _DrawsLikeOneStep(self.train_set, g, self.train_batch_size)
        return DataLoader(
            self.train_set,
            batch_size=self.train_batch_size * k,
            shuffle=sampler is None,
            sampler=sampler,
            generator=g,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_batch_collate,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.eval_batch_size,
            num_workers=self.num_workers,
            collate_fn=_batch_collate,
        )

    def test_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(
                ds, batch_size=self.eval_batch_size, num_workers=self.num_workers, collate_fn=_batch_collate
            )
            for ds in self.test_sets
        ]

    # ---- evaluation and tracking --------------------------------------------------------------------
    def evaluate(
        self, pred: torch.Tensor, y: torch.Tensor, shift: int, idx: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Metrics of one test split from raw model outputs ``pred`` and targets ``y``.

        ``idx`` (ascending) are the rows of the split that ``pred`` covers (``None``: all of them, in order);
        tasks with per-row side information (spike masks, raw prices) index it with ``idx``.
        """
        p, t = self.spec.align(pred, y)
        out: dict[str, float] = {}
        for name in self.spec.metrics:
            if name == "mse":
                out["mse"] = float(tmf.mean_squared_error(p, t))
            elif name == "mse_scaled":  # MSE in the task's standardised target units
                out["mse_scaled"] = float(tmf.mean_squared_error(p, t))
            elif name == "mae":
                out["mae"] = float(tmf.mean_absolute_error(p, t))
            elif name == "accuracy":
                out["accuracy"] = float((p.argmax(dim=-1) == t).float().mean())
            else:
                raise ValueError(f"unknown metric {name!r} in task {self.spec.name!r}")
        return out

    def write_artifacts(self, outputs: dict[int, dict], folder, rows: list[dict]) -> list:
        """Task-specific figures from the sweep's predictions (``{shift: {"pred", "y", "idx"}}``) and its
        metric rows (what :meth:`evaluate` returned per shift, so figures need not recompute them).

        Write files into ``folder`` (a ``pathlib.Path``) and return their paths; logged under ``figures/``.
        """
        return []

    def data_card(self) -> dict:
        """What was generated or loaded: sizes, ranges, seed, shifts (logged with every run)."""
        if self.splits is None:
            self.setup()
        s = self.splits
        card = {
            "task": self.spec.name,
            "seed": self.seed,
            "n_train": int(len(self.train_set)),
            "n_val": int(len(self.val_set)),
            "fold": f"{self.fold}/{self.n_folds}",
            "shift_name": self.spec.shift_name,
            "shifts": [t.shift for t in s.tests],
            "n_test_per_shift": [int(len(t.x)) for t in s.tests],
            "x_train_range": [float(np.min(s.x_train)), float(np.max(s.x_train))],
            "test_x_ranges": {str(t.shift): [float(np.min(t.x)), float(np.max(t.x))] for t in s.tests},
        }
        card.update(s.card)
        return card


def log_grid(lo: float, hi: float, per_decade: int = 2) -> list[int]:
    """Integer log-spaced grid from ``lo`` to ``hi`` (inclusive), ``per_decade`` points per decade."""
    n = int(round(np.log10(hi / lo) * per_decade)) + 1
    return sorted({int(round(v)) for v in np.logspace(np.log10(lo), np.log10(hi), n)})


class SyntheticShiftDataModule(ShiftDataModule):
    """A task defined by two samplers: ``sample(rng, n, shift=None)`` -> ``(x, y)``.

    Args:
        n_train: in-distribution samples (split into train/validation folds).
        n_test: samples per shift.
        shifts: the kappa grid, positive numbers (integer shifts are the MLflow steps of `ood/*`; a grid with
            non-integers logs shift x 10^k as the step, k fixed by the task's grid and these shifts, and the value
            as `ood/shift`: ``tracking.sweep_log.shift_steps``). ``None``: the default grid.
        (others: see :class:`ShiftDataModule`)
    """

    default_shifts: tuple[int, ...] = ()

    def __init__(
        self, *, n_train: int = 10_000, n_test: int = 3_000, shifts: list[float] | None = None, **kw
    ) -> None:
        super().__init__(**kw)
        if n_train < self.n_folds or n_test < 1:
            raise ValueError(f"n_train must be >= n_folds and n_test >= 1, got {n_train}, {n_test}")
        shifts = list(self.default_shifts if shifts is None else shifts)
        if not shifts or any(not isinstance(s, (int, float)) or not s > 0 for s in shifts):
            raise ValueError(f"shifts must be a non-empty list of positive numbers, got {shifts}")
        grid = [int(s) if float(s).is_integer() else float(s) for s in shifts]
        self.n_train, self.n_test, self.shift_grid = n_train, n_test, grid

    def sample(self, rng: np.random.Generator, n: int, shift: float | None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Distribution text for the data card."""
        return {}

    def build(self) -> DataSplits:
        x, y = self.sample(self.rng(0), self.n_train, None)
        tests = []
        for k in self.shift_grid:
            xt, yt = self.sample(self.rng(1, *_stream_key(k)), self.n_test, k)
            tests.append(TestSet(shift=k, x=xt, y=yt))
        return DataSplits(x_train=x, y_train=y, tests=tests, card={"source": "generated", **self.describe()})
