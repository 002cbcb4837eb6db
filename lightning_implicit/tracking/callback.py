"""The Lightning callback that writes a run's record to MLflow (rank 0 only)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from .sweep_log import log_shift_sweep, shift_step_param

__all__ = ["TrackingCallback", "named_params", "PARAM_GROUPS"]

# Every MLflow param is ``<group>.<key>`` with one of these groups (plus ``seed``); the MLflow compare view's
# parallel-coordinates plot opens on the first three, in sorted order, of the params whose values differ between
# the runs compared, so a param never differs by a spelling ("None" beside its resolved value, "/" beside ".").
PARAM_GROUPS = ("model", "solver", "adjoint", "optim", "data", "trainer", "env")
_HPARAM_GROUPS = {"solver": "solver", "adjoint": "adjoint", "optim": "optim", "task": "data.task"}
_RESOLVED_BY_CALLBACK = ("hidden_features", "state_features", "arch_kwargs")  # sizes: resolved_params' values


class TrackingCallback(L.Callback):
    """Logs the resolved config and the data card at fit start, and the shift sweep after ``test``.

    Args:
        config_yaml: the resolved configuration (logged as ``config.yaml``).
        label: the model's name in plots and tables.
    """

    def __init__(self, config_yaml: str = "", label: str = "model") -> None:
        self.config_yaml, self.label = config_yaml, label

    @staticmethod
    def _mlflow(trainer):
        for lg in trainer.loggers:
            if isinstance(lg, MLFlowLogger):
                return lg
        return None

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module) -> None:
        lg = self._mlflow(trainer)
        if lg is None:
            return
        if self.config_yaml:
            lg.experiment.log_text(lg.run_id, self.config_yaml, "config.yaml")
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "data_card"):
            lg.experiment.log_text(
                lg.run_id, json.dumps(dm.data_card(), indent=2, default=str), "data_card.json"
            )
        from mlflow.entities import Param

        params = resolved_params(trainer, pl_module)
        lg.experiment.log_batch(lg.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    @rank_zero_only
    def on_test_end(self, trainer, pl_module) -> None:
        lg = self._mlflow(trainer)
        rows = getattr(pl_module, "sweep_results", None)
        if lg is None or not rows:
            return
        spec = pl_module.task
        log_shift_sweep(
            lg.experiment,
            lg.run_id,
            rows,
            task=spec.name,
            shift_name=spec.shift_name,
            shift_log=spec.shift_log,
            label=self.label,
            grid=_declared_grid(trainer.datamodule),
        )
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "write_artifacts"):
            with tempfile.TemporaryDirectory() as tmp:
                for path in dm.write_artifacts(pl_module.sweep_outputs, Path(tmp), rows):
                    lg.experiment.log_artifact(lg.run_id, str(path), artifact_path="figures")
        for k, v in getattr(pl_module, "train_eval_results", {}).items():  # eval_train: the training split
            lg.experiment.log_metric(lg.run_id, f"train_eval/{k}", v)
        arrays = pl_module.run_artifacts() if hasattr(pl_module, "run_artifacts") else {}
        if arrays:
            import numpy as np

            with tempfile.TemporaryDirectory() as tmp:
                for name, array in arrays.items():
                    path = Path(tmp) / f"{name}.npy"
                    np.save(path, array)
                    lg.experiment.log_artifact(lg.run_id, str(path), artifact_path="weights")


def _declared_grid(dm) -> tuple:
    """The task's declared shift grid (its datamodule's ``default_shifts``), ``()`` when it declares none."""
    return tuple(getattr(dm, "default_shifts", ()) or ())


def named_params(flat: dict[str, object]) -> dict[str, object]:
    """A LightningModule's flattened hyper-parameters (``solver/tol``, ``kappa``, ``_instantiator``) as MLflow
    params in the one naming style: ``solver.tol``, ``adjoint.tol``, ``optim.lr``, ``data.task.name``,
    ``model.kappa`` (a bare key is a model setting; ``model`` itself, a baseline's name, is ``model.name``).
    Private keys (``_instantiator``) go, and so does a size left ``None`` (the task's preset decides it, and
    :func:`resolved_params` logs the resolved value under the same name)."""
    out: dict[str, object] = {}
    for key, value in flat.items():
        head, _, rest = key.partition("/")
        if head.startswith("_") or (not rest and head in _RESOLVED_BY_CALLBACK and value is None):
            continue
        if rest and head in _HPARAM_GROUPS:
            name = f"{_HPARAM_GROUPS[head]}.{rest.replace('/', '.')}"
        elif head == "model" and not rest:
            name = "model.name"
        else:
            name = f"model.{key.replace('/', '.')}"
        out[name] = value
    return out


def resolved_params(trainer, pl_module) -> dict[str, object]:
    """What this run actually trains, as flat MLflow params (logged once at fit start, never per step): the
    model's resolved sizes (its Table 4 preset plus overrides, only this model's), its parameter count, the
    data and trainer settings the UI filters by, and the environment."""
    import platform

    import lightning
    import torch

    hp = dict(getattr(pl_module, "hparams", {}) or {})
    spec = getattr(pl_module, "task", None)
    presets = getattr(spec, "presets", {}) or {}
    name = getattr(pl_module, "family", None) or hp.get("model")
    out: dict[str, object] = {}
    if isinstance(name, str) and name in presets:
        out.update({f"model.{k}": v for k, v in dict(presets[name]).items()})
    for key in ("hidden_features", "state_features", "arch_kwargs"):
        if hp.get(key) is not None:
            out[f"model.{key}"] = hp[key]
    if name == "implicit_rnn" and "model.state_features" not in out and "model.hidden_features" in out:
        out["model.state_features"] = out["model.hidden_features"]
    net = getattr(pl_module, "net", pl_module)
    out["model.class"] = type(net).__name__
    out["model.n_parameters"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    dm = trainer.datamodule
    for key in ("n_train", "n_val", "n_test", "batch_size", "shifts", "data", "interval"):
        value = getattr(dm, key, None) if dm is not None else None
        if value is None and dm is not None:
            value = getattr(dm, "hparams", {}).get(key) if hasattr(dm, "hparams") else None
        if value is not None:
            out[f"data.{key}"] = value
    grid = getattr(dm, "shift_grid", None) if dm is not None else None
    if grid:  # how the MLflow step of ood/* maps to the shift (tracking.sweep_log.shift_steps)
        out["data.shift_step"] = shift_step_param(grid, _declared_grid(dm))
    seed = os.environ.get("PL_GLOBAL_SEED")  # (set by seed_everything: LightningCLI's --seed_everything)
    if seed is not None:
        out["seed"] = int(seed)
    out.update(
        {
            "trainer.max_epochs": trainer.max_epochs,
            "trainer.max_steps": trainer.max_steps,
            "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
            "trainer.precision": trainer.precision,
            "trainer.accelerator": type(trainer.accelerator).__name__,
            "trainer.strategy": type(trainer.strategy).__name__,
            "trainer.num_devices": trainer.num_devices,
            "trainer.num_nodes": trainer.num_nodes,
            "env.python": platform.python_version(),
            "env.torch": torch.__version__,
            "env.lightning": lightning.__version__,
            "env.platform": platform.platform(),
        }
    )
    return out
