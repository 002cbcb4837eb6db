"""The first hour of a new user (issue 31): every user mistake answered on one ``error:`` line that names the fix
(exit 2, no traceback, no usage dump), ``--print_config`` as YAML that ``fit --config`` reads back, params in one
naming style, and the summary's UI hint that finds a UI already running."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from conftest import tiny_args


def _one_error_line(text: str) -> str:
    """The single ``error:`` line of ``text``; fails on a traceback or a usage dump."""
    assert "Traceback" not in text and "usage:" not in text, text[-2000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text[-2000:]
    return errors[0]


# ---- mistakes decided before torch and Lightning load: a subprocess that must not import torch ----------------
PROBE = (
    "import sys\nfrom lightning_implicit.cli import main\ncode = main({argv!r})\n"
    "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)"
)

EARLY = [
    (
        ["train", "--task", "additon", "--model", "implicit"],
        ["no tasks config 'additon'", "addition", "TASK="],
    ),
    (["train", "--task", "addition", "--model", "implicitt"], ["no models config 'implicitt'", "MODEL="]),
    (
        ["train", "--task", "addition", "--model", "implicit", "--trainer", "gpux"],
        ["'gpux'", "cpu", "TRAINER="],
    ),
    (
        ["train", "--task", "volatility", "--model", "implicit", "--data", "/no/such.csv"],
        ["DATA=", "synthetic"],
    ),
    (
        ["train", "--task", "addition", "--model", "implicit", "--devices", "two"],
        ["DEVICES=4", "DEVICES=0,2"],
    ),
    (["train", "--task", "addition"], ["--model", "lightning-implicit train --help"]),
    (["list", "--tsk", "addition"], ["--tsk", "lightning-implicit list --help"]),
    (["train", "--task", "addition", "--model", "implicit", "--seed", "x"], ["--seed", "make SEED="]),
    (["sweep", "--task", "addition", "--model", "implicit,mlpp"], ["no models config 'mlpp'", "--model"]),
    (["tune", "--profile", "quick", "--task", "spikyy"], ["no tasks config 'spikyy'", "--task"]),
    (["test", "--ckpt_path", "x.ckpt", "--trainer", "gpux"], ["no trainer config 'gpux'", "--trainer"]),
]


@pytest.mark.parametrize(("argv", "named"), EARLY, ids=[" ".join(a[:4]) for a, _ in EARLY])
def test_mistakes_decided_before_heavy_imports(argv, named):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stdout + out.stderr
    line = _one_error_line(out.stdout + out.stderr)
    for part in named:
        assert part in line, line
    assert "torch imported: False" in out.stderr


# every command's own options: a bad value or an unknown option is one line, not argparse's usage dump
OWN_OPTIONS = [
    (["sweep", "--task", "addition", "--trials", "many"], "--trials"),
    (["sweep", "--task", "addition", "--trails", "3"], "--trails"),
    (["tune", "--profile", "quick", "--workers", "x"], "--workers"),
    (["test", "--run-id", "abc", "--no-such-flag"], "--no-such-flag"),
    (["budget", "--task", "addition", "--model", "implicit", "--epochs", "4", "--seeds", "zero"], "--seeds"),
    (["reproduce", "--profile", "quick", "--workrs", "2"], "--workrs"),
    (["params", "--tsk", "addition"], "--tsk"),
]


@pytest.mark.parametrize(("argv", "named"), OWN_OPTIONS, ids=[" ".join(a[:4]) for a, _ in OWN_OPTIONS])
def test_every_commands_own_option_mistakes_are_one_line(argv, named):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2, out.stdout + out.stderr
    line = _one_error_line(out.stdout + out.stderr)
    assert named in line and "--help" in line, line


# ---- mistakes found by the LightningCLI parser or the Trainer ---------------------------------------------------
def _cli(argv: list[str], setup: str = "") -> subprocess.CompletedProcess:
    """``lightning-implicit <argv>`` in a fresh interpreter, after ``setup`` (Python source, e.g. a patch)."""
    code = f"import sys\n{setup}\nfrom lightning_implicit.cli import main\nsys.exit(main({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


LATE = [
    (
        ["--model.init_args.kapa", "0.9"],
        "unknown option --model.init_args.kapa; did you mean --model.init_args.kappa?",
    ),
    (
        ["--data.init_args.n_tran", "9"],
        "unknown option --data.init_args.n_tran; did you mean --data.init_args.n_train?",
    ),
    (["--trainer.max_epochs", "abc"], "--trainer.max_epochs abc: must be a whole number"),
    (["--model.init_args.kappa", "-1"], "--model.init_args.kappa -1.0: must be a number in (0, 1)"),
    (
        ["--tracking.experimnt", "x"],
        "unknown option --tracking.experimnt; did you mean --tracking.experiment?",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), LATE, ids=[e[0] for e, _ in LATE])
def test_option_mistakes_are_one_line_with_did_you_mean(extra, expected, capsys):
    from lightning_implicit.runner import run_training, shorthand_args
    from lightning_implicit.validate import ConfigError

    with pytest.raises(ConfigError) as err:
        run_training(shorthand_args("addition", "implicit") + extra)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    assert "usage:" not in capsys.readouterr().err


def test_a_typo_on_the_command_line_exits_2_with_one_line():
    out = _cli(
        ["train", "--task", "addition", "--model", "implicit", "--no-tuned", "--model.init_args.kapa", "1"]
    )
    assert out.returncode == 2
    line = _one_error_line(out.stdout + out.stderr)
    assert "did you mean --model.init_args.kappa?" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU: --trainer gpu is no mistake")
def test_gpu_trainer_without_a_gpu_names_the_cpu_ways():
    from lightning_implicit.runner import run_training, shorthand_args
    from lightning_implicit.validate import ConfigError

    with pytest.raises(ConfigError) as err:
        run_training(shorthand_args("addition", "implicit", trainer="gpu"))
    assert "TRAINER=cpu" in str(err.value) and "TRAINER=ddp DEVICES=2" in str(err.value)


OFFLINE = """
import logging, yfinance

class Offline:
    def __init__(self, ticker, *a, **k):
        logging.getLogger("yfinance").error("Failed to get ticker %r reason: DNSError", ticker)

    def history(self, **kwargs):
        raise OSError("Could not resolve host: query2.finance.yahoo.com")

yfinance.Ticker = Offline
"""


def test_volatility_without_data_offline_is_one_quiet_line(tmp_path):
    """No file, no cache and no network: one line that says what to do; none of yfinance's own log records."""
    argv = ["train", "--task", "volatility", "--model", "implicit", "--no-tuned"]
    out = _cli([*argv, "--data.init_args.cache_dir", str(tmp_path)], setup=OFFLINE)
    assert out.returncode == 2
    line = _one_error_line(out.stdout + out.stderr)
    assert "no network access?" in line and "DATA=path/to/amc_1min.csv" in line and "DATA=synthetic" in line
    assert "Failed to get ticker" not in out.stdout + out.stderr


# ---- --print_config: YAML on stdout, notices on stderr, read back by fit --config -------------------------------
def test_print_config_round_trips_through_fit_config(tmp_path):
    from lightning_implicit.runner import run_training

    argv = ["train", "--task", "addition", "--model", "implicit", "--trainer.max_epochs", "1"]
    argv += [
        "--trainer.max_steps",
        "-1",
        "--trainer.enable_progress_bar",
        "false",
        "--tracking.log_model",
        "false",
    ]
    argv += [
        "--data.init_args.n_train",
        "400",
        "--data.init_args.n_test",
        "50",
        "--data.init_args.shifts",
        "[10]",
    ]
    out = _cli([*argv, "--print_config"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "using the tuned config" in out.stderr  # the notice: stderr, not the YAML
    config = yaml.safe_load(out.stdout)
    assert config["data"]["init_args"]["n_train"] == 400 and config["model"]["init_args"]["kappa"] > 0
    path = tmp_path / "cfg.yaml"
    path.write_text(out.stdout)
    res = run_training(["--config", str(path), "--tracking.experiment", "print-config-round-trip"])
    run = mlflow.MlflowClient().get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.data.params["data.n_train"] == "400"


# ---- params: one naming style, no None twin, the seed; what MLflow's parallel-coordinates plot opens on ------
def _mlflow_parallel_coordinates_default(runs) -> list[str]:
    """What MLflow 3's compare view plots first: of the params whose values differ between the runs (a missing
    one differs), the first three in sorted order (``diffParamKeys.sort().slice(0, 3)`` in its
    ParallelCoordinatesPlotPanel)."""
    keys = sorted({k for r in runs for k in r.data.params})
    return [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1][:3]


def test_params_follow_one_naming_style_and_the_compare_view_opens_on_what_changed():
    from lightning_implicit.runner import run_training
    from lightning_implicit.tracking.callback import PARAM_GROUPS

    runs = []
    for kappa, lr in ((0.5, 0.01), (0.9, 0.02)):
        extra = ["--model.init_args.kappa", str(kappa), "--model.init_args.optim.lr", str(lr)]
        extra += [
            "--tracking.log_model",
            "false",
            "--tracking.experiment",
            "params-naming",
            "--seed_everything",
            "3",
        ]
        res = run_training(tiny_args("addition", "implicit", n_train=64, n_test=16, shifts=[10], extra=extra))
        runs.append(mlflow.MlflowClient().get_run(res.run_id))
    params = runs[0].data.params
    for key in params:
        group, dot, rest = key.partition(".")
        assert key == "seed" or (group in PARAM_GROUPS and dot and rest and "/" not in key), key
    assert params["seed"] == "3"
    assert params["model.kappa"] == "0.5" and params["optim.lr"] == "0.01" and params["solver.tol"]
    assert params["model.hidden_features"] == "20"  # resolved from the task's preset, no "None" twin
    assert not any(k.startswith(("_", "kappa", "hidden_features")) for k in params)
    assert _mlflow_parallel_coordinates_default(runs) == ["model.kappa", "optim.lr"]


# ---- the UI hint: a UI already answering on PORT is found -------------------------------------------------------
class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # http.server's name
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


def test_summary_finds_a_ui_running_on_port(monkeypatch, capsys):
    from lightning_implicit.console import print_run_summary

    client = mlflow.MlflowClient()
    exp = client.create_experiment("ui-hint")
    run_id = client.create_run(exp).info.run_id
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("PORT", str(port))
        print_run_summary(run_id)
        up = capsys.readouterr().out
    finally:
        server.shutdown()
        server.server_close()
    print_run_summary(run_id)  # the same port, nothing listening any more
    down = capsys.readouterr().out
    assert f"run in UI:   http://127.0.0.1:{port}/#/experiments/{exp}/runs/{run_id}" in up
    assert "not running" not in up
    store = mlflow.get_tracking_uri()  # (the session's store: not ./mlruns/mlflow.db, so the hint names it)
    hint = f"UI:          not running at http://127.0.0.1:{port}; start it with `make ui PORT={port} "
    assert f"{hint}MLFLOW_TRACKING_URI={store}` (PORT= for another port)" in down


def test_pasteable_paths_are_relative_below_the_working_directory(tmp_path, monkeypatch):
    from lightning_implicit.console import pasteable_path, venv_command

    monkeypatch.chdir(tmp_path)
    assert pasteable_path(tmp_path / "a" / "b.ckpt") == "a/b.ckpt"
    assert pasteable_path("/elsewhere/x.ckpt") == "/elsewhere/x.ckpt"
    command = venv_command()
    assert command.endswith(("lightning-implicit", "-m lightning_implicit.cli"))
    version = subprocess.run(f"{command} --help", shell=True, capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and "usage: lightning-implicit" in version.stdout


# ---- make help, make dashboard ----------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def test_make_help_lists_every_target_and_variable_on_one_line():
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    makefile = (REPO / "Makefile").read_text()
    targets = {line.split(":")[0] for line in makefile.splitlines() if re.match(r"^[a-z][a-z-]*:", line)}
    variables = {line.split()[0] for line in makefile.splitlines() if re.match(r"^[A-Z_]+ \?=", line)}
    listed = {line.split()[0].rstrip("=") for line in out.stdout.splitlines() if line.startswith("  ")}
    assert targets <= listed and variables <= listed, (targets | variables) - listed
    assert "  train            fit MODEL on TASK" in out.stdout and "  PORT=" in out.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [
                "train",
                "TUNED=0",
                "DEVICES=0,2",
                "TRAIN_RANGE=2015-01-01..2020-12-31",
                "ARGS=--trainer.max_epochs 1",
            ],
            "train --task addition --model implicit --seed 0 --trainer cpu --devices 0,2 --no-tuned "
            "--data.init_args.train_range 2015-01-01..2020-12-31 --trainer.max_epochs 1",
        ),
        (["train", "TUNED=1"], "train --task addition --model implicit --seed 0 --trainer cpu"),
        (
            ["sweep", "MODEL=mlp", "FULL=1", "TICKER=AMC", "CV=3"],
            "sweep --task addition --model mlp --cv 3 --full -- --data.init_args.ticker AMC",
        ),
        (["sweep"], "sweep --task addition"),  # MODEL only when given on make's command line
        (["tune", "TASKS=addition,identity"], "tune --profile paper --tasks addition,identity"),
        (["tune", "CV=5", "FROM_RECORD=1"], "tune --profile paper --cv 5 --from-record"),
        (["reproduce", "COMPARE=0", "WORKERS=3"], "reproduce --profile quick --workers 3 --no-compare"),
        (["evaluate", "RUN_ID=abc", "MODEL=mlp"], "test --run-id abc --model mlp"),
        (
            ["budget", "SEEDS=1,2"],
            "budget --task addition --model implicit,eikonet --epochs 4,8,16,32 --seeds 1,2",
        ),
    ],
)
def test_make_prints_one_pastable_line_with_the_flags_of_the_variables_set(argv, expected):
    """The Makefile's one table from variables to flags: each target prints one line, the flags of the variables
    set (a switch for FULL, TUNED=0 and COMPARE=0; a FROM..TO range as written), in the order the target lists them."""
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", *argv, "VENV=.venv"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if "lightning_implicit.cli" in x)
    assert line == f".venv/bin/python -m lightning_implicit.cli {expected}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_dashboard_serves_the_study_store(tmp_path):
    import time
    import urllib.request

    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="dashboard-test", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=2)
    port = _free_port()
    cmd = ["make", "--no-print-directory", "dashboard", f"PORT={port}", f"OPTUNA_STORAGE={storage}"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert body is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        assert "dashboard-test" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=5) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# ---- the C++ build says that it compiles, once, and how long it took --------------------------------------------
def test_the_fused_build_says_once_that_it_compiles(tmp_path, monkeypatch, capsys):
    import torch.utils.cpp_extension as cpp

    from lightning_implicit.implicit import fused

    calls = []

    def fake_load(name, **kwargs):  # what torch's load leaves behind: the built library, then the module
        calls.append(name)
        (Path(cpp._get_build_directory(name, verbose=False)) / f"{name}.so").write_bytes(b"built")
        return "module"

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cpp, "load", fake_load)
    monkeypatch.setattr(fused, "damaged", lambda so: None)
    fused._build.cache_clear()
    try:
        assert fused._build() == ("module", None)
        first = capsys.readouterr().err
        fused._build.cache_clear()
        assert fused._build() == ("module", None)  # the cached build: loaded without a word
        second = capsys.readouterr().err
    finally:
        fused._build.cache_clear()
    assert len(calls) == 2
    assert first.count("compiling the fused C++ loops") == 1 and re.search(r"compiled in \d+ s", first)
    assert second == ""


# ---- shift axes: the step is the shift where it is an integer, else a scale fixed by the task's grid ------------
def test_two_runs_of_one_task_put_the_same_shift_at_the_same_step():
    from lightning_implicit.tracking.sweep_log import log_shift_sweep, shift_step_param, shift_steps

    client = mlflow.MlflowClient()
    exp = client.create_experiment("shift-axes")
    grid = (1.5, 10)  # the task's declared grid
    steps = {}
    for shifts in ([1.5, 10], [10], [10, 2.25]):
        run_id = client.create_run(exp).info.run_id
        rows = [{"shift": s, "n": 4, "mse": float(s) ** 2} for s in shifts]
        log_shift_sweep(
            client, run_id, rows, task="t", shift_name="kappa", shift_log=True, label="m", grid=grid
        )
        history = client.get_metric_history(run_id, "ood/mse")
        steps[tuple(shifts)] = {m.value: m.step for m in history}
    assert steps[(1.5, 10)] == {2.25: 15, 100.0: 100} and steps[(10,)] == {100.0: 100}  # aligned: shift x 10
    assert steps[(10, 2.25)][100.0] == 1000  # finer shifts than the grid's: another scale, said by the param
    assert (
        shift_step_param([10, 2.25], grid) == "shift x 100" and shift_step_param([10], grid) == "shift x 10"
    )
    assert shift_steps([10, 100, 1000]) == [10, 100, 1000] and shift_step_param([10, 100]) == "shift"


# ---- the progress bar counts steps under a step budget ------------------------------------------------------------
def test_progress_bar_counts_steps_under_a_step_budget():
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar

    from lightning_implicit.console import (
        LIGHTNING_REFRESH_RATE,
        REFRESH_RATE,
        console_callbacks,
        train_description,
    )

    assert train_description(15, -1, 320, 3000) == "Epoch 15 (step 320/3000)"
    assert train_description(3, 20, 60, -1) == "Epoch 3/19"
    trainer = L.Trainer(max_epochs=-1, max_steps=30, logger=False, enable_checkpointing=False)
    default = [cb for cb in trainer.callbacks if isinstance(cb, RichProgressBar)]
    (bar,) = [cb for cb in console_callbacks(trainer.callbacks) if isinstance(cb, RichProgressBar)]
    assert default and type(bar) is not RichProgressBar and default[0].refresh_rate == LIGHTNING_REFRESH_RATE
    assert bar.refresh_rate == REFRESH_RATE  # Lightning's default 100 redraws a second lowered to 10
    (kept,) = [
        cb for cb in console_callbacks([RichProgressBar(refresh_rate=3)]) if isinstance(cb, RichProgressBar)
    ]
    assert type(kept) is not RichProgressBar and kept.refresh_rate == 3  # a rate the user chose is kept


# ---- DDP on the CPU: quiet, one notice, a run name that says how it ran -------------------------------------------
DDP_NOISE = ["sync_dist=True", "DistributedSampler", "all_gather is deprecated", "Warning", "warn("]


@pytest.mark.slow
def test_cpu_ddp_run_is_quiet_and_named_by_how_it_ran(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PORT": "1"}
    cmd = [
        sys.executable,
        "-m",
        "lightning_implicit.cli",
        "train",
        "--task",
        "addition",
        "--model",
        "implicit",
    ]
    cmd += ["--trainer", "ddp", "--devices", "2", "--trainer.max_epochs", "1", "--trainer.max_steps", "-1"]
    cmd += [
        "--data.init_args.n_train",
        "400",
        "--data.init_args.n_test",
        "100",
        "--data.init_args.shifts",
        "[10]",
    ]
    cmd += ["--trainer.default_root_dir", str(tmp_path / "lightning"), "--tracking.log_model", "false"]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    for noise in DDP_NOISE:
        assert noise not in text, noise
    assert text.count("using the tuned config") == 1  # rank 0 only
    assert "run:         implicit-seed0-ddp2 (" in out.stdout


def test_sweep_table_defines_mape_and_its_units():
    import io
    from types import SimpleNamespace

    from lightning_implicit.runner import print_sweep

    rows = [{"shift": 2021, "n": 30, "mape": 0.4321, "rmse": 1.5e-3}]
    out = io.StringIO()
    print_sweep(SimpleNamespace(sweep=rows, run_id=None), stream=out)
    text = out.getvalue()
    assert "0.4321" in text and "mape = mean(|pred - y| / y) over the truths y > 0" in text and "25 %" in text
    out = io.StringIO()
    print_sweep(SimpleNamespace(sweep=[{"shift": 10, "n": 5, "mse": 0.5}], run_id=None), stream=out)
    assert "0.5" in out.getvalue() and "mape" not in out.getvalue()


def test_a_task_module_off_the_path_names_conf_path(tmp_path):
    from lightning_implicit.runner import run_training, shorthand_args
    from lightning_implicit.validate import ConfigError

    task = tmp_path / "elsewhere.yaml"
    task.write_text("data:\n  class_path: no_such_task_module.TaskData\n  init_args: {n_train: 10}\n")
    with pytest.raises(ConfigError) as err:
        run_training([*shorthand_args("addition", "implicit"), "--config", str(task)])
    text = str(err.value)
    assert text.startswith("--data: cannot import 'no_such_task_module.TaskData'") and "CONF_PATH=" in text


def test_progress_bar_draws_at_its_refresh_rate_and_the_epochs_last_batch(monkeypatch):
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.demos.boring_classes import BoringModel

    from lightning_implicit.console import console_callbacks

    passed_on = []
    original = RichProgressBar.on_train_batch_end

    def counting(self, trainer, pl_module, outputs, batch, batch_idx):
        passed_on.append(batch_idx)
        original(self, trainer, pl_module, outputs, batch, batch_idx)

    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", counting)
    (bar,) = console_callbacks([RichProgressBar(refresh_rate=1)])  # at most one draw a second
    done = []

    class Probe(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            done.append(bar.progress.tasks[bar.train_progress_bar_id].completed)

    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=40, limit_val_batches=0, logger=False, enable_checkpointing=False
    )
    trainer.callbacks = [bar, Probe()]  # the probe reads the bar after the bar's own epoch end
    trainer.fit(BoringModel())
    assert done == [40, 40]  # each epoch's last batch is drawn (the skipped one, at the epoch's end)
    assert passed_on[-1] == 39 and len(passed_on) < 20  # not every batch: 80 batches take well under 40 s
