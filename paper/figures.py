"""One PNG per paper figure (3-10), drawn from the runs in MLflow, with the paper's axes and log scales.

Curves are the mean over seeds; the shaded band spans the minimum to the maximum over seeds. A run whose
training diverged has no curve (its legend entry says so). Panels whose task was not run say so instead of
being left out, so every figure exists for every profile.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .paper_numbers import TABLE4_MODELS, TEXT_NUMBERS, label  # noqa: E402
from .results import Results, download_artifact, metric_history  # noqa: E402

__all__ = ["draw_all", "FIGURES"]

_COLORS = {
    "implicit": "tab:red",
    "implicit_rnn": "tab:purple",
    "implicit_nofeedback": "tab:orange",
    "mlp": "tab:blue",
    "encdec": "tab:green",
    "nalu": "tab:brown",
    "nac": "tab:pink",
    "seq_encoder": "tab:green",
    "depth_encoder": "tab:olive",
    "lstm": "tab:cyan",
    "encdec_masked": "tab:green",
    "encdec_unmasked": "tab:olive",
    "encdec_nope": "tab:gray",
    "masked_decoder": "tab:green",
    "linear": "tab:gray",
    "eikonet": "tab:blue",
}

_MARKERS = {
    "implicit": "o",
    "implicit_rnn": "D",
    "implicit_nofeedback": "s",
    "mlp": "s",
    "encdec": "^",
    "nalu": "v",
    "nac": "<",
    "seq_encoder": "^",
    "depth_encoder": "P",
    "lstm": "X",
    "encdec_masked": "^",
    "encdec_unmasked": "v",
    "encdec_nope": "s",
    "masked_decoder": "^",
    "linear": "x",
    "eikonet": "s",
}
_LINES = {"encdec_unmasked": "--", "encdec_nope": ":", "depth_encoder": "--"}

# file name -> (title, caption)
FIGURES = {
    "figure3_identity.png": ("Figure 3", "Identity: test MSE vs the shift kappa (log y)."),
    "figure4_arithmetic.png": ("Figure 4", "Addition and subtraction: test MSE vs kappa (log-log)."),
    "figure5_rolling.png": (
        "Figure 5",
        "Rolling average (test MSE, log y) and rolling argmax (last-step accuracy, log x) vs kappa.",
    ),
    "figure6_spiky.png": (
        "Figure 6",
        "Spiky series: one-step forecasts over a test stretch with a spiky region (first seed).",
    ),
    "figure7_earthquake.png": (
        "Figure 7",
        "Earthquake: standardised test MSE and per-label MAE vs region k "
        "(k = 0: in-distribution test split).",
    ),
    "figure8_depth.png": (
        "Figure 8",
        "Depth adaptability: solver iterations during training, and per-sample "
        "iterations vs kappa with the sweep's stopping tolerance (mean, band over seeds; dotted: "
        "95th percentile) and with the other tolerance (dash-dot).",
    ),
    "figure9_feedback_A.png": (
        "Figure 9",
        "Learned A of the implicit model with and without feedback (addition, "
        "first seed); the feedback weights are the lower triangle and diagonal.",
    ),
    "figure10_feedback.png": (
        "Figure 10",
        "Feedback ablation across shifts: implicit vs implicit without feedback.",
    ),
}


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _band(
    ax,
    results: Results,
    task: str,
    model: str,
    metric: str,
    *,
    style: str = "-",
    shifts=None,
    name: str | None = None,
) -> bool:
    runs = results.runs(task, model)
    name = name or label(model)
    if any(r.outcome == "diverged" for r in runs) and not any(r.usable for r in runs):
        ax.plot([], [], style, color=_COLORS.get(model, "k"), label=f"{name} (training diverged)")
        return False
    series = results.series(task, model, metric, diverged=math.nan)
    ks = sorted({k for per in series.values() for k in per})
    if shifts is not None:
        ks = [k for k in ks if k in shifts]
    if not ks:
        return False
    vals = [[per[k] for per in series.values() if k in per and np.isfinite(per[k])] for k in ks]
    keep = [i for i, v in enumerate(vals) if v]
    if not keep:
        return False
    xs = [ks[i] for i in keep]
    mean = [float(np.mean(vals[i])) for i in keep]
    lo = [float(np.min(vals[i])) for i in keep]
    hi = [float(np.max(vals[i])) for i in keep]
    color = _COLORS.get(model, None)
    n = len(series)
    style = _LINES.get(model, style) if style == "-" else style
    (line,) = ax.plot(
        xs,
        mean,
        style,
        marker=_MARKERS.get(model, "o"),
        ms=3.5,
        lw=1.5,
        color=color,
        label=f"{name} ({n} seed{'s' * (n > 1)})",
    )
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
    return True


def _panel(
    ax,
    results: Results,
    task: str,
    models,
    metric: str,
    *,
    logx: bool,
    logy: bool,
    ylabel: str,
    title: str,
    xlabel: str = "shift kappa",
) -> None:
    if task not in results.tasks():
        _empty(ax, f"{task}: not run in this profile")
        ax.set_title(title)
        return
    drawn = [_band(ax, results, task, m, metric) for m in models if results.runs(task, m)]
    if not any(drawn):
        _empty(ax, f"{task}: no usable runs")
        ax.set_title(title)
        return
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")


def _models(results: Results, task: str, base) -> list[str]:
    extra = [m for m in results.models(task) if m not in base and m != "implicit_nofeedback"]
    return [m for m in base if results.runs(task, m)] + extra


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig3(results: Results, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    _panel(
        ax,
        results,
        "identity",
        _models(results, "identity", TABLE4_MODELS["identity"]),
        "mse",
        logx=False,
        logy=True,
        ylabel="test MSE (log scale)",
        title="Identity function (Figure 3)",
    )
    return _save(fig, out / "figure3_identity.png")


def fig4(results: Results, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax, task in zip(axes, ("addition", "subtraction"), strict=True):
        _panel(
            ax,
            results,
            task,
            _models(results, task, TABLE4_MODELS[task]),
            "mse",
            logx=True,
            logy=True,
            ylabel="test MSE (log scale)",
            title=f"{task.capitalize()} (Figure 4)",
        )
    return _save(fig, out / "figure4_arithmetic.png")


def fig5(results: Results, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    _panel(
        axes[0],
        results,
        "rolling_average",
        _models(results, "rolling_average", TABLE4_MODELS["rolling_average"]),
        "mse",
        logx=False,
        logy=True,
        ylabel="test MSE (log scale)",
        title="Rolling average (Figure 5, left)",
    )
    _panel(
        axes[1],
        results,
        "rolling_argmax",
        _models(results, "rolling_argmax", TABLE4_MODELS["rolling_argmax"]),
        "accuracy",
        logx=True,
        logy=False,
        ylabel="test accuracy (last step)",
        title="Rolling argmax (Figure 5, right)",
    )
    if "rolling_argmax" in results.tasks():
        ref = TEXT_NUMBERS["fig5_encdec_expected_accuracy"]["value"]
        axes[1].axhline(ref, ls="--", c="k", lw=0.8, label="1 - 1/L (teacher-forced enc-dec)")
        axes[1].set_ylim(-0.02, 1.02)
        axes[1].legend(fontsize=7, loc="best")
    return _save(fig, out / "figure5_rolling.png")


def fig6(results: Results, out: Path, client, tmp: Path) -> Path:
    models = [m for m in TABLE4_MODELS["spiky"] if any(r.usable for r in results.runs("spiky", m))]
    fig, axes = plt.subplots(max(1, len(models)), 1, figsize=(10, 2.9 * max(1, len(models))), squeeze=False)
    if not models:
        _empty(
            axes[0][0],
            "spiky: not run in this profile" if "spiky" not in results.tasks() else "no usable runs",
        )
    for ax, m in zip(axes[:, 0], models, strict=False):
        rec = next(r for r in results.runs("spiky", m) if r.usable)
        img = (
            download_artifact(client, rec.run_id, "figures/spiky_forecast.png", tmp / f"spiky-{m}")
            if client
            else None
        )
        if img is None:
            _empty(ax, f"{label(m)}: forecast figure not logged")
            continue
        ax.imshow(plt.imread(img))
        ax.set_axis_off()
        ax.set_title(f"{label(m)} (seed {rec.seed})", fontsize=10)
    return _save(fig, out / "figure6_spiky.png")


_EQ_LABELS = [
    ("mse", "standardised test MSE"),
    ("lon_wrapped_mae_deg", "longitude MAE (deg, wrapped)"),
    ("lat_mae_deg", "latitude MAE (deg)"),
    ("depth_mae_km", "depth MAE (km)"),
    ("time_mae_s", "origin time MAE (s)"),
]


def fig7(results: Results, out: Path) -> Path:
    fig, axes = plt.subplots(1, 5, figsize=(21, 4.0))
    models = _models(results, "earthquake", TABLE4_MODELS["earthquake"])
    for ax, (metric, ylabel) in zip(axes, _EQ_LABELS, strict=True):
        _panel(
            ax,
            results,
            "earthquake",
            models,
            metric,
            logx=False,
            logy=metric == "mse",
            ylabel=ylabel,
            title=("Figure 7, left" if metric == "mse" else "Figure 7, right"),
            xlabel="extrapolation region k",
        )
    return _save(fig, out / "figure7_earthquake.png")


def fig8(results: Results, out: Path, client) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4))
    ax = axes[0]
    drawn = False
    for task, style in (("addition", "-"), ("subtraction", "--"), ("rolling_argmax", ":")):
        curves = []
        for rec in results.runs(task, "implicit"):
            if rec.usable and client is not None:
                h = metric_history(client, rec.run_id, "train/iters_mean")
                if h:
                    curves.append(h)
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = [s for s, _ in curves[0][:n]]
        vals = np.array([[v for _, v in c[:n]] for c in curves])
        k = max(1, n // 100)  # smooth over ~1% of training
        kernel = np.ones(k) / k
        sm = np.array([np.convolve(v, kernel, mode="same") for v in vals])
        line = ax.plot(steps, sm.mean(0), style, lw=1.2, label=f"{task} ({len(curves)} seeds)")[0]
        ax.fill_between(steps, sm.min(0), sm.max(0), color=line.get_color(), alpha=0.15, lw=0)
        drawn = True
    if drawn:
        ax.set_xlabel("training step")
        ax.set_ylabel("mean forward iterations per sample")
        ax.set_title("Figure 8, left: iterations during training (implicit)")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7)
    else:
        _empty(ax, "no implicit runs of addition, subtraction or rolling argmax")
    for ax, tasks, title in (
        (axes[1], ("addition", "subtraction"), "Figure 8, middle: arithmetic"),
        (axes[2], ("rolling_argmax",), "Figure 8, right: rolling argmax"),
    ):
        drawn = False
        for task in tasks:
            for model in ("implicit", "implicit_rnn"):
                if not any(r.usable for r in results.runs(task, model)):
                    continue
                name = (
                    f"{label(model)} {task}" if len(tasks) > 1 or model != "implicit" else f"{label(model)}"
                )
                drawn |= _band(
                    ax,
                    results,
                    task,
                    model,
                    "iters_mean",
                    name=name,
                    style="-" if task != "subtraction" else "--",
                )
                p95 = results.series(task, model, "iters_p95", diverged=math.nan)
                ks = sorted({k for per in p95.values() for k in per})
                if ks:
                    ax.plot(
                        ks,
                        [np.mean([per[k] for per in p95.values() if k in per]) for k in ks],
                        ":",
                        color=_COLORS.get(model),
                        lw=1,
                    )
                for alt in ("rel", "abs"):  # the same model under the other stopping tolerance
                    other = results.series(task, model, f"iters_mean_{alt}", diverged=math.nan)
                    ks = sorted({k for per in other.values() for k in per})
                    if ks:
                        ax.plot(
                            ks,
                            [np.mean([per[k] for per in other.values() if k in per]) for k in ks],
                            "-.",
                            marker="x",
                            ms=3,
                            color=_COLORS.get(model),
                            lw=1,
                            alpha=0.7,
                            label=f"{name}, {alt}. tolerance",
                        )
        if drawn:
            ax.set_xscale("log")
            ax.set_xlabel("shift kappa")
            ax.set_ylabel("forward iterations per sample")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.25)
            ax.legend(fontsize=7)
        else:
            _empty(ax, f"{' / '.join(tasks)}: no implicit runs")
            ax.set_title(title)
    return _save(fig, out / "figure8_depth.png")


def fig9(results: Results, out: Path, client, tmp: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, model in zip(axes, ("implicit", "implicit_nofeedback"), strict=True):
        rec = next((r for r in results.runs("addition", model) if r.usable), None)
        path = (
            download_artifact(client, rec.run_id, "weights/A.npy", tmp / f"A-{model}")
            if (rec and client)
            else None
        )
        if path is None:
            _empty(ax, f"addition / {label(model)}: no run with a logged A")
            continue
        A = np.load(path)
        lim = float(np.abs(A).max()) or 1.0
        im = ax.imshow(A, cmap="RdBu_r", vmin=-lim, vmax=lim)
        n = A.shape[0]
        ax.plot([-0.5, n - 0.5], [-0.5, n - 0.5], "k-", lw=0.8)  # the diagonal: on and below it = feedback
        fb = np.abs(np.tril(A)).sum() / max(np.abs(A).sum(), 1e-12)
        ax.set_title(
            f"{label(model)} (seed {rec.seed}): {n}x{n}, feedback share of |A| = {fb:.0%}", fontsize=9
        )
        ax.set_xlabel("state j (input of the iteration)")
        ax.set_ylabel("state i (output)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, out / "figure9_feedback_A.png")


def fig10(results: Results, out: Path) -> Path:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    spec = [
        ("addition", "mse", True, True),
        ("subtraction", "mse", True, True),
        ("rolling_argmax", "accuracy", True, False),
        ("rolling_average", "mse", False, True),
    ]
    for ax, (task, metric, logx, logy) in zip(axes, spec, strict=True):
        _panel(
            ax,
            results,
            task,
            ["implicit", "implicit_nofeedback"],
            metric,
            logx=logx,
            logy=logy,
            ylabel=f"test {metric}" + (" (log scale)" if logy else ""),
            title=f"{task} (Figure 10)",
        )
    return _save(fig, out / "figure10_feedback.png")


def draw_all(results: Results, out: Path, client=None) -> dict[str, Path]:
    """Every figure into ``out``; returns ``{file name: path}`` (a figure that fails is reported, not fatal)."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        jobs = {
            "figure3_identity.png": lambda: fig3(results, out),
            "figure4_arithmetic.png": lambda: fig4(results, out),
            "figure5_rolling.png": lambda: fig5(results, out),
            "figure6_spiky.png": lambda: fig6(results, out, client, tmp),
            "figure7_earthquake.png": lambda: fig7(results, out),
            "figure8_depth.png": lambda: fig8(results, out, client),
            "figure9_feedback_A.png": lambda: fig9(results, out, client, tmp),
            "figure10_feedback.png": lambda: fig10(results, out),
        }
        for name, draw in jobs.items():
            try:
                paths[name] = draw()
            except Exception as err:  # noqa: BLE001 - one broken figure must not lose the report
                plt.close("all")
                fig, ax = plt.subplots(figsize=(6, 2))
                _empty(ax, f"could not draw {name}: {type(err).__name__}: {err}")
                paths[name] = _save(fig, out / name)
    return paths
