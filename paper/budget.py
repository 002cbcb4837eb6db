"""``lightning-implicit budget``: how a comparison moves with the training budget (epochs).

A verdict at one budget says little when a model is still improving. This trains each model of a task at several
epoch counts (everything else as ``make train`` plus the given overrides), logs every run to MLflow (experiment
``budget-<task>``) and writes ``reports/budget/<task>/budget.md`` with a PNG: the metric per shift group (the
in-distribution shift, the shifted ones) against epochs, per model, and the ratio of each model to the first.

Example (the earthquake comparison of Figure 7 on the quick profile's 4x coarsened mesh)::

    make budget TASK=earthquake MODELS=implicit,eikonet EPOCHS=4,8,16,32 SEEDS=0,1 \\
        ARGS="--data.init_args.coarsen 4 --data.init_args.batch_size 256"
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

__all__ = ["budget_curve", "main"]


def _summary(rows: list[dict], metric: str, in_dist) -> tuple[float, float]:
    """(metric at the in-distribution shift, mean over the other shifts) of one run's sweep rows."""
    first = in_dist if in_dist is not None else rows[0]["shift"]
    ind = [r[metric] for r in rows if r["shift"] == first]
    ood = [r[metric] for r in rows if r["shift"] != first]
    return (ind[0] if ind else float("nan")), (statistics.fmean(ood) if ood else float("nan"))


def budget_curve(
    task: str,
    models: list[str],
    epochs: list[int],
    seeds: list[int],
    *,
    metric: str | None = None,
    in_dist=None,
    overrides: list[str] | None = None,
    out: Path = Path("reports/budget"),
    train=None,
    say=print,
) -> Path:
    """Train every (model, epochs, seed), write the table and figure; returns the markdown file's path."""
    from lightning_implicit.runner import run_training, shorthand_args

    train = train or run_training
    results: dict[str, dict[int, list[tuple[float, float]]]] = {m: {} for m in models}
    runs: list[str] = []
    for model in models:
        for e in epochs:
            for seed in seeds:
                args = [
                    *shorthand_args(task, model, seed=seed),
                    "--trainer.max_epochs",
                    str(e),
                    "--trainer.enable_progress_bar",
                    "false",
                    "--trainer.enable_model_summary",
                    "false",
                    "--trainer.enable_checkpointing",
                    "false",
                    "--tracking.experiment",
                    f"budget-{task}",
                    "--tracking.run_name",
                    f"{model}-e{e}-seed{seed}",
                    *(overrides or []),
                ]
                res = train(args)
                metric = metric or next(k for k in res.sweep[0] if k not in ("shift", "n"))
                ind, ood = _summary(res.sweep, metric, in_dist)
                results[model].setdefault(e, []).append((ind, ood))
                runs.append(f"{model} epochs={e} seed={seed}: run {res.run_id}")
                say(
                    f"[budget {task}] {model} epochs={e} seed={seed}: {metric} in-distribution {ind:.4g}, "
                    f"shifted mean {ood:.4g}"
                )
    folder = Path(out) / task
    folder.mkdir(parents=True, exist_ok=True)
    mean = {
        m: {e: tuple(statistics.fmean(v[i] for v in vals) for i in (0, 1)) for e, vals in per.items()}
        for m, per in results.items()
    }
    ref = models[0]
    lines = [
        "| epochs | "
        + " | ".join(f"{m}: in-dist. / shifted" for m in models)
        + "".join(f" | {m} / {ref} (shifted)" for m in models[1:])
        + " |",
        "|---" * (1 + len(models) + len(models) - 1) + "|",
    ]
    for e in epochs:
        cells = [f"{mean[m][e][0]:.4g} / {mean[m][e][1]:.4g}" for m in models]
        ratios = [f"{mean[m][e][1] / mean[ref][e][1]:.3g}" for m in models[1:]]
        lines.append(f"| {e} | " + " | ".join(cells) + "".join(f" | {r}" for r in ratios) + " |")
    _plot(mean, models, epochs, metric, folder / "budget.png", task)
    cmd = "lightning-implicit budget " + shlex.join(
        [
            "--task",
            task,
            "--model",
            ",".join(models),
            "--epochs",
            ",".join(map(str, epochs)),
            "--seeds",
            ",".join(map(str, seeds)),
            *(["--"] + overrides if overrides else []),
        ]
    )
    md = [
        f"# Budget curve: {task}, {metric} against training epochs\n",
        f"Command: `{cmd}`; seed means over {seeds}; every run is in the MLflow experiment `budget-{task}`.\n",
        "In-distribution: the first shift of the sweep; shifted: the mean over the other shifts. A ratio above 1 "
        f"means that model's shifted {metric} is higher than {ref}'s.\n",
        "\n".join(lines) + "\n",
        "![budget](budget.png)\n",
        "Runs:\n",
        "\n".join(f"- {r}" for r in runs) + "\n",
    ]
    path = folder / "budget.md"
    path.write_text("\n".join(md))
    (folder / "budget.json").write_text(
        json.dumps(
            {
                "task": task,
                "metric": metric,
                "epochs": epochs,
                "seeds": seeds,
                "mean": {m: {str(e): v for e, v in per.items()} for m, per in mean.items()},
            },
            indent=2,
        )
    )
    return path


def _plot(mean, models, epochs, metric, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, title in enumerate(("in-distribution", "shifted (mean over shifts)")):
        for m in models:
            axes[i].plot(epochs, [mean[m][e][i] for e in epochs], marker="o", label=m)
        axes[i].set_xscale("log", base=2)
        axes[i].set_yscale("log")
        axes[i].set_xlabel("training epochs")
        axes[i].set_ylabel(metric)
        axes[i].set_title(f"{task}: {title}")
        axes[i].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from lightning_implicit.cliargs import comma_list, split_passthrough

    argv, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    from lightning_implicit.clihelp import OneLineParser  # (a bad option: one error: line, exit 2)

    p = OneLineParser(
        prog="lightning-implicit budget",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, help="task config name (conf/tasks/<task>.yaml)")
    p.add_argument("--model", required=True, help="models, comma-separated; ratios are against the first")
    p.add_argument("--epochs", required=True, help="epoch counts, comma-separated (e.g. 4,8,16,32)")
    p.add_argument("--seeds", default="0", help="seeds, comma-separated (default 0)")
    p.add_argument("--metric", default=None, help="sweep metric (default: the task's first)")
    p.add_argument("--out", default="reports/budget", help="output folder root (default reports/budget)")
    a = p.parse_args(argv)
    try:
        epochs = comma_list(a.epochs, int) or []
        seeds = comma_list(a.seeds, int) or [0]
    except ValueError:
        p.error("--epochs and --seeds take comma-separated integers")
    if not epochs or min(epochs) < 1:
        p.error("--epochs: give at least one epoch count >= 1")
    models = comma_list(a.model) or []
    path = budget_curve(a.task, models, epochs, seeds, metric=a.metric, overrides=extra, out=Path(a.out))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
