"""Plots of shift sweeps (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["plot_shift_sweep"]

_LOG_Y = {"mse", "mae", "mape", "qlike", "rmse"}


def plot_shift_sweep(
    rows: list[dict], *, task: str, shift_name: str, shift_log: bool, label: str, path
) -> list[str]:
    """One panel per metric (and solver depth when present) against the shift; saved to ``path`` (PNG).

    Returns the metric names plotted.
    """
    metrics = [
        k for k in rows[0] if k not in ("shift", "n") and not k.startswith("iters_") and k != "converged_frac"
    ]
    depth = "iters_mean" in rows[0]
    panels = metrics + (["iters_mean"] if depth else [])
    # Fixed margins instead of tight_layout (which measured every tick label: ~0.9 s of a run's ~2 s sweep logging).
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    fig.subplots_adjust(
        left=0.75 / (4.2 * len(panels)) + 0.02, right=0.98, bottom=0.16, top=0.86, wspace=0.38
    )
    xs = [r["shift"] for r in rows]
    for ax, name in zip(axes[0], panels, strict=True):
        ys = [r[name] for r in rows]
        ax.plot(xs, ys, marker="o", label=label)
        if name == "iters_mean":
            ax.fill_between(
                xs,
                [r["iters_median"] for r in rows],
                [r["iters_p95"] for r in rows],
                alpha=0.2,
                label="median..p95",
            )
            ax.set_ylabel("solver iterations per sample")
        else:
            ax.set_ylabel(name)
        if shift_log:
            ax.set_xscale("log")
        if name.split("_")[0] in _LOG_Y and all(y > 0 for y in ys):
            ax.set_yscale("log")
        ax.set_xlabel(shift_name)
        ax.minorticks_off()  # (a log axis's minor ticks and grid lines: most of the drawing time)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{task}: {label} across distribution shifts")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return panels
