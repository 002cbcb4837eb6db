"""Task objectives and training recipes: the rolling-argmax ``last``/``all`` objectives, full-batch training and
the learning-rate schedules, each checked against an independent computation."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from conftest import tiny_args
from lightning_implicit.datamodules.synthetic import RollingArgmaxDataModule
from torch.nn import functional as F

from lightning_implicit.runner import run_training


def _spec(objective: str):
    return RollingArgmaxDataModule(n_train=50, n_test=5, shifts=[10], objective=objective).spec


def _per_step_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each step, by hand: ``-log softmax(logits)[label]``, shape ``(batch, time)``."""
    logp = logits - logits.logsumexp(dim=-1, keepdim=True)
    return -logp.gather(-1, labels[..., None])[..., 0]


def test_last_and_all_objectives_read_exactly_their_steps():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 10, 10, generator=g, requires_grad=True)
    labels = torch.randint(0, 10, (8, 10), generator=g)
    by_hand = _per_step_ce(logits.detach(), labels)
    last, all_ = _spec("last").loss(logits, labels), _spec("all").loss(logits, labels)
    assert float(last) == pytest.approx(float(by_hand[:, -1].mean()), rel=1e-6)
    assert float(all_) == pytest.approx(float(by_hand.mean()), rel=1e-6)
    (grad_last,) = torch.autograd.grad(last, logits)
    (grad_all,) = torch.autograd.grad(all_, logits)
    # 'last' never sends gradient to the earlier steps; 'all' does, to every step
    assert grad_last[:, :-1].abs().max() == 0 and grad_last[:, -1].abs().min() > 0
    assert (grad_all.abs().sum(dim=-1) > 0).all()
    # changing an earlier step's logits changes 'all' but not 'last'
    moved = logits.detach().clone()
    moved[:, 3] += 5.0 * torch.randn(8, 10, generator=g)
    assert float(_spec("last").loss(moved, labels)) == pytest.approx(float(last), rel=1e-7)
    assert float(_spec("all").loss(moved, labels)) != pytest.approx(float(all_), rel=1e-3)


def test_flat_model_logits_are_the_last_step_under_both_objectives():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 10, generator=g)
    labels = torch.randint(0, 10, (16, 10), generator=g)
    expected = float(F.cross_entropy(logits, labels[:, -1]))
    assert float(_spec("last").loss(logits, labels)) == pytest.approx(expected)
    assert float(_spec("all").loss(logits, labels)) == pytest.approx(expected)


def test_objective_is_validated_and_recorded():
    with pytest.raises(ValueError, match="objective must be"):
        RollingArgmaxDataModule(n_train=50, n_test=5, objective="first")
    card = RollingArgmaxDataModule(n_train=50, n_test=5, shifts=[10], objective="all").data_card()
    assert card["objective"] == "all" and card["evaluated_on"] == "final step"


def test_full_batch_is_one_batch_of_the_training_fold():
    dm = RollingArgmaxDataModule(n_train=50, n_test=5, shifts=[10], batch_size="full")
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and len(batches[0][0]) == len(dm.train_set) == 40
    with pytest.raises(ValueError, match="batch sizes"):
        RollingArgmaxDataModule(n_train=50, n_test=5, batch_size="half")


class _LrProbe(L.Callback):
    def __init__(self):
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # the rate of every optimiser step
        self.lrs.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize(
    ("schedule", "interval", "expected"),
    [
        ("exponential", "step", lambda t, n_steps, per_epoch: 0.02 * 0.9**t),
        ("exponential", "epoch", lambda t, n_steps, per_epoch: 0.02 * 0.9 ** (t // per_epoch)),
        ("cosine", "step", lambda t, n_steps, per_epoch: 0.01 * (1 + math.cos(math.pi * t / n_steps))),
    ],
)
def test_learning_rate_schedules_follow_their_formula(schedule, interval, expected):
    probe = _LrProbe()
    extra = [
        "--model.init_args.optim.lr",
        "0.02",
        "--model.init_args.optim.lr_schedule",
        schedule,
        "--model.init_args.optim.lr_gamma",
        "0.9",
        "--model.init_args.optim.lr_interval",
        interval,
        "--data.init_args.batch_size",
        "100",
        "--tracking.enabled",
        "false",
    ]
    run_training(
        tiny_args("rolling_argmax", "lstm", epochs=3, n_train=500, shifts=[10], extra=extra),
        extra_callbacks=[probe],
        test=False,
    )
    per_epoch, n_steps = 4, 12  # 400 training samples in batches of 100, 3 epochs
    assert len(probe.lrs) == n_steps
    for t, lr in enumerate(probe.lrs):
        assert lr == pytest.approx(expected(t, n_steps, per_epoch), rel=1e-9, abs=1e-12)


def test_cosine_schedule_over_epochs_with_a_step_budget():
    """A tuned recipe's budget is ``max_steps`` with ``max_epochs -1``: the cosine schedule over epochs still
    spans the run (10 steps of 4 batches an epoch: 3 epochs), not an OverflowError (a tune trial failed so)."""
    probe = _LrProbe()
    extra = ["--model.init_args.optim.lr", "0.02", "--model.init_args.optim.lr_schedule", "cosine"]
    extra += ["--model.init_args.optim.lr_interval", "epoch", "--data.init_args.batch_size", "100"]
    extra += ["--trainer.max_epochs", "-1", "--trainer.max_steps", "10", "--tracking.enabled", "false"]
    run_training(
        tiny_args("rolling_argmax", "lstm", epochs=3, n_train=500, shifts=[10], extra=extra),
        extra_callbacks=[probe],
        test=False,
    )
    assert len(probe.lrs) == 10
    for t, lr in enumerate(probe.lrs):
        assert lr == pytest.approx(0.01 * (1 + math.cos(math.pi * (t // 4) / 3)), rel=1e-9, abs=1e-12)


def test_rolling_argmax_task_recipe_is_the_authors():
    """The task config trains every model on the authors' recipe (the model file's lr is overridden)."""
    from lightning_implicit.runner import ImplicitCLI, shorthand_args

    for model in ("implicit_rnn", "lstm"):
        cli = ImplicitCLI(args=[*shorthand_args("rolling_argmax", model), "--tracking.enabled", "false"])
        m, dm = cli.model, cli.datamodule
        assert (m.optim.lr, m.optim.lr_schedule, m.optim.lr_gamma, m.optim.lr_interval) == (
            0.02,
            "exponential",
            0.995,
            "step",
        )
        assert dm.batch_size == "full" and dm.objective == "last" and cli.trainer.max_epochs == 1000
