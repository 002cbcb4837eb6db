"""The structural reading (paper/structure.py): the rescaling diagnostic, the linear reference, the bias option of
the implicit model, and claims evaluated again with a reference in the implicit model's place."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning_implicit_paper import structure as S
from lightning_implicit_paper import verdicts as V
from lightning_implicit_paper.results import Results

from lightning_implicit.data import TestSet as Split
from lightning_implicit.implicit import ImplicitModel
from lightning_implicit.implicit.config import SolverConfig
from tests.conftest import hand_run


def _model(bias: bool, seed: int = 0, tol_mode: str = "rel") -> ImplicitModel:
    torch.manual_seed(seed)
    m = ImplicitModel(6, 8, 3, kappa=0.9, bias=bias, solver=SolverConfig(tol_mode=tol_mode))
    if bias:
        with torch.no_grad():  # biases of the size of the other weights (the last columns of B and D)
            m.B[:, -1].uniform_(-1, 1)
            m.D[:, -1].uniform_(-1, 1)
    return m.eval()


@pytest.mark.parametrize("classification", [False, True])
def test_rescaling_is_identical_for_the_bias_free_model_and_not_with_bias(classification):
    u = np.random.default_rng(0).uniform(-1, 1, size=(200, 6))
    plain = S.rescaling(_model(False), u, classification=classification)
    assert plain.identical and plain.fractions == {10.0: 1.0, 1e3: 1.0, 1e5: 1.0}
    assert plain.text().startswith("identical")
    biased = S.rescaling(_model(True), u, classification=classification)
    assert not biased.identical and biased.text().startswith("not identical")
    assert min(biased.fractions.values()) < 0.9


def test_bias_option_adds_b_and_d_and_keeps_the_default_model_unchanged():
    plain, biased = _model(False), _model(True)
    assert plain.B.shape == (8, 6) and plain.D.shape == (3, 6)
    assert biased.B.shape == (8, 7) and biased.D.shape == (3, 7)
    u = torch.randn(5, 6)
    # the bias is a constant input 1: the same as the bias-free equations with b = B[:, -1], d = D[:, -1]
    x = torch.zeros(5, 8)
    for _ in range(500):
        x = torch.relu(x @ biased.A.t() + u @ biased.B[:, :6].t() + biased.B[:, -1])
    expect = x @ biased.C.t() + u @ biased.D[:, :6].t() + biased.D[:, -1]
    with torch.no_grad():
        assert torch.allclose(biased(u), expect, atol=1e-4)
    with pytest.raises(ValueError, match="expected input"):
        biased(torch.randn(5, 7))


def test_linear_reference_recovers_a_linear_target_at_every_shift():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 1))
    x = rng.uniform(-1, 1, size=(400, 5))
    tests = [Split(shift=k, x=(xt := rng.uniform(-k, k, size=(100, 5))), y=xt @ w) for k in (10, 1000)]
    mse = S.linear_reference(x, x @ w, tests, classification=False)
    assert set(mse) == {10, 1000} and max(mse.values()) < 1e-12
    # a nonlinear target is not: |x| sum
    bad = S.linear_reference(x, np.abs(x).sum(1, keepdims=True), tests, classification=False)
    assert bad[1000] > 1e4


def test_linear_reference_classifies_by_the_final_step():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(2000, 4, 1))
    y = np.repeat(x[..., 0].argmax(1)[:, None], 4, axis=1)
    tests = [
        Split(
            shift=10,
            x=(xt := rng.uniform(0, 10, size=(500, 4, 1))),
            y=np.repeat(xt[..., 0].argmax(1)[:, None], 4, 1),
        )
    ]
    acc = S.linear_reference(x, y, tests, classification=True, num_classes=4)
    assert 0.3 < acc[10] <= 1.0  # better than chance (0.25): computed, not assumed


def test_claims_are_read_again_with_the_linear_reference_and_the_bias_ablation():
    recs = []
    for seed in (0, 1, 2):
        recs.append(hand_run("addition", "implicit", seed, {"mse": {10: 0.5, 1000: 5e3}}))
        recs.append(hand_run("addition", "implicit_bias", seed, {"mse": {10: 0.6, 1000: 9e7}}))
        for m, f in (("mlp", 3.0), ("nalu", 4.0), ("seq_encoder", 5.0), ("depth_encoder", 6.0)):
            recs.append(hand_run("addition", m, seed, {"mse": {10: f, 1000: f * 1e5}}))
    results = Results(recs)
    verdicts = V.evaluate_claims(results)
    rd = S.TaskReading("addition", "mse", linear={10: 1e-9, 1000: 1e-5})
    rows = {r["id"]: r for r in S.claims_with_references(results, {"addition": rd}, verdicts)}
    f4a = rows["F4a"]
    assert f4a["verdict"] == V.HOLDS
    assert f4a["linear"] == V.HOLDS and f4a["reading"].startswith("follows from homogeneity")
    assert f4a["bias"] == V.PARTLY  # with bias: best at k=10 only (9e7 > 3e5 at k=1000)
    assert "F3" not in rows  # identity was not run
    # the linear reference worse than the implicit model on every shift: needs more
    rd_bad = S.TaskReading("addition", "mse", linear={10: 50.0, 1000: 5e8})
    rows = {r["id"]: r for r in S.claims_with_references(results, {"addition": rd_bad}, verdicts)}
    assert rows["F4a"]["linear"] == V.NOT and rows["F4a"]["reading"].startswith("needs more")


def test_rolling_average_is_read_against_the_linear_reference_without_a_rescaling_diagnostic():
    """Rolling average shifts by translation: no rescaling diagnostic, but its target is linear, so the linear
    reference enters its claims (F5a) and the feedback claims that span it with the rescaling tasks (T2)."""
    recs = []
    for seed in (0, 1, 2):
        recs.append(hand_run("rolling_average", "implicit", seed, {"mse": {5: 1e-6, 100: 1e-4}}))
        recs.append(hand_run("rolling_average", "implicit_nofeedback", seed, {"mse": {5: 1e-13, 100: 1e-11}}))
        recs.append(hand_run("rolling_average", "lstm", seed, {"mse": {5: 1.0, 100: 1e3}}))
        recs.append(hand_run("rolling_average", "encdec", seed, {"mse": {5: 2.0, 100: 2e3}}))
    results = Results(recs)
    verdicts = V.evaluate_claims(results)
    rd = S.TaskReading("rolling_average", "mse", linear={5: 1e-20, 100: 1e-18})
    assert not rd.rescales and S.TaskReading("addition", "mse").rescales
    rows = {r["id"]: r for r in S.claims_with_references(results, {"rolling_average": rd}, verdicts)}
    f5a = rows["F5a"]
    assert f5a["verdict"] == V.HOLDS and f5a["linear"] == V.HOLDS and f5a["bias"] == V.NA
    assert f5a["reading"].startswith("follows from the structure (homogeneity, a linear target)")
    # T2 spans addition, subtraction, rolling argmax and rolling average; only its rolling-average part has runs:
    # no feedback is lower there, and the exact linear fit in the implicit model's place beats it
    t2 = rows["T2"]
    assert t2["verdict"] == V.NOT and t2["linear"] == V.PARTLY
    assert t2["reading"].startswith("the structure suffices")
    table = "\n".join(S.reading_rows({"rolling_average": rd}, results))
    assert "n/a: the shift translates the inputs (no rescaling)" in table
    assert "affine: exact on a linear target at any shift | 1e-20 | 1e-18 |" in table


def test_magnitudes_put_the_papers_number_beside_ours_and_flag_a_ratio_beyond_ten():
    from lightning_implicit_paper.magnitudes import magnitude_table, magnitudes

    recs = []
    for seed in (0, 1):
        recs.append(hand_run("addition", "nalu", seed, {"mse": {10: 592.0, 1000: 1e9}}))
        # 90% of the samples converge in 15 iterations, 10% stop at the cap: the mean over all is 43.5
        depth = {"iters_mean": {10: 0.9 * 15 + 0.1 * 300}, "converged_frac": {10: 0.9}}
        recs.append(hand_run("addition", "implicit", seed, {"mse": {10: 0.5}, **depth}))
    res = Results(recs)
    by = {m.what: m for m in magnitudes(res)}
    nalu = by["addition: NALU test MSE at shift 10 (the paper: above)"]
    assert (
        nalu.paper == 1e10 and nalu.ours == 592.0 and nalu.flag.startswith("**beyond 10x on the wrong side")
    )
    depth = by["addition: implicit solver iterations"]
    assert (
        depth.paper == 15 and abs(depth.ours - 15.0) < 1e-9 and depth.flag.startswith("within 10x")
    )  # converged only
    table = magnitude_table(res, "figure-4")
    assert "| 1e+10 | 592 |" in table and "beyond 10x on the wrong side of the bound" in table


def test_tuning_table_shows_the_best_so_far_curve_and_what_each_study_needs():
    from types import SimpleNamespace

    from lightning_implicit_paper.tuning import flattened, study_curve, tuning_table

    from lightning_implicit.sweep.tune import best_so_far

    assert best_so_far([3.0, None, 2.0, 2.5, 1.0]) == [3.0, 3.0, 2.0, 2.0, 1.0]
    assert best_so_far([None, float("nan"), 2.0]) == [None, None, 2.0]
    assert study_curve({"best_so_far": [None, 2.0, 1.5]}) == [math.inf, 2.0, 1.5]
    assert flattened([5, 4, 3, 2, 2, 2, 2, 2, 2]) is True
    assert flattened([9, 8, 7, 6, 5, 4, 3, 2, 1]) is False
    assert flattened([3, 2, 1]) is None
    # an exact fit (float32 resolution) is flat, however its rounding moved: rolling average's no-feedback study
    assert flattened([1e-5, 1e-5, 3e-6, 3e-6, 3e-6, 3e-6, 2e-9, 4e-13, 7e-14]) is True
    assert flattened([1e-5, 7e-14]) is True and flattened([1e-5, 1e-9]) is None
    prov = {
        "trials": {"complete": 3, "pruned": 1},
        "cv_folds": 3,
        "space_edges": ["lr=0.0474704 at its upper bound 0.05"],
        "study": "s",
        "storage": "sqlite:///nowhere.db",
    }
    tuned = {("addition", "implicit"): SimpleNamespace(provenance=prov)}
    v = [V.Verdict("F4a", "", "", "", V.NOT, "", "figure-4")]
    text = tuning_table(tuned, v, curves={("addition", "implicit"): [1.0, 0.5, 0.5, 0.4]})
    assert (
        ">= 12 trials (has 4)" in text and "a widened search (lr=0.0474704 at its upper bound 0.05)" in text
    )
    assert "5 folds as the paper (has 3)" in text and "| F4a |" in text and "1 (#1)" in text
    assert "earlier record" not in text
    # a study started also from the 3-fold record (tune --from-record): the 3-vs-5-fold comparison, both ways
    prev = {
        "trial": 1,
        "record": {"cv_folds": 3, "cv_score": 0.129, "trials": 25},
        "state": "complete",
        "cv_score": 0.12,
        "beaten": False,
    }
    five = {**prov, "cv_folds": 5, "best_trial": 1, "cv_score": {"mean": 0.12}, "previous_record": prev}
    text = tuning_table({("rolling_argmax", "implicit"): SimpleNamespace(provenance=five)}, v, curves={})
    assert (
        "the previous record's best (25 trials, 3-fold CV 0.129, trial #1 here) scored 0.12 on these 5 folds; "
        "this search picked it again" in text
    )
    five = {**five, "best_trial": 7, "cv_score": {"mean": 0.1}, "previous_record": {**prev, "beaten": True}}
    text = tuning_table({("rolling_argmax", "implicit"): SimpleNamespace(provenance=five)}, v, curves={})
    assert "this search picked another recipe (trial #7, 0.1)" in text
    pruned = {**five, "previous_record": {**prev, "state": "pruned", "cv_score": None, "beaten": True}}
    text = tuning_table({("rolling_argmax", "implicit"): SimpleNamespace(provenance=pruned)}, v, curves={})
    assert "(25 trials, 3-fold CV 0.129, trial #1 here) was pruned on these folds" in text


def test_an_old_records_edge_at_a_bound_now_marked_limit_asks_for_no_widened_search():
    """A record written before ``limit: high`` existed lists kappa at 0.99 as an edge; today's search file marks
    that bound as the model's limit, so the report moves it to the limits. Other edges stay edges."""
    from lightning_implicit_paper.tuning import edges_and_limits, needs

    kappa = "kappa=0.985551 at its upper bound 0.99"
    steps = "steps=1894 at its upper bound 2000"
    prov = {
        "space_edges": [steps, kappa],
        "best_params": {"lr": 0.0121, "lr_schedule": "cosine", "steps": 1894, "kappa": 0.985551, "tol": 3e-6},
    }
    edges, limits = edges_and_limits(prov, "rolling_argmax", "implicit_rnn")
    assert edges == [steps] and limits == [f"{kappa} (the model's limit)"]
    assert needs({"trials": {"complete": 12}, "cv_folds": 5}, None, edges) == [f"a widened search ({steps})"]
    # a model whose space does not mark kappa: unchanged; no best_params: the record as written
    assert edges_and_limits(prov, "rolling_argmax", "lstm") == ([steps, kappa], [])
    assert edges_and_limits({"space_edges": [kappa]}, "rolling_argmax", "implicit_rnn") == ([kappa], [])


def test_a_bound_the_paper_states_is_met_on_its_side_however_far():
    from lightning_implicit_paper.magnitudes import Magnitude

    assert Magnitude("figure-3", "mse", 5.0, 0.35, bound="below").flag.startswith("on the bound's side")
    assert Magnitude("figure-4", "nalu", 1e10, 1e11, bound="above").flag.startswith("on the bound's side")
    assert Magnitude("figure-4", "mse", 1.0, 1.07, bound="below").flag.startswith(
        "wrong side of the bound, within"
    )
    assert Magnitude("figure-8", "iters", 175.0, 15.7).flag.startswith("**beyond 10x**")
    assert Magnitude("figure-7", "gap", 0.00025, -0.03).flag == "opposite sign"


def test_the_tuned_configs_own_curve_is_read_before_its_storage(tmp_path):
    from lightning_implicit_paper.tuning import study_curve

    prov = {"best_so_far": [None, 0.5, 0.4], "study": "s", "storage": "sqlite:///nowhere.db"}
    assert study_curve(prov) == [float("inf"), 0.5, 0.4]
    missing = tmp_path / "nonexistent" / "x.db"
    assert study_curve({"study": "s", "storage": f"sqlite:///{missing}"}) is None
