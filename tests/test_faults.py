"""Fault injection (issue 21): every failure named, every exit code true, no MLflow run left RUNNING, no secret
written down, a damaged build of the fused loops rebuilt. Each case asserts the message, the exit code and the
final status of every run in a store of its own."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from conftest import cli_command

from lightning_implicit.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh MLflow store for one test; returns a function listing ``(status, tags, params)`` of every run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    def runs():
        client = mlflow.MlflowClient(uri)
        out = []
        for e in client.search_experiments():
            out += [
                (r.info.status, r.data.tags, r.data.params) for r in client.search_runs([e.experiment_id])
            ]
        return out

    runs.uri = uri
    return runs


TINY = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--data.init_args.n_train",
    "200",
    "--data.init_args.n_test",
    "50",
]


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--trainer.max_epochs", "0"], "--trainer.max_epochs 0: must be a whole number >= 1"),
        (["--trainer.max_epochs", "-1"], "--trainer.max_epochs -1: must be a whole number >= 1"),
        (["--model.init_args.kappa", "-0.5"], "--model.init_args.kappa -0.5: must be a number in (0, 1)"),
        (["--model.init_args.kappa", "1.5"], "--model.init_args.kappa 1.5: must be a number in (0, 1)"),
        (["--model.init_args.kappa", "1"], "--model.init_args.kappa 1.0: must be a number in (0, 1)"),
        (["--model.init_args.kappa", "nan"], "--model.init_args.kappa nan: must be a finite number"),
        (["--model.init_args.optim.lr", "nan"], "--model.init_args.optim.lr nan: must be a finite number"),
        (["--model.init_args.optim.lr", "inf"], "--model.init_args.optim.lr inf: must be a finite number"),
        (["--model.init_args.optim.lr=-inf"], "--model.init_args.optim.lr -inf: must be a finite number"),
        (["--data.init_args.n_train", "1e400"], "--data.init_args.n_train 1e400: must be a whole number"),
        (
            ["--data.init_args.shifts", "[10, .inf]"],
            "--data.init_args.shifts[1] inf: must be a finite number",
        ),
        (
            ["--data.init_args.shifts", "[10, .nan]"],
            "--data.init_args.shifts[1] nan: must be a finite number",
        ),
        (["--trainer.max_epochs", "abc"], "--trainer.max_epochs abc: must be a whole number"),
        (
            ["--model.init_args.kapa", "0.5"],
            "unknown option --model.init_args.kapa; did you mean --model.init_args.kappa?",
        ),
        # a prefix of --trainer.max_epochs is not that option (argparse's allow_abbrev is off)
        (
            ["--trainer.max_epoch", "1"],
            "unknown option --trainer.max_epoch; did you mean --trainer.max_epochs?",
        ),
        (["--data.init_args.batch_size", "0"], "--data.init_args.batch_size 0: must be a whole number >= 1"),
        (["--data.init_args.shifts", "[]"], "--data.init_args.shifts []: give at least one shift"),
        (
            ["--trainer.precision", "bf16-true"],
            "--trainer.precision bf16-true: an implicit model's fixed-point solve needs float32 weights",
        ),
    ],
)
def test_bad_numbers_one_message_exit_2_no_run(bad, message, store, capsys):
    # (--no-tuned: a tuned recipe may set max_steps, which makes max_epochs -1 a valid value)
    assert main(["train", "--task", "addition", "--model", "implicit", "--no-tuned", *TINY, *bad]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: " + message)
    # one message, no traceback of ours (pytest's capture can leave logging's "--- Logging error ---" reports)
    assert err.count("Traceback") == err.count("--- Logging error ---") and err.count("error: ") == 1
    assert store() == []  # rejected before any run was opened


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--data.init_args.interval", "5m"], "interval must be '1d' or '1m', got '5m'"),
        (["--data.init_args.train_range", "2020-10-01"], "train_range must be FROM..TO"),
        (["--data.init_args.test_fraction", "1.5"], "test_fraction (SPLIT=) must be in (0, 1), got 1.5"),
    ],
)
def test_a_value_a_data_module_refuses_is_one_line_exit_2(bad, message, store, capsys):
    """A constructor's own ValueError (behind jsonargparse's "Does not validate against any of the Union
    subtypes") is the one error line, exit 2, no traceback (it was a 60-line traceback, exit 1)."""
    assert main(["train", "--task", "volatility", "--model", "mlp", "--data", "synthetic", *bad]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: " + message), err[-2000:]
    # (pytest's capture can leave logging's "--- Logging error ---" reports: not ours)
    assert err.count("Traceback") == err.count("--- Logging error ---") and err.count("error: ") == 1
    assert store() == []


def test_market_date_ranges_take_from_to_strings():
    from lightning_implicit.datamodules.market.options import date_range

    assert date_range("2019-01-01..2020-12-31", "train_range") == ("2019-01-01", "2020-12-31")
    assert date_range(["2019-01-01", "2020-12-31"], "train_range") == ("2019-01-01", "2020-12-31")
    with pytest.raises(ValueError, match="test_range must be FROM..TO"):
        date_range("2019-01-01..", "test_range")


def test_no_gpu_no_run_left(store, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    assert main(["train", "--task", "addition", "--model", "implicit", "--trainer", "gpu", *TINY]) == 2
    assert "gpu" in capsys.readouterr().err.lower()
    assert store() == []  # the Trainer is built before the run opens


def test_failure_during_fit_ends_run_failed_with_error_tag(store):
    from lightning_implicit.runner import run_training
    from tests.conftest import tiny_args

    class Boom(Exception):
        pass

    import lightning as L

    class Explode(L.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            raise Boom("injected fault")

    with pytest.raises(Boom):
        run_training(
            tiny_args("addition", "implicit", n_train=200, n_test=50), extra_callbacks=[Explode()], test=False
        )
    ((status, tags, _),) = store()
    assert status == "FAILED" and tags["error"] == "Boom: injected fault"


def test_sigterm_that_lightning_takes_first_is_a_signal_not_a_finished_run(store):
    """A SIGTERM between a batch-end check of a sweep's trial and Lightning's own (its handler runs before the
    sweep's deferring one, and its loop raises ``SIGTERMException``, a ``SystemExit`` whose exit code is 0) must
    stop the run as a signal: ``Terminated(SIGTERM)``, the run KILLED, exit 143 (it exited 0, unsaid, in CI)."""
    import os

    import lightning as L

    from lightning_implicit.lifecycle import DeferredSignals, Terminated
    from lightning_implicit.runner import run_training
    from tests.conftest import tiny_args

    class Kill(L.Callback):  # the signal lands after every batch-end check of the batch
        def on_train_batch_end(self, trainer, *args, **kwargs):
            if trainer.global_step == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    with DeferredSignals(announce=False) as signals, pytest.raises(Terminated) as stopped:
        run_training(
            tiny_args("addition", "mlp", n_train=200, n_test=50), extra_callbacks=[Kill()], test=False
        )
    assert stopped.value.signum == signal.SIGTERM and stopped.value.exit_code == 143
    assert signals.pending == signal.SIGTERM
    ((status, tags, _),) = store()
    assert status == "KILLED" and tags["error"] == "Terminated: received SIGTERM"


def test_end_failed_run_killed_on_signal(store):
    from lightning_implicit.lifecycle import Terminated, end_failed_run
    from lightning_implicit.tracking.store import make_logger

    logger = make_logger("faults", "r", {}, store.uri)
    try:
        raise SystemExit(1)  # what Lightning raises after a KeyboardInterrupt in fit
    except SystemExit as exit_:
        exit_.__context__ = Terminated(signal.SIGTERM)
        end_failed_run(logger, exit_)
    ((status, tags, _),) = store()
    assert status == "KILLED" and tags["error"] == "Terminated: received SIGTERM"
    assert Terminated(signal.SIGTERM).exit_code == 143 and Terminated(signal.SIGINT).exit_code == 130


def test_relative_sqlite_uri_accepted(tmp_path, monkeypatch):
    from lightning_implicit.tracking.store import artifact_location, resolve_tracking_uri

    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri("sqlite:///mlruns/mlflow.db")
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert artifact_location(uri) == (tmp_path.resolve() / "mlruns").as_uri()


def test_redaction_of_a_command_line():
    from lightning_implicit.redact import redact

    url = "postgresql://alice:s3cr3t@db.example:5432/optuna"
    assert redact(f"sweep --storage {url} --x 'http://bob:pw@h'") == (
        "sweep --storage postgresql://alice:***@db.example:5432/optuna --x 'http://bob:***@h'"
    )
    assert redact("sqlite:///o.db") == "sqlite:///o.db"  # nothing secret: unchanged


def test_password_never_in_tags_params_or_config(store):
    """A URL with a password given to a run (here as a tag, as a sweep records its storage) appears in no tag and
    no param of the run, nor in its logged config."""
    from lightning_implicit.runner import run_training
    from tests.conftest import tiny_args

    secret = "postgresql://carol:hunter2@db.example/x"
    args = tiny_args(
        "addition",
        "implicit",
        n_train=200,
        n_test=50,
        extra=["--tracking.tags", f'{{"storage": "{secret}"}}'],
    )
    result = run_training(args, test=False)
    client = mlflow.MlflowClient(store.uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["storage"] == "postgresql://carol:***@db.example/x"
    text = " ".join([*run.data.tags.values(), *run.data.params.values()])
    for f in Path(client.download_artifacts(result.run_id, "")).rglob("*.yaml"):
        text += f.read_text()
    assert "hunter2" not in text and run.info.status == "FINISHED"


# -- the fused build: keyed per environment, verified, healed ----------------------------------------------------


def test_build_key_separates_environments(tmp_path):
    from lightning_implicit.implicit.fused import _SOURCE, build_key

    a = build_key([], torch_version="2.5.0", interpreter="3.11.9|/venv/a")
    assert a == build_key([], torch_version="2.5.0", interpreter="3.11.9|/venv/a")
    assert a != build_key([], torch_version="2.5.0", interpreter="3.11.9|/venv/b")
    assert a != build_key([], torch_version="2.6.0", interpreter="3.11.9|/venv/a")
    assert a != build_key(["-mavx2"], torch_version="2.5.0", interpreter="3.11.9|/venv/a")
    # the same source in a second checkout (one virtualenv): its own build (the library embeds the source path)
    copy = tmp_path / "checkout" / "csrc" / _SOURCE.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(_SOURCE.read_bytes())
    assert a != build_key([], source=copy, torch_version="2.5.0", interpreter="3.11.9|/venv/a")


def test_damaged_detects_truncated_garbage_and_altered(tmp_path):
    import torch

    from lightning_implicit.implicit.fused import _digest, damaged

    lib = next(Path(torch.__file__).parent.joinpath("lib").glob("libc10.so*"))
    so = tmp_path / "x.so"
    shutil.copy(lib, so)
    assert damaged(so) is None
    so.with_name("x.so.sha256").write_text(_digest(so))
    assert damaged(so) is None
    data = lib.read_bytes()
    so.write_bytes(data[: len(data) // 3])
    assert "differs from the build's record" in damaged(so)
    so.with_name("x.so.sha256").unlink()
    assert "truncated" in damaged(so)
    so.write_bytes(b"garbage" * 100)
    assert damaged(so) == "not an ELF shared library"


def _fused_build_dir():
    """The installation's build of the fused loops (built here once if missing)."""
    from torch.utils.cpp_extension import _get_build_directory

    from lightning_implicit.implicit import fused

    module = fused.fused_module(required=True)
    name = Path(module.__file__).stem.split(".")[0]
    return Path(_get_build_directory(name, verbose=False)), name


_LOAD = (
    "from lightning_implicit.implicit.fused import fused_module; print(fused_module(required=True).__file__)"
)


@pytest.mark.slow
def test_truncated_extension_is_rebuilt(tmp_path):
    built, name = _fused_build_dir()
    cache = tmp_path / "ext"
    shutil.copytree(built, cache / name, ignore=shutil.ignore_patterns("*.flock", "lock"))
    so = cache / name / f"{name}.so"
    so.write_bytes(so.read_bytes()[:20000])  # a build killed mid-copy: "Bus error" at dlopen before the fix
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", _LOAD],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "is damaged" in out.stderr and "truncated" not in so.name
    from lightning_implicit.implicit.fused import damaged

    assert damaged(so) is None and so.stat().st_size > 20000
    # a second environment's process loads the healed build as is: no rebuild (the file is untouched)
    mtime = so.stat().st_mtime_ns
    again = subprocess.run(
        [sys.executable, "-c", _LOAD], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0 and so.stat().st_mtime_ns == mtime and "damaged" not in again.stderr


@pytest.mark.slow
def test_sigterm_during_train_exits_143_and_run_killed(store, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    cmd = cli_command(
        "train",
        "--task",
        "addition",
        "--model",
        "implicit",
        "--trainer.max_epochs",
        "500",
        "--no-tuned",  # (a tuned recipe's max_steps would end the run early)
        "--trainer.enable_progress_bar",
        "false",
    )
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and not [r for r in store() if r[0] == "RUNNING"]:
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output[-2000:]
    assert "stopped: received SIGTERM (exit 143)" in output
    statuses = [r[0] for r in store()]
    assert statuses and all(s in ("KILLED", "FAILED") for s in statuses), statuses


@pytest.mark.slow
def test_sigterm_during_sweep_exits_143_no_run_running(store, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    cmd = cli_command(
        "sweep",
        "--task",
        "addition",
        "--model",
        "implicit",
        "--trials",
        "50",
        "--storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
    )
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(store()) < 2:  # the parent run and a first trial's
        time.sleep(0.5)
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == 143, output[-2000:]
    statuses = [r[0] for r in store()]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses
    # (measured: 6 s by hand, but up to ~130 s under this suite on 2 shared cores; not asserted, see issue 21)
    assert time.time() - started < 170


def test_corrupt_mlflow_store_one_named_error(tmp_path, monkeypatch, capsys):
    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(4096))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert (
        main(["train", "--task", "addition", "--model", "implicit", *TINY, "--trainer.max_epochs", "1"]) == 2
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: the MLflow store {db} is damaged") and f"mv {db} {db}.bad" in last


def test_corrupt_optuna_store_one_named_error(tmp_path):
    from lightning_implicit.sweep.storage import open_storage
    from lightning_implicit.tracking.store import StoreError

    db = tmp_path / "optuna.db"
    db.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=r"the Optuna store .*optuna.db is damaged .*\.recover"):
        open_storage(f"sqlite:///{db}", heartbeat=0)


# -- no code run from a logged artifact (issue 33) -----------------------------------------------------------------


class _Payload:
    """Unpickling this creates ``marker``: the code a crafted artifact would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def trained_run(store):
    """A tiny trained run with its logged weights; returns its id."""
    from lightning_implicit.runner import run_training
    from tests.conftest import tiny_args

    return run_training(tiny_args("addition", "implicit", n_train=200, n_test=50, shifts=[10])).run_id


def _retest_refused(run_id: str, store, marker: Path, capsys, what: str) -> None:
    n_runs = len(store())
    assert main(["test", "--run-id", run_id, "--tracking-uri", store.uri]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: refused to load runs:/{run_id}/model{what}")
    assert "--trust-pickle" in last and "Traceback" not in err and err.count("error: ") == 1
    assert not marker.exists()  # the payload never ran
    assert len(store()) == n_runs and "RUNNING" not in [r[0] for r in store()]  # no test run opened


def test_crafted_state_dict_pickle_is_refused_and_runs_nothing(trained_run, store, tmp_path, capsys):
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "model" / "state_dict.pt"
    evil.parent.mkdir()
    torch.save({"A": _Payload(marker)}, evil)  # an attacker's file in place of the logged weights
    mlflow.MlflowClient(store.uri).log_artifact(trained_run, str(evil), "model")
    _retest_refused(trained_run, store, marker, capsys, "/state_dict.pt: it is not a plain state dict")


def test_pickled_mlflow_model_is_refused_without_trust_pickle(store, tmp_path, capsys):
    """A run whose model was logged as a pickle (MLflow's pytorch flavor, as before issue 33) is not unpickled."""
    import torch

    from lightning_implicit.tracking.logged_model import fluent_uri, mlflow_pytorch

    marker = tmp_path / "pwned"

    class Evil(torch.nn.Module):
        def __reduce_ex__(self, protocol):
            return (Path.touch, (marker,))

    client = mlflow.MlflowClient(store.uri)
    exp = client.create_experiment("pickled", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("seed_everything: 0\n")
    client.log_artifact(run.info.run_id, str(cfg))
    # as log_trained_model did before issue 33 (pip_requirements given: inferring them would load the model)
    logged = client.create_logged_model(experiment_id=exp, name="model", source_run_id=run.info.run_id)
    with fluent_uri(store.uri):
        mlflow_pytorch().log_model(
            Evil(),
            name="model",
            run_id=run.info.run_id,
            model_id=logged.model_id,
            serialization_format="pickle",
            pip_requirements=["torch"],
        )
    client.set_terminated(run.info.run_id)
    assert not marker.exists()
    _retest_refused(run.info.run_id, store, marker, capsys, ": it is a pickled model")


# -- secrets: no password on screen, in logs or in the stores (issue 33) -------------------------------------------


@pytest.mark.slow
def test_no_password_on_screen_in_logs_or_in_the_stores(tmp_path):
    """``train`` and ``sweep`` with a password in a tracking server's URL (in ``MLFLOW_TRACKING_URI``, then on the
    command line) and in an (unreachable) PostgreSQL study store's URL (in ``OPTUNA_STORAGE``, then ``--storage``):
    the password is in no output and no file that they or the server wrote (server store, artifacts, Optuna
    store, logs)."""
    from conftest import TINY_TRAIN
    from test_mlflow_server import MlflowServer

    secret = "Xq7-s3cret-pw"
    work = tmp_path / "work"
    work.mkdir()
    server = MlflowServer(tmp_path / "server.db", tmp_path / "artifacts", tmp_path / "server.log").start()
    tracking = server.url.replace("http://", f"http://alice:{secret}@")
    postgres = f"postgresql://bob:{secret}@127.0.0.1:1/optuna"
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    sqlite_optuna = f"sqlite:///{work / 'optuna.db'}"
    sweep = ["sweep", "--task", "addition", "--model", "implicit", "--trials", "2", "--epochs", "1"]
    sweep += ["--n-train", "200", "--n-test", "50"]
    cases = [
        ({"MLFLOW_TRACKING_URI": tracking, "PORT": "1"}, [*TINY_TRAIN], 0),
        ({"OPTUNA_STORAGE": sqlite_optuna}, [*sweep, "--tracking-uri", tracking], 0),
        ({"OPTUNA_STORAGE": postgres, "MLFLOW_TRACKING_URI": tracking}, sweep, 2),
        ({}, [*sweep, "--storage", postgres, "--tracking-uri", tracking], 2),
    ]
    outputs = []
    try:
        for env, args, code in cases:
            out = subprocess.run(
                cli_command(*args),
                env={**base, **env},
                cwd=work,
                capture_output=True,
                text=True,
                timeout=600,
            )
            outputs.append(out.stdout + out.stderr)
            assert out.returncode == code, (args, out.stdout[-2000:], out.stderr[-3000:])
    finally:
        server.stop()
    assert "alice:***@" in outputs[0] and "alice:***@" in outputs[1]  # the summaries name the store, redacted
    assert "bob:***@" in outputs[2] and "bob:***@" in outputs[3]  # the error names the study store, redacted
    for text in outputs:
        assert secret not in text
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.name == "optuna.db" for f in files) and any(f.name == "server.db" for f in files)
    leaked = [str(f) for f in files if secret.encode() in f.read_bytes()]
    assert not leaked


# -- stores that fail: one named line, exit 2, in seconds, no run left RUNNING (issue 33) --------------------------


def _run_cli(argv: list[str], capsys) -> tuple[int, str, float]:
    started = time.monotonic()
    code = main(argv)
    return code, capsys.readouterr().err, time.monotonic() - started


def _one_error_line(err: str) -> str:
    assert err.count("Traceback") == err.count("--- Logging error ---"), err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.fixture
def broken_store(tmp_path):
    """``make(kind)``: the sqlite URI of a store that is read-only (an immutable file or folder: root ignores file
    modes), on a full disk (a 64 KiB tmpfs) or truncated; undone at the end."""
    undo = []

    def sh(*cmd: str) -> bool:
        return subprocess.run(cmd, capture_output=True).returncode == 0

    def make(kind: str, name: str = "mlflow.db") -> str:
        folder = tmp_path / kind
        folder.mkdir()
        db = folder / name
        if kind == "full":
            if not sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)):
                pytest.skip("needs mount (root) for a tmpfs")
            undo.append(("umount", "-l", str(folder)))  # (lazy: this process may hold the file open)
            _fill(folder)
            return f"sqlite:///{db}"
        import sqlite3

        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE t (x)")
            con.executemany("INSERT INTO t VALUES (?)", [(os.urandom(500),) for _ in range(200)])
        if kind == "truncated":
            data = db.read_bytes()
            db.write_bytes(data[: len(data) // 3])
        elif kind in ("read-only file", "read-only folder"):
            target = db if kind == "read-only file" else folder
            if kind == "read-only folder":
                db.unlink()  # a new store in a folder that cannot be written
            if not sh("chattr", "+i", str(target)):
                pytest.skip("needs chattr +i (root, a filesystem with attributes)")
            undo.append(("chattr", "-i", str(target)))
        return f"sqlite:///{db}"

    yield make
    for cmd in reversed(undo):
        sh(*cmd)


def _fill(folder: Path) -> None:
    try:
        with (folder / "fill").open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass


STORE_CASES = [
    ("read-only file", "it cannot be written"),
    ("read-only folder", "it cannot be written"),
    ("full", "its disk is full"),
    ("truncated", "is damaged"),
]


@pytest.mark.parametrize("kind, says", STORE_CASES)
def test_broken_mlflow_store_one_named_error_under_train(kind, says, broken_store, monkeypatch, capsys):
    uri = broken_store(kind)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, err, took = _run_cli(["train", "--task", "addition", "--model", "implicit", *TINY], capsys)
    line = _one_error_line(err)
    assert code == 2 and line.startswith(f"error: the MLflow store {uri[len('sqlite:///') :]} ")
    assert says in line and ("MLFLOW_TRACKING_URI" in line or "mv " in line)
    assert took < 60  # (measured 1-3 s on 2 busy cores; MLflow alone retried for 120 s)


@pytest.mark.parametrize("kind, says", STORE_CASES)
def test_broken_stores_one_named_error_under_sweep(kind, says, broken_store, tmp_path, monkeypatch, capsys):
    """The same stores as the sweep's MLflow store, then as its Optuna store."""
    sweep = ["sweep", "--task", "addition", "--model", "implicit", "--trials", "1", "--epochs", "1"]
    sweep += ["--n-train", "100", "--n-test", "20", "--no-retrain"]
    uri = broken_store(kind)
    ok_optuna = f"sqlite:///{tmp_path / 'optuna.db'}"
    code, err, _ = _run_cli([*sweep, "--tracking-uri", uri, "--storage", ok_optuna], capsys)
    line = _one_error_line(err)
    assert (
        code == 2 and line.startswith(f"error: the MLflow store {uri[len('sqlite:///') :]} ") and says in line
    )
    ok_mlflow = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ok_mlflow)
    optuna_uri = uri.replace("mlflow.db", "optuna.db") if kind == "read-only folder" else uri
    code, err, _ = _run_cli([*sweep, "--storage", optuna_uri], capsys)
    line = _one_error_line(err)
    assert (
        code == 2
        and line.startswith(f"error: the Optuna store {optuna_uri[len('sqlite:///') :]} ")
        and says in line
    )
    assert "--storage" in line or "mv " in line
    # nothing RUNNING in the MLflow store that worked: the sweep stopped before any run
    client = mlflow.MlflowClient(ok_mlflow)
    for e in client.search_experiments():
        assert all(r.info.status != "RUNNING" for r in client.search_runs([e.experiment_id]))


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("postgresql://alice:pw-x9@127.0.0.1:1/mlflow", "postgresql+psycopg2://alice:***@127.0.0.1:1/mlflow"),
        ("http://alice:pw-x9@127.0.0.1:1", "http://alice:***@127.0.0.1:1"),
    ],
)
def test_unreachable_tracking_server_one_named_error(uri, shown, monkeypatch, capsys):
    pytest.importorskip("psycopg2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, err, took = _run_cli(["train", "--task", "addition", "--model", "implicit", *TINY], capsys)
    line = _one_error_line(err)
    assert code == 2 and line.startswith(f"error: the MLflow store {shown} failed (") and "pw-x9" not in err
    assert "it cannot be reached" in line and "MLFLOW_TRACKING_URI" in line
    assert took < 60  # (measured 3-6 s; 200 s of silence before the bounded retries)


def test_unreachable_postgresql_study_store_one_named_error(tmp_path, monkeypatch, capsys):
    pytest.importorskip("psycopg2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    url = "postgresql://bob:pw-y8@127.0.0.1:1/optuna"
    code, err, _ = _run_cli(
        ["sweep", "--task", "addition", "--model", "implicit", "--trials", "1", "--storage", url], capsys
    )
    line = _one_error_line(err)
    assert code == 2 and line.startswith(
        "error: the Optuna store postgresql+psycopg2://bob:***@127.0.0.1:1/optuna"
    )
    assert "--storage" in line and "pw-y8" not in err


def test_postgresql_without_a_driver_says_what_to_install(monkeypatch):
    import importlib.util

    from lightning_implicit.tracking.store import StoreError, database_driver

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("psycopg", "psycopg2") else real(name, *a),
    )
    with pytest.raises(StoreError, match=r"postgresql://u:\*\*\*@h/db .*pip install psycopg2-binary"):
        database_driver("postgresql://u:pw@h/db")
    assert database_driver("sqlite:///x.db") == "sqlite:///x.db"


# -- command line: every bad value one line (issue 33) -------------------------------------------------------------


def test_trials_zero_is_an_error_and_opens_no_run(store, tmp_path, capsys):
    argv = ["sweep", "--task", "addition", "--model", "implicit", "--trials", "0"]
    code, err, _ = _run_cli([*argv, "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"], capsys)
    assert code == 2 and _one_error_line(err).startswith(
        "error: --trials 0 (TRIALS= of make sweep): must be >= 1"
    )
    assert store() == []  # no empty FINISHED parent run


@pytest.mark.parametrize(
    "override, says",
    [
        (
            ["--trainer.max_epoch", "1"],
            "unknown option --trainer.max_epoch; did you mean --trainer.max_epochs?",
        ),
        (["--model.init_args.kapa", "0.5"], "unknown option --model.init_args.kapa; did you mean"),
        (["--model.init_args.optim.lr", "nan"], "--model.init_args.optim.lr nan: must be a finite number"),
    ],
)
def test_bad_sweep_override_is_blamed_on_the_command_line(override, says, store, tmp_path, capsys):
    argv = ["sweep", "--task", "addition", "--model", "implicit", "--trials", "1"]
    argv += ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--", *override]
    code, err, _ = _run_cli(argv, capsys)
    line = _one_error_line(err)
    assert code == 2 and line.startswith(
        f"error: a command-line override is rejected ({' '.join(override)}): "
    )
    assert says in line and "conf/search" not in line
    assert store() == []


def test_make_sweep_passes_args_to_every_trial():
    if shutil.which("make") is None:
        pytest.skip("needs make")
    out = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "sweep",
            "TASK=addition",
            "TRIALS=2",
            "ARGS=--trainer.max_epochs 1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    line = " ".join(out.stdout.replace("\\\n", " ").split())
    assert "lightning_implicit.cli sweep --task addition" in line and line.endswith(
        "-- --trainer.max_epochs 1"
    )


def test_max_epochs_that_a_tuned_recipe_overrides_is_reported():
    from lightning_implicit.runner import tuned_override_note
    from lightning_implicit.tuned import find_tuned

    recipe = find_tuned("addition", "implicit").cli_args()  # (sets max_epochs -1 and a step budget)
    steps = recipe[recipe.index("--trainer.max_steps") + 1]
    note = tuned_override_note(recipe, ["--trainer.max_epochs", "1000000000"])
    assert note == (
        f"note: the tuned recipe stops training after --trainer.max_steps {steps} optimiser steps, whatever "
        "--trainer.max_epochs 1000000000 asks; add --trainer.max_steps -1 (or --no-tuned, TUNED=0) to train for "
        "those epochs"
    )
    assert tuned_override_note(recipe, ["--trainer.max_epochs=5"]) is not None
    assert tuned_override_note(recipe, ["--trainer.max_epochs", "5", "--trainer.max_steps", "-1"]) is None
    assert tuned_override_note(recipe, ["--model.init_args.optim.lr", "0.1"]) is None
    assert tuned_override_note([], ["--trainer.max_epochs", "5"]) is None


# -- concurrency: two sweeps started together on a fresh store (issue 33) -------------------------------------------


@pytest.mark.slow
def test_two_sweeps_started_together_on_a_fresh_store_run_every_trial(tmp_path):
    """Both sweeps run their trials on the fresh stores (the schema is created once, not raced), the study
    holds every requested trial, and each best config is retrained once."""
    import optuna

    mlflow_uri, optuna_url = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    cmd = cli_command(
        *["sweep", "--task", "addition", "--model", "implicit", "--trials", "2", "--epochs", "1"],
        *["--n-train", "200", "--n-test", "50", "--storage", optuna_url, "--study", "together"],
    )
    procs = []
    for _ in range(2):
        procs.append(
            subprocess.Popen(
                cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
        time.sleep(0.5)  # (started within 1 s)
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "Traceback" not in out
    study = optuna.load_study(study_name="together", storage=optuna_url)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4, states
    client = mlflow.MlflowClient(mlflow_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    retrained = [r.data.tags["optuna.trial"] for r in runs if r.data.tags.get("sweep.role") == "best_retrain"]
    assert retrained and len(retrained) == len(set(retrained)), retrained  # each best config retrained once


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("postgresql://carol:pw-z7@127.0.0.1:1/mlflow", "postgresql+psycopg2://carol:***@127.0.0.1:1/mlflow"),
        ("http://carol:pw-z7@127.0.0.1:1", "http://carol:***@127.0.0.1:1"),
    ],
)
def test_retest_on_an_unreachable_store_one_named_error(uri, shown, capsys):
    pytest.importorskip("psycopg2")
    code, err, _ = _run_cli(["test", "--run-id", "0" * 32, "--tracking-uri", uri], capsys)
    line = _one_error_line(err)
    assert code == 2 and line.startswith(f"error: the MLflow store {shown} failed (")
    assert "it cannot be reached" in line and "pw-z7" not in err


# -- a real PostgreSQL server (slow; skipped where none is installed) ----------------------------------------------


@pytest.fixture
def postgres(tmp_path):
    """A throw-away PostgreSQL server on a free port (user ``admin``, password auth); yields
    ``(url without database, password, run_as)``. As root it runs as the ``postgres`` user."""
    import tempfile

    from test_mlflow_server import free_port

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("needs PostgreSQL's initdb and pg_ctl")
    run_as = []
    if os.geteuid() == 0:
        if (
            shutil.which("runuser") is None
            or subprocess.run(["id", "postgres"], capture_output=True).returncode
        ):
            pytest.skip("as root, needs a postgres user and runuser")
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="li-pg-"))  # (pytest's tmp_path is private to root)
    root.chmod(0o777)
    password, port = "pg-Secr3t-9", free_port()
    (root / "pw").write_text(password + "\n")
    (root / "pw").chmod(0o644)

    def sh(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([*run_as, *cmd], capture_output=True, text=True, timeout=120)

    out = sh(
        initdb, "-D", str(root / "data"), "-U", "admin", f"--pwfile={root / 'pw'}", "--auth=scram-sha-256"
    )
    assert out.returncode == 0, out.stderr
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    out = sh(pg_ctl, "-D", str(root / "data"), "-o", opts, "-l", str(root / "log"), "-w", "start")
    assert out.returncode == 0, out.stderr + (root / "log").read_text()
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(
            f"postgresql+psycopg2://admin:{password}@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as con:
            con.execute(sqlalchemy.text("CREATE DATABASE optuna"))
        engine.dispose()
        yield f"postgresql://admin:{password}@127.0.0.1:{port}", password, root
    finally:
        sh(pg_ctl, "-D", str(root / "data"), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_wrong_password_one_line_and_no_password_in_the_study_store(postgres, tmp_path):
    pytest.importorskip("psycopg2")
    server, password, root = postgres
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("OPTUNA_STORAGE", None)
    sweep = ["sweep", "--task", "addition", "--model", "implicit", "--trials", "1", "--epochs", "1"]
    sweep += ["--n-train", "100", "--n-test", "20", "--no-retrain"]
    wrong = server.replace(password, "not-the-password") + "/optuna"
    started = time.monotonic()
    out = subprocess.run(
        cli_command(*sweep, "--storage", wrong),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    line = _one_error_line(out.stderr)
    assert line.startswith(
        f"error: the Optuna store postgresql+psycopg2://admin:***@{server.split('@')[1]}/optuna"
    )
    assert "password authentication failed" in line and "not-the-password" not in out.stdout + out.stderr
    assert time.monotonic() - started < 120
    # the right password (in OPTUNA_STORAGE): the sweep runs, and the study database holds no password
    out = subprocess.run(
        cli_command(*sweep),
        env={**env, "OPTUNA_STORAGE": server + "/optuna"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert password not in out.stdout + out.stderr and "admin:***@" in out.stdout
    dump = subprocess.run(
        [shutil.which("pg_dump") or "pg_dump", "-d", server + "/optuna"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dump.returncode == 0 and "trial_values" in dump.stdout, dump.stderr
    assert password not in dump.stdout


@pytest.mark.parametrize(
    "fault, says",
    [
        (lambda: sqlite3.OperationalError("database or disk is full"), "its disk is full"),
        (lambda: OSError(28, "No space left on device"), None),  # (not raised by the store's code: as it is)
    ],
)
def test_store_failing_mid_run_is_named_and_the_run_ends_failed(fault, says, store):
    """The tracking store fails during training (its disk fills up): the run still ends FAILED, and the error
    names the store (a full disk elsewhere, e.g. a checkpoint's, is not blamed on it)."""
    import lightning as L

    from lightning_implicit.runner import run_training
    from lightning_implicit.tracking.store import StoreError
    from tests.conftest import tiny_args

    error = fault()

    class Fill(L.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            raise error

    expected = StoreError if says else type(error)
    with pytest.raises(expected) as caught:
        run_training(
            tiny_args("addition", "implicit", n_train=200, n_test=50), extra_callbacks=[Fill()], test=False
        )
    if says:
        path = store.uri[len("sqlite:///") :]
        assert str(caught.value).startswith(
            f"the MLflow store {path} failed (database or disk is full): {says}"
        )
    ((status, tags, _),) = store()
    assert status == "FAILED" and ("disk is full" in tags["error"] or "No space" in tags["error"])


def test_store_failing_mid_sweep_is_found_by_probing_the_stores(broken_store, tmp_path):
    """A store error mid-sweep (the sqlite error does not say which file): the store that fails its probe now is
    named; an error from elsewhere, or with both stores fine, is left as it is."""
    from lightning_implicit.sweep.cli import _failed_store, options_from_args

    full = sqlite3.OperationalError("database or disk is full")
    good = f"sqlite:///{tmp_path / 'good.db'}"
    bad = broken_store("read-only file", "optuna.db")
    opts = options_from_args(["--task", "addition", "--storage", bad, "--tracking-uri", good])
    named = _failed_store(full, opts)
    assert str(named).startswith(f"the Optuna store {bad[len('sqlite:///') :]} failed (")
    opts = options_from_args(["--task", "addition", "--storage", good, "--tracking-uri", bad])
    assert str(_failed_store(full, opts)).startswith(f"the MLflow store {bad[len('sqlite:///') :]} failed (")
    assert _failed_store(ValueError("database or disk is full"), opts) is None  # not from a store's stack
    fine = options_from_args(["--task", "addition", "--storage", good, "--tracking-uri", good])
    assert _failed_store(full, fine) is None
