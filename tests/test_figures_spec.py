"""The report's figure specs as data (paper/figures.yaml): the same eight files in the same order, the same
panels (task, models, metric, scales, labels, titles) and the same axes (legends, reference line, empty-panel
notes) as the hard-coded figures they replaced, pinned as literals taken once from the old figures.py on
hand-made tables; and a spec with an unknown key or kind rejected with the figure's file and the key."""

from __future__ import annotations

import fnmatch
import inspect
import math
import tomllib
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from lightning_implicit_paper import figures as F
from lightning_implicit_paper.paper_numbers import TEXT_NUMBERS
from lightning_implicit_paper.results import Results

from tests.conftest import edited_copy, hand_run

REPO = Path(__file__).resolve().parents[1]

# ---- what the hard-coded figures.py drew (generated once from it, on table() below) --------------------------
OLD_FILES = [
    "figure3_identity.png",
    "figure4_arithmetic.png",
    "figure5_rolling.png",
    "figure6_spiky.png",
    "figure7_earthquake.png",
    "figure8_depth.png",
    "figure9_feedback_A.png",
    "figure10_feedback.png",
]

OLD_PANEL_CALLS = [
    (
        "identity",
        ["implicit", "mlp", "encdec", "lstm"],
        "mse",
        False,
        True,
        "test MSE (log scale)",
        "Identity function (Figure 3)",
        "shift kappa",
    ),
    (
        "addition",
        ["implicit", "mlp", "nalu", "seq_encoder", "depth_encoder"],
        "mse",
        True,
        True,
        "test MSE (log scale)",
        "Addition (Figure 4)",
        "shift kappa",
    ),
    (
        "subtraction",
        ["implicit", "mlp"],
        "mse",
        True,
        True,
        "test MSE (log scale)",
        "Subtraction (Figure 4)",
        "shift kappa",
    ),
    (
        "rolling_average",
        ["implicit", "lstm"],
        "mse",
        False,
        True,
        "test MSE (log scale)",
        "Rolling average (Figure 5, left)",
        "shift kappa",
    ),
    (
        "rolling_argmax",
        ["implicit", "implicit_rnn", "lstm", "encdec_nope"],
        "accuracy",
        True,
        False,
        "test accuracy (last step)",
        "Rolling argmax (Figure 5, right)",
        "shift kappa",
    ),
    (
        "earthquake",
        ["implicit", "eikonet"],
        "mse",
        False,
        True,
        "standardised test MSE",
        "Figure 7, left",
        "extrapolation region k",
    ),
    (
        "earthquake",
        ["implicit", "eikonet"],
        "lon_wrapped_mae_deg",
        False,
        False,
        "longitude MAE (deg, wrapped)",
        "Figure 7, right",
        "extrapolation region k",
    ),
    (
        "earthquake",
        ["implicit", "eikonet"],
        "lat_mae_deg",
        False,
        False,
        "latitude MAE (deg)",
        "Figure 7, right",
        "extrapolation region k",
    ),
    (
        "earthquake",
        ["implicit", "eikonet"],
        "depth_mae_km",
        False,
        False,
        "depth MAE (km)",
        "Figure 7, right",
        "extrapolation region k",
    ),
    (
        "earthquake",
        ["implicit", "eikonet"],
        "time_mae_s",
        False,
        False,
        "origin time MAE (s)",
        "Figure 7, right",
        "extrapolation region k",
    ),
    (
        "addition",
        ["implicit", "implicit_nofeedback"],
        "mse",
        True,
        True,
        "test mse (log scale)",
        "addition (Figure 10)",
        "shift kappa",
    ),
    (
        "subtraction",
        ["implicit", "implicit_nofeedback"],
        "mse",
        True,
        True,
        "test mse (log scale)",
        "subtraction (Figure 10)",
        "shift kappa",
    ),
    (
        "rolling_argmax",
        ["implicit", "implicit_nofeedback"],
        "accuracy",
        True,
        False,
        "test accuracy",
        "rolling_argmax (Figure 10)",
        "shift kappa",
    ),
    (
        "rolling_average",
        ["implicit", "implicit_nofeedback"],
        "mse",
        False,
        True,
        "test mse (log scale)",
        "rolling_average (Figure 10)",
        "shift kappa",
    ),
]

OLD_AXES = {
    "figure3_identity.png": [
        "6.2 x 4.2",
        "Identity function (Figure 3) | shift kappa | test MSE (log scale) | linear/log | legend: Implicit (2 seeds); MLP (2 seeds); LSTM (2 seeds) | 3 lines, 0 images",
    ],
    "figure4_arithmetic.png": [
        "12 x 4.4",
        "Addition (Figure 4) | shift kappa | test MSE (log scale) | log/log | legend: Implicit (2 seeds); MLP (2 seeds); NALU (training diverged); Sequential encoder (2 seeds); Depth-wise encoder (2 seeds) | 5 lines, 0 images",
        "Subtraction (Figure 4) | shift kappa | test MSE (log scale) | log/log | legend: Implicit (2 seeds); MLP (2 seeds) | 2 lines, 0 images",
    ],
    "figure5_rolling.png": [
        "12 x 4.4",
        "Rolling average (Figure 5, left) | shift kappa | test MSE (log scale) | linear/log | legend: Implicit (2 seeds); LSTM (2 seeds) | 2 lines, 0 images",
        "Rolling argmax (Figure 5, right) | shift kappa | test accuracy (last step) | log/linear | legend: Implicit (2 seeds); ImplicitRNN (2 seeds); LSTM (2 seeds); 1 - 1/L (teacher-forced enc-dec) | 4 lines, 0 images | ylim -0.02..1.02",
    ],
    "figure6_spiky.png": [
        "10 x 5.8",
        "ImplicitRNN (seed 0) |  |  | linear/linear | no legend | 0 lines, 1 images",
        " |  |  | linear/linear | no legend | text: LSTM: forecast figure not logged | 0 lines, 0 images",
    ],
    "figure7_earthquake.png": [
        "21 x 4",
        "Figure 7, left | extrapolation region k | standardised test MSE | linear/log | legend: Implicit (2 seeds); EikoNet (2 seeds) | 2 lines, 0 images",
        "Figure 7, right |  |  | linear/linear | no legend | text: earthquake: no usable runs | 0 lines, 0 images",
        "Figure 7, right |  |  | linear/linear | no legend | text: earthquake: no usable runs | 0 lines, 0 images",
        "Figure 7, right | extrapolation region k | depth MAE (km) | linear/linear | legend: Implicit (2 seeds) | 1 lines, 0 images",
        "Figure 7, right |  |  | linear/linear | no legend | text: earthquake: no usable runs | 0 lines, 0 images",
    ],
    "figure8_depth.png": [
        "17 x 4.4",
        "Figure 8, left: iterations during training (implicit) | training step | mean forward iterations per sample | linear/linear | legend: addition (2 seeds); rolling_argmax (2 seeds) | 2 lines, 0 images",
        "Figure 8, middle: arithmetic | shift kappa | forward iterations per sample | log/linear | legend: Implicit addition (2 seeds); Implicit addition, rel. tolerance; Implicit subtraction (2 seeds) | 4 lines, 0 images",
        "Figure 8, right: rolling argmax | shift kappa | forward iterations per sample | log/linear | legend: Implicit (2 seeds); Implicit, abs. tolerance; ImplicitRNN rolling_argmax (2 seeds) | 3 lines, 0 images",
    ],
    "figure9_feedback_A.png": [
        "11 x 4.8",
        "Implicit (seed 0): 4x4, feedback share of |A| = 74% | state j (input of the iteration) | state i (output) | linear/linear | no legend | 1 lines, 1 images",
        "Implicit (no feedback) (seed 0): 4x4, feedback share of |A| = 0% | state j (input of the iteration) | state i (output) | linear/linear | no legend | 1 lines, 1 images",
        " |  |  | linear/linear | no legend | 0 lines, 0 images | ylim -10..10",
        " |  |  | linear/linear | no legend | 0 lines, 0 images | ylim -6..6",
    ],
    "figure10_feedback.png": [
        "20 x 4.2",
        "addition (Figure 10) | shift kappa | test mse (log scale) | log/log | legend: Implicit (2 seeds); Implicit (no feedback) (2 seeds) | 2 lines, 0 images",
        "subtraction (Figure 10) | shift kappa | test mse (log scale) | log/log | legend: Implicit (2 seeds) | 1 lines, 0 images",
        "rolling_argmax (Figure 10) | shift kappa | test accuracy | log/linear | legend: Implicit (2 seeds); Implicit (no feedback) (2 seeds) | 2 lines, 0 images",
        "rolling_average (Figure 10) | shift kappa | test mse (log scale) | linear/log | legend: Implicit (2 seeds); Implicit (no feedback) (2 seeds) | 2 lines, 0 images",
    ],
}

OLD_AXES_WITHOUT_RUNS = {
    "figure3_identity.png": [
        "6.2 x 4.2",
        "Identity function (Figure 3) |  |  | linear/linear | no legend | text: identity: not run in this profile | 0 lines, 0 images",
    ],
    "figure4_arithmetic.png": [
        "12 x 4.4",
        "Addition (Figure 4) |  |  | linear/linear | no legend | text: addition: not run in this profile | 0 lines, 0 images",
        "Subtraction (Figure 4) |  |  | linear/linear | no legend | text: subtraction: not run in this profile | 0 lines, 0 images",
    ],
    "figure5_rolling.png": [
        "12 x 4.4",
        "Rolling average (Figure 5, left) |  |  | linear/linear | no legend | text: rolling_average: not run in this profile | 0 lines, 0 images",
        "Rolling argmax (Figure 5, right) |  |  | linear/linear | no legend | text: rolling_argmax: not run in this profile | 0 lines, 0 images",
    ],
    "figure6_spiky.png": [
        "10 x 2.9",
        " |  |  | linear/linear | no legend | text: spiky: not run in this profile | 0 lines, 0 images",
    ],
    "figure7_earthquake.png": [
        "21 x 4",
        "Figure 7, left |  |  | linear/linear | no legend | text: earthquake: not run in this profile | 0 lines, 0 images",
        "Figure 7, right |  |  | linear/linear | no legend | text: earthquake: not run in this profile | 0 lines, 0 images",
        "Figure 7, right |  |  | linear/linear | no legend | text: earthquake: not run in this profile | 0 lines, 0 images",
        "Figure 7, right |  |  | linear/linear | no legend | text: earthquake: not run in this profile | 0 lines, 0 images",
        "Figure 7, right |  |  | linear/linear | no legend | text: earthquake: not run in this profile | 0 lines, 0 images",
    ],
    "figure8_depth.png": [
        "17 x 4.4",
        " |  |  | linear/linear | no legend | text: no implicit runs of addition, subtraction or rolling argmax | 0 lines, 0 images",
        "Figure 8, middle: arithmetic |  |  | linear/linear | no legend | text: addition / subtraction: no implicit runs | 0 lines, 0 images",
        "Figure 8, right: rolling argmax |  |  | linear/linear | no legend | text: rolling_argmax: no implicit runs | 0 lines, 0 images",
    ],
    "figure9_feedback_A.png": [
        "11 x 4.8",
        " |  |  | linear/linear | no legend | text: addition / Implicit: no run with a logged A | 0 lines, 0 images",
        " |  |  | linear/linear | no legend | text: addition / Implicit (no feedback): no run with a logged A | 0 lines, 0 images",
    ],
    "figure10_feedback.png": [
        "20 x 4.2",
        "addition (Figure 10) |  |  | linear/linear | no legend | text: addition: not run in this profile | 0 lines, 0 images",
        "subtraction (Figure 10) |  |  | linear/linear | no legend | text: subtraction: not run in this profile | 0 lines, 0 images",
        "rolling_argmax (Figure 10) |  |  | linear/linear | no legend | text: rolling_argmax: not run in this profile | 0 lines, 0 images",
        "rolling_average (Figure 10) |  |  | linear/linear | no legend | text: rolling_average: not run in this profile | 0 lines, 0 images",
    ],
}

OLD_FIGURES = {
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
        "Earthquake: standardised test MSE and per-label MAE vs region k (k = 0: in-distribution test split).",
    ),
    "figure8_depth.png": (
        "Figure 8",
        "Depth adaptability: solver iterations during training, and per-sample iterations vs kappa with the sweep's stopping tolerance (mean, band over seeds; dotted: 95th percentile) and with the other tolerance (dash-dot).",
    ),
    "figure9_feedback_A.png": (
        "Figure 9",
        "Learned A of the implicit model with and without feedback (addition, first seed); the feedback weights are the lower triangle and diagonal.",
    ),
    "figure10_feedback.png": (
        "Figure 10",
        "Feedback ablation across shifts: implicit vs implicit without feedback.",
    ),
}


# ---- a hand-made table and a stand-in for MLflow ----------------------------------------------------------------
def _record(task, model, seed, metrics: dict[str, dict], outcome="ok"):
    return hand_run(task, model, seed, metrics, outcome, run_id=f"{task}-{model}-{seed}")


def _sweep(shifts, f):
    return {k: f(k) for k in shifts}


def table() -> Results:
    """Every figure's tasks, two seeds: a model outside Table 4 (identity LSTM), failed and diverged runs, an
    all-NaN model, metrics missing for some panels (earthquake) and the other stopping tolerances."""
    return Results([r for seed in (0, 1) for r in _records_of_seed(seed)])


def _records_of_seed(seed: int) -> list:
    recs = []
    noise = 1 + 0.1 * seed

    def add(task, model, outcome="ok", **metrics):
        recs.append(_record(task, model, seed, metrics, outcome))

    ident = (0, 10, 25, 80)
    add("identity", "implicit", mse=_sweep(ident, lambda k: 0.1 * noise * (1 + k)))
    add("identity", "mlp", mse=_sweep(ident, lambda k: 10 * noise * (1 + k)))
    add("identity", "encdec", outcome="failed")
    add("identity", "lstm", mse=_sweep(ident, lambda k: 5 * noise * (1 + k)))
    arith = (10, 100, 1000)
    add(
        "addition",
        "implicit",
        mse=_sweep(arith, lambda k: 0.01 * noise * k),
        iters_mean=_sweep(arith, lambda k: 10 + k / 50),
        iters_p95=_sweep(arith, lambda k: 20 + k / 40),
        iters_mean_rel=_sweep(arith, lambda k: 12.0),
    )
    add("addition", "implicit_nofeedback", mse=_sweep(arith, lambda k: 0.1 * noise * k))
    add("addition", "mlp", mse=_sweep(arith, lambda k: noise * k))
    add("addition", "nalu", outcome="diverged")
    add("addition", "seq_encoder", mse=_sweep(arith, lambda k: 2 * noise * k))
    add("addition", "depth_encoder", mse=_sweep(arith, lambda k: 3 * noise * k))
    add(
        "subtraction",
        "implicit",
        mse=_sweep(arith, lambda k: 0.02 * noise * k),
        iters_mean=_sweep(arith, lambda k: 20 + k / 50),
    )
    add("subtraction", "mlp", mse=_sweep(arith, lambda k: 2 * noise * k))
    avg = (5, 20, 100)
    add("rolling_average", "implicit", mse=_sweep(avg, lambda k: 1e-4 * noise * k))
    add("rolling_average", "implicit_nofeedback", mse=_sweep(avg, lambda k: 1e-3 * noise * k))
    add("rolling_average", "lstm", mse=_sweep(avg, lambda k: 0.01 * noise * k**2))
    amax = (10, 100, 1e5)
    add(
        "rolling_argmax",
        "implicit",
        accuracy=_sweep(amax, lambda k: 0.95 - 0.01 * seed),
        iters_mean=_sweep(amax, lambda k: 100 + math.log10(k) * 20),
        iters_mean_abs=_sweep(amax, lambda k: 100 + math.log10(k) * 10),
    )
    add(
        "rolling_argmax",
        "implicit_rnn",
        accuracy=_sweep(amax, lambda k: 0.97),
        iters_mean=_sweep(amax, lambda k: 50 + math.log10(k)),
    )
    add("rolling_argmax", "implicit_nofeedback", accuracy=_sweep(amax, lambda k: 0.9))
    add("rolling_argmax", "lstm", accuracy=_sweep(amax, lambda k: 0.8 * noise))
    add("rolling_argmax", "encdec_nope", accuracy=_sweep(amax, lambda k: math.nan))
    add("spiky", "implicit_rnn", mse={1: 0.003 * noise})
    add("spiky", "lstm", mse={1: 0.011})
    quake = (0, 1, 2, 3)
    add(
        "earthquake",
        "implicit",
        mse=_sweep(quake, lambda k: 1.0 + 0.1 * k * noise),
        depth_mae_km=_sweep(quake, lambda k: 20.0 + k),
    )
    add("earthquake", "eikonet", mse=_sweep(quake, lambda k: 1.2 + 0.2 * k))
    return recs


class FakeClient:
    """What draw_all asks MLflow for: the spiky forecast image (ImplicitRNN only), the learned A (addition), the
    training iterations' history (addition and rolling argmax implicit runs)."""

    def download_artifacts(self, run_id, path, dst):
        if path == "figures/spiky_forecast.png" and run_id.startswith("spiky-implicit_rnn-"):
            out = f"{dst}/spiky_forecast.png"
            plt.imsave(out, np.linspace(0, 1, 48).reshape(6, 8))
            return out
        if path == "weights/A.npy" and run_id.startswith("addition-implicit"):
            A = np.arange(16.0).reshape(4, 4) - 5
            out = f"{dst}/A.npy"
            np.save(out, np.triu(A, 1) if "nofeedback" in run_id else A)
            return out
        raise FileNotFoundError(path)

    def get_metric_history(self, run_id, key):
        if key != "train/iters_mean" or not run_id.startswith(
            ("addition-implicit-", "rolling_argmax-implicit-")
        ):
            return []
        seed = int(run_id.rsplit("-", 1)[1])
        return [SimpleNamespace(step=s, value=10.0 + s / 20 + seed) for s in range(0, 400, 2)]


def _axes_summary(fig) -> list[str]:
    """The figure's size, then one line per axes: title | x label | y label | scales | legend | texts | artists."""
    w, h = (round(float(x), 2) for x in fig.get_size_inches())
    out = [f"{w:g} x {h:g}"]
    for ax in fig.axes:
        leg = ax.get_legend()
        parts = [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), f"{ax.get_xscale()}/{ax.get_yscale()}"]
        parts.append("legend: " + "; ".join(t.get_text() for t in leg.get_texts()) if leg else "no legend")
        parts += [f"text: {t.get_text()}" for t in ax.texts]
        parts.append(f"{len(ax.lines)} lines, {len(ax.images)} images")
        if not ax.get_autoscaley_on():
            parts.append("ylim {:g}..{:g}".format(*ax.get_ylim()))
        out.append(" | ".join(parts))
    return out


@pytest.fixture
def spy(monkeypatch):
    """Records every ``_panel`` call (arguments bound, defaults applied) and every saved figure's axes."""
    panels: list[tuple] = []
    saved: dict[str, list[str]] = {}
    real_panel, real_save = F._panel, F._save
    sig = inspect.signature(real_panel)

    def panel(*args, **kwargs):
        b = sig.bind(*args, **kwargs)
        b.apply_defaults()
        a = b.arguments
        assert a["legend"] is None  # no figure of figures.yaml sets its own legend
        panels.append(
            (
                a["task"],
                list(a["models"]),
                a["metric"],
                a["logx"],
                a["logy"],
                a["ylabel"],
                a["title"],
                a["xlabel"],
            )
        )
        return real_panel(*args, **kwargs)

    def save(fig, path):
        saved[path.name] = _axes_summary(fig)
        return real_save(fig, path)

    monkeypatch.setattr(F, "_panel", panel)
    monkeypatch.setattr(F, "_save", save)
    return SimpleNamespace(panels=panels, saved=saved)


# ---- the spec ---------------------------------------------------------------------------------------------------
def test_the_spec_names_the_eight_figures_in_order_with_their_titles_and_captions():
    specs = F.load_figures()
    assert [f.file for f in specs] == OLD_FILES
    assert F.FIGURES == OLD_FIGURES and list(F.FIGURES) == OLD_FILES
    assert [f.kind for f in specs] == [None, None, None, "forecast_images", None, None, None, None]
    # the reference line's value is numbers.yaml's, read and not copied
    ref = specs[2].panels[1].params["reference"]
    assert ref["value"] == TEXT_NUMBERS["fig5_encdec_expected_accuracy"]["value"]
    assert "fig5_encdec_expected_accuracy" in F.FIGURES_FILE.read_text(encoding="utf-8")


def test_figures_file_ships_with_the_package():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch.fnmatch("figures.yaml", p) for p in patterns["lightning_implicit_paper"])
    assert F.FIGURES_FILE.parent == Path(F.__file__).parent


# ---- the drawing ------------------------------------------------------------------------------------------------
def _drawn(paths: dict, out: Path) -> None:
    assert list(paths) == OLD_FILES
    for name, path in paths.items():
        assert path == out / name and path.stat().st_size > 1000, name


def test_draw_all_draws_what_the_hard_coded_figures_drew(tmp_path, spy):
    _drawn(F.draw_all(table(), tmp_path, FakeClient()), tmp_path)
    assert spy.panels == OLD_PANEL_CALLS
    assert spy.saved == OLD_AXES


def test_draw_all_without_runs_says_so_in_every_panel(tmp_path, spy):
    _drawn(F.draw_all(Results([]), tmp_path), tmp_path)
    # table4 panels list the Table 4 models that were run (none); Figure 10's explicit list stays
    feedback = ["implicit", "implicit_nofeedback"]
    assert spy.panels == [(c[0], c[1] if c[1] == feedback else [], *c[2:]) for c in OLD_PANEL_CALLS]
    assert spy.saved == OLD_AXES_WITHOUT_RUNS


def test_a_failing_figure_is_drawn_as_an_error_panel(tmp_path, spy, monkeypatch):
    def boom(ax, ctx, **params):
        raise RuntimeError("boom")

    monkeypatch.setitem(F.PANEL_KINDS, "learned_A", boom)
    _drawn(F.draw_all(Results([]), tmp_path), tmp_path)
    assert spy.saved["figure9_feedback_A.png"] == [
        "6 x 2",
        " |  |  | linear/linear | no legend | text: could not draw figure9_feedback_A.png: RuntimeError: boom"
        " | 0 lines, 0 images",
    ]
    assert spy.saved["figure10_feedback.png"] == OLD_AXES_WITHOUT_RUNS["figure10_feedback.png"]


# ---- errors -----------------------------------------------------------------------------------------------------
def _edited(tmp_path, old: str, new: str) -> Path:
    return edited_copy(F.FIGURES_FILE, tmp_path, old, new)


@pytest.mark.parametrize(
    "old, new, where, named",
    [
        (
            "    title: Identity function (Figure 3)",
            "    titel: Identity function (Figure 3)",
            "figure3_identity.png, panel 1",
            "'titel'",
        ),
        (
            "  size: [12, 4.4]\n  defaults: {models",
            "  sise: [12, 4.4]\n  defaults: {models",
            "figure4_arithmetic.png",
            "'sise'",
        ),
        (
            "    ylim: [-0.02, 1.02]",
            "    ylimits: [-0.02, 1.02]",
            "figure5_rolling.png, panel 2",
            "'ylimits'",
        ),
        ("kind: forecast_images", "kind: forecast_imgs", "figure6_spiky.png", "'forecast_imgs'"),
        ("  row_height: 2.9", "  row_hight: 2.9", "figure6_spiky.png", "'row_hight'"),
        (
            "xlabel: extrapolation region k,",
            "x_label: extrapolation region k,",
            "figure7_earthquake.png, panel 1",
            "'x_label' (from the figure's defaults)",
        ),
        (
            "  - kind: iterations_vs_shift\n    tasks: [rolling_argmax]",
            "  - kind: iteration_vs_shift\n    tasks: [rolling_argmax]",
            "figure8_depth.png, panel 3",
            "'iteration_vs_shift'",
        ),
        ("    kind: learned_A", "    kind: learned_a", "figure9_feedback_A.png, panel 1", "'learned_a'"),
        (
            "{text_number: fig5_encdec_expected_accuracy}",
            "{text_number: fig5_encdec_accuracy}",
            "figure5_rolling.png, panel 2",
            "'fig5_encdec_accuracy'",
        ),
        (
            "  defaults: {task: earthquake, models: table4,",
            "  defaults: {task: earthquake, models: table5,",
            "figure7_earthquake.png, panel 1",
            "'table5'",
        ),
    ],
)
def test_a_typo_in_the_figures_file_names_the_figure_and_the_key(tmp_path, old, new, where, named):
    with pytest.raises(F.FigureSpecError) as err:
        F.load_figures(_edited(tmp_path, old, new))
    assert str(err.value).startswith(f"figure {where}:") and named in str(err.value), str(err.value)


def test_a_missing_key_and_a_repeated_file_are_errors(tmp_path):
    with pytest.raises(
        F.FigureSpecError, match=r"figure figure3_identity.png, panel 1: a shift panel needs the key 'metric'"
    ):
        F.load_figures(
            _edited(
                tmp_path,
                "    metric: mse\n    logx: false\n    logy: true\n    ylabel: test MSE (log scale)\n    title: Identity",
                "    logx: false\n    logy: true\n    ylabel: test MSE (log scale)\n    title: Identity",
            )
        )
    with pytest.raises(F.FigureSpecError, match="figure figure3_identity.png: the file name is used twice"):
        F.load_figures(_edited(tmp_path, "- file: figure4_arithmetic.png", "- file: figure3_identity.png"))
    with pytest.raises(F.FigureSpecError, match="expected one top-level key 'figures'"):
        F.load_figures(_edited(tmp_path, "figures:\n- file: figure3", "figure:\n- file: figure3"))


def test_a_task_gets_its_report_section_from_a_panel_in_figures_yaml(tmp_path, monkeypatch):
    """report.py names no task: a task added as a panel of Figure 4 (with a model list, no Table 4 models in
    numbers.yaml) gets its per-shift table in the Figure 4 section; the section's existing tasks keep theirs."""
    from lightning_implicit_paper import report
    from lightning_implicit_paper.profile import load_profile

    path = _edited(
        tmp_path,
        "  - {task: subtraction, title: Subtraction (Figure 4)}\n",
        "  - {task: subtraction, title: Subtraction (Figure 4)}\n"
        "  - {task: maximum, models: [implicit, mlp], metric: mae, title: Maximum}\n",
    )
    specs = tuple(F.load_figures(path))
    monkeypatch.setattr(F, "_shipped_figures", lambda: specs)
    assert F.figure_spec("figure4_arithmetic.png").tasks() == ["addition", "subtraction", "maximum"]
    assert F.figure_spec("figure4_arithmetic.png").metrics("maximum") == ["mae"]
    recs = [
        _record(task, model, seed, {metric: {10: 1.0 + seed, 100: 2.0 + seed}})
        for task, metric in (("addition", "mse"), ("maximum", "mae"))
        for model in ("implicit", "mlp")
        for seed in (0, 1)
    ]
    md, _ = report.build_report(Results(recs), load_profile("quick"), tmp_path / "out", amc_skip="no data")
    text = md.read_text()
    fig4 = text.split('<a id="figure-4">', 1)[1].split('<a id="figure-5">', 1)[0]
    assert "maximum: test mae per shift" in fig4 and "addition: test mse per shift" in fig4
    assert "subtraction: test mse per shift" not in fig4  # not run: no table
    maximum = fig4.split("maximum: test mae per shift", 1)[1].split("</details>", 1)[0]
    assert "| shift | Implicit | MLP |" in maximum and "| 100 | 2.5 ± 0.71" in maximum
