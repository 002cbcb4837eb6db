"""Margins and stability of the verdicts (paper/verdicts.py): hand-made results where one seed flips a verdict,
models that the seed noise cannot separate, depth counted over converged samples only."""

from __future__ import annotations

import json

from lightning_implicit_paper import verdicts as V
from lightning_implicit_paper.results import Results

from tests.conftest import hand_run


def _by_id(recs) -> dict[str, V.Verdict]:
    return {v.id: v for v in V.evaluate_claims(Results(recs))}


def test_one_seed_above_the_threshold_is_on_the_margin_with_the_deciding_value():
    # F4c: implicit arithmetic MSE < 1 for shifts < 100; seed 2 misses once (1.07), as the "11/12"
    recs = []
    for seed in (0, 1, 2):
        for task in ("addition", "subtraction"):
            mse = {10: 0.5, 50: 0.6, 1000: 40.0}
            if task == "addition" and seed == 2:
                mse[50] = 1.07
            recs.append(hand_run(task, "implicit", seed, {"mse": mse}))
    v = _by_id(recs)["F4c"]
    assert v.verdict == V.PARTLY and "11/12 values below 1 (largest 1.07)" in v.evidence
    assert v.on_margin
    assert v.stability["flipped_by"] == [2] and v.stability["leave_one_out"][2] == V.HOLDS
    assert v.stability["leave_one_out"][0] == V.PARTLY
    assert V.ON_MARGIN in v.label and "1.07" in v.label and "addition,k=50,seed=2" in v.label
    assert "without seed 2: holds" in v.label


def test_a_win_that_one_seed_reverses_is_on_the_margin_and_a_clear_one_is_stable():
    # F5d: implicitRNN more accurate than implicit; seed 0 reverses it at every shift
    recs = []
    for seed in (0, 1, 2):
        rnn = {10: 0.6528 if seed == 0 else 0.95, 1000: 0.6528 if seed == 0 else 0.95}
        recs.append(hand_run("rolling_argmax", "implicit_rnn", seed, {"accuracy": rnn}))
        recs.append(hand_run("rolling_argmax", "implicit", seed, {"accuracy": {10: 0.6534, 1000: 0.6534}}))
        # F5e: a clear win at every seed
        recs.append(hand_run("rolling_argmax", "encdec_nope", seed, {"accuracy": {10: 0.9, 1000: 0.9}}))
        for m in ("encdec_masked", "encdec_unmasked"):
            recs.append(hand_run("rolling_argmax", m, seed, {"accuracy": {10: 0.5 + 0.01 * seed, 1000: 0.5}}))
    by = _by_id(recs)
    v = by["F5d"]
    assert v.verdict == V.PARTLY and v.on_margin
    # without seed 0 it holds; without another seed the two left cannot separate the models
    assert 0 in v.stability["flipped_by"] and v.stability["leave_one_out"][0] == V.HOLDS
    assert v.stability["leave_one_out"][1] == V.NOISE
    assert "seed 0, 0.6528 vs 0.6534" in v.margin and "without seed 0: holds" in v.label
    clear = by["F5e"]
    assert clear.verdict == V.HOLDS and not clear.on_margin and clear.label == V.HOLDS
    assert (
        clear.stability["flipped_by"] == [] and "leaving out each of seeds 0, 1, 2" in clear.stability["text"]
    )


def test_growths_within_the_seed_spread_cannot_separate_the_models():
    # F10b on rolling average: growths 1.04e8 vs 1.07e8 (3 %), seeds spread far wider
    recs = []
    for seed, (a, b) in enumerate([(0.5e8, 2.0e8), (1.6e8, 0.4e8), (1.0e8, 0.8e8)]):
        recs.append(hand_run("rolling_average", "implicit", seed, {"mse": {5: 1.0, 100: a}}))
        recs.append(hand_run("rolling_average", "implicit_nofeedback", seed, {"mse": {5: 1.0, 100: b}}))
    v = _by_id(recs)["F10b"]
    assert "rolling_average: cannot separate the models at the seed noise" in v.evidence
    assert v.verdict == V.NOISE and not v.on_margin


def test_rule_best_without_any_separated_shift_awards_no_verdict():
    ours = {0: {10: 1.0, 100: 2.0}, 1: {10: 3.0, 100: 4.0}}
    other = {0: {10: 1.5, 100: 2.5}, 1: {10: 2.5, 100: 3.5}}
    assert V.rule_best(ours, {"mlp": other}).verdict == V.NOISE
    far = {0: {10: 30.0, 100: 40.0}, 1: {10: 31.0, 100: 41.0}}
    r = V.rule_best(ours, {"mlp": far})
    assert r.verdict == V.HOLDS and "separated from the best other model at 2/2" in r.margin


def test_depth_counts_converged_samples_only_and_says_how_many_hit_the_cap():
    # converged samples take 15 iterations at every shift; at the largest shift a quarter stop at the cap (300):
    # the mean over all samples grows (15 -> 86.25) but the depth of the converged ones does not
    recs = []
    for seed in (0, 1, 2):
        for task in ("addition", "subtraction", "rolling_argmax"):
            cf = {10: 1.0, 1000: 1.0, 100000: 0.75}
            it = {k: f * 15 + (1 - f) * V.MAX_ITER for k, f in cf.items()}
            metric = "accuracy" if task == "rolling_argmax" else "mse"
            recs.append(
                hand_run(
                    task,
                    "implicit",
                    seed,
                    {metric: {k: 0.5 for k in cf}, "iters_mean": it, "converged_frac": cf},
                )
            )
    v = _by_id(recs)["F8"]
    assert v.verdict == V.NOT
    assert (
        "converged samples only" in v.evidence
        and "25.0% of the samples hit the 300-iteration cap" in v.evidence
    )
    depth, _ = V.converged_depth(Results(recs), "addition", "implicit")
    assert depth[0] == {10: 15.0, 1000: 15.0, 100000: 15.0}


def test_verdicts_json_carries_a_margin_and_a_stability_result_for_every_evaluated_claim(tmp_path):
    from lightning_implicit_paper.profile import load_profile
    from lightning_implicit_paper.report import build_report

    from tests.test_claims import table_paper_holds

    results = table_paper_holds()
    _, verdicts = build_report(results, load_profile("quick"), tmp_path, amc_skip="no data")
    data = json.loads((tmp_path / "verdicts.json").read_text())
    evaluated = [d for d in data if d["verdict"] != V.NA]
    assert len(evaluated) >= 15
    for d in evaluated:
        assert d["margin"], d["id"]
        assert set(d["stability"]["leave_one_out"]) == {"0", "1", "2"}, d["id"]
        assert isinstance(d["on_margin"], bool) and d["label"].startswith(d["verdict"])
    report = (tmp_path / "report.md").read_text()
    assert "| Margin" in report and "Stability (leaving out each seed)" in report


def test_machine_card_names_the_cpu_instruction_set_blas_and_threads():
    import torch
    from lightning_implicit_paper.machine import machine_card

    card = machine_card(2, 1)
    assert card["instruction set used by torch"] == torch.backends.cpu.get_cpu_capability()
    assert card["workers x threads"].startswith("2 x 1") and card["CPU"] and card["logical cores"].isdigit()
    assert "/" in card["BLAS / LAPACK (torch)"] and f"torch {torch.__version__}" in card["versions"]
