"""The Lightning callback that writes a run's record to MLflow (rank 0 only)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from .sweep_log import log_shift_sweep

__all__ = ["TrackingCallback"]


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
            lg.experiment.log_text(lg.run_id, json.dumps(dm.data_card(), indent=2, default=str), "data_card.json")

    @rank_zero_only
    def on_test_end(self, trainer, pl_module) -> None:
        lg = self._mlflow(trainer)
        rows = getattr(pl_module, "sweep_results", None)
        if lg is None or not rows:
            return
        spec = pl_module.task
        log_shift_sweep(lg.experiment, lg.run_id, rows, task=spec.name, shift_name=spec.shift_name,
                        shift_log=spec.shift_log, label=self.label)  # fmt: skip
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "write_artifacts"):
            with tempfile.TemporaryDirectory() as tmp:
                for path in dm.write_artifacts(pl_module.sweep_outputs, Path(tmp), rows):
                    lg.experiment.log_artifact(lg.run_id, str(path), artifact_path="figures")
