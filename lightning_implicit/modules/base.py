"""The thin shared base of every LightningModule: loss, torchmetrics, optimiser, and the shift sweep.

``test`` runs over one dataloader per shift; at its end :attr:`ShiftModule.sweep_results` holds one row per
shift (``{"shift": k, "mse": ..., ...}``) computed on every test sample exactly once (gathered across ranks
and de-duplicated by sample index), with the metrics the datamodule defines (``datamodule.evaluate``).
"""

from __future__ import annotations

import dataclasses
import math

import lightning as L
import torch
import torchmetrics
from torch import nn

from lightning_implicit.implicit.config import as_config
from lightning_implicit.task import TaskSpec

from .optim import OptimConfig
from .step_hooks import StepHooks

__all__ = ["ShiftModule"]


class ShiftModule(L.LightningModule):
    """Base of :class:`ImplicitModule` and :class:`BaselineModule`.

    Args:
        task: the task's :class:`TaskSpec` (the CLI links it from the datamodule).
        optim: the optimiser and learning-rate schedule (:class:`OptimConfig`; default ``OptimConfig()``:
            Adam at 0.01, no schedule).
        eval_train: after the shift sweep, also evaluate the training split with the sweep's settings (logged
            as ``train_eval/<metric>``: the "Train" columns of the paper's Table 1).
    """

    sequence_model: bool = False  # set by subclasses: does ``net`` take (batch, time, features)?

    def __init__(
        self,
        task: TaskSpec | dict | None = None,
        *,
        optim: OptimConfig = OptimConfig(),
        eval_train: bool = False,
    ) -> None:
        super().__init__()
        if task is None:
            raise ValueError("a model needs its task: pass task=datamodule.spec (the CLI links it for you)")
        self.optim = as_config(OptimConfig, optim, "optim")
        # The training loop is this module's own (:meth:`training_step`): several optimiser steps per call.
        self.automatic_optimization = False
        self.task = TaskSpec.from_dict(task) if isinstance(task, dict) else task
        # the validation loss, weighted by batch size (a NaN stays NaN: the sweep prunes on it)
        self.val_loss = torchmetrics.MeanMetric(nan_strategy="disable")
        if self.task.kind == "classification":
            self.val_metric = torchmetrics.classification.MulticlassAccuracy(
                self.task.num_classes, average="micro"
            )
            self.val_metric_name = "val/accuracy"
        else:
            self.val_metric = torchmetrics.MeanSquaredError()
            self.val_metric_name = "val/mse"
        self.sweep_results: list[dict] = []
        self.eval_train = eval_train
        self.train_eval_results: dict[str, float] = {}
        self.sweep_outputs: dict[int, dict[str, torch.Tensor]] = {}
        self._test_outputs: dict[int, list] = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # plain data only, so that checkpoints load with torch.load(weights_only=True)
        hp = checkpoint["hyper_parameters"]
        hp["task"] = self.task.to_dict()
        for key, value in hp.items():  # config objects (OptimConfig, SolverConfig, ...) as their fields
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                hp[key] = dataclasses.asdict(value)

    # ---- the network ---------------------------------------------------------------------------
    net: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task.is_sequence and not self.sequence_model:
            x = x.reshape(x.shape[0], -1)
        return self.net(x)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:  # parameter-free forecasters (naive baselines) still run through the same loop
            params = [nn.Parameter(torch.zeros(1, device=self.device))]
        return self.optim.build(params, self._schedule_length)

    def _schedule_length(self) -> int:
        """The run's length in the schedule's unit, optimiser steps or epochs (for the cosine schedule)."""
        trainer, dm = self.trainer, self.trainer.datamodule
        per_epoch = dm.steps_per_epoch(trainer.world_size)
        epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        steps = [
            n
            for n in (trainer.max_steps if trainer.max_steps > 0 else None, epochs and epochs * per_epoch)
            if n
        ]
        if not steps:
            raise ValueError("the cosine schedule needs trainer.max_steps or trainer.max_epochs")
        total = min(steps)
        return math.ceil(total / per_epoch) if self.optim.lr_interval == "epoch" else total

    # ---- steps -----------------------------------------------------------------------------------
    def predict_batch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's output for a batch (``y`` is there for decoders trained with teacher forcing)."""
        return self(x)

    def evaluate_batch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's output in the shift sweep (subclasses evaluate with their test-time settings)."""
        return self.predict_batch(x, y)

    def training_step(self, batch, batch_idx):
        """One optimiser step per mini-batch of ``batch`` (the datamodule's ``train_steps_per_call`` consecutive
        mini-batches of ``train_batch_size``): zero the gradients, the loss, backward, clip (``optim.grad_clip``),
        step, the schedule (``lr_interval: step``), :meth:`after_optimizer_step`. Returns the call's
        sample-weighted mean loss (detached). Backward and step call Lightning's hooks (:class:`StepHooks`)."""
        x, y, _ = batch
        size = getattr(self.trainer.datamodule, "train_batch_size", None) or len(x)
        opt, sched = self.optimizers(), self.lr_schedulers()
        hooks = self._step_hooks
        if hooks is None or hooks.trainer is not self.trainer:
            hooks = self._step_hooks = StepHooks(self.trainer, self)
        sched = sched if self.optim.lr_interval == "step" else None
        max_steps = self.trainer.max_steps
        before = self._loss_acc  # (the call's mean: acc - before; the accumulator is replaced, never mutated)
        steps = 0
        for xb, yb in zip(x.split(size), y.split(size), strict=True):
            if 0 < max_steps <= self.global_step:
                break
            loss = self.task.loss(self.predict_batch(xb, yb), yb)
            opt.zero_grad(set_to_none=True)
            hooks.backward(loss)
            if self.optim.grad_clip > 0:
                self.clip_gradients(
                    opt, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm"
                )
            hooks.step(opt)
            if sched is not None:
                sched.step()
            self.after_optimizer_step()
            self._accumulate_loss(loss.detach(), len(xb))
            steps += 1
            if self._window_ends():
                self._end_window()
        # Lightning's logging axis counts calls of this method; it counts optimiser steps, as with one per call.
        self.trainer.fit_loop.epoch_loop._batches_that_stepped += max(steps - 1, 0)
        if steps == 0:
            return None
        self._fold_losses()
        acc = self._loss_acc if before is None else self._loss_acc - before
        return acc[0] / acc[1]

    def after_optimizer_step(self) -> None:
        """Called after every optimiser step (implicit models project ``A`` back onto the well-posed set)."""

    # ---- training statistics: kept on the device, read and logged at the logging interval ---------------
    # A ``self.log`` call costs ~1 ms of Lightning bookkeeping and a host read stalls an accelerator, so nothing is
    # read or logged per step: each step's loss is kept (a reference) and summed on the device once per call into
    # the epoch's (sum, count); every ``trainer.log_every_n_steps`` optimiser steps and at the end of an epoch the
    # loss is checked for non-finite values, and callbacks log their window's statistics
    # (``on_logging_window_end``; implicit models' solver statistics: SolverStatsCallback).
    _step_hooks: StepHooks | None = None
    _loss_acc: torch.Tensor | None = None  # float64 (sum of loss * samples, samples) since the epoch's start
    _loss_window_start: int = 0
    _pending_losses: tuple[list[torch.Tensor], list[int]] | None = None  # steps not yet in ``_loss_acc``

    def _accumulate_loss(self, loss: torch.Tensor, n: int) -> None:
        """Keep one step's mean loss over ``n`` samples (summed by :meth:`_fold_losses`)."""
        if self._pending_losses is None:
            self._pending_losses = ([], [])
        self._pending_losses[0].append(loss)
        self._pending_losses[1].append(n)

    def _fold_losses(self) -> None:
        """Add the kept losses to the epoch's accumulator: a few operations on the device, no host read."""
        if not self._pending_losses or not self._pending_losses[0]:
            return
        losses, sizes = self._pending_losses
        loss = torch.stack(losses).to(torch.float64)
        n = loss.new_tensor(sizes)
        part = torch.stack([(loss * n).sum(), n.sum()])  # a NaN or inf in any step stays in the sum
        self._loss_acc = part if self._loss_acc is None else self._loss_acc + part
        self._pending_losses = None

    def on_train_epoch_start(self) -> None:
        self._loss_acc, self._pending_losses = None, None
        self._loss_window_start = self.global_step

    def on_train_end(self) -> None:
        self._step_hooks = None  # (it holds the trainer)

    def _window_ends(self) -> bool:
        """Did the optimiser step just taken end a logging window (every ``trainer.log_every_n_steps`` steps)?"""
        every = self.trainer.log_every_n_steps
        return every > 0 and self.global_step % every == 0

    def _end_window(self) -> None:
        """The end of a logging window: check the loss, then callbacks with ``on_logging_window_end`` log theirs."""
        self._fold_losses()
        self.check_finite_loss()
        for cb in self.trainer.callbacks:
            hook = getattr(cb, "on_logging_window_end", None)
            if hook is not None:
                hook(self.trainer, self)

    def log_step_metrics(self, means: dict[str, float], maxima: dict[str, float] | None = None) -> None:
        """Write step metrics at the optimiser step just taken (step index ``global_step - 1``, as Lightning's
        ``log(on_step=True)`` would), reduced across devices (``means`` averaged, ``maxima`` as maxima), to every
        logger and to ``trainer.callback_metrics``. (``self.log`` writes at Lightning's steps, i.e. calls of
        :meth:`training_step`, each of which takes several optimiser steps.)"""
        out = {}
        for values, op in ((means, "mean"), (maxima or {}, "max")):
            if values:  # one collective per kind of reduction
                t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
                out.update(zip(values, self.trainer.strategy.reduce(t, reduce_op=op).tolist(), strict=True))
        for lg in self.loggers:
            lg.log_metrics(out, step=self.global_step - 1)
        # ...and where callbacks that monitor a metric read it
        self.trainer.callback_metrics.update({k: torch.tensor(v) for k, v in out.items()})

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        if sched is not None and self.optim.lr_interval == "epoch":
            sched.step()
        self._fold_losses()
        self.check_finite_loss()
        acc = self._loss_acc
        if acc is not None and float(acc[1]) > 0:
            self.log(
                "train/loss", acc[0] / acc[1], on_step=False, on_epoch=True, prog_bar=True, sync_dist=True
            )

    def check_finite_loss(self) -> None:
        """Raise :class:`FloatingPointError` if a training loss since the epoch's start was NaN or infinite (one
        host read; called at the logging interval and at the end of each epoch)."""
        acc = self._loss_acc
        if acc is not None and not bool(torch.isfinite(acc[0])):
            raise FloatingPointError(
                f"non-finite training loss at epoch {self.current_epoch}, between steps {self._loss_window_start} and "
                f"{self.global_step}: lower the learning rate or check the data scaling"
            )

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        pred = self.predict_batch(x, y)
        self.val_loss.update(self.task.loss(pred, y), weight=len(x))
        self.val_metric.update(*self.task.align(pred, y))

    def on_validation_epoch_end(self) -> None:
        # Logged once per validation (a ``self.log`` costs ~1 ms); torchmetrics reduces across devices in compute.
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.log(self.val_metric_name, self.val_metric.compute())
        self.val_loss.reset()
        self.val_metric.reset()

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y, idx = batch
        pred = self.evaluate_batch(x, y)
        self._test_outputs.setdefault(dataloader_idx, []).append(self.collect_test(pred, y, idx))

    def collect_test(self, pred, y, idx) -> dict[str, torch.Tensor]:
        """What the sweep keeps of one test batch (subclasses add solver statistics)."""
        return {"pred": pred.detach(), "y": y, "idx": idx}

    def on_test_epoch_start(self) -> None:
        self._test_outputs = {}

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        shifts = dm.shifts
        rows, outputs = [], {}
        for i in sorted(self._test_outputs):
            out = self._gather(self._test_outputs[i])
            outputs[shifts[i]] = {"pred": out["pred"].cpu(), "y": out["y"].cpu(), "idx": out["idx"].cpu()}
            row = {"shift": shifts[i], "n": int(len(out["idx"]))}
            row.update(dm.evaluate(out["pred"], out["y"], shifts[i], idx=out["idx"].cpu()))
            row.update(self.sweep_extras(out))
            rows.append(row)
        self.sweep_results = rows
        self.sweep_outputs = outputs  # per shift: predictions and targets in sample order (for task figures)
        self._test_outputs = {}
        if self.eval_train:
            self.train_eval_results = self.evaluate_train_split(dm)

    @torch.no_grad()
    def evaluate_train_split(self, dm, chunk: int = 1024) -> dict[str, float]:
        """Metrics on the training split, with the shift sweep's settings (``eval_train``; Table 1's "Train"
        columns): the datamodule's ``train_metrics`` where it has one (its own units), else MSE or accuracy."""
        ds = dm.train_set
        preds, ys = [], []
        for i in range(0, len(ds), chunk):
            x, y, _ = ds[i : i + chunk]
            preds.append(self.evaluate_batch(x.to(self.device), y.to(self.device)).cpu())
            ys.append(y)
        pred, y = self.task.align(torch.cat(preds), torch.cat(ys))
        if hasattr(dm, "train_metrics"):
            out = dm.train_metrics(pred, y)
        elif self.task.kind == "regression":
            out = {"mse": float(((pred - y) ** 2).mean())}
        else:
            out = {"accuracy": float((pred.argmax(-1) == y).float().mean())}
        return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}

    def run_artifacts(self) -> dict[str, object]:
        """Arrays a run keeps beside its metrics (``{name: array}``, logged as ``weights/<name>.npy``)."""
        return {}

    def sweep_extras(self, out: dict[str, torch.Tensor]) -> dict[str, float]:
        """Per-shift extras beyond the task metrics (solver depth for implicit models)."""
        return {}

    def _gather(self, parts: list[dict]) -> dict[str, torch.Tensor]:
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if self.trainer.world_size > 1:
            out = {k: self.all_gather(v).flatten(0, 1) for k, v in out.items()}
        # a distributed sampler pads ranks with repeated samples: keep each index once
        idx, first = _first_occurrence(out["idx"])
        return {k: v[first] for k, v in out.items()}


def _first_occurrence(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.argsort(idx, stable=True)
    sorted_idx = idx[order]
    keep = torch.ones_like(sorted_idx, dtype=torch.bool)
    keep[1:] = sorted_idx[1:] != sorted_idx[:-1]
    return sorted_idx[keep], order[keep]
