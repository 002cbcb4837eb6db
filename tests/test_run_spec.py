"""One run specification (issue 29): :class:`~lightning_implicit.run.spec.RunSpec` merges the layers of a run in
one precedence order, and its LightningCLI arguments resolve to the same winners when LightningCLI parses them."""

from __future__ import annotations

import json

import pytest
import yaml

from lightning_implicit import confpath
from lightning_implicit.run.spec import PRECEDENCE, RunSpec, cli_value, flag_args, parse_flags
from lightning_implicit.sweep.space import parse_config

# Each layer sets the keys of every layer after it too: the winner of a key is the last layer that sets it.
# (Config files: the trainer's, the model's, the task's; then the override layers, in PRECEDENCE order.)
LAYERS = {
    "defaults": {
        "trainer.enable_progress_bar": False,
        "data.init_args.n_train": 100,
        "model.init_args.kappa": 0.4,
        "data.init_args.batch_size": 8,
        "trainer.max_steps": 5,
        "tracking.experiment": "from-defaults",
        "model.init_args.optim.lr": 0.05,
    },
    "profile": {
        "data.init_args.n_train": 120,
        "model.init_args.kappa": 0.5,
        "data.init_args.batch_size": 16,
        "trainer.max_steps": 10,
        "tracking.experiment": "from-profile",
        "model.init_args.optim.lr": 0.1,
    },
    "tuned": {
        "model.init_args.kappa": 0.7,
        "data.init_args.batch_size": 32,
        "trainer.max_steps": 20,
        "tracking.experiment": "from-tuned",
        "model.init_args.optim.lr": 0.2,
    },
    "space": {
        "data.init_args.batch_size": 64,
        "trainer.max_steps": 30,
        "tracking.experiment": "from-space",
        "model.init_args.optim.lr": 0.3,
    },
    "trial": {"trainer.max_steps": 40, "tracking.experiment": "from-trial", "model.init_args.optim.lr": 0.4},
    "run": {"tracking.experiment": "from-run", "model.init_args.optim.lr": 0.5},
    "user": {"model.init_args.optim.lr": 0.6},
}
WINNERS = {
    "trainer.enable_progress_bar": ("defaults", False),
    "data.init_args.n_train": ("profile", 120),
    "model.init_args.kappa": ("tuned", 0.7),
    "data.init_args.batch_size": ("space", 64),
    "trainer.max_steps": ("trial", 40),
    "tracking.experiment": ("run", "from-run"),
    "model.init_args.optim.lr": ("user", 0.6),
}


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """Config files of one's own (a CONF_PATH directory): the trainer's, the model's and the task's each set
    ``trainer.log_every_n_steps``; the trainer's and the model's ``trainer.num_sanity_val_steps``."""
    root = confpath.builtin_root()
    files = {
        ("trainer", "t"): (
            root / "trainer" / "cpu.yaml",
            {"log_every_n_steps": 1, "num_sanity_val_steps": 1},
        ),
        ("models", "m"): (
            root / "models" / "implicit.yaml",
            {"log_every_n_steps": 2, "num_sanity_val_steps": 2},
        ),
        ("tasks", "a"): (root / "tasks" / "addition.yaml", {"log_every_n_steps": 3}),
    }
    for (kind, name), (src, trainer) in files.items():
        cfg = yaml.safe_load(src.read_text())
        cfg.setdefault("trainer", {}).update(trainer)
        (tmp_path / kind).mkdir()
        (tmp_path / kind / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv(confpath.ENV_PATH, str(tmp_path))
    return tmp_path


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def test_one_run_from_every_layer_has_the_winner_of_each_key_in_the_precedence_table(conf):
    spec = RunSpec("a", "m", seed=3, trainer="t")
    for name in reversed(PRECEDENCE):  # added highest first: merge() orders them, not the caller
        spec = spec.with_layer(name, LAYERS[name])
    merged = spec.merge()
    assert merged == {k: v for k, (_, v) in WINNERS.items()}
    for key, (layer, value) in WINNERS.items():  # the highest layer that sets a key wins it
        assert max((n for n in PRECEDENCE if key in LAYERS[n]), key=PRECEDENCE.index) == layer
        assert merged[key] == value

    # LightningCLI reads the arguments to the same winners, and stacks the config files trainer < model < task
    cfg = parse_config(spec.to_args())
    for key, (_, value) in WINNERS.items():
        assert _get(cfg, key) == value, key
    assert cfg.trainer.log_every_n_steps == 3  # the task's file over the model's and the trainer's
    assert cfg.trainer.num_sanity_val_steps == 2  # the model's file over the trainer's
    assert cfg.trainer.accelerator == "cpu"  # the trainer's file alone
    assert cfg.seed_everything == 3
    assert cfg.model.init_args.solver.tol == 3e-6  # the model file's, no layer sets it


def test_layers_of_one_name_merge_in_order_and_unknown_layers_are_refused():
    spec = RunSpec("a", "m").with_layer("user", {"x.y": 1, "x.z": 1}).with_layer("user", {"x.y": 2})
    assert spec.layer("user") == {"x.y": 2, "x.z": 1} and spec.merge() == {"x.y": 2, "x.z": 1}
    assert RunSpec("a", "m").with_layer("profile", {}) == RunSpec("a", "m")  # an empty layer adds nothing
    with pytest.raises(ValueError, match="unknown override layer 'fixed'.*defaults, profile, tuned"):
        RunSpec("a", "m", layers=(("fixed", {"x": 1}),))


@pytest.mark.parametrize(
    "value, text",
    [
        (True, "true"),
        (None, "null"),
        (3, "3"),
        (1e-05, "1e-05"),
        (0.1, "0.1"),
        ("full", "full"),
        ([10, 100], "[10, 100]"),
        ((1, 2), "[1, 2]"),
        ({"a": [1]}, '{"a": [1]}'),
    ],
)
def test_one_value_to_flag_converter(value, text):
    """The one converter (the sweep's and the reproduction's agreed only on YAML values; now there is one)."""
    assert cli_value(value) == text
    back = text if isinstance(value, str) else json.loads(text)  # (JSON: what jsonargparse reads them as)
    assert back == (list(value) if isinstance(value, tuple) else value)


def test_flags_round_trip():
    over = {"trainer.max_epochs": 5, "model.init_args.optim.lr": 0.01, "data.init_args.shifts": [10, 100]}
    args = flag_args(over)
    assert args[:2] == ["--trainer.max_epochs", "5"]
    assert parse_flags(args) == {k: cli_value(v) for k, v in over.items()}
    assert parse_flags(["--a.b=1", "--c.d", "x", "--a.b", "2"]) == {"c.d": "x", "a.b": "2"}
    with pytest.raises(ValueError, match="no value"):
        parse_flags(["--a.b"])
    with pytest.raises(ValueError, match="expected a LightningCLI option"):
        parse_flags(["a.b", "1"])
