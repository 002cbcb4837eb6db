"""The sweep's parent run: one per study and store, whichever worker (machine) created it (issue 20)."""

from __future__ import annotations

import mlflow
import optuna

from lightning_implicit.sweep.records import SweepRecorder


def _parents(uri, experiment):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id], filter_string="tags.`sweep.role` = 'parent'")]


def test_two_workers_on_two_stores_then_one_store(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s1", storage=storage)
    uri_a, uri_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    # machine A, then machine B on its own store: B must not overwrite A's pointer
    a = SweepRecorder(uri_a, "sweep-exp").parent_run(optuna.load_study(study_name="s1", storage=storage), {})
    b = SweepRecorder(uri_b, "sweep-exp").parent_run(optuna.load_study(study_name="s1", storage=storage), {})
    assert a != b
    # A resumes: the same parent run, not a new one
    a2 = SweepRecorder(uri_a, "sweep-exp").parent_run(optuna.load_study(study_name="s1", storage=storage), {})
    assert a2 == a and len(_parents(uri_a, "sweep-exp")) == 1
    # the fix the recipe asks for: every worker on one store -> one parent run for the study
    c = SweepRecorder(uri_a, "sweep-exp").parent_run(optuna.load_study(study_name="s1", storage=storage), {})
    assert c == a and len(_parents(uri_a, "sweep-exp")) == 1
    assert study.user_attrs  # pointers are kept per store
    assert (
        len(
            [
                k
                for k in optuna.load_study(study_name="s1", storage=storage).user_attrs
                if k.startswith("mlflow_parent_run_id:")
            ]
        )
        == 2
    )


def test_a_worker_without_the_pointer_joins_the_existing_parent(tmp_path):
    """Two workers that each start before either wrote the study attribute (a race) end with one parent."""
    uri = f"sqlite:///{tmp_path / 'a.db'}"
    s1 = optuna.create_study(study_name="s2", storage=f"sqlite:///{tmp_path / 'o1.db'}")
    s2 = optuna.create_study(study_name="s2", storage=f"sqlite:///{tmp_path / 'o2.db'}")  # sees no pointer
    first = SweepRecorder(uri, "exp2").parent_run(s1, {})
    second = SweepRecorder(uri, "exp2").parent_run(s2, {})
    assert second == first
    assert len(_parents(uri, "exp2")) == 1
