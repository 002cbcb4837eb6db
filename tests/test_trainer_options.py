"""The Trainer's own options and callbacks work as in any Lightning project (issue 30): each is given on the real
command line (``lightning-implicit train``) to a tiny implicit model and a baseline, and its effect is checked
by a probe callback added with ``--trainer.callbacks+``."""

from __future__ import annotations

import importlib
import math

import lightning as L
import mlflow
import pytest
import torch

from lightning_implicit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

# 640 samples: 512 training samples, 8 mini-batches of 64 per epoch
TINY = [
    "--no-tuned",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.log_every_n_steps",
    "1",
    "--data.init_args.n_train",
    "640",
    "--data.init_args.n_test",
    "50",
    "--data.init_args.shifts",
    "[10]",
    "--trainer.callbacks+",
    "tests.test_trainer_options.Probe",
]
BATCHES = 8


class Probe(L.Callback):
    """What a run did: the gradients each optimiser step applied, validations, output dtypes, the Trainer."""

    last: Probe | None = None

    def __init__(self) -> None:
        Probe.last = self
        self.grad_norms: list[float] = []
        self.grad_max: list[float] = []
        self.validations = 0
        self.val_losses: list[float] = []
        self.profiled: list[str] = []
        self.train_batches = 0
        self.dtypes: set[torch.dtype] = set()
        self.deterministic: bool | None = None
        self.trainer: L.Trainer | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.trainer = trainer
        self.deterministic = torch.are_deterministic_algorithms_enabled()

        def applied(optimizer, args, kwargs) -> None:  # the gradients the step applied (after clipping)
            grads = [
                p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None
            ]
            self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            self.grad_max.append(max(float(g.abs().max()) for g in grads))

        # (a post hook: Lightning computes the gradients in the closure that optimizer.step calls)
        trainer.optimizers[0].register_step_post_hook(applied)
        pl_module.net.register_forward_hook(
            lambda mod, inp, out: self.dtypes.add(out.dtype) if mod.training else None
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_batches += 1

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validations += 1
            self.val_losses.append(float(trainer.callback_metrics["val/loss"]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        prof = trainer.profiler  # (what it recorded so far: a profiler is emptied at the end of the fit)
        self.profiled = list(
            getattr(prof, "recorded_durations", None) or getattr(prof, "profiled_actions", {})
        )


def _train(model: str, *options: str, epochs: int = 2) -> Probe:
    # the CLI builds the probe from its class path: that module's class (pytest may import this file by another name)
    probe_class = importlib.import_module("tests.test_trainer_options").Probe
    probe_class.last = None
    code = main(
        [
            "train",
            "--task",
            "addition",
            "--model",
            model,
            *TINY,
            "--trainer.max_epochs",
            str(epochs),
            *options,
        ]
    )
    assert code == 0
    return probe_class.last


def _run_of(experiment: str):
    (run,) = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return run


MODELS = ["implicit", "mlp"]


@pytest.mark.parametrize("model", MODELS)
def test_gradient_clipping_bounds_the_gradient_norm(model):
    free = _train(model, epochs=1)
    assert max(free.grad_norms) > 1e-3  # (without clipping the bound below would not hold)
    clipped = _train(model, "--trainer.gradient_clip_val", "1e-3", epochs=1)
    assert len(clipped.grad_norms) == BATCHES and max(clipped.grad_norms) <= 1e-3 * (1 + 1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_clipping_by_value_and_the_trainer_wins_over_the_recipe(model, tmp_path):
    exp = f"clip-{model}"
    probe = _train(
        model,
        "--trainer.gradient_clip_val",
        "1e-4",
        "--trainer.gradient_clip_algorithm",
        "value",
        "--model.init_args.optim.grad_clip",
        "1.0",
        "--tracking.experiment",
        exp,
        "--tracking.log_model",
        "false",
        epochs=1,
    )
    assert max(probe.grad_max) <= 1e-4 * (1 + 1e-5)
    assert (
        _run_of(exp).data.params["optim.grad_clip_from"] == "trainer"
    )  # the run records which setting applied


@pytest.mark.parametrize("model", MODELS)
def test_the_recipes_clipping_applies_without_the_trainers(model):
    probe = _train(model, "--model.init_args.optim.grad_clip", "1e-3", epochs=1)
    assert max(probe.grad_norms) <= 1e-3 * (1 + 1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_accumulation_halves_the_optimiser_steps(model):
    probe = _train(model, "--trainer.accumulate_grad_batches", "2")
    assert probe.trainer.global_step == len(probe.grad_norms) == 2 * BATCHES // 2
    assert probe.train_batches == 2 * BATCHES


@pytest.mark.parametrize("model", MODELS)
def test_bf16_mixed_precision(model):
    probe = _train(model, "--trainer.precision", "bf16-mixed", epochs=1)
    assert probe.trainer.precision == "bf16-mixed"
    # a baseline runs in bfloat16; an implicit model's solve stays in float32 (its tolerance needs it)
    assert probe.dtypes == ({torch.float32} if model == "implicit" else {torch.bfloat16})
    assert probe.val_losses and all(math.isfinite(v) for v in probe.val_losses)


@pytest.mark.parametrize("model", MODELS)
def test_early_stopping_stops(model):
    # no epoch improves on the first by 1e9: patience 1 stops after the second of 6
    probe = _train(
        model,
        "--trainer.callbacks+",
        "EarlyStopping",
        "--trainer.callbacks.monitor",
        "val/loss",
        "--trainer.callbacks.patience",
        "1",
        "--trainer.callbacks.min_delta",
        "1e9",
        epochs=6,
    )
    assert probe.trainer.should_stop and probe.validations == 2
    assert probe.trainer.global_step == 2 * BATCHES


@pytest.mark.parametrize("model", MODELS)
def test_model_checkpoint_on_val_loss_writes_the_best_file(model, tmp_path):
    probe = _train(
        model,
        "--trainer.enable_checkpointing",
        "true",
        "--trainer.callbacks+",
        "ModelCheckpoint",
        "--trainer.callbacks.monitor",
        "val/loss",
        "--trainer.callbacks.dirpath",
        str(tmp_path),
        "--trainer.callbacks.filename",
        "best-{epoch}",
        epochs=3,
    )
    ckpt = probe.trainer.checkpoint_callback
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"best-epoch={ckpt.best_model_path.split('=')[-1]}"]  # save_top_k 1: only the best
    best = torch.load(ckpt.best_model_path, weights_only=True)
    assert best["callbacks"]  # a full Lightning checkpoint (resumable)
    assert float(ckpt.best_model_score) == pytest.approx(min(probe.val_losses))


@pytest.mark.parametrize("model", MODELS)
def test_learning_rate_monitor_logs_the_lr(model):
    exp = f"lr-{model}"
    _train(
        model,
        "--trainer.callbacks+",
        "LearningRateMonitor",
        "--trainer.callbacks.logging_interval",
        "step",
        "--model.init_args.optim.lr_schedule",
        "exponential",
        "--model.init_args.optim.lr_gamma",
        "0.5",
        "--tracking.experiment",
        exp,
        "--tracking.log_model",
        "false",
    )
    run = _run_of(exp)
    hist = mlflow.MlflowClient().get_metric_history(run.info.run_id, "lr-Adam")
    lrs = [m.value for m in sorted(hist, key=lambda m: m.step)]
    assert len(lrs) == 2 * BATCHES and lrs[0] == pytest.approx(0.01) and lrs[-1] < lrs[0]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("profiler", ["simple", "advanced"])
def test_profilers_record_the_fit(model, profiler):
    probe = _train(model, "--trainer.profiler", profiler, epochs=1)
    assert any("training_step" in name for name in probe.profiled)


@pytest.mark.parametrize("model", MODELS)
def test_max_time_stops_the_fit(model):
    probe = _train(model, "--trainer.max_time", "00:00:00:01", epochs=100_000)
    assert 0 < probe.trainer.current_epoch < 100_000 and probe.trainer.should_stop


@pytest.mark.parametrize("model", MODELS)
def test_val_check_interval_validates_within_the_epoch(model):
    probe = _train(model, "--trainer.val_check_interval", "2", epochs=1)
    assert probe.validations == BATCHES // 2


@pytest.mark.parametrize("model", MODELS)
def test_limit_train_batches(model):
    probe = _train(model, "--trainer.limit_train_batches", "3")
    assert probe.trainer.global_step == probe.train_batches == 2 * 3


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_runs_one_batch_and_logs_no_run(model, capsys):
    exp = f"fast-{model}"
    probe = _train(model, "--trainer.fast_dev_run", "true", "--tracking.experiment", exp)
    assert probe.train_batches == 1 and probe.validations == 1 and probe.trainer.global_step == 1
    assert mlflow.get_experiment_by_name(exp) is None  # nothing logged: not even the experiment
    assert "fast_dev_run: nothing is logged to MLflow" in capsys.readouterr().err


@pytest.mark.parametrize("model", MODELS)
def test_deterministic(model):
    probe = _train(model, "--trainer.deterministic", "true", epochs=1)
    assert probe.deterministic is True


def test_a_default_run_overrides_no_callbacks(tmp_path):
    """The implicit model's SolverStatsCallback is added once per Trainer: the test run after the fit keeps it
    (Lightning's "callbacks returned in configure_callbacks will override existing callbacks" line is gone). In a
    fresh process, as a user runs it: Lightning's info lines then reach the console as on a user's screen,
    whatever another test left in this process's logging."""
    import os
    import subprocess
    import sys

    tiny = TINY[: TINY.index("--trainer.callbacks+")]  # (the probe lives in this test module)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    argv = ["train", "--task", "addition", "--model", "implicit", *tiny, "--trainer.max_epochs", "1"]
    out = subprocess.run(
        [sys.executable, "-m", "lightning_implicit.cli", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "max_epochs=1` reached" in text, text[-3000:]  # (Lightning's info lines are seen here)
    assert "will override existing callbacks" not in text
