"""Shared fixtures: one temporary MLflow store per test session, and tiny-run arguments."""

from __future__ import annotations

import math
import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    """Every test logs to a throw-away sqlite store (never the repository's ``mlruns/``).

    One store per session: a fresh MLflow sqlite database costs ~1.5 s of schema migration.
    """
    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def tiny_args(
    task: str,
    model: str,
    *,
    epochs: int = 1,
    n_train: int = 400,
    n_test: int = 100,
    shifts: list[int] | None = None,
    seed: int = 0,
    extra: list[str] | None = None,
) -> list[str]:
    """LightningCLI arguments for a seconds-long run of ``task`` x ``model``."""
    from lightning_implicit.runner import shorthand_args

    args = shorthand_args(task, model, seed=seed)
    args += [
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.log_every_n_steps",
        "1",
        "--data.init_args.n_train",
        str(n_train),
        "--data.init_args.n_test",
        str(n_test),
    ]
    if shifts is not None:
        args += ["--data.init_args.shifts", str(shifts)]
    return args + (extra or [])


@pytest.fixture
def one_thread():
    """Tiny matrices: one torch thread is faster and far less sensitive to other processes on a shared CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_problem(n, p, kappa, scale, batch, seed, dtype=torch.float64):
    """A random well-posed model (``||A||_inf <= kappa``) and inputs ``u`` of magnitude ``scale``."""
    from lightning_implicit.implicit import project_rows_l1

    g = torch.Generator().manual_seed(seed)
    A = project_rows_l1(torch.randn(n, n, generator=g, dtype=torch.float64) * (2.0 / n), kappa)
    B = torch.randn(n, p, generator=g, dtype=torch.float64) / math.sqrt(p)
    u = torch.randn(batch, p, generator=g, dtype=torch.float64) * scale
    return A.to(dtype), B.to(dtype), u.to(dtype)


def cli_command(*args: str) -> list[str]:
    """``lightning-implicit <args>`` as a subprocess command line, run by this interpreter."""
    import sys

    return [sys.executable, "-m", "lightning_implicit.cli", *args]


# the tiny addition run of the command-line tests: one epoch on a few hundred samples
TINY_TRAIN = [
    "train",
    "--task",
    "addition",
    "--model",
    "implicit",
    "--trainer.max_epochs",
    "1",
    "--data.init_args.n_train",
    "200",
    "--data.init_args.n_test",
    "50",
]


def hand_run(
    task: str, model: str, seed: int, metrics: dict[str, dict], outcome: str = "ok", run_id: str | None = None
):
    """A hand-made run for the paper's report code: ``metrics`` is ``{metric: {shift: value}}`` (the rows of its
    shift sweep); a run that did not end ``ok`` has no rows."""
    from lightning_implicit_paper.results import RunRecord

    shifts = dict.fromkeys(k for per in metrics.values() for k in per)
    rows = [{"shift": k, "n": 10, **{m: per[k] for m, per in metrics.items() if k in per}} for k in shifts]
    return RunRecord(
        task=task,
        model=model,
        seed=seed,
        key=f"{task}-{model}-{seed}",
        command="make train",
        run_id=run_id or f"{seed:032x}",
        experiment_id="1",
        outcome=outcome,
        rows=rows if outcome == "ok" else [],
    )


def edited_copy(src, tmp_path, old: str, new: str):
    """A copy of the text file ``src`` in ``tmp_path`` with its one occurrence of ``old`` replaced by ``new``."""
    from pathlib import Path

    text = Path(src).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = tmp_path / Path(src).name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path
