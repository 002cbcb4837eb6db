"""`make reproduce`: profile validation, verdict rules on hand-made tables, the report on a tiny profile, resume."""

from __future__ import annotations

import csv
import json
import math
import re
import uuid
from pathlib import Path

import mlflow
import pytest
from lightning_implicit_paper import verdicts as V
from lightning_implicit_paper.cli import reproduce
from lightning_implicit_paper.plan import build_jobs
from lightning_implicit_paper.profile import ProfileError, load_profile
from lightning_implicit_paper.report import SECTIONS, time_by_model
from lightning_implicit_paper.results import Results

from lightning_implicit.runner import run_training
from tests.conftest import hand_run

# ---- profiles ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quick", "paper", "paper-default"])
def test_shipped_profiles_are_valid(name):
    prof = load_profile(name)
    assert len(prof.seeds) >= 3
    assert {
        "identity",
        "addition",
        "subtraction",
        "rolling_average",
        "rolling_argmax",
        "spiky",
        "volatility",
        "earthquake",
    } <= set(prof.tasks)
    for task in ("addition", "subtraction", "rolling_average", "rolling_argmax"):
        assert "implicit_nofeedback" in prof.tasks[task].models
    jobs = build_jobs(prof, commit="abc")
    assert len({j.key for j in jobs}) == len(jobs)
    assert jobs[0].cost >= jobs[-1].cost  # heaviest first


BEFORE_EXTENDS = Path(__file__).parent / "profiles_before_extends"


@pytest.mark.parametrize("name", ["paper-default", "paper-feedback-default", "quick"])
def test_a_profile_that_extends_another_plans_the_runs_of_its_old_full_copy(tmp_path, name):
    """The shipped profile (``extends: paper...``) and the full copy it replaced (kept under
    tests/profiles_before_extends) plan the same runs: keys, config hashes, arguments, overrides."""
    assert "extends" in load_profile(name).path.read_text()
    old = tmp_path / f"{name}.yaml"  # the same name: the profile's name is part of the runs' tags
    old.write_text((BEFORE_EXTENDS / f"{name}.yaml").read_text())

    def plan(profile):
        return [(j.key, j.config_hash, j.args, j.overrides, j.tuned) for j in build_jobs(profile, commit="c")]

    new_prof, old_prof = load_profile(name), load_profile(old)
    assert plan(new_prof) == plan(old_prof)
    for attr in ("description", "seeds", "workers", "trainer", "tuned", "compare_with", "tasks"):
        assert getattr(new_prof, attr) == getattr(old_prof, attr), attr


def test_extends_merges_top_level_keys_and_refuses_cycles(tmp_path):
    (tmp_path / "base.yaml").write_text("seeds: [3, 4]\nworkers: 3\ntasks: {addition: {models: [mlp]}}\n")
    (tmp_path / "child.yaml").write_text(f"extends: {tmp_path / 'base.yaml'}\nworkers: 1\n")
    prof = load_profile(tmp_path / "child.yaml")
    assert (prof.seeds, prof.workers, prof.tasks["addition"].models) == ([3, 4], 1, ["mlp"])
    (tmp_path / "base.yaml").write_text(f"extends: {tmp_path / 'child.yaml'}\n")
    with pytest.raises(ProfileError, match="extends: .*cycle"):
        load_profile(tmp_path / "child.yaml")


def test_extends_merges_tasks_per_task(tmp_path):
    """A child's task entry replaces the parent's entry of that task (not merged into it), the parent's other
    tasks are inherited in the parent's order, ``<task>: null`` drops one."""
    (tmp_path / "base.yaml").write_text(
        "tasks:\n  identity: {models: [mlp], overrides: {trainer.max_epochs: 3}}\n"
        "  addition: {models: [mlp], model_overrides: {mlp: {trainer.max_epochs: 9}}}\n"
        "  subtraction: {models: [mlp]}\n"
    )
    (tmp_path / "child.yaml").write_text(
        f"extends: {tmp_path / 'base.yaml'}\n"
        "tasks: {addition: {models: [mlp, implicit]}, subtraction: null, earthquake: {models: [eikonet]}}\n"
    )
    prof = load_profile(tmp_path / "child.yaml")
    assert list(prof.tasks) == ["identity", "addition", "earthquake"]
    assert prof.tasks["identity"].overrides == {"trainer.max_epochs": 3}
    assert prof.tasks["addition"].models == ["mlp", "implicit"]
    assert prof.tasks["addition"].model_overrides == {}  # the parent's entry is replaced, not merged


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("seeds: [0]\nepochs: 3\ntasks: {addition: {}}\n", "'epochs'"),
        ("tasks: {addition: {modles: [mlp]}}\n", "'modles'"),
        ("tasks: {additon: {}}\n", "'additon'"),
        ("tasks: {addition: {models: [mlpp]}}\n", "'mlpp'"),
        ("tasks: {addition: {overrides: {trainer.max_epoch: 2}}}\n", "'trainer.max_epoch'"),
        ("tasks: {addition: {overrides: {data.init_args.n_trains: 2}}}\n", "'data.init_args.n_trains'"),
        ("tasks: {addition: {overrides: {model.init_args.kapa: 0.5}}}\n", "'model.init_args.kapa'"),
        ("tasks: {addition: {models: [mlp], model_overrides: {nalu: {}}}}\n", "'nalu'"),
        ("seeds: []\ntasks: {addition: {}}\n", "seeds"),
        (
            "tasks: {addition: {modles: [mlp]}}\n",
            "tasks.addition.modles: unknown key 'modles'; did you mean 'models'?",
        ),
        ("workers: 0\ntasks: {addition: {}}\n", "workers: "),
        ("tuned: maybe\ntasks: {addition: {}}\n", "tuned: "),
        ("seeds: [0, x]\ntasks: {addition: {}}\n", "seeds: "),
    ],
)
def test_profile_errors_name_the_key(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(str(p))
    assert needle in str(err.value)


def test_rerun_command_is_make_train_without_overrides(tmp_path, monkeypatch):
    import shutil

    from lightning_implicit.confpath import builtin_root

    # conf/ without tuned recipes (those add --no-tuned to the command of a profile that does not use them)
    shutil.copytree(builtin_root(), tmp_path / "conf", ignore=shutil.ignore_patterns("tuned"))
    monkeypatch.setenv("LIGHTNING_IMPLICIT_CONF", str(tmp_path / "conf"))
    p = tmp_path / "p.yaml"
    p.write_text(
        "seeds: [0, 1]\ntasks:\n  addition: {models: [mlp]}\n  identity:\n    models: [mlp]\n"
        "    overrides: {trainer.max_epochs: 2}\n"
    )
    jobs = {(j.task, j.seed): j for j in build_jobs(load_profile(str(p)), commit="c")}
    assert jobs[("addition", 1)].rerun_command() == "make train TASK=addition MODEL=mlp SEED=1"
    assert (
        jobs[("identity", 0)]
        .rerun_command()
        .endswith("--task identity --model mlp --seed 0 --trainer.max_epochs 2")
    )
    assert jobs[("addition", 0)].key != jobs[("addition", 1)].key  # the seed is part of the identity
    other = {(j.task, j.seed): j for j in build_jobs(load_profile(str(p)), commit="d")}
    assert other[("addition", 0)].key != jobs[("addition", 0)].key  # and so is the code version
    assert other[("addition", 0)].config_hash == jobs[("addition", 0)].config_hash


# ---- verdict rules on hand-made tables ---------------------------------------------------------------------


def _series(values: dict[int, list[float]], shifts=(10, 100, 1000)):
    """{seed: [v per shift]} -> {seed: {shift: v}}"""
    return {s: dict(zip(shifts, vs, strict=True)) for s, vs in values.items()}


def test_rule_best_holds_partly_not():
    ours = _series({0: [1, 2, 3], 1: [1, 2, 3]})
    worse = _series({0: [5, 6, 7], 1: [5, 6, 7]})
    mixed = _series({0: [5, 1, 1], 1: [0.5, 1, 1]})  # beats ours at k=10 on seed 1 only; better elsewhere
    better = _series({0: [0.1, 0.1, 0.1], 1: [0.1, 0.1, 0.1]})
    assert V.rule_best(ours, {"a": worse, "b": worse}).verdict == V.HOLDS
    r = V.rule_best(ours, {"a": worse, "b": mixed})
    assert (
        r.verdict == V.PARTLY and "0/3 shifts" in r.evidence and "at 1/3" in r.evidence
    )  # mean-only win at k=10
    assert V.rule_best(ours, {"a": better}).verdict == V.NOT
    # accuracy: higher is better
    assert V.rule_best(worse, {"a": ours}, higher_is_better=True).verdict == V.HOLDS
    assert V.rule_best({}, {"a": ours}).verdict == V.NA
    # a diverged baseline counts as infinite loss
    inf = _series({0: [math.inf] * 3, 1: [math.inf] * 3})
    assert V.rule_best(ours, {"nalu": inf}).verdict == V.HOLDS
    # >= 80% of the shifts at every seed holds; restricting the shifts is honoured
    assert V.rule_best(ours, {"a": mixed}, keys=[100, 1000]).verdict == V.NOT


def test_rule_best_threshold_is_80_percent():
    shifts = tuple(range(10))
    ours = _series({0: [1.0] * 10}, shifts)
    other8 = _series({0: [2.0] * 8 + [0.5] * 2}, shifts)
    other7 = _series({0: [2.0] * 7 + [0.5] * 3}, shifts)
    assert V.rule_best(ours, {"a": other8}).verdict == V.HOLDS
    assert V.rule_best(ours, {"a": other7}).verdict == V.PARTLY


def test_rule_all_below_factor_grows_flat_slower_combine():
    assert V.rule_all_below({"a": 0.1, "b": 0.5}, 1.0).verdict == V.HOLDS
    assert V.rule_all_below({"a": 0.1, "b": 5.0}, 1.0).verdict == V.PARTLY
    assert V.rule_all_below({"a": 2.0, "b": 5.0}, 1.0).verdict == V.NOT

    ours = {0: 0.004, 1: 0.005}
    assert (
        V.rule_factor(ours, {"lstm": {0: 0.011, 1: 0.02}, "tr": {0: 0.012, 1: 0.03}}, 2.75).verdict == V.HOLDS
    )
    assert V.rule_factor(ours, {"lstm": {0: 0.006, 1: 0.007}}, 2.75).verdict == V.PARTLY  # better, not 2.75x
    assert V.rule_factor(ours, {"lstm": {0: 0.001, 1: 0.001}}, 2.75).verdict == V.NOT

    up = {10: 5.0, 100: 8.0, 1000: 20.0}
    flat = {10: 5.0, 100: 5.0, 1000: 5.0}
    assert V.rule_grows({"a": up, "b": up}).verdict == V.HOLDS
    assert V.rule_grows({"a": up, "b": flat}).verdict == V.PARTLY
    assert V.rule_grows({"a": flat, "b": {10: 9.0, 100: 3.0, 1000: 2.0}}).verdict == V.NOT
    assert V.rule_grows({"a": {10: 20.0, 100: 20.1, 1000: 20.2}}).verdict == V.NOT  # +1%: noise, not growth

    small = _series({0: [1, 2, 5], 1: [1, 1.5, 3]})
    big = _series({0: [1, 10, 100], 1: [1, 20, 200]})
    huge = _series({0: [1, 100, 1e4], 1: [1, 100, 1e4]})
    assert V.rule_flat(small, {"lstm": huge}).verdict == V.HOLDS
    assert V.rule_flat(big, {"lstm": huge}).verdict == V.PARTLY
    assert V.rule_flat(huge, {"lstm": big}).verdict == V.NOT
    assert V.rule_slower_growth(small, big).verdict == V.HOLDS
    assert V.rule_slower_growth(big, small).verdict == V.NOT
    # an exact fit (float32 resolution at every shift): its growth is rounding, so flat holds and a growth
    # comparison with it says why it cannot be made
    exact = _series({0: [2e-13, 5e-12, 4e-11], 1: [3e-13, 6e-12, 5e-11]})
    assert V.rule_flat(exact, {"lstm": huge}).verdict == V.HOLDS
    r = V.rule_slower_growth(small, exact)
    assert r.verdict == V.NOISE and "the other model: the loss is at float32 resolution" in r.evidence
    assert V.rule_slower_growth(exact, small).verdict == V.NOISE

    h, p, n, na = (V.RuleResult(x, "") for x in (V.HOLDS, V.PARTLY, V.NOT, V.NA))
    assert V.combine([("a", h), ("b", h)]).verdict == V.HOLDS
    assert V.combine([("a", h), ("b", n)]).verdict == V.PARTLY
    assert V.combine([("a", n), ("b", n)]).verdict == V.NOT
    assert V.combine([("a", h), ("b", na)]).verdict == V.PARTLY  # not every part evaluated
    assert V.combine([("a", na)]).verdict == V.NA


def _record(task, model, seed, metric, values: dict, outcome="ok", extra=None):
    """:func:`tests.conftest.hand_run` with one metric ``{shift: value}`` and ``extra(shift)``'s columns."""
    metrics = {metric: values}
    for k in values:
        for name, v in (extra(k) if extra else {}).items():
            metrics.setdefault(name, {})[k] = v
    return hand_run(task, model, seed, metrics, outcome)


def test_evaluate_claims_on_a_hand_made_table():
    recs = []
    for seed in (0, 1, 2):
        recs.append(
            _record(
                "addition",
                "implicit",
                seed,
                "mse",
                {10: 0.5, 100: 5.0, 1000: 50.0},
                extra=lambda k: {"iters_mean": 10 + k / 100, "iters_p95": 20.0, "converged_frac": 1.0},
            )
        )
        recs.append(_record("addition", "implicit_nofeedback", seed, "mse", {10: 1.0, 100: 9.0, 1000: 99.0}))
        recs.append(_record("addition", "mlp", seed, "mse", {10: 3.0, 100: 300.0, 1000: 3e4}))
        recs.append(_record("addition", "seq_encoder", seed, "mse", {10: 2.0, 100: 200.0, 1000: 2e4}))
        recs.append(_record("addition", "depth_encoder", seed, "mse", {10: 2.5, 100: 250.0, 1000: 2.5e4}))
        recs.append(_record("addition", "nalu", seed, "mse", {}, outcome="diverged"))
    res = Results(recs)
    by = {v.id: v for v in V.evaluate_claims(res, amc_skip="no data")}
    assert by["F4a"].verdict == V.HOLDS
    assert by["F4d"].verdict == V.PARTLY  # the diverged NALU is the worst, but subtraction was not run
    assert "18/18" not in by["F4d"].evidence and "worst at every seed at 3/3" in by["F4d"].evidence
    # only shifts < 100 count (k=10: 0.5 < 1 at every seed), capped at "partly" because subtraction was not run
    assert by["F4c"].verdict == V.PARTLY and "3/3 values below 1" in by["F4c"].evidence
    assert by["F8"].verdict == V.PARTLY  # grows on addition; subtraction / argmax not run
    assert by["T1b"].verdict == V.NA and "no data" in by["T1b"].evidence
    assert by["F3"].verdict == V.NA and "not run" in by["F3"].evidence
    assert by["T2"].verdict == V.PARTLY  # addition holds, the other three tasks were not run
    # every verdict is one of the four documented values
    assert {v.verdict for v in by.values()} <= {V.HOLDS, V.PARTLY, V.NOT, V.NA}


# ---- the report on a tiny profile, and resume ----------------------------------------------------------------

TINY = """
description: tiny test profile
seeds: [0, 1]
workers: 1
experiment_prefix: "{prefix}"
overrides: {{trainer.max_epochs: 1, trainer.log_every_n_steps: 1}}
tasks:
  addition:
    models: [implicit, mlp, implicit_nofeedback]
    overrides: {{data.init_args.n_train: 200, data.init_args.n_test: 40, data.init_args.shifts: [10, 100]}}
  rolling_argmax:
    models: [implicit, lstm]
    overrides: {{data.init_args.n_train: 200, data.init_args.n_test: 40, data.init_args.shifts: [10, 1000]}}
  volatility:
    models: [linear]
"""


class _Counter:
    def __init__(self, fail_at: int | None = None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, args, **kw):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt
        return run_training(args, **kw)


@pytest.fixture
def tiny_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/market cache here: the volatility task must be skipped
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.format(prefix=f"t{uuid.uuid4().hex[:8]}-"))
    return p


def test_time_by_model_sums_each_models_runs_largest_first():
    walls = {("depth_encoder", 0): 14.0, ("depth_encoder", 1): 12.0, ("mlp", 0): 1.0, ("mlp", 1): 3.0}
    records = [hand_run("addition", m, seed, {"mse": {1: 0.1}}) for m, seed in walls]
    for r in records:
        r.wall_s = walls[(r.model, r.seed)]
    records.append(hand_run("addition", "nalu", 0, {}, outcome="failed"))  # no wall time known: left out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in time_by_model(records)[2:]]
    assert rows == [
        ["depth_encoder", "2", "26.0", f"{26 / 30:.0%}", "13.0"],
        ["mlp", "2", "4.0", f"{4 / 30:.0%}", "2.0"],
        ["all", "4", "30.0", "100%", ""],
    ]
    assert time_by_model(records[-1:]) == []


def test_report_has_every_section_and_links_and_resume_trains_nothing(
    tiny_profile, tmp_path, mlflow_store, capsys
):
    first = _Counter()
    assert reproduce(str(tiny_profile), out=tmp_path / "reports", train=first) == 0
    assert first.calls == 10  # 2 tasks x (3 + 2 models) x 2 seeds; volatility skipped
    out = capsys.readouterr().out
    assert "AMC volatility skipped" in out and "[10/10]" in out and "ETA" in out
    folder = tmp_path / "reports" / "tiny"
    md = (folder / "report.md").read_text()
    for anchor, title in SECTIONS:
        assert f'<a id="{anchor}"></a>' in md and f"## {title}" in md
    assert "**AMC volatility: skipped**" in md
    links = re.findall(r"\(http://127\.0\.0\.1:5000/#/experiments/\d+/runs/([0-9a-f]{32})\)", md)
    assert len(set(links)) >= 10 + 1  # every training run and the report run
    client = mlflow.MlflowClient(mlflow_store)
    for run_id in set(links):
        client.get_run(run_id)  # every link points at a real run
    for name in (
        "figure3_identity.png",
        "figure4_arithmetic.png",
        "figure5_rolling.png",
        "figure6_spiky.png",
        "figure7_earthquake.png",
        "figure8_depth.png",
        "figure9_feedback_A.png",
        "figure10_feedback.png",
    ):
        assert (folder / "figures" / name).stat().st_size > 1000
        assert f"figures/{name}" in md
    assert "make train TASK=" in md or "lightning_implicit.cli train --task" in md
    assert md.count("| addition | implicit | 0 |") == 1  # the runs table, one row per run
    assert "Where the time went" in md and re.search(r"\| all \| 10 \| [0-9.]+ \| 100% \|", md)
    for v in ("F4a", "F5c", "T1b", "T2", "F8"):
        assert f"| {v} |" in md
    # every claim the verdict rules evaluated has its row, with the verdict the rules gave
    verdicts = json.loads((folder / "verdicts.json").read_text())
    assert len(verdicts) >= 15
    for v in verdicts:
        row = next(line for line in md.splitlines() if line.startswith(f"| {v['id']} |"))
        assert v["verdict"] in row, (v["id"], row)
    # every number of results.csv is a metric logged to the run it names (the report reads MLflow only)
    with (folder / "results.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["run_id"] and r.get("mse")]
    assert rows
    for r in rows[:: max(1, len(rows) // 8)]:
        history = client.get_metric_history(r["run_id"], "ood/mse")
        logged = {m.step: m.value for m in history}
        assert float(r["mse"]) == pytest.approx(logged[int(float(r["shift"]))], rel=1e-9), r
    # the reproduce run in MLflow holds the same files
    exp = client.get_experiment_by_name(tiny_profile.read_text().split('"')[1] + "reproduce")
    (run,) = client.search_runs([exp.experiment_id])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "results.csv", "verdicts.json", "figures"} <= files

    # a second invocation reuses every run and trains nothing
    second = _Counter()
    assert reproduce(str(tiny_profile), out=tmp_path / "reports", train=second) == 0
    assert second.calls == 0
    assert "10 reused from MLflow" in capsys.readouterr().out
    md2 = (folder / "report.md").read_text()
    assert "trained now: 0, reused from MLflow: 10" in md2
    assert set(re.findall(r"/runs/([0-9a-f]{32})\)", md2)) - set(links)  # only the new report run is new


def test_interrupted_reproduction_resumes_where_it_stopped(tiny_profile, tmp_path, capsys):
    first = _Counter(fail_at=4)  # Ctrl-C while the 4th run starts
    assert reproduce(str(tiny_profile), out=tmp_path / "r", train=first) == 130
    assert "interrupted" in capsys.readouterr().out
    assert not (tmp_path / "r" / "tiny" / "report.md").exists()
    second = _Counter()
    assert reproduce(str(tiny_profile), out=tmp_path / "r", train=second) == 0
    assert second.calls == 10 - 3  # the three finished runs were reused
    assert (tmp_path / "r" / "tiny" / "report.md").exists()


def test_tasks_option_runs_and_reports_a_subset(tiny_profile, tmp_path, capsys):
    assert reproduce(str(tiny_profile), out=tmp_path / "r", tasks=["addition"], dry_run=True) == 0
    out = capsys.readouterr().out
    assert "1 task(s)" in out and "rolling_argmax/" not in out and "addition/mlp seed=1" in out
    assert reproduce(str(tiny_profile), out=tmp_path / "r", tasks=["additon"], dry_run=True) == 2
    assert "additon" in capsys.readouterr().err


def test_one_command_also_plans_the_compared_profiles_runs_sharing_those_with_the_same_recipe(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(
        "seeds: [0]\nworkers: 1\ntasks:\n  addition:\n    models: [implicit, mlp]\n"
        "    overrides: {data.init_args.n_train: 200, trainer.max_epochs: 1}\n"
        "    model_overrides: {mlp: {trainer.max_epochs: 2}}\n"
    )
    main = tmp_path / "main.yaml"
    main.write_text(
        f"seeds: [0]\nworkers: 1\ncompare_with: {other}\ntasks:\n  addition:\n    models: [implicit, mlp]\n"
        "    overrides: {data.init_args.n_train: 200, trainer.max_epochs: 1}\n"
    )
    assert reproduce(str(main), out=tmp_path / "r", dry_run=True) == 0
    out = capsys.readouterr().out
    # implicit's recipe is the same in both profiles: one run; mlp's differs: one more for the compared profile
    assert "3 runs:" in out and "of them 1 for profile" in out
    assert out.count("addition/mlp seed=0") == 2 and out.count("addition/implicit seed=0") == 1
    assert reproduce(str(main), out=tmp_path / "r", dry_run=True, compare=False) == 0
    assert "2 runs:" in capsys.readouterr().out


def test_cost_estimate_counts_full_batches_as_cheaper_per_sample():
    from lightning_implicit_paper.plan import _estimate

    task_cfg = {"data": {"init_args": {"n_train": 10_000, "batch_size": 64}}, "trainer": {"max_epochs": 20}}
    mini = _estimate("rolling_argmax", "implicit_rnn", {}, {}, task_cfg)
    full = _estimate(
        "rolling_argmax",
        "implicit_rnn",
        {"data.init_args.batch_size": "full", "trainer.max_epochs": 1000},
        {},
        task_cfg,
    )
    steps = _estimate(
        "rolling_argmax", "implicit_rnn", {"trainer.max_epochs": -1, "trainer.max_steps": 3000}, {}, task_cfg
    )
    assert mini < full < 50 * mini  # 40x the samples, far cheaper per sample
    assert steps == pytest.approx(
        _estimate("rolling_argmax", "implicit_rnn", {"trainer.max_epochs": 19.2}, {}, task_cfg)
    )


@pytest.mark.slow
def test_two_workers_train_the_runs_in_worker_processes(tiny_profile, tmp_path, mlflow_store, capsys):
    """``workers: 2`` runs the jobs on the framework's job executor (lightning_implicit.jobs): every run trains
    once, in a worker process that logs to its own file, and the report is written."""
    code = reproduce(str(tiny_profile), out=tmp_path / "r", tasks=["addition"], seeds=[0], workers=2)
    assert code == 0
    out = capsys.readouterr().out
    assert "[3/3]" in out and "FAILED" not in out
    logs = sorted((tmp_path / "r" / "tiny" / "logs").glob("worker-*.log"))
    assert 1 <= len(logs) <= 2
    assert sum(log.read_text().count("=== addition/") for log in logs) == 3
    assert (tmp_path / "r" / "tiny" / "report.md").exists()


def test_progress_lines_give_elapsed_and_eta_from_the_estimated_costs():
    """The ETA is the remaining estimated cost at the measured pace: 30 cost units done in 30 s, 10 left."""
    import io
    from types import SimpleNamespace

    from lightning_implicit_paper.execute import Outcome, Progress

    jobs = [
        SimpleNamespace(key=k, cost=c, name=f"addition/mlp seed={i}")
        for i, (k, c) in enumerate([("a", 30.0), ("b", 10.0)])
    ]
    now = [100.0]
    out = io.StringIO()
    with Progress(jobs, workers=2, stream=out, clock=lambda: now[0]) as progress:
        now[0] = 130.0
        progress.update(Outcome("a", None, "ok", "trained", 29.5))
        now[0] = 145.0
        progress.update(Outcome("b", None, "failed", "trained", 14.0, "RuntimeError: boom\nmore"))
    first, second, err = out.getvalue().splitlines()
    assert first.startswith("[1/2] trained  addition/mlp seed=0")
    assert first.endswith("  29.5s | elapsed 0:30 | ETA 0:10")
    assert second.startswith("[2/2] FAILED   addition/mlp seed=1") and second.endswith(
        "| elapsed 0:45 | ETA 0:00"
    )
    assert err.strip() == "RuntimeError: boom"
