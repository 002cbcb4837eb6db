"""``lightning-implicit budget``: the metric against training epochs, per model, from real runs."""

from __future__ import annotations

import json
import math

import pytest
from lightning_implicit_paper.budget import budget_curve

from lightning_implicit.runner import run_training


def test_budget_curve_trains_each_cell_and_reports_seed_means(tmp_path):
    sweeps: dict[tuple[str, str], list[dict]] = {}

    def train(args):
        res = run_training(args)
        sweeps[
            (args[args.index("--tracking.run_name") + 1], args[args.index("--trainer.max_epochs") + 1])
        ] = res.sweep
        return res

    small = [
        "--data.init_args.n_train",
        "200",
        "--data.init_args.n_test",
        "20",
        "--data.init_args.shifts",
        "[10, 100]",
        "--tracking.enabled",
        "false",
    ]
    path = budget_curve(
        "addition",
        ["implicit", "mlp"],
        [1, 2],
        [0, 1],
        overrides=small,
        out=tmp_path,
        train=train,
        say=lambda m: None,
    )
    assert sorted(sweeps) == sorted(
        (f"{m}-e{e}-seed{s}", str(e)) for m in ("implicit", "mlp") for e in (1, 2) for s in (0, 1)
    )
    data = json.loads((tmp_path / "addition" / "budget.json").read_text())
    assert data["metric"] == "mse" and data["epochs"] == [1, 2]
    for model in ("implicit", "mlp"):
        for e in (1, 2):
            rows = [sweeps[(f"{model}-e{e}-seed{s}", str(e))] for s in (0, 1)]
            ind = sum(r[0]["mse"] for r in rows) / 2  # shift 10: the first of the sweep
            ood = sum(r[1]["mse"] for r in rows) / 2  # shift 100: the only other one
            assert data["mean"][model][str(e)] == pytest.approx([ind, ood], rel=1e-12)
            assert math.isfinite(ind) and math.isfinite(ood)
    imp, mlp = data["mean"]["implicit"]["2"], data["mean"]["mlp"]["2"]
    assert (
        f"| 2 | {imp[0]:.4g} / {imp[1]:.4g} | {mlp[0]:.4g} / {mlp[1]:.4g} | {mlp[1] / imp[1]:.3g} |"
        in path.read_text()
    )
    assert (tmp_path / "addition" / "budget.png").stat().st_size > 1000
