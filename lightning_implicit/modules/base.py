"""The shared base of every LightningModule: loss, torchmetrics, optimiser, and the shift sweep.

Training is Lightning's automatic optimisation: one optimiser step per mini-batch (or per
``trainer.accumulate_grad_batches``), with the Trainer's clipping, precision, callbacks and loops.

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

from .multistep import check_trainer, several_steps
from .optim import OptimConfig

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

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets a plain attribute of the module around each hook it calls (~45 times a training step);
        # ``nn.Module.__setattr__`` checks it against the parameters, buffers and submodules first (~2 us). A name
        # already held as a plain attribute (in ``__dict__``, so none of those) given a value that is not a tensor
        # or a module is stored directly, as ``nn.Module`` would store it.
        if name in self.__dict__ and not isinstance(value, (torch.Tensor, nn.Module)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

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
        """The run's length in the schedule's unit, optimiser steps or epochs (for the cosine schedule).

        From Lightning's own count of the run's optimiser steps (``trainer.estimated_stepping_batches``: devices,
        ``accumulate_grad_batches``, ``limit_train_batches``, ``max_steps`` and ``max_epochs`` all counted)."""
        trainer = self.trainer
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the cosine schedule needs trainer.max_steps or trainer.max_epochs")
        if self.optim.lr_interval == "step":
            return int(total)
        batches = trainer.num_training_batches
        if not math.isfinite(batches):  # a step budget (max_epochs -1): Lightning counted it without the data
            trainer.fit_loop.setup_data()
            batches = trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError(
                "the cosine schedule over epochs needs a training loader with a length; "
                "use --model.init_args.optim.lr_interval step"
            )
        per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        return math.ceil(total / per_epoch)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip before each optimiser step. ``--trainer.gradient_clip_val`` (with ``gradient_clip_algorithm``),
        when given, wins over the recipe's ``optim.grad_clip`` (a 2-norm bound); the run records which one
        applied as the parameter ``optim.grad_clip_from`` (:meth:`on_fit_start`)."""
        if gradient_clip_val is None:
            if self.optim.grad_clip <= 0:
                return  # nothing clips (Lightning's clip_gradients would return without clipping)
            gradient_clip_val, gradient_clip_algorithm = self.optim.grad_clip, "norm"
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def grad_clip_from(self) -> str:
        """Which setting clips the gradients in this fit: ``trainer`` (``--trainer.gradient_clip_val``, which
        wins), ``optim`` (``optim.grad_clip``) or ``none``."""
        if self.trainer.gradient_clip_val is not None:
            return "trainer"
        return "optim" if self.optim.grad_clip > 0 else "none"

    def on_fit_start(self) -> None:
        # where the recipe (OptimConfig) and a Trainer option both set something, the run says which one applied
        for lg in self.loggers:
            lg.log_hyperparams({"optim": {"grad_clip_from": self.grad_clip_from()}})  # optim.grad_clip_from

    # ---- steps -----------------------------------------------------------------------------------
    def predict_batch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's output for a batch (``y`` is there for decoders trained with teacher forcing)."""
        return self(x)

    def evaluate_batch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's output in the shift sweep (subclasses evaluate with their test-time settings)."""
        return self.predict_batch(x, y)

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        # the opt-in speed path (data.init_args.steps_per_call > 1): several optimiser steps per training step
        k = getattr(self.trainer.datamodule, "steps_per_call", 1)
        if k > 1:
            check_trainer(self.trainer, k)
        self.automatic_optimization = k == 1

    def training_step(self, batch, batch_idx):
        """The task's loss on one mini-batch; Lightning runs backward, clipping, accumulation and the step.
        (With ``data.init_args.steps_per_call > 1``: :func:`~lightning_implicit.modules.multistep.several_steps`.)"""
        if not self.automatic_optimization:
            return several_steps(self, batch)
        x, y, _ = batch
        loss = self.task.loss(self.predict_batch(x, y), y)
        self.keep_loss(loss.detach(), len(x))
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Called after every optimiser step (implicit models project ``A`` back onto the well-posed set)."""

    # ---- the epoch's training loss: kept on the device, checked at the logging interval -----------------
    # A ``self.log`` call per step costs Lightning bookkeeping and a host read stalls an accelerator: each step's
    # loss is kept (a reference) and summed on the device into the epoch's (sum, count); every
    # ``trainer.log_every_n_steps`` optimiser steps and at the end of an epoch it is checked for non-finite values.
    # (Implicit models' solver statistics are their callback's: SolverStatsCallback.)
    _loss_acc: torch.Tensor | None = None  # float64 (sum of loss * samples, samples) since the epoch's start
    _loss_window_start: int = 0
    _checked_at: int = 0  # the global step of the last check
    _pending_losses: tuple[list[torch.Tensor], list[int]] | None = None  # steps not yet in ``_loss_acc``

    def __getstate__(self) -> dict:
        # a copy or pickle of the module (MLflow's logged model) leaves the fit's and the test's buffers behind
        state = super().__getstate__()
        for key in ("_loss_acc", "_pending_losses", "_test_outputs"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_test_outputs", {})

    def keep_loss(self, loss: torch.Tensor, n: int) -> None:
        """Keep one step's mean loss over ``n`` samples (summed on the device at the logging interval)."""
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

    def on_train_start(self) -> None:
        self._checked_at = self.global_step

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        step, every = self.global_step, self.trainer.log_every_n_steps
        if every > 0 and step // every > self._checked_at // every:  # a logging window ended
            self._checked_at = step
            self._fold_losses()
            self.check_finite_loss()

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        if not self.automatic_optimization and sched is not None and self.optim.lr_interval == "epoch":
            sched.step()  # (Lightning steps schedules itself in automatic optimisation only)
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
