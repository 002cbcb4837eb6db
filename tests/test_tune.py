"""``lightning-implicit tune``: CV studies per (task, model) of a profile -> conf/tuned/ configs that ``train`` and
``reproduce`` use; the objective never reads the shifted test sets; studies resume."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import yaml
from lightning_implicit.datamodules.synthetic import ArithmeticDataModule
from lightning_implicit_paper.tune import tune_profile

from lightning_implicit.confpath import builtin_root
from lightning_implicit.sweep.default_trial import DEFAULT_ATTR, PREVIOUS_ATTR, default_point
from lightning_implicit.sweep.space import SearchSpaceError, load_search_space
from lightning_implicit.sweep.tune import TuneOptions, space_edges, space_limits
from lightning_implicit.tuned import TunedConfigError, find_tuned, load_tuned

TINY_PROFILE = """
description: a seconds-long profile for tests
seeds: [0]
workers: 1
tuned: true
tasks:
  addition:
    models: [implicit, mlp]
    overrides: {data.init_args.n_train: 200, data.init_args.n_test: 20, data.init_args.shifts: [10]}
"""


@pytest.fixture
def tiny(tmp_path):
    """A tiny profile and a tiny copy of the tune space (a few optimiser steps per trial)."""
    (tmp_path / "space").mkdir()
    text = (builtin_root() / "tune" / "default.yaml").read_text()
    text = text.replace("low: 250, high: 4000, log: true", "low: 3, high: 8")
    text = text.replace("choices: [32, 64, 256, 1024, full]", "choices: [64, full]")
    (tmp_path / "space" / "default.yaml").write_text(text)
    (tmp_path / "tiny.yaml").write_text(TINY_PROFILE)
    return tmp_path


def _opts(tmp, **kw) -> TuneOptions:
    base = dict(
        trials=3,
        cv=2,
        storage=f"sqlite:///{tmp / 'optuna.db'}",
        tracking=False,
        out=str(tmp / "tuned"),
        space_dir=str(tmp / "space"),
    )
    return TuneOptions(**{**base, **kw})


def _values(storage: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=storage)
    return [(t.state.name, t.value, t.params) for t in study.get_trials()]


def test_tune_writes_a_config_with_provenance_that_train_and_reproduce_use(tiny, monkeypatch, capsys):
    assert tune_profile(tiny / "tiny.yaml", _opts(tiny), say=lambda m: None) == 0
    cfg = load_tuned(tiny / "tuned" / "addition" / "implicit.yaml")
    assert (cfg.task, cfg.model) == ("addition", "implicit")
    p = cfg.provenance
    assert (
        p["study"] == "tune-tiny-addition-implicit"
        and p["cv_folds"] == 2
        and len(p["cv_score"]["folds"]) == 2
    )
    assert sum(p["trials"].values()) == 3 and p["git_commit"] and p["date"]
    assert p["cv_score"]["mean"] == pytest.approx(np.mean(p["cv_score"]["folds"]))
    study = optuna.load_study(study_name=p["study"], storage=f"sqlite:///{tiny / 'optuna.db'}")
    assert p["cv_score"]["mean"] == pytest.approx(study.best_value)
    # the best-so-far curve in trial order, readable without the storage: non-increasing, ending at the best
    curve = [v for v in p["best_so_far"] if v is not None]
    assert len(p["best_so_far"]) == len(study.trials) and curve == sorted(curve, reverse=True)
    assert curve[-1] == pytest.approx(study.best_value)
    # the space's fixed settings travel with the best trial's values
    assert cfg.overrides["trainer.max_epochs"] == -1
    assert cfg.overrides["trainer.max_steps"] == study.best_params["steps"]
    assert cfg.overrides["model.init_args.optim.lr"] == pytest.approx(study.best_params["lr"])
    assert (tiny / "tuned" / "addition" / "mlp.yaml").exists()

    # train and reproduce read conf/tuned: point the conf search at a copy of conf/ holding these files
    import shutil

    conf = tiny / "conf"
    shutil.copytree(builtin_root(), conf, ignore=shutil.ignore_patterns("tuned"))
    shutil.copytree(tiny / "tuned", conf / "tuned")
    monkeypatch.setenv("LIGHTNING_IMPLICIT_CONF", str(conf))
    from lightning_implicit.runner import tuned_args

    args = tuned_args("addition", "implicit")
    assert "using the tuned config" in capsys.readouterr().err
    assert args[args.index("--trainer.max_steps") + 1] == str(cfg.overrides["trainer.max_steps"])
    assert tuned_args("addition", "implicit", use=False) == [] and "TUNED=0" in capsys.readouterr().err
    assert tuned_args("identity", "implicit") == []

    from lightning_implicit_paper.plan import build_jobs
    from lightning_implicit_paper.profile import load_profile

    prof = load_profile(tiny / "tiny.yaml")
    (job,) = [j for j in build_jobs(prof, commit="c") if j.model == "implicit"]
    assert job.tuned and job.tags["repro_tuned"] == "true"
    assert "--trainer.max_steps" in job.args and "--no-tuned" not in job.rerun_command()
    (tiny / "untuned.yaml").write_text(TINY_PROFILE.replace("tuned: true", "tuned: false"))
    (plain,) = [
        j for j in build_jobs(load_profile(tiny / "untuned.yaml"), commit="c") if j.model == "implicit"
    ]
    assert "--trainer.max_steps" not in plain.args and plain.tags["repro_tuned"] == "false"
    assert plain.config_hash != job.config_hash and "--no-tuned" in plain.rerun_command()

    # a profile's recipe overrides are where tuning started (its recipe trial): the tuned values replace them,
    # in the run and in its rerun command; the profile's other overrides (data sizes) still apply
    recipe = "    model_overrides:\n      implicit: {data.init_args.batch_size: 64, trainer.max_epochs: 20}\n"
    (tiny / "recipe.yaml").write_text(TINY_PROFILE + recipe)
    (over,) = [j for j in build_jobs(load_profile(tiny / "recipe.yaml"), commit="c") if j.model == "implicit"]

    def last(argv, key):  # LightningCLI: the last value given for a key wins
        return argv[len(argv) - 1 - argv[::-1].index(key) + 1]

    assert last(over.args, "--trainer.max_epochs") == "-1"
    assert last(over.args, "--data.init_args.batch_size") == str(cfg.overrides["data.init_args.batch_size"])
    assert last(over.args, "--data.init_args.n_train") == "200"
    assert (
        "--trainer.max_epochs" not in over.rerun_command()
        and "--data.init_args.n_train 200" in over.rerun_command()
    )

    # the run trains on the tuned recipe: its optimiser steps are the tuned max_steps
    from lightning_implicit.runner import run_training, shorthand_args

    res = run_training(
        [
            *shorthand_args("addition", "implicit"),
            *args,
            "--tracking.enabled",
            "false",
            "--data.init_args.n_train",
            "200",
            "--data.init_args.n_test",
            "10",
            "--data.init_args.shifts",
            "[10]",
            "--trainer.enable_progress_bar",
            "false",
        ],
        test=False,
    )
    assert res.module.trainer.global_step == cfg.overrides["trainer.max_steps"]


def test_objective_never_reads_the_shifted_test_sets(tiny, monkeypatch):
    """Replacing every shifted test set by garbage leaves every trial's objective value unchanged."""
    tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["mlp"], trials=2), say=lambda m: None)
    clean = _values(f"sqlite:///{tiny / 'optuna.db'}", "tune-tiny-addition-mlp")

    original = ArithmeticDataModule.sample

    def garbage(self, rng, n, shift):
        x, y = original(self, rng, n, shift)
        if shift is None:
            return x, y
        return np.full_like(x, np.nan), np.full_like(y, 1e30)

    monkeypatch.setattr(ArithmeticDataModule, "sample", garbage)
    other = tiny / "garbage"
    other.mkdir()
    tune_profile(
        tiny / "tiny.yaml",
        _opts(tiny, models=["mlp"], trials=2, storage=f"sqlite:///{other / 'optuna.db'}", out=str(other)),
        say=lambda m: None,
    )
    dirty = _values(f"sqlite:///{other / 'optuna.db'}", "tune-tiny-addition-mlp")
    assert clean == dirty and all(math.isfinite(v) for s, v, _ in clean if s == "COMPLETE")


def test_tune_resumes_to_the_total_budget(tiny):
    said: list[str] = []
    tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["mlp"], trials=1), say=said.append)
    storage = f"sqlite:///{tiny / 'optuna.db'}"
    assert len(_values(storage, "tune-tiny-addition-mlp")) == 1
    tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["mlp"], trials=3), say=said.append)
    assert len(_values(storage, "tune-tiny-addition-mlp")) == 3
    said.clear()
    tune_profile(
        tiny / "tiny.yaml", _opts(tiny, models=["mlp"], trials=3), say=said.append
    )  # nothing left to do
    assert len(_values(storage, "tune-tiny-addition-mlp")) == 3
    assert any("3 trial(s) done, 0 to run" in m for m in said)


def test_space_edges_and_shared_params(tmp_path):
    space = load_search_space(builtin_root() / "tune" / "default.yaml", task="addition", full=True)
    implicit, mlp = space.space("implicit"), space.space("mlp")
    assert {"lr", "batch_size", "steps", "lr_schedule"} <= set(mlp.params) and "kappa" not in mlp.params
    assert {"lr", "kappa", "tol"} <= set(implicit.params)
    edges = space_edges({"lr": 0.29, "steps": 260, "kappa": 0.75, "batch_size": "full"}, implicit)
    assert any(e.startswith("lr=") and "upper" in e for e in edges)
    assert any(e.startswith("steps=") and "lower" in e for e in edges)
    assert not any(e.startswith(("kappa", "batch_size")) for e in edges)
    (beyond,) = space_edges({"lr_gamma": 1.0, "steps": 1000}, implicit)  # an enqueued recipe's value
    assert beyond == "lr_gamma=1 above its upper bound 0.9995 (the recipe's value)"
    # lr_gamma is read by the exponential schedule only: under another schedule its value is no edge
    (edge,) = space_edges({"lr_gamma": 0.9994, "lr_schedule": "exponential"}, implicit)
    assert edge == "lr_gamma=0.9994 at its upper bound 0.9995"
    assert space_edges({"lr_gamma": 0.9994, "lr_schedule": "cosine"}, implicit) == []
    assert space_edges({"lr_gamma": 1.0, "lr_schedule": "none"}, implicit) == []
    # kappa's upper bound 0.99 is marked 'limit: high' (kappa < 1 is the model's well-posedness condition): a
    # best value there is a limit of the model, which no widened search can pass, not an edge of the search
    assert space_edges({"kappa": 0.975, "lr": 0.29}, implicit) == ["lr=0.29 at its upper bound 0.3"]
    assert space_limits({"kappa": 0.975, "lr": 0.29}, implicit) == [
        "kappa=0.975 at its upper bound 0.99 (the model's limit)"
    ]
    assert space_limits({"kappa": 0.52}, implicit) == [] and space_edges({"kappa": 0.52}, implicit) == [
        "kappa=0.52 at its lower bound 0.5"
    ]


def test_a_limit_is_a_bound_of_a_numeric_parameter(tmp_path):
    def load(entry: str):
        path = tmp_path / "space.yaml"
        path.write_text(f"models: [implicit]\nimplicit:\n  params:\n    {entry}\n")
        return load_search_space(path, task="addition", full=True).space("implicit")

    kappa = load("kappa: {key: model.init_args.kappa, type: float, low: 0.5, high: 0.99, limit: high}")
    assert kappa.params["kappa"].limit == "high"
    with pytest.raises(SearchSpaceError, match="categorical parameter takes 'choices', not .*'limit'"):
        load("tol: {key: model.init_args.solver.tol, type: categorical, choices: [1.0e-4], limit: high}")
    with pytest.raises(SearchSpaceError, match="limit"):
        load("kappa: {key: model.init_args.kappa, type: float, low: 0.5, high: 0.99, limit: top}")


def test_a_broken_tuned_config_is_named(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    (conf / "tuned" / "addition").mkdir(parents=True)
    (conf / "tuned" / "addition" / "implicit.yaml").write_text(
        yaml.safe_dump({"task": "addition", "overides": {}})
    )
    with pytest.raises(
        TunedConfigError, match="implicit.yaml: overides: unknown key 'overides'; did you mean 'overr"
    ):
        find_tuned("addition", "implicit", conf / "tuned")


DEFAULT_PROFILE = """
description: tiny default recipes
seeds: [0]
workers: 1
experiment_prefix: "{prefix}"
overrides: {{trainer.max_epochs: 1}}
tasks:
  addition:
    models: [implicit, mlp]
    overrides: {{data.init_args.n_train: 200, data.init_args.n_test: 20, data.init_args.shifts: [10, 100]}}
  spiky:
    models: [lstm]
    overrides: {{data.init_args.n_train: 700, data.init_args.n_test: 300, data.init_args.n_regions_train: 2}}
"""


def test_report_sets_tuned_and_default_verdicts_side_by_side(tmp_path, monkeypatch, mlflow_store):
    """A tuned profile trains the tuned pair on its recipe, reuses the untouched pair's default run, and its
    report shows the tuning record, both profiles' verdicts and the spiky table in both units."""
    import re
    import shutil
    import uuid

    from lightning_implicit_paper.cli import reproduce

    from lightning_implicit.runner import run_training
    from lightning_implicit.tuned import TunedConfig

    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "conf"
    shutil.copytree(builtin_root(), conf, ignore=shutil.ignore_patterns("tuned"))
    (conf / "tuned" / "addition").mkdir(parents=True)
    prov = {
        "study": "tune-x-addition-mlp",
        "trials": {"complete": 5, "pruned": 2, "fail": 0},
        "cv_folds": 5,
        "cv_score": {"mean": 0.123, "sd": 0.01, "folds": [0.12] * 5},
        "space_edges": ["lr=0.05 at its upper bound"],
        "date": "2026-12-04T00:00:00+00:00",
        "git_commit": "abc",
    }
    cfg = TunedConfig(
        "addition", "mlp", {"model.init_args.optim.lr": 0.02, "data.init_args.batch_size": 32}, prov
    )
    (conf / "tuned" / "addition" / "mlp.yaml").write_text(cfg.to_yaml())
    monkeypatch.setenv("LIGHTNING_IMPLICIT_CONF", str(conf))
    # only the MLP of addition is tuned: the same budget for every family means no tuned recipe for addition
    from lightning_implicit_paper.plan import tuned_recipes
    from lightning_implicit_paper.profile import load_profile

    (tmp_path / "half.yaml").write_text(DEFAULT_PROFILE.format(prefix="h-") + "tuned: true\n")
    used, why = tuned_recipes(load_profile(tmp_path / "half.yaml"), "addition")
    assert used == {} and "tuned configs exist for mlp but not for implicit" in why and "make tune" in why
    implicit_cfg = TunedConfig(
        "addition",
        "implicit",
        {"model.init_args.optim.lr": 0.005},
        {
            **prov,
            "study": "s-i",
            "default_recipe": {
                "trial": 0,
                "what": "the configuration's recipe",
                "state": "complete",
                "cv_score": 0.25,
                "beaten": True,
            },
        },
    )
    (conf / "tuned" / "addition" / "implicit.yaml").write_text(implicit_cfg.to_yaml())
    used, why = tuned_recipes(load_profile(tmp_path / "half.yaml"), "addition")
    assert set(used) == {"implicit", "mlp"} and why is None
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    (tmp_path / "base.yaml").write_text(DEFAULT_PROFILE.format(prefix=prefix))
    tuned_text = (
        DEFAULT_PROFILE.format(prefix=prefix) + f"tuned: true\ncompare_with: {tmp_path / 'base.yaml'}\n"
    )
    (tmp_path / "tuned.yaml").write_text(tuned_text)

    calls: list[list[str]] = []

    def train(args, **kw):
        calls.append(args)
        return run_training(args, **kw)

    assert reproduce(str(tmp_path / "base.yaml"), out=tmp_path / "r", train=train) == 0
    assert len(calls) == 3
    calls.clear()
    assert reproduce(str(tmp_path / "tuned.yaml"), out=tmp_path / "r", train=train) == 0
    lrs = {c[c.index("--tracking.run_name") + 1]: c[c.index("--model.init_args.optim.lr") + 1] for c in calls}
    assert lrs == {"mlp-seed0": "0.02", "implicit-seed0": "0.005"}  # spiky's LSTM: its default run reused

    md = (tmp_path / "r" / "tuned" / "report.md").read_text()
    section = md.split('<a id="tuning"></a>')[1].split("<a id=")[0]
    assert "| addition | MLP | 0.123 ± 0.01 (5 folds) | not run | 5 / 2 / 0 |" in section
    assert "| addition | Implicit | 0.123 ± 0.01 (5 folds) | 0.25, beaten | 5 / 2 / 0 |" in section
    assert "lr=0.05 at its upper bound" in section and "`tune-x-addition-mlp`" in section
    assert "`base`" in section and "`tuned`" in section and "3 of 3 found" in section
    for vid in ("F4a", "T1a", "F7a"):
        assert re.search(rf"\| {vid} \| [^|]+ \| [^|]+ \| \*\*[^*]+\*\* \|", section)
    table1 = md.split('<a id="table-1"></a>')[1].split("<a id=")[0]
    assert "paper units" in table1 and "Linear fit on the window (reference)" in table1
    assert "Training mean (reference)" in table1 and "Last value of the window (reference)" in table1
    notes = md.split('<a id="notes"></a>')[1].split("<a id=")[0]
    assert (
        "2 (task, model) pairs (addition) train on recipes tuned by `make tune`" in notes
        and "5-fold CV" in notes
    )
    base_md = (tmp_path / "r" / "base" / "report.md").read_text()
    assert "trained every model on the task configs' default recipes" in base_md
    base_notes = base_md.split('<a id="notes"></a>')[1].split("<a id=")[0]
    assert "once per seed with its config's hyper-parameters" in base_notes and "make tune" not in base_notes


def test_an_interrupted_trial_is_not_spent_budget():
    """After Ctrl-C the running trial is FAIL 'interrupted': the next `make tune` runs it again."""
    from optuna.trial import TrialState

    from lightning_implicit.sweep.tune import _spent

    study = optuna.create_study()
    for state, reason in (
        (TrialState.COMPLETE, None),
        (TrialState.PRUNED, None),
        (TrialState.FAIL, "interrupted"),
        (TrialState.FAIL, "non-finite loss"),
    ):
        t = study.ask()
        if reason:
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        study.tell(t, 1.0 if state == TrialState.COMPLETE else None, state=state)
    assert _spent(study) == 3


RECIPE_PROFILE = TINY_PROFILE.replace(
    "    overrides:",
    "    model_overrides:\n"
    "      implicit: {trainer.max_epochs: 2, data.init_args.batch_size: 64, model.init_args.optim.lr: 0.01}\n"
    "    overrides:",
)


def test_every_study_starts_from_the_configs_recipe(tiny):
    """Trial 0 of a study is the model's own recipe: the profile's settings (epochs turned into optimiser steps
    of a training fold), the model config's kappa; a number beyond the searched range is enqueued as it is."""
    (tiny / "tiny.yaml").write_text(RECIPE_PROFILE)
    said: list[str] = []
    assert tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["implicit"], trials=2), say=said.append) == 0
    study = optuna.load_study(
        study_name="tune-tiny-addition-implicit", storage=f"sqlite:///{tiny / 'optuna.db'}"
    )
    first, second = study.trials
    assert (
        first.user_attrs[DEFAULT_ATTR].startswith("the configuration's recipe")
        and "lr_gamma" in first.user_attrs[DEFAULT_ATTR]
    )
    kappa = yaml.safe_load((builtin_root() / "models" / "implicit.yaml").read_text())["model"]["init_args"][
        "kappa"
    ]
    # 2 folds of 200 samples: 100 training samples, 2 mini-batches of 64 per epoch, 2 epochs
    assert first.params == {
        "lr": 0.01,
        "lr_schedule": "none",
        "lr_interval": "epoch",
        "lr_gamma": 1.0,
        "batch_size": 64,
        "steps": 4,
        "weight_decay": 0.0,
        "grad_clip": 0.0,
        "kappa": kappa,
        "tol": 3.0e-6,
    }
    over = first.user_attrs["cli_overrides"]
    assert over[over.index("--trainer.max_steps") + 1] == "4" and DEFAULT_ATTR not in second.user_attrs
    # the profile's max_epochs is the recipe's, not pinned over every trial (the space counts steps)
    assert "--trainer.max_epochs 2" not in study.user_attrs["sweep.settings"]
    rec = load_tuned(tiny / "tuned" / "addition" / "implicit.yaml").provenance["default_recipe"]
    assert rec["trial"] == 0 and rec["cv_score"] == pytest.approx(first.value)
    assert rec["beaten"] == (study.best_trial.number != 0)
    # resuming does not enqueue it again
    tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["implicit"], trials=3), say=said.append)
    study = optuna.load_study(
        study_name="tune-tiny-addition-implicit", storage=f"sqlite:///{tiny / 'optuna.db'}"
    )
    assert [DEFAULT_ATTR in t.user_attrs for t in study.trials] == [True, False, False]


def test_from_record_starts_a_new_study_also_from_the_pairs_tuned_record(tiny, monkeypatch, capsys):
    """``tune --from-record``: trial 1 (after the recipe) is the installed record's best values, marked with that
    record's provenance; a value the space no longer offers is left to the sampler, and said; the new record says
    what the old choice scored on the new folds and whether the new search picked it again."""
    import shutil

    conf = tiny / "conf"
    shutil.copytree(builtin_root(), conf, ignore=shutil.ignore_patterns("tuned"))
    old = {
        "lr": 0.003,
        "lr_schedule": "none",
        "lr_interval": "epoch",
        "lr_gamma": 0.99,
        "batch_size": 1024,  # not a choice of the tiny space: left to the sampler
        "steps": 5,
        "weight_decay": 0.0,
        "grad_clip": 0.0,
        "kappa": 0.7,
        "tol": 3.0e-6,
    }
    record = {
        "task": "addition",
        "model": "implicit",
        "overrides": {"model.init_args.optim.lr": 0.003},
        "provenance": {
            "study": "tune-old-addition-implicit",
            "cv_folds": 3,
            "cv_score": {"mean": 0.5, "sd": 0.1, "folds": [0.4, 0.5, 0.6]},
            "trials": {"complete": 4, "pruned": 1, "fail": 0},
            "best_params": old,
            "date": "2026-12-04T19:33:38+00:00",
            "git_commit": "abc",
        },
    }
    (conf / "tuned" / "addition").mkdir(parents=True)
    (conf / "tuned" / "addition" / "implicit.yaml").write_text(yaml.safe_dump(record))
    monkeypatch.setenv("LIGHTNING_IMPLICIT_CONF", str(conf))
    said: list[str] = []
    opts = _opts(tiny, models=["implicit"], trials=3, from_record=True)
    assert tune_profile(tiny / "tiny.yaml", opts, say=said.append) == 0
    storage = f"sqlite:///{tiny / 'optuna.db'}"
    study = optuna.load_study(study_name="tune-tiny-addition-implicit", storage=storage)
    marked = [PREVIOUS_ATTR in t.user_attrs for t in study.trials]
    assert marked == [False, True, False] and DEFAULT_ATTR in study.trials[0].user_attrs
    prev = study.trials[1]
    assert {k: v for k, v in prev.params.items() if k != "batch_size"} == {
        k: v for k, v in old.items() if k != "batch_size"
    }
    assert prev.params["batch_size"] in (64, "full")
    assert prev.user_attrs[PREVIOUS_ATTR]["cv_folds"] == 3
    out = capsys.readouterr().out
    assert "next trial: the previous record's best (5 trials, 3-fold CV 0.5)" in out
    assert "batch_size=1024 left to the sampler: outside the space now" in out
    p = load_tuned(tiny / "tuned" / "addition" / "implicit.yaml").provenance
    assert p["previous_record"]["trial"] == 1 and p["previous_record"]["state"] == prev.state.name.lower()
    assert p["previous_record"]["record"]["cv_folds"] == 3
    assert p["previous_record"]["record"]["cv_score"] == 0.5 and p["previous_record"]["record"]["trials"] == 5
    assert p["previous_record"]["cv_score"] == (None if prev.value is None else pytest.approx(prev.value))
    assert p["previous_record"]["beaten"] == (study.best_trial.number != 1)
    assert p["command"].endswith("--from-record")
    # resuming does not enqueue it again; without the flag no study gets one
    tune_profile(
        tiny / "tiny.yaml", _opts(tiny, models=["implicit"], trials=4, from_record=True), say=said.append
    )
    study = optuna.load_study(study_name="tune-tiny-addition-implicit", storage=storage)
    assert [PREVIOUS_ATTR in t.user_attrs for t in study.trials] == [False, True, False, False]
    tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["mlp"], trials=2, from_record=True), say=said.append)
    mlp = optuna.load_study(study_name="tune-tiny-addition-mlp", storage=storage)
    assert not any(PREVIOUS_ATTR in t.user_attrs for t in mlp.trials)
    assert any(m.startswith("[addition/mlp] --from-record: no tuned record with best values") for m in said)


def test_default_point_leaves_a_value_that_is_not_a_choice_to_the_sampler():
    space = load_search_space(builtin_root() / "tune" / "default.yaml", task="addition", full=True).space(
        "mlp"
    )
    cfg = {
        "model.init_args.optim.lr": 0.5,  # above the range: enqueued as it is
        "model.init_args.optim.lr_schedule": "cosine",
        "model.init_args.optim.lr_interval": "step",
        "model.init_args.optim.lr_gamma": 0.99,
        "data.init_args.batch_size": 48,  # not a choice
        "trainer.max_steps": 300,
        "trainer.max_epochs": 10,  # 10 * 25 = 250 < 300: Lightning stops at the first
        "model.init_args.optim.weight_decay": 1.0e-4,
        "model.init_args.optim.grad_clip": 1,
    }
    point = default_point(space, cfg, steps_per_epoch=25)
    assert point.params == {
        "lr": 0.5,
        "lr_schedule": "cosine",
        "lr_interval": "step",
        "lr_gamma": 0.99,
        "steps": 250,
        "weight_decay": 1.0e-4,
        "grad_clip": 1.0,
    }
    assert set(point.outside) == {"batch_size"} and "48" in point.outside["batch_size"]
    assert set(point.beyond) == {"lr"} and "batch_size (sampled)" in point.label
    no_count = default_point(space, {**cfg, "trainer.max_steps": -1}, steps_per_epoch=None)
    assert "steps" in no_count.outside and "steps" not in no_count.params


@pytest.mark.filterwarnings("ignore:Fixed parameter")
def test_a_dead_recipe_trial_is_retried_as_the_recipe_and_an_interrupted_one_enqueued_again(tmp_path):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from lightning_implicit.sweep.default_trial import default_trial, has_default
    from lightning_implicit.sweep.storage import _retry

    dist = {"lr_gamma": FloatDistribution(0.95, 0.9995)}
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}")
    study.enqueue_trial({"lr_gamma": 1.0}, user_attrs={DEFAULT_ATTR: "the configuration's recipe"})
    dead = study.ask(dist)
    assert dead.params == {"lr_gamma": 1.0}  # beyond the range, as enqueued
    study.tell(dead, state=TrialState.FAIL)
    _retry(study, study.trials[0], "worker died", max_retry=1)  # (a trial's params may not lie outside)
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING and retry.user_attrs[DEFAULT_ATTR] and has_default(study.trials)
    again = study.ask(dist)
    assert again.params == {"lr_gamma": 1.0}
    study.tell(again, 0.5)
    assert default_trial(study.trials).number == 1

    other = optuna.create_study()
    other.enqueue_trial({"lr_gamma": 0.99}, user_attrs={DEFAULT_ATTR: "the configuration's recipe"})
    t = other.ask(dist)
    t.set_user_attr("fail_reason", "interrupted")
    other.tell(t, state=TrialState.FAIL)
    assert not has_default(
        other.trials
    )  # Ctrl-C during the recipe trial: the resumed study enqueues it again
    other.enqueue_trial({"lr_gamma": 0.99}, user_attrs={DEFAULT_ATTR: "the configuration's recipe"})
    t = other.ask(dist)
    t.set_user_attr("fail_reason", "non-finite loss")
    other.tell(t, state=TrialState.FAIL)
    assert has_default(other.trials)  # a recipe that fails on its own (not interrupted) is not run again


def test_default_point_reads_a_repeated_width_and_its_count():
    from lightning_implicit.sweep.space import ModelSpace, ParamSpec

    space = ModelSpace(
        "mlp",
        params={
            "width": ParamSpec(
                "width", "int", key="model.init_args.arch_kwargs.hidden", low=4, high=32, repeat="depth"
            ),
            "depth": ParamSpec("depth", "int", low=1, high=3),
        },
    )
    cfg = {"model.init_args.arch_kwargs": {"hidden": [10, 10]}}  # a key inside a dict argument
    assert default_point(space, cfg, None).params == {"width": 10, "depth": 2}
    uneven = default_point(space, {"model.init_args.arch_kwargs": {"hidden": [10, 20]}}, None)
    assert uneven.params == {} and "not a repeated value" in uneven.outside["width"]


def test_a_study_searched_over_other_choices_is_refused_before_any_trial(tiny):
    storage = f"sqlite:///{tiny / 'optuna.db'}"
    tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["mlp"], trials=1), say=lambda m: None)
    space = tiny / "space" / "default.yaml"
    space.write_text(space.read_text().replace("choices: [64, full]", "choices: [32, full]"))
    from lightning_implicit.sweep.space import SearchSpaceError

    with pytest.raises(SearchSpaceError, match=r"different space.*batch_size.*--study NAME"):
        tune_profile(tiny / "tiny.yaml", _opts(tiny, models=["mlp"], trials=2), say=lambda m: None)
    assert len(_values(storage, "tune-tiny-addition-mlp")) == 1  # nothing ran, nothing was enqueued


def test_a_tuned_config_records_its_storage_without_a_machine_path(tmp_path):
    from lightning_implicit.sweep.tune import portable_storage

    inside = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    assert portable_storage(inside, root=tmp_path) == "sqlite:///mlruns/optuna.db"
    assert portable_storage(inside, root=tmp_path / "elsewhere") == "sqlite:///<elsewhere>/optuna.db"
    assert portable_storage("sqlite:///mlruns/optuna.db") == "sqlite:///mlruns/optuna.db"  # already relative
    assert portable_storage("postgresql://u:***@db/optuna") == "postgresql://u:***@db/optuna"


def test_tune_hands_the_sweep_the_profile_as_run_spec_layers(tiny, monkeypatch):
    """The profile's settings reach the sweep as RunSpec layers, not flag lists: those of keys the space searches
    or fixes as the first trial's recipe, the others as the ``profile`` layer of every trial's run, which the
    space's fixed values, the trial's values, the run's own settings (its fold) and the user's flags override."""
    import lightning_implicit.sweep.driver as driver
    from lightning_implicit.sweep.space import parse_config

    handed = []
    monkeypatch.setattr(driver, "run_sweep", lambda sweep, command=None: handed.append(sweep) or 0)
    (tiny / "tiny.yaml").write_text(
        RECIPE_PROFILE.replace(
            "data.init_args.n_test: 20", "data.init_args.n_test: 20, data.init_args.fold: 0"
        )
    )
    opts = _opts(tiny, models=["implicit"], trials=1, extra=["--data.init_args.n_test", "30"])
    tune_profile(tiny / "tiny.yaml", opts, say=lambda m: None)
    (sweep,) = handed
    assert sweep.recipe == {
        "trainer.max_epochs": 2,
        "data.init_args.batch_size": 64,
        "model.init_args.optim.lr": 0.01,
    }
    assert sweep.profile == {
        "data.init_args.n_train": 200,
        "data.init_args.n_test": 20,
        "data.init_args.fold": 0,
        "data.init_args.shifts": [10],
    }
    assert sweep.overrides == ["--data.init_args.n_test", "30"]

    space = load_search_space(tiny / "space" / "default.yaml", task="addition", full=True)
    ctx = driver._contexts(sweep, space, ["implicit"], lambda m: None)["implicit"]
    assert ctx.spec.layer("profile") == sweep.profile and ctx.pinned == sweep.overrides
    trial = ["--model.init_args.optim.lr", "0.02", "--trainer.max_steps", "5"]
    cfg = parse_config(ctx.run_args(trial, 1, None, "t", {}))
    assert cfg["data.init_args.n_train"] == 200 and cfg["data.init_args.shifts"] == [10]  # the profile's
    assert cfg["trainer.max_epochs"] == -1  # the space's fixed value (the profile's 2 is the recipe's)
    assert cfg["model.init_args.optim.lr"] == 0.02  # the trial's value
    assert cfg["data.init_args.fold"] == 1  # the run's fold
    assert cfg["data.init_args.n_test"] == 30  # the user's flag
