"""The modules train through Lightning's own loop: the same weights, bit for bit, as a plain PyTorch loop doing
the same steps (the task's loss, the optimiser and schedule of the recipe, clipping, accumulation, ``A``'s
projection after every optimiser step); and so does the opt-in speed path (``data.init_args.steps_per_call``:
several optimiser steps per Lightning step)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_implicit.runner import ImplicitCLI, run_training
from tests.conftest import tiny_args

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCHS = 3


def _args(model: str, *extra: str) -> list[str]:
    return tiny_args("addition", model, epochs=EPOCHS, n_train=500, shifts=[10]) + [
        "--tracking.enabled",
        "false",
        *extra,
    ]


def _plain_training(args: list[str], accumulate: int = 1) -> tuple[dict, int, float]:
    """The recipe of ``args`` trained by a plain loop over the same module and data: the mini-batches the
    datamodule's seeded sampler draws, in order; returns the weights, the optimiser steps and the last lr."""
    cli = ImplicitCLI(args=[*args, "--seed_everything", "0"])
    module, dm = cli.model, cli.datamodule
    dm.setup("fit")
    torch.manual_seed(0)  # (what the run's seed_everything sets before the fit)
    x_all, y_all, _ = dm.train_set.tensors
    n, bs = len(x_all), dm.train_batch_size
    cfg = module.optim
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
    opt = cls(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = math.ceil(n / bs)
    steps_per_epoch = math.ceil(batches / accumulate)
    sched = None
    if cfg.lr_schedule == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.lr_gamma)
    elif cfg.lr_schedule == "cosine":
        t_max = EPOCHS * steps_per_epoch if cfg.lr_interval == "step" else EPOCHS
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
    g = torch.Generator().manual_seed(dm.seed)
    steps = 0
    module.train()
    for _ in range(EPOCHS):
        torch.empty((), dtype=torch.int64).random_(generator=g)  # the DataLoader iterator's base seed
        perm = torch.randperm(n, generator=g)
        if n % bs:  # the sampler is read past its permutation only for a last, partial batch
            torch.randperm(n, generator=g)
        opt.zero_grad(set_to_none=True)
        for b, i in enumerate(range(0, n, bs)):
            idx = perm[i : i + bs]
            x, y = x_all[idx], y_all[idx]
            loss = module.task.loss(module.predict_batch(x, y), y)
            (loss / accumulate).backward()
            if (b + 1) % accumulate and b + 1 < batches:
                continue
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps += 1
            module.after_optimizer_step()
            if sched is not None and cfg.lr_interval == "step":
                sched.step()
        if sched is not None and cfg.lr_interval == "epoch":
            sched.step()
    return module.state_dict(), steps, opt.param_groups[0]["lr"]


@pytest.mark.parametrize("steps_per_call", [1, 16])
@pytest.mark.parametrize(
    "model, extra, accumulate",
    [
        # the implicit model with A's projection after every step and a per-step exponential schedule
        (
            "implicit",
            [
                "--model.init_args.optim.lr_schedule",
                "exponential",
                "--model.init_args.optim.lr_gamma",
                "0.99",
                "--model.init_args.optim.lr_interval",
                "step",
            ],
            1,
        ),
        # an MLP with the recipe's gradient clipping and a cosine schedule over epochs
        (
            "mlp",
            [
                "--model.init_args.optim.lr_schedule",
                "cosine",
                "--model.init_args.optim.grad_clip",
                "0.05",
                "--model.init_args.optim.lr",
                "0.05",
            ],
            1,
        ),
        # the implicit model, two mini-batches per optimiser step (Lightning's accumulate_grad_batches)
        ("implicit", ["--model.init_args.optim.lr_schedule", "cosine"], 2),
    ],
)
def test_lightning_trains_exactly_like_a_plain_loop(model, extra, accumulate, steps_per_call):
    if accumulate > 1 and steps_per_call > 1:
        pytest.skip("the speed path refuses accumulate_grad_batches (test_the_speed_path_refuses_...)")
    args = _args(model, *extra, "--trainer.accumulate_grad_batches", str(accumulate))
    res = run_training([*args, "--data.init_args.steps_per_call", str(steps_per_call)], test=False)
    assert res.module.automatic_optimization == (steps_per_call == 1)
    weights, steps, lr = _plain_training(args, accumulate)
    # 400 training samples in batches of 64: 7 mini-batches per epoch (the last of 16 samples)
    assert res.module.global_step == steps == EPOCHS * math.ceil(7 / accumulate)
    got = res.module.state_dict()
    assert got.keys() == weights.keys()
    for k in got:
        torch.testing.assert_close(got[k], weights[k], rtol=0, atol=0, msg=k)
    assert res.module.optimizers().param_groups[0]["lr"] == lr < res.module.optim.lr


@pytest.mark.parametrize("steps_per_call", [1, 16])
def test_max_steps_stops_inside_an_epoch(steps_per_call):
    args = _args(
        "implicit", "--trainer.max_steps", "10", "--data.init_args.steps_per_call", str(steps_per_call)
    )
    res = run_training(args, test=False)
    assert res.module.global_step == 10  # not a multiple of the 7 steps per epoch (nor of a call's)


@pytest.mark.parametrize(
    "option", [["--trainer.gradient_clip_val", "1"], ["--trainer.accumulate_grad_batches", "2"]]
)
def test_the_speed_path_refuses_trainer_options_that_count_calls(option):
    with pytest.raises(ValueError, match=f"steps_per_call 16 .* cannot be combined with {option[0]}"):
        run_training(_args("mlp", *option, "--data.init_args.steps_per_call", "16"), test=False)


def test_the_speed_path_keeps_the_order_when_the_batches_divide_the_set():
    # 512 training samples: 8 full mini-batches per epoch (Lightning does not read the sampler past them)
    args = tiny_args("addition", "implicit", epochs=3, n_train=640, shifts=[10]) + [
        "--tracking.enabled",
        "false",
    ]
    one = run_training([*args, "--data.init_args.steps_per_call", "1"], test=False).module.state_dict()
    many = run_training([*args, "--data.init_args.steps_per_call", "3"], test=False).module.state_dict()
    for k in one:
        torch.testing.assert_close(one[k], many[k], rtol=0, atol=0, msg=k)


def test_the_speed_path_refusal_is_one_error_line(capsys):
    from lightning_implicit.cli import main

    tiny = [
        "--trainer.enable_progress_bar",
        "false",
        "--data.init_args.n_train",
        "200",
        "--data.init_args.n_test",
        "50",
    ]
    options = ["--trainer.limit_train_batches", "2", "--data.init_args.steps_per_call", "4"]
    assert main(["train", "--task", "addition", "--model", "mlp", "--no-tuned", *tiny, *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --data.init_args.steps_per_call 4") and "limit_train_batches" in err[-1]


def test_a_fit_without_a_profiler_gets_the_no_op_one_and_a_chosen_profiler_is_kept():
    import lightning as L
    from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

    from lightning_implicit.modules.dispatch import NoOpProfiler, cheap_default_profiler

    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = L.Trainer(**quiet)
    cheap_default_profiler(trainer)
    assert type(trainer.profiler) is NoOpProfiler and isinstance(trainer.profiler, PassThroughProfiler)
    trainer = L.Trainer(profiler="simple", **quiet)
    cheap_default_profiler(trainer)
    assert type(trainer.profiler) is SimpleProfiler
    prof, seen = NoOpProfiler(), []
    with prof.profile("outer"), prof.profile("inner"):  # one shared context, nested and reused
        seen.append(1)
    with prof.profile("again"):
        seen.append(2)
    assert seen == [1, 2] and prof.summary() == ""


def test_module_attributes_are_stored_as_nn_module_stores_them():
    module = ImplicitCLI(args=_args("implicit")).model
    module.note = "a"
    module.note = "b"  # a plain attribute again: stored directly
    assert module.note == "b" and "note" not in dict(module.named_parameters())
    module.note = torch.nn.Parameter(torch.ones(2))  # a plain attribute becomes a parameter
    assert "note" in dict(module.named_parameters()) and "note" not in vars(module)
    module.note = None  # a parameter slot set to None stays a parameter slot, as in nn.Module
    assert "note" not in dict(module.named_parameters()) and module.note is None
    module.probe = 1
    module.probe = torch.nn.Linear(1, 1)  # a plain attribute becomes a submodule
    assert "probe" in dict(module.named_modules()) and "probe" not in vars(module)
