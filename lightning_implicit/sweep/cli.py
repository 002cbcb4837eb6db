"""``lightning-implicit sweep``: Optuna hyper-parameter search over ``conf/search/<task>.yaml``.

Examples::

    make sweep TASK=addition TRIALS=6                   # implicit, then mlp (the file's 'models'), quick budget
    make sweep TASK=addition MODEL=implicit TRIALS=20 WORKERS=2 CV=5 STUDY=add-cv5
    lightning-implicit sweep --task addition --model mlp --trials 10 --full -- --trainer.max_epochs 30 --model.init_args.optim.grad_clip 1.0

``--trials N`` runs N more trials per model in this invocation; the same command again resumes the study
(name ``<task>-<model>`` or ``--study``) in the same storage (``--storage``, ``$OPTUNA_STORAGE``, default
``sqlite:///mlruns/optuna.db``) and adds N more. Everything after ``--`` (and any other ``--a.b value``
option) is a LightningCLI override applied to every trial; a searched parameter with the same key is then
not searched. Ctrl-C or SIGTERM stops cleanly at the end of the current batch, workers' trials included (finished
trials are kept, running ones are FAIL "interrupted"; exit 130 or 143); a second one stops at once. ``--workers K``
runs K processes that live for the whole sweep; one that dies fails only its own trial, which is retried.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from . import parser

__all__ = ["main", "build_parser", "options_from_args"]


def build_parser() -> argparse.ArgumentParser:
    return parser.build_parser(__doc__)


def options_from_args(argv: list[str]):
    """Parse the command line into :class:`~lightning_implicit.sweep.driver.SweepOptions`."""
    from .driver import SweepOptions

    return SweepOptions(**parser.parse_options(argv, __doc__))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from lightning_implicit.redact import redact_process_output

    redact_process_output()  # (no password in a log line or a traceback; the workers are forks of this process)
    from lightning_implicit.store_waits import bound_store_waits

    bound_store_waits()
    opts = options_from_args(argv)
    from .driver import run_command

    try:
        return run_command(opts, "lightning-implicit sweep " + shlex.join(argv))
    except Exception as exc:
        named = _failed_store(exc, opts)
        if named is None:
            raise
        raise named from exc


def _failed_store(exc: Exception, opts):
    """When ``exc`` comes from a store's stack mid-sweep (a disk that filled up, a server that went away): the
    :class:`~lightning_implicit.tracking.store.StoreError` of whichever store (study, then tracking) fails its
    probe now; ``None`` when neither does (the error is then not the stores')."""
    from lightning_implicit.tracking.store import (
        StoreError,
        check_store,
        database_driver,
        resolve_tracking_uri,
        store_failure,
    )

    from .storage import resolve_storage_url

    stores = [(database_driver(resolve_storage_url(opts.storage)), "Optuna")]
    if opts.tracking:
        stores.append((resolve_tracking_uri(opts.tracking_uri), "MLflow"))
    if all(store_failure(exc, uri, kind) is None for uri, kind in stores):
        return None
    for uri, kind in stores:
        try:
            check_store(uri, kind)
        except StoreError as err:
            return err
    return None


if __name__ == "__main__":
    sys.exit(main())
