"""The opt-in speed path: several optimiser steps per Lightning training step (``data.init_args.steps_per_call``).

Lightning's automatic optimisation costs about a millisecond of bookkeeping per training step on a CPU, as much as
a small implicit model's whole step at batch 64. With ``steps_per_call = k > 1`` the datamodule hands the model
``k`` consecutive mini-batches per Lightning step and :func:`several_steps` takes one optimiser step per
mini-batch through Lightning's public manual-optimisation API (``manual_backward``, ``LightningOptimizer.step``:
the backward and optimiser-step hooks run, ``trainer.global_step`` counts optimiser steps): the same steps and
weights as Lightning's own loop (``tests/test_training_loop.py``), with its per-step cost paid once per call.

What counts Lightning steps sees calls instead, so the Trainer options built on them are refused here with an
error naming the option (:func:`check_trainer`): gradient clipping and accumulation (the recipe's
``optim.grad_clip`` still clips), ``limit_train_batches``, a step-based ``val_check_interval``, several devices.
"""

from __future__ import annotations

import torch

from lightning_implicit.validate import ConfigError

__all__ = ["check_trainer", "several_steps"]


def check_trainer(trainer, k: int) -> None:
    """Raise :class:`~lightning_implicit.validate.ConfigError` (the CLI prints it as one ``error:`` line, exit 2)
    for a Trainer option that counts Lightning steps, which are not optimiser steps here."""
    limit, interval = trainer.limit_train_batches, trainer.val_check_interval
    refused = [
        (
            trainer.gradient_clip_val is not None,
            "--trainer.gradient_clip_val (use --model.init_args.optim.grad_clip)",
        ),
        (trainer.accumulate_grad_batches != 1, "--trainer.accumulate_grad_batches"),
        (isinstance(limit, int) or limit != 1.0, "--trainer.limit_train_batches"),
        (isinstance(interval, int) or interval != 1.0, "--trainer.val_check_interval"),
        (trainer.world_size > 1, "several devices"),
    ]
    for bad, what in refused:
        if bad:
            raise ConfigError(
                f"--data.init_args.steps_per_call {k} (several optimiser steps per Lightning step) cannot be "
                f"combined with {what}: set --data.init_args.steps_per_call 1 for Lightning's own loop"
            )


def several_steps(module, batch) -> torch.Tensor | None:
    """One optimiser step per mini-batch of ``batch`` (``train_batch_size`` samples each): the loss, zero grad,
    ``manual_backward``, the recipe's clipping, the step, a per-step schedule, ``after_optimizer_step``. Returns the
    call's sample-weighted mean loss (detached), ``None`` when ``trainer.max_steps`` was already reached."""
    x, y, _ = batch
    trainer = module.trainer
    size = trainer.datamodule.train_batch_size
    opt, sched = module.optimizers(), module.lr_schedulers()
    sched = sched if module.optim.lr_interval == "step" else None
    total, count = None, 0
    for xb, yb in zip(x.split(size), y.split(size), strict=True):
        if 0 < trainer.max_steps <= trainer.global_step:
            break
        loss = module.task.loss(module.predict_batch(xb, yb), yb)
        opt.zero_grad(set_to_none=True)
        module.manual_backward(loss)
        if module.optim.grad_clip > 0:
            module.clip_gradients(
                opt, gradient_clip_val=module.optim.grad_clip, gradient_clip_algorithm="norm"
            )
        opt.step()
        if sched is not None:
            sched.step()
        module.after_optimizer_step()
        loss = loss.detach()
        module.keep_loss(loss, len(xb))
        total = loss * len(xb) if total is None else total + loss * len(xb)
        count += len(xb)
    return None if total is None else total / count
