"""One PNG per paper figure (3-10), drawn from the runs in MLflow, with the paper's axes and log scales.

What each figure shows is data: ``figures.yaml`` beside this module lists, per PNG in the report's order, its
title, caption, size and panels -- each panel a kind of :data:`PANEL_KINDS` (``shift``: a metric against the
shift for a task's models, with its scales, labels, title and optional reference line; and the special drawings
of Figures 8 and 9), or a whole-figure kind of :data:`FIGURE_KINDS` (Figure 6's forecast images) -- with the
kind's parameters. The paper's numbers are read from ``numbers.yaml`` (``{text_number: KEY}``), never copied.
:func:`load_figures` rejects an unknown key or kind with a :class:`FigureSpecError` naming the figure file and
the key; the drawing (the helpers and kinds below) stays code.

Curves are the mean over seeds; the shaded band spans the minimum to the maximum over seeds. A run whose
training diverged has no curve (its legend entry says so). Panels whose task was not run say so instead of
being left out, so every figure exists for every profile.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from jsonargparse.typing import PositiveFloat

from lightning_implicit import configfile
from lightning_implicit.validate import ConfigError

from .paper_numbers import TABLE4_MODELS, label, read_entries, resolve_numbers
from .results import Results, download_artifact, metric_history

__all__ = [
    "draw_all",
    "FIGURES",
    "FIGURES_FILE",
    "FIGURE_KINDS",
    "PANEL_KINDS",
    "Figure",
    "FigureSpecError",
    "Panel",
    "figure_spec",
    "load_figures",
]

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
_LEGEND = {"fontsize": 7, "loc": "best"}


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
    legend: dict | None = None,
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
    ax.legend(**(legend or _LEGEND))


def _models(results: Results, task: str, base) -> list[str]:
    extra = [m for m in results.models(task) if m not in base and m != "implicit_nofeedback"]
    return [m for m in base if results.runs(task, m)] + extra


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- the kinds of panel and figure that figures.yaml names ------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    results: Results
    client: object
    tmp: Path


def _resolve_models(results: Results, task: str, models, extra: bool) -> list[str]:
    """``table4``: the task's Table 4 models (``extra``: those that were run, then any other model run for the
    task but the no-feedback ablation); a list: as it is."""
    if models != TABLE4:
        return list(models)
    return _models(results, task, TABLE4_MODELS[task]) if extra else list(TABLE4_MODELS[task])


def shift_panel(
    ax,
    ctx: _Context,
    *,
    task: str,
    models,
    metric: str,
    logx: bool,
    logy: bool,
    ylabel: str,
    title: str,
    xlabel: str = "shift kappa",
    reference: dict | None = None,
    ylim: list | None = None,
    legend: dict | None = None,
) -> None:
    """A metric against the shift for a task's models; a reference line and y-limits when the task was run."""
    results = ctx.results
    _panel(
        ax,
        results,
        task,
        _resolve_models(results, task, models, extra=True),
        metric,
        logx=logx,
        logy=logy,
        ylabel=ylabel,
        title=title,
        xlabel=xlabel,
        legend=legend,
    )
    if task not in results.tasks():
        return
    if reference is not None:
        ax.axhline(reference["value"], ls="--", c="k", lw=0.8, label=reference["label"])
    if ylim is not None:
        ax.set_ylim(*ylim)
    if reference is not None:
        ax.legend(**(legend or _LEGEND))


def training_iterations(
    ax,
    ctx: _Context,
    *,
    model: str,
    metric: str,
    tasks: list,
    styles: list,
    xlabel: str,
    ylabel: str,
    title: str,
    empty: str,
) -> None:
    """A metric's history during training (smoothed over ~1% of training), one curve per task."""
    drawn = False
    for task, style in zip(tasks, styles, strict=True):
        curves = []
        for rec in ctx.results.runs(task, model):
            if rec.usable and ctx.client is not None:
                h = metric_history(ctx.client, rec.run_id, metric)
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
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7)
    else:
        _empty(ax, empty)


def iterations_vs_shift(
    ax,
    ctx: _Context,
    *,
    tasks: list,
    models: list,
    xlabel: str,
    ylabel: str,
    title: str,
    styles: dict | None = None,
) -> None:
    """Solver iterations per sample vs the shift: the sweep's tolerance (mean, band; dotted: 95th percentile)
    and the other stopping tolerances (dash-dot)."""
    results = ctx.results
    drawn = False
    for task in tasks:
        for model in models:
            if not any(r.usable for r in results.runs(task, model)):
                continue
            name = f"{label(model)} {task}" if len(tasks) > 1 or model != "implicit" else f"{label(model)}"
            drawn |= _band(
                ax, results, task, model, "iters_mean", name=name, style=(styles or {}).get(task, "-")
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
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    else:
        _empty(ax, f"{' / '.join(tasks)}: no implicit runs")
        ax.set_title(title)


def learned_A(ax, ctx: _Context, *, task: str, model: str, artifact: str, xlabel: str, ylabel: str) -> None:
    """The heatmap of the learned A logged by the model's first usable run (feedback: on and below the diagonal)."""
    rec = next((r for r in ctx.results.runs(task, model) if r.usable), None)
    path = (
        download_artifact(ctx.client, rec.run_id, artifact, ctx.tmp / f"A-{task}-{model}")
        if (rec and ctx.client)
        else None
    )
    if path is None:
        _empty(ax, f"{task} / {label(model)}: no run with a logged A")
        return
    A = np.load(path)
    lim = float(np.abs(A).max()) or 1.0
    im = ax.imshow(A, cmap="RdBu_r", vmin=-lim, vmax=lim)
    n = A.shape[0]
    ax.plot([-0.5, n - 0.5], [-0.5, n - 0.5], "k-", lw=0.8)  # the diagonal: on and below it = feedback
    fb = np.abs(np.tril(A)).sum() / max(np.abs(A).sum(), 1e-12)
    ax.set_title(f"{label(model)} (seed {rec.seed}): {n}x{n}, feedback share of |A| = {fb:.0%}", fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)


def forecast_images(
    ctx: _Context, *, task: str, models, artifact: str, width: float, row_height: float
) -> plt.Figure:
    """One row per model with a usable run: the image its first usable run logged (``table4``: the task's
    Table 4 models)."""
    results = ctx.results
    models = [
        m
        for m in _resolve_models(results, task, models, extra=False)
        if any(r.usable for r in results.runs(task, m))
    ]
    rows = max(1, len(models))
    fig, axes = plt.subplots(rows, 1, figsize=(width, row_height * rows), squeeze=False)
    if not models:
        _empty(
            axes[0][0],
            f"{task}: not run in this profile" if task not in results.tasks() else "no usable runs",
        )
    for ax, m in zip(axes[:, 0], models, strict=False):
        rec = next(r for r in results.runs(task, m) if r.usable)
        img = (
            download_artifact(ctx.client, rec.run_id, artifact, ctx.tmp / f"{task}-{m}")
            if ctx.client
            else None
        )
        if img is None:
            _empty(ax, f"{label(m)}: forecast figure not logged")
            continue
        ax.imshow(plt.imread(img))
        ax.set_axis_off()
        ax.set_title(f"{label(m)} (seed {rec.seed})", fontsize=10)
    return fig


PANEL_KINDS: dict[str, Callable[..., None]] = {
    "shift": shift_panel,
    "training_iterations": training_iterations,
    "iterations_vs_shift": iterations_vs_shift,
    "learned_A": learned_A,
}
FIGURE_KINDS: dict[str, Callable[..., object]] = {
    "forecast_images": forecast_images,
}


# ---- reading figures.yaml ---------------------------------------------------------------------------------------
FIGURES_FILE = Path(__file__).with_name("figures.yaml")
# every figure has FIGURE_KEYS, then either PANELS_KEYS or a kind of FIGURE_KINDS and that kind's keys
FIGURE_KEYS = ("file", "title", "caption")
PANELS_KEYS = ("size", "panels", "defaults", "report_tasks")
DEFAULT_PANEL_KIND = "shift"
TABLE4 = "table4"


FIX = "the keys are described at the head of paper/figures.yaml"


@dataclass
class PanelsEntry:
    """A figure of panels as written: its texts, its size in inches, its panels (each a mapping: a panel kind
    and its keys, checked by :func:`_parse_panel`) and the keys every panel gets."""

    file: str
    title: str
    caption: str
    size: tuple[PositiveFloat, PositiveFloat]
    panels: list[dict]
    defaults: dict = field(default_factory=dict)
    report_tasks: list[str] | None = None  # the tasks the report's section tabulates (default: the panels')


class FigureSpecError(ConfigError):
    """``figures.yaml`` names an unknown key, kind, model set or paper number (the message names the figure)."""


@dataclass(frozen=True)
class Panel:
    kind: str
    params: dict  # the kind's keyword arguments, paper numbers resolved


@dataclass(frozen=True)
class Figure:
    file: str
    title: str
    caption: str
    size: tuple[float, float] | None = None  # panel figures
    panels: tuple[Panel, ...] = ()
    kind: str | None = None  # whole-figure kinds
    params: dict = field(default_factory=dict)
    report_tasks: tuple[str, ...] = ()  # figures.yaml's report_tasks (empty: the tasks of the panels)

    def tasks(self) -> list[str]:
        """The tasks the figure shows, in order: those of its panels (``task``, ``tasks``) or of its kind."""
        specs = [p.params for p in self.panels] or [self.params]
        return list(dict.fromkeys(t for sp in specs for t in (sp.get("tasks") or [sp.get("task")]) if t))

    def metrics(self, task: str) -> list[str]:
        """The metrics of the figure's ``shift`` panels of ``task``, in order."""
        return list(
            dict.fromkeys(
                p.params["metric"] for p in self.panels if p.kind == "shift" and p.params.get("task") == task
            )
        )


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _params(where: str, what: str, fn: Callable, spec: dict, from_defaults=(), keys=("kind",)) -> dict:
    """``spec`` checked against the keyword-only parameters of ``fn`` (``what``: e.g. "a shift panel"; ``keys``:
    the keys it takes besides them)."""
    allowed = {n: p for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}
    for key in spec:
        if key not in allowed:
            origin = " (from the figure's defaults)" if key in from_defaults else ""
            raise FigureSpecError(
                f"{where}: unknown key {key!r}{origin} ({what} takes: {', '.join((*keys, *allowed))})"
            )
    for key, p in allowed.items():
        if p.default is p.empty and key not in spec:
            raise FigureSpecError(f"{where}: {what} needs the key {key!r}")
    params = {k: resolve_numbers(v, where, FigureSpecError) for k, v in spec.items()}
    models = params.get("models")
    if isinstance(models, str):
        if models != TABLE4:
            raise FigureSpecError(
                f"{where}: unknown model set {models!r} in key 'models' (a list or {TABLE4!r})"
            )
        if params.get("task") not in TABLE4_MODELS:
            raise FigureSpecError(
                f"{where}: task {params.get('task')!r} has no Table 4 models in numbers.yaml"
            )
    elif "models" in params and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
        raise FigureSpecError(f"{where}: key 'models' must be a list of model names or {TABLE4!r}")
    ref = params.get("reference")
    if ref is not None and not (
        isinstance(ref, dict) and set(ref) == {"value", "label"} and _is_number(ref["value"])
    ):
        raise FigureSpecError(f"{where}: key 'reference' must be {{value: a number, label: a text}}")
    ylim = params.get("ylim")
    if ylim is not None and not (isinstance(ylim, list) and len(ylim) == 2 and all(map(_is_number, ylim))):
        raise FigureSpecError(f"{where}: key 'ylim' must be [low, high]")
    styles = params.get("styles")
    if isinstance(styles, list) and len(styles) != len(params.get("tasks") or []):
        raise FigureSpecError(f"{where}: key 'styles' must give one line style per task")
    if params.get("legend") is not None and not isinstance(params["legend"], dict):
        raise FigureSpecError(f"{where}: key 'legend' must be a mapping (keyword arguments of the legend)")
    return params


def _parse_panel(where: str, entry, defaults: dict) -> Panel:
    if not isinstance(entry, dict):
        raise FigureSpecError(f"{where}: expected a mapping (a panel's kind and its keys)")
    spec = {**defaults, **entry}
    kind = spec.pop("kind", DEFAULT_PANEL_KIND)
    if not isinstance(kind, str) or kind not in PANEL_KINDS:
        raise FigureSpecError(
            f"{where}: unknown panel kind {kind!r} in key 'kind' (known: {', '.join(PANEL_KINDS)})"
        )
    from_defaults = set(defaults) - set(entry)
    return Panel(kind, _params(where, f"a {kind} panel", PANEL_KINDS[kind], spec, from_defaults))


def _parse_figure(i: int, entry, seen: set[str]) -> Figure:
    name = str(entry.get("file", f"#{i + 1}")) if isinstance(entry, dict) else f"#{i + 1}"
    where = f"figure {name}"
    if not isinstance(entry, dict):
        raise FigureSpecError(f"{where}: expected a mapping with keys {', '.join(FIGURE_KEYS)}")
    for key in FIGURE_KEYS:
        if key not in entry:
            raise FigureSpecError(f"{where}: missing key {key!r}")
    if name in seen:
        raise FigureSpecError(f"{where}: the file name is used twice")
    if not name.endswith(".png") or "/" in name:
        raise FigureSpecError(f"{where}: key 'file' must be a PNG file name")
    texts = {k: str(entry[k]) for k in FIGURE_KEYS}
    rest = {k: v for k, v in entry.items() if k not in FIGURE_KEYS}
    if "kind" in rest:
        kind = rest.pop("kind")
        if not isinstance(kind, str) or kind not in FIGURE_KINDS:
            raise FigureSpecError(
                f"{where}: unknown figure kind {kind!r} in key 'kind' (known: {', '.join(FIGURE_KINDS)}; "
                f"or no kind and {', '.join(PANELS_KEYS)})"
            )
        return Figure(
            **texts,
            kind=kind,
            params=_params(where, f"a {kind} figure", FIGURE_KINDS[kind], rest, keys=(*FIGURE_KEYS, "kind")),
        )
    spec = configfile.parse(PanelsEntry, entry, path=where, error=FigureSpecError, fix=FIX)
    if not spec.panels:
        raise FigureSpecError(f"{where}: key 'panels' must be a non-empty list")
    panels = tuple(
        _parse_panel(f"{where}, panel {j + 1}", p, spec.defaults) for j, p in enumerate(spec.panels)
    )
    return Figure(
        **texts,
        size=(float(spec.size[0]), float(spec.size[1])),
        panels=panels,
        report_tasks=tuple(spec.report_tasks or ()),
    )


def load_figures(path: Path | str | None = None) -> list[Figure]:
    """The figures of ``figures.yaml`` (default: the one beside this module), in order, checked and with their
    numbers read from numbers.yaml; a :class:`FigureSpecError` names the figure file and the key it does not
    know."""
    if path is None:
        return list(_shipped_figures())
    out: list[Figure] = []
    for i, entry in enumerate(read_entries(path, "figures", FigureSpecError)):
        out.append(_parse_figure(i, entry, {f.file for f in out}))
    return out


@functools.cache
def _shipped_figures() -> tuple[Figure, ...]:
    return tuple(load_figures(FIGURES_FILE))


def figure_spec(file: str) -> Figure:
    """The figure ``file`` of the shipped figures.yaml (the report reads the tasks and metrics of its sections
    from it: :meth:`Figure.tasks`, :meth:`Figure.metrics`, ``report_tasks``)."""
    for spec in _shipped_figures():
        if spec.file == file:
            return spec
    raise KeyError(f"no figure {file!r} in {FIGURES_FILE}")


# file name -> (title, caption), in the report's order
FIGURES: dict[str, tuple[str, str]] = {f.file: (f.title, f.caption) for f in load_figures()}


def _draw(spec: Figure, ctx: _Context):
    if spec.kind is not None:
        return FIGURE_KINDS[spec.kind](ctx, **spec.params)
    fig, axes = plt.subplots(1, len(spec.panels), figsize=spec.size, squeeze=False)
    for ax, panel in zip(axes[0], spec.panels, strict=True):
        PANEL_KINDS[panel.kind](ax, ctx, **panel.params)
    return fig


def draw_all(results: Results, out: Path, client=None) -> dict[str, Path]:
    """Every figure of ``figures.yaml`` into ``out``; returns ``{file name: path}`` (a figure that fails is
    drawn as an error panel, not fatal)."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        ctx = _Context(results, client, Path(tmpdir))
        for spec in load_figures():
            name = spec.file
            try:
                paths[name] = _save(_draw(spec, ctx), out / name)
            except Exception as err:  # one broken figure must not lose the report
                plt.close("all")
                fig, ax = plt.subplots(figsize=(6, 2))
                _empty(ax, f"could not draw {name}: {type(err).__name__}: {err}")
                paths[name] = _save(fig, out / name)
    return paths
