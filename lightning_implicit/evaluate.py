"""``lightning-implicit test``: the shift sweep of a logged model, again.

* The trained model is logged by :func:`lightning_implicit.tracking.logged_model.log_trained_model` (called by
  :func:`~lightning_implicit.runner.run_training` after the shift sweep) as a plain state dict
  (``runs:/<run id>/model/state_dict.pt``, with ``model/model.json``); :func:`load_logged_model` rebuilds the
  module from the run's ``config.yaml`` and loads them with ``torch.load(weights_only=True)``. Nothing logged is
  unpickled: a model logged as a pickle (MLflow's pytorch flavor, older runs) is refused unless the user passes
  ``--trust-pickle``.
* ``lightning-implicit test --run-id ID`` (or ``--ckpt_path PATH``): rebuilds the run's data and model from the
  ``config.yaml`` it logged, loads the logged weights (or a Lightning checkpoint's), runs the same shift sweep
  as ``train`` does after fitting, prints it beside the trained run's numbers, and logs it as a new MLflow run
  nested under the trained one (``--no-log``: print only).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

__all__ = ["load_logged_model", "main", "build_parser", "EvaluationError"]

TRUST_PICKLE = "--trust-pickle"  # the opt-in to unpickle a model logged as a pickle (runs its code)
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class EvaluationError(RuntimeError):
    """What ``lightning-implicit test`` cannot do, and what to pass instead (printed without a traceback)."""


def load_logged_model(run_id: str, uri: str | None = None):
    """The trained LightningModule of run ``run_id`` (in eval mode, on the CPU): built from the run's
    ``config.yaml`` and loaded with its logged weights, read with ``torch.load(weights_only=True)`` (no code of
    the store's runs). Raises :class:`EvaluationError` when the run has no such weights."""
    import mlflow

    from lightning_implicit.runner import ImplicitCLI
    from lightning_implicit.tracking import resolve_tracking_uri
    from lightning_implicit.tracking.logged_model import MODEL_NAME, WEIGHTS_FILE

    uri = resolve_tracking_uri(uri)
    with tempfile.TemporaryDirectory(prefix="lightning-implicit-load-") as tmp:
        _source_run(mlflow.MlflowClient(uri), run_id, uri)
        config_path, _ = _run_config(run_id, uri, tmp)
        state = _logged_weights(run_id, uri, tmp, trust_pickle=False)
        if state is None:
            raise EvaluationError(f"run {run_id} has no logged weights ({MODEL_NAME}/{WEIGHTS_FILE})")
        cli = ImplicitCLI(
            args=["--config", str(config_path), "--tracking.enabled", "false", "--trainer.logger", "false"]
        )
    model = cli.model
    model.load_state_dict(state)
    return model.cpu().eval()


# ---- lightning-implicit test ---------------------------------------------------------------------------------
EPILOG = """\
examples:
  lightning-implicit test --run-id 3f2a...e1                 # the run's logged model, config and store
  lightning-implicit test --run-id 3f2a...e1 --data.init_args.shifts "[10, 100, 1000, 10000]" --trainer cpu
  lightning-implicit test --ckpt_path mlruns/lightning/1/3f2a...e1/checkpoints/epoch=19-step=100.ckpt
  lightning-implicit test --ckpt_path my.ckpt --task addition --model implicit --no-log
  make evaluate RUN_ID=3f2a...e1        (or CKPT=path/to/file.ckpt)

The run id is printed in the summary of `lightning-implicit train` (and shown in the MLflow UI). The results
go to a new MLflow run "test-<run name>" nested under the trained run, in its experiment; the table printed
puts them beside the trained run's own ood/ metrics. Any other --a.b value option is a LightningCLI override
of the run's config (e.g. --data.init_args.n_test 2000, --model.init_args.solver.max_iter 1000)."""


def build_parser() -> argparse.ArgumentParser:
    from lightning_implicit.clihelp import OneLineParser  # (a bad option: one error: line, exit 2)

    p = OneLineParser(
        prog="lightning-implicit test",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-run the shift sweep (the out-of-distribution evaluation `train` runs after fitting) of "
        "a trained model: a logged MLflow run or a Lightning checkpoint.",
    )
    p.add_argument(
        "--run-id",
        "--run_id",
        dest="run_id",
        default=None,
        help="MLflow run to re-test: its config.yaml and logged model (runs:/ID/model)",
    )
    p.add_argument(
        "--ckpt_path",
        "--ckpt-path",
        dest="ckpt_path",
        default=None,
        help="Lightning checkpoint whose weights to test (default: the run's logged model)",
    )
    p.add_argument("--task", default=None, help="without a run: the task config (conf/tasks/<task>.yaml)")
    p.add_argument("--model", default=None, help="without a run: the model config (conf/models/<model>.yaml)")
    p.add_argument(
        "--seed", type=int, default=None, help="without a run: the seed the checkpoint was trained with"
    )
    p.add_argument(
        "--trainer",
        default=None,
        help="trainer config to test with (conf/trainer/<name>.yaml, e.g. cpu); default: the run's own",
    )
    p.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        default=None,
        help="MLflow store of the run and of the test run (default $MLFLOW_TRACKING_URI or "
        "sqlite:///mlruns/mlflow.db)",
    )
    p.add_argument("--no-log", dest="log", action="store_false", help="print the sweep only; no MLflow run")
    p.add_argument(
        TRUST_PICKLE,
        dest="trust_pickle",
        action="store_true",
        help="load a model logged as a pickle (older runs; MLflow's pytorch flavor). Unpickling runs any code "
        "put in the file: only for stores that no one you distrust can write to",
    )
    return p


def _run_from_ckpt_path(path: Path) -> str | None:
    """The run id in a checkpoint path that Lightning's MLFlowLogger laid out (``<root>/<exp>/<run>/checkpoints``)."""
    parts = path.resolve().parts
    if len(parts) >= 3 and parts[-2] == "checkpoints" and _RUN_ID.match(parts[-3]):
        return parts[-3]
    return None


def _source_run(client, run_id: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as err:
        from lightning_implicit.redact import redact
        from lightning_implicit.tracking.store import store_error

        named = store_error(err, uri, "MLflow")  # the store itself fails (a server that does not answer)
        if named is not None:
            raise named from None

        raise EvaluationError(
            f"no MLflow run {run_id!r} in the store {redact(uri)} ({str(err).splitlines()[0][:160]}); "
            "copy the id from the train summary or the MLflow UI, or pass --tracking-uri of the store that holds it"
        ) from None


def _download(run_id: str, path: str, uri: str, dst: str) -> Path | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, tracking_uri=uri, dst_path=dst
            )
        )
    except (MlflowException, OSError):
        return None


def _logged_weights(run_id: str, uri: str, tmp: str, *, trust_pickle: bool) -> dict | None:
    """The state dict of the run's logged model; ``None`` when the run has none.

    ``model/state_dict.pt`` is read with ``torch.load(weights_only=True)``: plain tensors and numbers only, a
    pickle that would run code is refused. A model logged as a pickle (MLflow's pytorch flavor, as runs logged
    before it did) is unpickled only with ``trust_pickle`` (``--trust-pickle``): unpickling runs whatever code
    its writer put in it."""
    import pickle

    import torch

    from lightning_implicit.tracking.logged_model import MODEL_NAME, WEIGHTS_FILE, fluent_uri, mlflow_pytorch

    path = _download(run_id, f"{MODEL_NAME}/{WEIGHTS_FILE}", uri, tmp)
    if path is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise EvaluationError(
                f"refused to load runs:/{run_id}/{MODEL_NAME}/{WEIGHTS_FILE}: it is not a plain state dict "
                f"({first}); loading it could run code that anyone with write access to the store put there. "
                f"Re-test the run's checkpoint with --ckpt_path PATH, or pass {TRUST_PICKLE} if you trust "
                "everyone who can write to this store"
            ) from None
        if not isinstance(state, dict):
            raise EvaluationError(
                f"runs:/{run_id}/{MODEL_NAME}/{WEIGHTS_FILE} holds a {type(state).__name__}, not a state dict"
            )
        return state
    flavor = _pickled_model(run_id, uri)
    if flavor is None:
        return None
    if not trust_pickle:
        raise EvaluationError(
            f"refused to load runs:/{run_id}/{MODEL_NAME}: it is a pickled model ({flavor}), and unpickling runs "
            "any code that whoever wrote it to the store put in it. Re-test the run's checkpoint with "
            f"--ckpt_path PATH (or retrain it), or pass {TRUST_PICKLE} if you trust everyone who can write to "
            "this store"
        )
    from mlflow.exceptions import MlflowException

    try:
        with fluent_uri(uri):
            model = mlflow_pytorch().load_model(f"runs:/{run_id}/{MODEL_NAME}", map_location="cpu")
    except (MlflowException, OSError):
        return None
    return model.state_dict()


def _pickled_model(run_id: str, uri: str) -> str | None:
    """How the run's MLflow model (``runs:/<id>/model``, MLflow's pytorch flavor) is serialised, read from its
    ``MLmodel`` file (YAML: reading it runs nothing); ``None`` when the run has no MLflow model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from lightning_implicit.tracking.logged_model import MODEL_NAME, fluent_uri

    try:
        with fluent_uri(uri):
            info = mlflow.models.get_model_info(f"runs:/{run_id}/{MODEL_NAME}")
    except (MlflowException, OSError):
        return None
    flavor = (info.flavors or {}).get("pytorch") or {}
    return f"MLflow pytorch flavor, {flavor.get('serialization_format') or flavor.get('pickle_module_name') or 'pickle'}"


def _run_config(run_id: str, uri: str, tmp: str) -> tuple[Path, dict]:
    """The run's ``config.yaml`` without its logger, callbacks and tracking (the rebuilt model's are not the
    run's own): the file written back, and the mapping it holds."""
    import yaml

    config_path = _download(run_id, "config.yaml", uri, tmp)
    if config_path is None:
        raise EvaluationError(
            f"run {run_id} has no config.yaml artifact (it was not logged by lightning-implicit "
            "train): test its checkpoint with --ckpt_path PATH --task T --model M instead"
        )
    config = yaml.safe_load(config_path.read_text()) or {}
    for key in ("logger", "callbacks"):  # the trained run's own objects are not the test's
        (config.get("trainer") or {}).pop(key, None)
    config.pop("tracking", None)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path, config


def _run_checkpoint(config: dict, experiment_id: str, run_id: str) -> Path | None:
    """The newest checkpoint Lightning wrote for the run (``<default_root_dir>/<exp id>/<run id>/checkpoints``)."""
    root = Path((config.get("trainer") or {}).get("default_root_dir") or "mlruns/lightning")
    found = sorted(
        (root / experiment_id / run_id / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime
    )
    return found[-1] if found else None


def _ood_history(client, run_id: str, metric: str) -> dict[int, float]:
    try:
        return {m.step: m.value for m in client.get_metric_history(run_id, f"ood/{metric}")}
    except Exception:  # the comparison is a courtesy
        return {}


def _plan(ns, overrides: list[str], uri: str, tmp: str):
    """``(LightningCLI args, source run or None, state dict or None, ckpt path or None, weights label)``."""
    import mlflow

    from lightning_implicit import confpath
    from lightning_implicit.runner import shorthand_args
    from lightning_implicit.tracking.logged_model import MODEL_NAME

    ckpt = Path(ns.ckpt_path) if ns.ckpt_path else None
    if ckpt is not None and not ckpt.is_file():
        raise EvaluationError(
            f"no checkpoint file {ckpt} (--ckpt_path): give the path of a .ckpt that "
            "Lightning wrote (by default under mlruns/lightning/<experiment id>/<run id>/checkpoints/)"
        )
    run_id = ns.run_id
    if run_id is None and ckpt is not None and ns.task is None:
        run_id = _run_from_ckpt_path(ckpt)
        if run_id is None:
            raise EvaluationError(
                f"cannot tell which run trained {ckpt}: give --run-id of that run (its config is used), or "
                "--task and --model (and --seed) as for train"
            )
    if run_id is None:
        if ckpt is None:
            raise EvaluationError(
                "nothing to test: give --run-id ID (a logged run) or --ckpt_path PATH (a checkpoint)"
            )
        if not ns.model:
            raise EvaluationError(
                "--ckpt_path with --task needs --model too (the config the checkpoint was trained with)"
            )
        args = shorthand_args(ns.task, ns.model, ns.trainer or "cpu", ns.seed)
        return args + overrides, None, None, ckpt, str(ckpt)

    client = mlflow.MlflowClient(uri)
    source = _source_run(client, run_id, uri)
    config_path, config = _run_config(run_id, uri, tmp)
    args = ["--config", str(config_path)]
    if ns.trainer:  # (an unknown name: ConfigError naming the choices)
        args += ["--config", str(confpath.find("trainer", ns.trainer))]
    state, label = None, None
    if ckpt is None:
        state = _logged_weights(run_id, uri, tmp, trust_pickle=ns.trust_pickle)
        label = f"runs:/{run_id}/{MODEL_NAME}"
        if state is None:
            ckpt = _run_checkpoint(config, source.info.experiment_id, run_id)
            if ckpt is None:
                raise EvaluationError(
                    f"run {run_id} has no logged model (trained before models were logged, or with "
                    "--tracking.log_model false) and no checkpoint under its default_root_dir: pass "
                    "--ckpt_path PATH of its checkpoint"
                )
            print(f"run {run_id} has no logged model; testing its checkpoint {ckpt}")
    if ckpt is not None:
        label = str(ckpt)
    label_name = source.data.tags.get("model") or "model"
    args += ["--tracking.model_name", label_name]
    return args + overrides, source, state, ckpt, label


def run_test(args: list[str], *, state_dict: dict | None = None, ckpt_path: Path | None = None):
    """The shift sweep of a model built from LightningCLI ``args`` with ``state_dict`` (or ``ckpt_path``) loaded,
    tracked like a training run (config, data card, params; ``ood/`` metrics and figures). Returns a
    :class:`~lightning_implicit.runner.RunResult` (``val`` empty)."""
    from lightning_implicit import confpath
    from lightning_implicit.console import summary_without_flops
    from lightning_implicit.lifecycle import end_failed_run, terminated_cause
    from lightning_implicit.runner import ImplicitCLI, RunResult
    from lightning_implicit.tracking import TrackingCallback

    confpath.add_user_modules()  # a user task's class_path module
    cli = ImplicitCLI(args=args)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    trainer.callbacks = summary_without_flops(trainer.callbacks)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as err:
            if trainer.is_global_zero:
                end_failed_run(trainer.logger, err)
            raise EvaluationError(
                f"the logged weights do not fit the model built from the run's config and your overrides "
                f"({str(err).splitlines()[0][:200]}): drop the --model.init_args.* size overrides"
            ) from None
    try:
        trainer.test(
            model,
            datamodule=dm,
            verbose=False,
            ckpt_path=str(ckpt_path) if ckpt_path else None,
            weights_only=True,  # (a checkpoint holds plain data: nothing in it is run)
        )
        if trainer.is_global_zero:  # the config, data card and resolved params, as a training run logs them
            for cb in trainer.callbacks:
                if isinstance(cb, TrackingCallback):
                    cb.on_fit_start(trainer, model)
    except BaseException as err:
        if trainer.is_global_zero:
            end_failed_run(trainer.logger, err)
        signalled = terminated_cause(err)
        if signalled is not None and signalled is not err:
            raise signalled from None
        raise
    run_id = trainer.logger.run_id if trainer.logger is not None and trainer.is_global_zero else None
    if trainer.logger is not None and trainer.is_global_zero:
        trainer.logger.finalize("success")
    return RunResult(run_id=run_id, sweep=model.sweep_results, val={}, module=model, datamodule=dm)


def _print_comparison(rows: list[dict], reference: dict[int, float], metric: str, stream=None) -> None:
    stream = stream or sys.stdout
    print(f"\n{metric} per shift: this test vs the trained run's own sweep", file=stream)
    print(f"{'shift':>10}  {'test':>14}  {'trained run':>14}", file=stream)
    for r in rows:
        ref = reference.get(int(r["shift"]))
        print(
            f"{r['shift']:>10}  {r[metric]:>14.6g}  {(f'{ref:.6g}' if ref is not None else '-'):>14}",
            file=stream,
        )


def main(argv: list[str] | None = None) -> int:
    import mlflow

    from lightning_implicit.runner import print_sweep
    from lightning_implicit.tracking import resolve_tracking_uri

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns, overrides = parser.parse_known_args(argv)
    for a in overrides:
        if a.startswith("--") and "." not in a.split("=", 1)[0]:
            parser.error(
                f"unrecognized argument {a!r} (LightningCLI overrides look like --data.init_args.n_test 2000)"
            )
    uri = resolve_tracking_uri(ns.tracking_uri)
    from lightning_implicit.tracking.store import check_store

    check_store(uri, "MLflow")  # a store that cannot be used: one named error (StoreError), not a traceback
    with tempfile.TemporaryDirectory(prefix="lightning-implicit-test-") as tmp:
        try:
            args, source, state, ckpt, weights = _plan(ns, overrides, uri, tmp)
        except EvaluationError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        tags = {"eval.weights": weights, "sweep.role": "test"}
        if source is not None:
            exp = mlflow.MlflowClient(uri).get_experiment(source.info.experiment_id)
            tags["eval.source_run_id"] = source.info.run_id
            args += [
                "--tracking.experiment",
                exp.name,
                "--tracking.parent_run_id",
                source.info.run_id,
                "--tracking.run_name",
                f"test-{source.info.run_name}",
            ]
        else:
            args += ["--tracking.run_name", f"test-{ns.model}-seed{ns.seed if ns.seed is not None else 0}"]
        import json

        args += [
            "--tracking.uri",
            uri,
            "--tracking.tags",
            json.dumps(tags),
            "--tracking.log_model",
            "false",
            "--trainer.enable_checkpointing",
            "false",
        ]  # (testing writes no checkpoint)
        if not ns.log:
            args += ["--tracking.enabled", "false"]
        print(
            f"testing {weights}" + (f" (trained in run {source.info.run_id})" if source is not None else "")
        )
        try:
            result = run_test(args, state_dict=state, ckpt_path=ckpt)
        except EvaluationError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print_sweep(result)
    metrics = [k for k in (result.sweep[0] if result.sweep else {}) if k not in ("shift", "n")]
    if source is not None and metrics:
        metric = next((m for m in getattr(result.module.task, "metrics", ()) if m in metrics), metrics[0])
        _print_comparison(
            result.sweep, _ood_history(mlflow.MlflowClient(uri), source.info.run_id, metric), metric
        )
    if result.run_id:
        from lightning_implicit.console import print_run_summary

        row = result.sweep[0] if result.sweep else {}
        headline = ", ".join(f"ood/{m}@{row['shift']}={row[m]:.4g}" for m in metrics[:2]) if row else None
        try:
            print_run_summary(result.run_id, uri=uri, headline=headline)
        except Exception as err:  # the test ran and was logged; the summary is a courtesy
            print(f"MLflow run: {result.run_id} (no summary: {type(err).__name__}: {err})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
