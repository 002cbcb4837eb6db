"""MLflow tracking: the store, the logger factory, shift-sweep logging, plots."""

from .callback import TrackingCallback
from .store import git_commit, make_logger, resolve_tracking_uri
from .sweep_log import log_shift_sweep, write_sweep_table

__all__ = [
    "TrackingCallback",
    "git_commit",
    "make_logger",
    "resolve_tracking_uri",
    "log_shift_sweep",
    "write_sweep_table",
]
