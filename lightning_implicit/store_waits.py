"""How long a command waits for a store that does not answer (no torch, MLflow or Optuna import: ``--help``
stays fast)."""

from __future__ import annotations

import os

__all__ = ["bound_store_waits"]


def bound_store_waits() -> None:
    """Bounded waits for a store that does not answer (set once at the command line; a user's value is kept):
    MLflow's HTTP client retries 2 times, 1 s apart, each request waiting at most 10 s (MLflow's defaults: 7
    retries with exponential back-off and 120 s, minutes of silence), and PostgreSQL connections give up after
    5 s (``PGCONNECT_TIMEOUT``, read by libpq for MLflow and Optuna alike; the default waits forever)."""
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10"),
        ("PGCONNECT_TIMEOUT", "5"),
    ):
        os.environ.setdefault(key, value)
