"""The structural reading: which results on the rescaling and linear-target tasks follow from the model's structure.

The paper's implicit model has no bias and ReLU is positively homogeneous, so ``f(c u) = c f(u)`` for every
``c > 0``. On a task whose shifted test inputs are the training inputs rescaled (:data:`RESCALING_TASKS`:
identity, addition, subtraction, rolling argmax), such a model extrapolates by construction: its error at shift
``k`` is its in-distribution error rescaled, and the skip term ``D u`` alone represents every linear target. On a
task whose target is linear but whose shift translates the inputs (:data:`LINEAR_TARGET_TASKS`: rolling average)
homogeneity says nothing, but ``D u`` still represents the target exactly and an exact fit extrapolates to every
shift: the linear reference applies there, the rescaling diagnostic does not. Three diagnostics per task, all
computed from data the report makes itself:

* **rescaling** (:func:`rescaling`): predictions on ``c u`` against ``c f(u)`` (regression: equal within
  ``RTOL`` relative to the batch's output scale; classification: the same class) for ``c`` in :data:`SCALES`, on
  in-distribution inputs: the fraction of samples whose prediction is identical.
* **linear reference** (:func:`linear_reference`): least squares on the training data (with an intercept; no
  tuning), scored on every shift's test set like the sweep (MSE; accuracy of the one-hot least-squares
  classifier on the final step).
* **bias ablation**: the implicit model with bias terms (model ``implicit_bias``), trained by the profile on the
  implicit model's recipe; its sweep is in the report's tables.

:func:`substitute` puts a reference in the implicit model's place so that a claim can be evaluated again with
it (:func:`claims_with_references`): a claim that the linear reference satisfies as well follows from the
structure; one that it does not satisfy needs more than homogeneity.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .profile import BIAS_MODEL, LINEAR_TARGET_TASKS, RESCALING_TASKS
from .results import Results, RunRecord

__all__ = [
    "RESCALING_TASKS",
    "LINEAR_TARGET_TASKS",
    "STRUCTURE_TASKS",
    "SCALES",
    "RTOL",
    "LINEAR",
    "Rescaling",
    "rescaling",
    "linear_reference",
    "substitute",
    "claims_with_references",
    "structural_reading",
]

SCALES = (10.0, 1e3, 1e5)
RTOL = 1e-3
LINEAR = "linear_lstsq"  # the linear reference's model name in the report
STRUCTURE_TASKS = RESCALING_TASKS + LINEAR_TARGET_TASKS  # the tasks of the structural reading


@dataclass
class Rescaling:
    """``fractions``: ``{c: fraction of samples whose prediction on c u is identical}``; ``identical``: all 1."""

    fractions: dict[float, float]

    @property
    def identical(self) -> bool:
        return bool(self.fractions) and all(f == 1.0 for f in self.fractions.values())

    def text(self) -> str:
        if not self.fractions:
            return "n/a"
        head = "identical" if self.identical else "not identical"
        return f"{head} ({', '.join(f'c={c:g}: {100 * f:.1f}%' for c, f in self.fractions.items())})"


def rescaling(
    predict: Callable, u: np.ndarray, *, classification: bool, scales=SCALES, rtol: float = RTOL
) -> Rescaling:
    """How ``predict`` (``(batch, ...)`` float32 tensor -> ``(batch, q)`` outputs or logits) responds to its input
    rescaled: per ``c``, the fraction of samples of ``u (batch, ...)`` with ``predict(c u)`` identical to
    ``c predict(u)`` (regression: ``max|f(c u) - c f(u)| <= rtol * c * s`` per sample, ``s`` the batch's mean
    ``max|f(u)|``) or, for ``classification``, with the same predicted class."""
    import torch

    x = torch.as_tensor(np.asarray(u), dtype=torch.float32)
    with torch.no_grad():
        base = predict(x).reshape(len(x), -1).double()
        out = {}
        for c in scales:
            scaled = predict(x * c).reshape(len(x), -1).double()
            if classification:
                same = scaled.argmax(dim=1) == base.argmax(dim=1)
            else:
                s = float(base.abs().amax(dim=1).mean()) or 1.0
                same = (scaled - c * base).abs().amax(dim=1) <= rtol * c * s
            out[float(c)] = float(same.double().mean())
    return Rescaling(out)


def _design(x: np.ndarray) -> np.ndarray:
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return np.hstack([flat, np.ones((len(flat), 1))])


def linear_reference(
    x_train: np.ndarray, y_train: np.ndarray, tests, *, classification: bool, num_classes: int | None = None
) -> dict[object, float]:
    """Least squares on ``(x_train, y_train)`` (inputs flattened, an intercept; float64), scored on each test set
    (objects with ``shift``, ``x``, ``y``): ``{shift: MSE}`` over every output element, or for
    ``classification`` (class indices, the final step's when ``y`` has a time axis) ``{shift: accuracy}`` of
    the argmax of the least-squares fit to one-hot targets."""
    X = _design(x_train)
    if classification:
        labels = np.asarray(y_train).reshape(len(X), -1)[:, -1].astype(int)
        k = num_classes or int(labels.max()) + 1
        Y = np.eye(k)[labels]
    else:
        Y = np.asarray(y_train, dtype=np.float64).reshape(len(X), -1)
    W, *_ = np.linalg.lstsq(X, Y, rcond=None)
    out = {}
    for t in tests:
        pred = _design(t.x) @ W
        if classification:
            truth = np.asarray(t.y).reshape(len(pred), -1)[:, -1]
            out[t.shift] = float((pred.argmax(axis=1) == truth).mean())
        else:
            out[t.shift] = float(((pred - np.asarray(t.y, dtype=np.float64).reshape(pred.shape)) ** 2).mean())
    return out


def substitute(results: Results, task: str, model: str, metric: str, values: dict | None = None) -> Results:
    """``results`` with the implicit model's runs of ``task`` replaced: by the runs of ``model`` (``values`` None)
    or, per seed of the implicit runs, by a run whose sweep is ``{shift: value}`` of ``metric`` (a reference)."""
    keep = [r for r in results.records if not (r.task == task and r.model == "implicit")]
    if values is None:
        new = [dataclasses.replace(r, model="implicit") for r in results.runs(task, model)]
        keep = [r for r in keep if not (r.task == task and r.model == model)]
    else:
        seeds = sorted({r.seed for r in results.runs(task, "implicit")}) or [0]
        rows = [{"shift": k, metric: v} for k, v in values.items()]
        new = [
            RunRecord(
                task=task,
                model="implicit",
                seed=s,
                key=f"{task}-{LINEAR}-{s}",
                command="",
                outcome="ok",
                rows=[dict(r) for r in rows],
            )
            for s in seeds
        ]
    return Results(keep + new, results.ui_url)


@dataclass
class TaskReading:
    task: str
    metric: str
    linear: dict[object, float] = field(default_factory=dict)
    rescaled: dict[str, dict[int, Rescaling]] = field(default_factory=dict)  # model -> seed -> diagnostic
    error: str | None = None

    @property
    def rescales(self) -> bool:
        """Whether the task's shifts rescale its inputs (the rescaling diagnostic applies)."""
        return self.task not in LINEAR_TARGET_TASKS


def claims_with_references(results: Results, readings: dict[str, TaskReading], verdicts) -> list[dict]:
    """For each claim about the implicit model on the structural reading's tasks only (:data:`STRUCTURE_TASKS`):
    its verdict, and its verdict again with the linear reference and with the bias ablation in the implicit
    model's place (``not evaluated`` where a reference is missing), and the reading: ``follows from homogeneity``
    (``from the structure (homogeneity, a linear target)`` where one of its tasks shifts by a translation) when
    the linear reference satisfies the claim at least as well, ``needs more than ...`` otherwise."""
    from . import verdicts as V

    order = {V.HOLDS: 3, V.PARTLY: 2, V.NOISE: 1, V.NOT: 0}
    by = {v.id: v for v in verdicts}
    out = []
    for c in V.load_claims():
        tasks = _claim_tasks(c.check)
        if not tasks or not set(tasks) <= set(STRUCTURE_TASKS) or "implicit" not in _claim_models(c.check):
            continue
        basis = (
            "homogeneity"
            if set(tasks) <= set(RESCALING_TASKS)
            else "the structure (homogeneity, a linear target)"
        )
        if by.get(c.id) is None or by[c.id].verdict == V.NA:
            continue
        tasks = [t for t in tasks if t in results.tasks()]  # a task not run stays out of every reading
        lin_ok = bool(tasks) and all(readings.get(t) is not None and readings[t].linear for t in tasks)
        bias_ok = bool(tasks) and all(results.has(t, BIAS_MODEL) for t in tasks)
        lin, bias = results, results
        for t in tasks:
            if lin_ok:
                lin = substitute(lin, t, LINEAR, readings[t].metric, readings[t].linear)
            if bias_ok:
                bias = substitute(bias, t, BIAS_MODEL, "")
        lv = V.evaluate_claim(c, lin).verdict if lin_ok else V.NA
        bv = V.evaluate_claim(c, bias).verdict if bias_ok else V.NA
        own = by[c.id].verdict
        lo, oo = order.get(lv, -1), order.get(own, -1)
        if lv == V.NA:
            reading = "not applicable to the linear reference" if lin_ok else "no linear reference"
        elif lo > oo:
            reading = f"the structure suffices (the linear reference does better: {lv})"
        elif lo == oo and own != V.NOT:
            reading = f"follows from {basis} (the linear reference satisfies it as well)"
        elif lo == oo:
            reading = "holds for neither (the linear reference does not satisfy it either)"
        else:
            reading = f"needs more than {basis} (the linear reference does not satisfy it)"
        if bv != V.NA and order.get(bv, -1) < oo:
            reading += f"; with bias terms (no homogeneity) the verdict drops to: {bv}"
        out.append(
            {"id": c.id, "claim": c.claim, "verdict": own, "linear": lv, "bias": bv, "reading": reading}
        )
    return out


def _claim_tasks(check: dict) -> list[str]:
    if check["kind"] == "combine":
        return list(dict.fromkeys(t for _, part in check["parts"] for t in _claim_tasks(part)))
    return list(check.get("tasks") or [check["task"]])


def _claim_models(check: dict) -> set[str]:
    if check["kind"] == "combine":
        return set().union(*(_claim_models(part) for _, part in check["parts"]))
    m = check.get("model")
    return {m} if isinstance(m, str) else set(m or [])


def structural_reading(
    results: Results, profile, client=None, *, n_inputs: int = 1000, uri: str | None = None
) -> dict[str, TaskReading]:
    """Per task of ``profile`` in :data:`STRUCTURE_TASKS`: the linear reference on the task's data (built with the
    profile's overrides) and, where the shifts rescale the inputs, the rescaling diagnostic of every
    implicit-family run whose model was logged to MLflow. A task whose data or models cannot be loaded carries
    the reason (``error``); nothing here trains."""
    from lightning_implicit.run.spec import cli_value
    from lightning_implicit.runner import load_data, shorthand_args

    out: dict[str, TaskReading] = {}
    for task in STRUCTURE_TASKS:
        if task not in profile.tasks or task not in results.tasks():
            continue
        plan = profile.tasks[task]
        classification = task == "rolling_argmax"
        rd = TaskReading(task, "accuracy" if classification else "mse")
        out[task] = rd
        try:
            args = shorthand_args(task, "implicit", trainer=profile.trainer)
            for k, v in plan.overrides.items():
                if k.startswith("data."):
                    args += [f"--{k}", cli_value(v)]
            dm = load_data(args)
            splits = dm.build()
            rd.linear = linear_reference(
                splits.x_train,
                splits.y_train,
                splits.tests,
                classification=classification,
                num_classes=getattr(dm.spec, "num_classes", None),
            )
        except Exception as err:  # the reading says why it is missing; the report goes on
            rd.error = f"data: {type(err).__name__}: {err}"
            continue
        if not rd.rescales:
            continue
        u = splits.x_train[:n_inputs]
        for model in ("implicit", "implicit_nofeedback", "implicit_rnn", BIAS_MODEL):
            for r in results.runs(task, model):
                if not r.usable or not r.run_id:
                    continue
                module = _logged_module(r.run_id, uri)
                if module is None:
                    continue
                rd.rescaled.setdefault(model, {})[r.seed] = rescaling(
                    module, u, classification=classification
                )
    return out


def _logged_module(run_id: str, uri: str | None = None):
    """The run's logged model (``runs:/<id>/model``: its state dict, read without unpickling) in eval mode, or
    ``None`` when it cannot be loaded."""
    from lightning_implicit.evaluate import load_logged_model

    try:
        module = load_logged_model(run_id, uri)
    except Exception:  # a run without a logged model has no rescaling diagnostic
        return None
    module.eval()
    return module


def reading_rows(readings: dict[str, TaskReading], results: Results) -> list[str]:
    """Markdown: per task, the rescaling diagnostic per model and the linear reference beside the implicit model
    and the bias ablation at the smallest and largest shift."""
    from .paper_numbers import label
    from .results import seed_stats

    lines = [
        "| task | model | predictions on c·u vs c·f(u), in-distribution inputs (per seed) | test metric, "
        "smallest shift | test metric, largest shift |",
        "|---|---|---|---|---|",
    ]
    for task, rd in readings.items():
        if rd.error:
            lines.append(f"| {task} | - | not computed: {rd.error[:200]} | - | - |")
            continue
        shifts = results.shifts(task)
        if not shifts:
            continue
        lo, hi = shifts[0], shifts[-1]

        def at(model, k, metric=rd.metric, task=task):
            vals = {s: per[k] for s, per in results.series(task, model, metric).items() if k in per}
            m, sd, n = seed_stats(vals)
            return "-" if n == 0 else (f"{m:.4g}" if n == 1 or math.isnan(sd) else f"{m:.4g} ± {sd:.2g}")

        for model in ("implicit", "implicit_nofeedback", "implicit_rnn", BIAS_MODEL):
            if not results.runs(task, model):
                continue
            diag = rd.rescaled.get(model, {})
            text = "; ".join(f"seed {s}: {d.text()}" for s, d in sorted(diag.items())) or "model not loadable"
            if not rd.rescales:
                text = "n/a: the shift translates the inputs (no rescaling)"
            lines.append(f"| {task} | {label(model)} | {text} | {at(model, lo)} | {at(model, hi)} |")
        if rd.linear:
            what = (
                "homogeneous up to its intercept" if rd.rescales else "exact on a linear target at any shift"
            )
            lines.append(
                f"| {task} | Linear least squares (reference, {'one-hot ' if rd.metric == 'accuracy' else ''}"
                f"no tuning) | affine: {what} | {rd.linear.get(lo, math.nan):.4g} | "
                f"{rd.linear.get(hi, math.nan):.4g} |"
            )
    return lines
