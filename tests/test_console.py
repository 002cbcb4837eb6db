"""The console of `lightning-implicit train`: third-party noise filtered, an end-of-run summary (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
from conftest import cli_command

from lightning_implicit.runner import shorthand_args

NOISE = [
    "LightningCLI's args parameter is intended",
    "litlogger",
    "litmodels",
    "LeafSpec",
    "Total FLOPs",
    "log_every_n_steps",
]


@pytest.mark.slow
def test_train_prints_summary_without_third_party_noise(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PORT": "1"}  # nothing listens on port 1
    cmd = cli_command(
        "train",
        "--task",
        "addition",
        "--model",
        "implicit",
        "--trainer.max_epochs",
        "1",
        "--data.init_args.n_train",
        "400",
        "--data.init_args.n_test",
        "100",
        "--data.init_args.shifts",
        "[10, 100]",
    )
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    for noise in NOISE:
        assert noise not in text, noise
    assert "experiment:  addition" in out.stdout
    assert "run:         implicit-seed0" in out.stdout
    assert (
        f"not running at http://127.0.0.1:1; start it with `make ui PORT=1 MLFLOW_TRACKING_URI={uri}`"
        in out.stdout
    )
    run_id = (
        next(line for line in out.stdout.splitlines() if line.startswith("run:")).split("(")[-1].rstrip(")")
    )
    assert f"/runs/{run_id}" in out.stdout
    assert (
        f"model:       MLFLOW_TRACKING_URI={uri} " in out.stdout and "load_logged_model" in out.stdout
    )  # (test_paste.py)
    assert f"lightning-implicit test --run-id {run_id}" in out.stdout
    assert "Total params" in out.stdout and "FLOPs" not in text  # the model summary stays, without FLOPs
    run = mlflow.MlflowClient(uri).get_run(run_id)
    # the resolved size is the task's Table 4 size (conf/tasks/addition.yaml), and the count follows from it
    n, p, q = 20, 50, 1
    assert run.data.params["model.hidden_features"] == str(n)
    assert run.data.params["model.n_parameters"] == str(n * n + n * p + q * n + q * p)
    assert "config.yaml" in {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run_id)}
    assert run.data.params["data.n_train"] == "400" and run.data.params["trainer.max_epochs"] == "1"
    assert not any("presets" in k for k in run.data.params)
    assert run.data.tags["git_commit"]


def test_devices_list_becomes_a_gpu_list():
    args = shorthand_args("addition", "implicit", devices="0,2")
    assert args[args.index("--trainer.devices") + 1] == "[0,2]"
    args = shorthand_args("addition", "implicit", devices=4)
    assert args[args.index("--trainer.devices") + 1] == "4"


# ---- help: fast, one line per option, conf/ listed, examples, the override pointer -------------------------------
def _help(argv: list[str], capsys) -> str:
    from lightning_implicit.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's --help
        rc = exc.code
    out = capsys.readouterr().out
    assert rc in (0, None), out
    return out


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_top_level_and_train_help_do_not_import_torch(argv):
    code = (
        f"import sys\nfrom lightning_implicit.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch imported: False" in out.stdout
    assert "examples:" in out.stdout and "--trainer.max_epochs 5" in out.stdout


def test_top_level_help_describes_every_command(capsys):
    from lightning_implicit.clihelp import COMMANDS

    out = _help(["--help"], capsys)
    for name, text in COMMANDS.items():
        assert f"  {name:<9}  {text}" in out
    assert set(COMMANDS) == {"train", "fit", "test", "sweep", "tune", "budget", "reproduce", "params", "list"}


def test_train_help_lists_the_configs_and_describes_every_option(capsys):
    from lightning_implicit import confpath
    from lightning_implicit.clihelp import train_parser

    out = " ".join(_help(["train", "--help"], capsys).split())  # (wrapped lines joined)
    for kind in ("tasks", "models"):
        names = confpath.names(kind)
        assert len(names) >= 5
        assert f"{kind}: {', '.join(names)}" in out
    assert "LightningCLI overrides" in out and "--print_config" in out
    for action in train_parser()._actions:
        assert action.help and len(action.help) > 10, action.option_strings


def test_each_command_parser_describes_every_option():
    from lightning_implicit.clihelp import list_parser
    from lightning_implicit.evaluate import build_parser as test_parser
    from lightning_implicit.sweep.cli import build_parser as sweep_parser

    for parser in (list_parser(), test_parser(), sweep_parser()):
        for action in parser._actions:
            assert action.help, (parser.prog, action.option_strings)


@pytest.mark.parametrize("command", ["fit", "test", "sweep", "tune", "budget", "reproduce", "params", "list"])
def test_every_subcommand_help_has_examples(command, capsys):
    out = _help([command, "--help"], capsys)
    assert f"lightning-implicit {command}" in out
    assert "examples:" in out.lower().replace("examples::", "examples:")
    examples = out.lower().split("examples:", 1)[1]
    assert examples.count(f" {command}") + examples.count(f"make {command}") >= 2, examples
    if command in ("test", "sweep", "budget", "reproduce"):
        assert "--trainer." in out or "--data.init_args" in out  # where LightningCLI overrides go


def test_unknown_command_is_one_line_with_did_you_mean_and_exits_2(capsys):
    from lightning_implicit.cli import main

    assert main(["trian"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: unknown command 'trian'; did you mean train? (lightning-implicit --help)\n"
    assert captured.out == ""  # no help dump


# ---- noise: Lightning's FLOPs count (0 for implicit models) ----------------------------------------------------------
def _tiny_summary():
    import lightning as L
    import torch
    from lightning.pytorch.utilities.model_summary import summarize

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

    s = summarize(Tiny(), max_depth=1)
    return (
        s._get_summary_data(),
        s.total_parameters,
        s.trainable_parameters,
        s.model_size,
        s.total_training_modes,
        0,
    )


def test_model_summary_keeps_parameters_and_drops_flops():
    import logging

    from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
    from rich import get_console

    from lightning_implicit.console import summary_without_flops

    other = object()
    plain, rich, kept = summary_without_flops([ModelSummary(max_depth=2), RichModelSummary(), other])
    assert isinstance(plain, ModelSummary) and type(plain) is not ModelSummary and plain._max_depth == 2
    assert isinstance(rich, RichModelSummary) and type(rich) is not RichModelSummary and kept is other
    args = _tiny_summary()
    with get_console().capture() as cap:
        rich.summarize(*args)
    text = cap.get()
    assert "Linear" in text and "Total params" in text and "8" in text and "FLOPs" not in text

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    log = logging.getLogger("lightning.pytorch.callbacks.model_summary")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        plain.summarize(*args)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    (msg,) = records
    assert "Linear" in msg and "Total params" in msg and "FLOPs" not in msg


def test_log_filter_cuts_the_flops_line_and_drops_tips():
    import logging

    from lightning_implicit.console import _DropSnippets

    flt = _DropSnippets()
    rec = logging.LogRecord(
        "lightning.pytorch",
        logging.INFO,
        __file__,
        1,
        "%s",
        ("table\nTotal FLOPs: 0\nTotal params: 8",),
        None,
    )
    assert flt.filter(rec) and rec.getMessage() == "table\nTotal params: 8"
    tip = logging.LogRecord(
        "lightning.pytorch", logging.INFO, __file__, 1, "try installing [litlogger](x)", (), None
    )
    assert not flt.filter(tip)


# ---- the end of a sweep ----------------------------------------------------------------------------------------------
def test_sweep_summary_names_best_values_studies_experiment_and_ui(mlflow_store, monkeypatch, capsys):
    from types import SimpleNamespace

    from lightning_implicit.console import print_sweep_summary

    monkeypatch.setenv("PORT", "1")  # nothing listens there
    exp_id = mlflow.MlflowClient(mlflow_store).create_experiment("sweep-summary-test")
    outcomes = [
        SimpleNamespace(
            model="implicit",
            study_name="addition-implicit",
            best_value=0.012345,
            best_number=4,
            parent_run_id="p" * 32,
            retrain_run_id="a" * 32,
        ),
        SimpleNamespace(
            model="mlp",
            study_name="addition-mlp",
            best_value=0.5,
            best_number=0,
            parent_run_id="q" * 32,
            retrain_run_id="b" * 32,
        ),
    ]
    print_sweep_summary(outcomes, experiment="sweep-summary-test", storage="sqlite:///x/optuna.db")
    out = capsys.readouterr().out
    assert "implicit:    best val/loss 0.01235 (trial #4); study 'addition-implicit'" in out
    assert "mlp:         best val/loss 0.5 (trial #0); study 'addition-mlp'" in out
    assert f"experiment:  sweep-summary-test (id {exp_id})" in out
    assert f"http://127.0.0.1:1/#/experiments/{exp_id}/runs/{'p' * 32}" in out
    assert f"best retrained http://127.0.0.1:1/#/experiments/{exp_id}/runs/{'a' * 32}" in out
    assert f'compare-runs?runs=["{"a" * 32}","{"b" * 32}"]' in out
    assert (
        f"not running at http://127.0.0.1:1; start it with `make ui PORT=1 MLFLOW_TRACKING_URI={mlflow_store}`"
        in out
    )
    assert "studies:     sqlite:///x/optuna.db" in out


def test_sweep_ends_with_the_summary(tmp_path, mlflow_store, monkeypatch, capsys):
    from lightning_implicit.sweep.cli import main as sweep

    monkeypatch.setenv("PORT", "1")
    space = tmp_path / "space.yaml"
    space.write_text("""
fixed:
  data.init_args.n_train: 200
  data.init_args.n_test: 40
  data.init_args.shifts: [10, 100]
  trainer.max_epochs: 1
mlp:
  params:
    lr: {key: model.init_args.optim.lr, type: float, low: 1.0e-3, high: 3.0e-2, log: true}
""")
    argv = [
        "--task",
        "addition",
        "--model",
        "mlp",
        "--trials",
        "1",
        "--search-file",
        str(space),
        "--storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "--experiment",
        "sweep-end-test",
        "--no-retrain",
    ]
    assert sweep(argv) == 0
    out = capsys.readouterr().out
    summary = out.split("== sweep summary ==", 1)[1]
    assert "mlp:         best val/loss" in summary and "study 'addition-mlp'" in summary
    assert (
        "experiment:  sweep-end-test" in summary and "parent run http://127.0.0.1:1/#/experiments/" in summary
    )
    assert f"`make ui PORT=1 MLFLOW_TRACKING_URI={mlflow_store}`" in summary
