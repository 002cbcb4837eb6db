"""What training logs, now that statistics stay on the device between logging intervals (issue 18)."""

from __future__ import annotations

import lightning as L
import mlflow
import pytest
import torch
from conftest import tiny_args

from lightning_implicit.runner import run_training


class StepStats(L.Callback):
    """The solver statistics of every optimiser step, read by the test (the module no longer reads them)."""

    def __init__(self) -> None:
        self.iters_mean: list[float] = []
        self.iters_max: list[float] = []

    def on_after_backward(self, trainer, pl_module) -> None:  # once per optimiser step
        st = pl_module.net.last_stats
        self.iters_mean.append(float(st.iterations.float().mean()))
        self.iters_max.append(float(st.iterations.max()))


def test_solver_statistics_are_logged_every_n_steps_as_window_means(mlflow_store):
    probe = StepStats()
    # 400 samples -> 320 training samples, batch 64: 5 steps per epoch, 3 epochs = 15 steps; every 4th step logged
    args = tiny_args("addition", "implicit", epochs=3, shifts=[10, 100]) + [
        "--trainer.log_every_n_steps",
        "4",
    ]
    res = run_training(args, extra_callbacks=[probe], test=False)
    client = mlflow.MlflowClient(mlflow_store)
    hist = sorted(client.get_metric_history(res.run_id, "train/iters_mean"), key=lambda m: m.step)
    assert [m.step for m in hist] == [3, 7, 11]  # Lightning's step index of steps 4, 8, 12
    for k, m in enumerate(hist):
        window = probe.iters_mean[4 * k : 4 * k + 4]
        assert m.value == pytest.approx(sum(window) / 4, rel=1e-6)
    hmax = sorted(client.get_metric_history(res.run_id, "train/iters_max"), key=lambda m: m.step)
    assert [m.value for m in hmax] == [max(probe.iters_max[4 * k : 4 * k + 4]) for k in range(3)]
    for name in ("train/converged_frac", "train/bwd_iters_mean", "train/bwd_converged_frac", "train/A_inf"):
        assert len(client.get_metric_history(res.run_id, name)) == 3, name
    assert max(m.value for m in client.get_metric_history(res.run_id, "train/A_inf")) <= 0.95 + 1e-6
    # the epoch's training loss: one value per epoch, as before
    assert len(client.get_metric_history(res.run_id, "train/loss")) == 3


def test_epoch_training_loss_is_the_sample_weighted_mean(mlflow_store):
    losses: list[tuple[float, int]] = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append((float(outputs["loss"]), len(batch[0])))

    # 330 training samples in batches of 64: the last batch has 10
    args = tiny_args("addition", "mlp", epochs=1, n_train=412, shifts=[10, 100])
    res = run_training(args, extra_callbacks=[Probe()], test=False)
    logged = mlflow.MlflowClient(mlflow_store).get_metric_history(res.run_id, "train/loss")
    assert len(logged) == 1
    expected = sum(v * n for v, n in losses) / sum(n for _, n in losses)
    assert logged[0].value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("interval", ["1", "50"])
def test_a_non_finite_loss_is_still_detected(interval, monkeypatch):
    """A NaN loss in one step raises FloatingPointError at the next logging interval or at the epoch's end."""
    from lightning_implicit.modules.base import ShiftModule

    calls = {"n": 0}  # optimiser steps taken
    original = ShiftModule.after_optimizer_step

    def counted(self):
        calls["n"] += 1
        original(self)

    def accumulate(self, loss, n, _orig=ShiftModule.keep_loss):
        if self.global_step == 2:  # the third step's loss (kept by training_step, before its optimiser step)
            loss = torch.full_like(loss, float("nan"))
        _orig(self, loss, n)

    monkeypatch.setattr(ShiftModule, "after_optimizer_step", counted)
    monkeypatch.setattr(ShiftModule, "keep_loss", accumulate)
    args = tiny_args("addition", "mlp", epochs=3, shifts=[10, 100]) + [
        "--trainer.log_every_n_steps",
        interval,
    ]
    with pytest.raises(FloatingPointError, match="non-finite training loss at epoch 0"):
        run_training(args, test=False)
    # detected at the interval (step 3) or at the end of the first epoch (5 steps), never later
    assert calls["n"] == (3 if interval == "1" else 5)


def test_unconverged_training_solves_warn_once_per_logging_window():
    """Training solves do not check convergence per step (a host read each); the callback warns per window."""
    import warnings

    from lightning_implicit.implicit.stats import ConvergenceWarning

    # 320 training samples, batch 64: 5 steps per epoch, 3 epochs = 15 steps; windows end at steps 4, 8, 12
    args = tiny_args("addition", "implicit", epochs=3, shifts=[10]) + [
        "--trainer.log_every_n_steps",
        "4",
        "--model.init_args.solver.max_iter",
        "1",
        "--tracking.enabled",
        "false",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_training(args, test=False)
    training = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    training = [m for m in training if m.startswith("training steps")]
    assert [m.split(":")[0] for m in training if "forward solves" in m] == [
        "training steps 1-4",
        "training steps 5-8",
        "training steps 9-12",
    ]
    assert "solver.max_iter" in training[0]
