"""The trained model in MLflow: :func:`log_trained_model` logs a trained LightningModule after its shift sweep
with ``mlflow.pytorch.log_model`` (an input example from the first test set and the signature inferred from it),
so ``mlflow.pytorch.load_model("runs:/<run id>/model")`` loads it back (``lightning-implicit test``:
:mod:`lightning_implicit.evaluate`). Below the runner, which calls it after a run's test."""

from __future__ import annotations

import copy
import logging
import sys
from contextlib import contextmanager

__all__ = ["MODEL_NAME", "log_trained_model", "fluent_uri", "mlflow_pytorch"]

MODEL_NAME = "model"  # the logged model's name: runs:/<run id>/model


def _detached_copy(module):
    """A CPU copy of ``module`` in eval mode without the sweep's outputs (what gets pickled). A copy of a
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


class _DropPickleAdvice(logging.Filter):
    # pickle is chosen on purpose: torch.export (MLflow's pt2 default) cannot trace the fused solver's C++ kernel
    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle or CloudPickle" not in record.getMessage()


def log_trained_model(logger, module, datamodule) -> str:
    """Log ``module`` (trained, after the shift sweep) to ``logger``'s MLflow run as ``runs:/<run id>/model``;
    returns that URI and tags the run ``logged_model`` with it. Raises what MLflow raises."""
    import lightning
    import mlflow
    import torch
    from mlflow.models import infer_signature

    run_id, uri = logger.run_id, logger.experiment.tracking_uri
    model = _detached_copy(module)
    x = _example_input(datamodule)
    with torch.no_grad():
        y = model(x)
    signature = infer_signature(x.numpy(), y.detach().numpy())
    requirements = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"lightning=={lightning.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]
    quiet, flt = logging.getLogger("mlflow.pytorch"), _DropPickleAdvice()
    quiet.addFilter(flt)
    client = logger.experiment
    run = client.get_run(run_id)
    # created here, in the run's experiment: left to itself MLflow 3.17 files a model logged by run id (no active
    # fluent run) under the Default experiment, where runs:/<id>/model does not find it
    logged = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        params=dict(run.data.params),
        model_type="pytorch",
    )
    try:
        with fluent_uri(uri):
            mlflow_pytorch().log_model(
                model,
                name=MODEL_NAME,
                run_id=run_id,
                model_id=logged.model_id,
                input_example=x.numpy(),
                signature=signature,
                pip_requirements=requirements,
                serialization_format="pickle",
            )
    finally:
        quiet.removeFilter(flt)
    model_uri = f"runs:/{run_id}/{MODEL_NAME}"
    client.set_tag(run_id, "logged_model", model_uri)
    return model_uri
