"""Optuna hyper-parameter sweeps: ``make sweep TASK=... [MODEL=...] [TRIALS=N] [WORKERS=K] [CV=5]``.

* :mod:`~lightning_implicit.sweep.space`: search spaces in ``conf/search/<task>.yaml``, validated at the edge.
* :mod:`~lightning_implicit.sweep.objective`: one trial = k training runs, objective in-distribution
  ``val/loss``, pruning (per epoch, or per fold with CV), failure reasons.
* :mod:`~lightning_implicit.sweep.storage`: persistent studies (sqlite under ``mlruns/`` by default,
  ``$OPTUNA_STORAGE``), heartbeats and recovery of dead workers' trials.
* :mod:`~lightning_implicit.sweep.records`: MLflow parent/nested runs and the summary artifacts.
* :mod:`~lightning_implicit.sweep.driver`: resuming, parallel workers, retraining the best config.
* :mod:`~lightning_implicit.sweep.cli`: ``lightning-implicit sweep`` (see its ``--help``).
"""

__all__ = [
    "SweepOptions",
    "ModelOutcome",
    "run_sweep",
    "SearchSpace",
    "SearchSpaceError",
    "load_search_space",
]

_LAZY = {
    "SweepOptions": "driver",
    "ModelOutcome": "driver",
    "run_sweep": "driver",
    "SearchSpace": "space",
    "SearchSpaceError": "space",
    "load_search_space": "space",
}


def __getattr__(name: str):
    # lazy: ``lightning-implicit train`` imports the sweep CLI entry point but must not pay for optuna
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
