"""The trained model in MLflow: :func:`log_trained_model` logs a trained LightningModule's weights after its
shift sweep as a plain state dict (``runs:/<run id>/model/state_dict.pt``, with ``model/model.json``), which
:func:`lightning_implicit.evaluate.load_logged_model` reads with ``torch.load(weights_only=True)``: nothing logged
is unpickled (a model logged as a pickle by older runs is refused unless the user passes ``--trust-pickle``; then
:func:`mlflow_pytorch` loads it). Below the runner, which calls it after a run's test."""

from __future__ import annotations

import copy
import logging
import sys
from contextlib import contextmanager

__all__ = ["MODEL_NAME", "WEIGHTS_FILE", "log_trained_model", "fluent_uri", "mlflow_pytorch"]

MODEL_NAME = "model"  # the logged model's folder: runs:/<run id>/model
WEIGHTS_FILE = "state_dict.pt"  # its weights: a plain state dict (torch.load(weights_only=True))


def _detached_copy(module):
    """A CPU copy of ``module`` in eval mode without the sweep's outputs (for the example forward and the state
    dict that are logged). A copy of a
    LightningModule leaves its Trainer behind, and a :class:`ShiftModule`'s leaves its training and test buffers."""
    saved = module.sweep_results, module.sweep_outputs
    module.sweep_results, module.sweep_outputs = [], {}
    try:
        out = copy.deepcopy(module)
    finally:
        module.sweep_results, module.sweep_outputs = saved
    return out.cpu().eval()


def _example_input(datamodule, n: int = 4):
    """``n`` inputs of the first test set (the in-distribution shift), as the model reads them."""
    ds = datamodule.test_sets[0] if getattr(datamodule, "test_sets", None) else datamodule.val_set
    return ds[0 : min(n, len(ds))][0].detach().cpu()


@contextmanager
def fluent_uri(uri: str):
    """MLflow's fluent API on ``uri`` for the duration (the process's tracking URI and environment restored)."""
    import mlflow

    from lightning_implicit.tracking.store import _process_tracking_uri_unchanged

    with _process_tracking_uri_unchanged():
        mlflow.set_tracking_uri(uri)
        yield


def mlflow_pytorch():
    """``mlflow.pytorch``, imported without its side effects on logging. Importing it imports the standalone
    ``pytorch_lightning`` when installed, which points lightning_utilities' rank-zero logger at
    ``pytorch_lightning.utilities.rank_zero``, and calls ``logging.basicConfig``: every later Lightning info line
    of the process (a reproduction's next runs) would then print a second way, past the CLI's filters."""
    if "mlflow.pytorch" in sys.modules:
        return sys.modules["mlflow.pytorch"]
    import lightning.pytorch  # noqa: F401 - (sets the rank-zero logger kept below)
    import lightning_utilities.core.rank_zero as rank_zero

    root = logging.getLogger()
    handlers, level, log = list(root.handlers), root.level, rank_zero.log
    try:
        import mlflow.pytorch
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        rank_zero.log = log
    return mlflow.pytorch


def log_trained_model(logger, module, datamodule) -> str:
    """Log ``module``'s weights (trained, after the shift sweep) to ``logger``'s MLflow run: ``model/state_dict.pt``
    (a plain state dict, read back with ``torch.load(weights_only=True)``, which runs no code) beside
    ``model/model.json`` (format, class, input and output shapes, how to load it); the run's ``config.yaml``
    rebuilds the model. Tags the run ``logged_model`` with ``runs:/<run id>/model`` and returns that URI. Raises
    what MLflow raises."""
    import json
    import tempfile
    from pathlib import Path

    import torch

    run_id = logger.run_id
    model = _detached_copy(module)
    x = _example_input(datamodule)
    with torch.no_grad():
        y = model(x)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    card = {
        "format": f"torch state dict ({WEIGHTS_FILE}; torch.load(..., weights_only=True))",
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "config": "config.yaml (the run's resolved LightningCLI config)",
        "input_shape": [-1, *x.shape[1:]],
        "output_shape": [-1, *y.shape[1:]],
        "torch": torch.__version__,
        "load": f"lightning_implicit.evaluate.load_logged_model({run_id!r}, uri)",
        "re-test": f"lightning-implicit test --run-id {run_id}",
    }
    client = logger.experiment
    with tempfile.TemporaryDirectory(prefix="lightning-implicit-model-") as tmp:
        folder = Path(tmp) / MODEL_NAME
        folder.mkdir()
        torch.save(state, folder / WEIGHTS_FILE)
        (folder / "model.json").write_text(json.dumps(card, indent=2) + "\n")
        client.log_artifacts(run_id, str(folder), MODEL_NAME)
    model_uri = f"runs:/{run_id}/{MODEL_NAME}"
    client.set_tag(run_id, "logged_model", model_uri)
    return model_uri
