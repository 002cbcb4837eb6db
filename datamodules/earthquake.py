"""Earthquake location (paper section 2.2, Figure 7, appendix A.4): geographic extrapolation k = 1..9.

The physics and the generator are :mod:`lightning_implicit.datamodules.traveltime` and :mod:`lightning_implicit.datamodules.earthquake_data`
(ak135 first-arrival P times from obspy; a jittered global source mesh; 5 stations per event). This module
makes it a task: 30 standardised features -> 4 standardised labels (longitude, latitude, depth, origin time
relative to the anchor pick), statistics from the training split only. Shifts: ``0`` is the in-distribution
test split, ``k = 1..9`` the longitude bands (80+10k, 90+10k) and (-90-10k, -80-10k).

Metrics per split: standardised MSE over the four labels (the paper's), mean absolute error per label in
physical units (longitude raw and wrapped to [-180, 180], latitude, depth, time) and the median epicentral
error in km.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_implicit.data import DataSplits, ShiftDataModule, Standardizer, TestSet
from lightning_implicit.task import TaskSpec

from .earthquake_data import (
    EarthquakeSpec,
    epicentral_distance_km,
    generate_all,
    longitude_difference,
    split_counts,
)

__all__ = ["EarthquakeDataModule"]


class EarthquakeDataModule(ShiftDataModule):
    """Args:
    coarsen: mesh coarsening factor (1: the paper's 720,576 training samples; 4: a quick profile of
        ~11k with the same code path).
    region_fraction: fraction of each region's mesh kept (paper: 0.25 -> 20,016 per region).
    region_size: explicit samples per region (overrides ``region_fraction``).
    cache_dir: where the travel-time table and generated datasets are cached (default
        ``$LIGHTNING_IMPLICIT_CACHE`` or ``~/.cache/lightning-implicit``).
    (others: ShiftDataModule; ``seed`` seeds the generator)
    """

    def __init__(
        self,
        *,
        coarsen: int = 1,
        region_fraction: float = 0.25,
        region_size: int | None = None,
        cache_dir: str | None = None,
        **kw,
    ) -> None:
        kw.setdefault("batch_size", 1024)
        super().__init__(**kw)
        self.eq = EarthquakeSpec(
            coarsen=coarsen, region_fraction=region_fraction, region_size=region_size, seed=self.seed
        )
        self.cache_dir = cache_dir
        self.spec = TaskSpec(
            name="earthquake",
            kind="regression",
            in_shape=(6 * self.eq.n_stations,),
            target_shape=(4,),
            shift_name="region k (0 = in-distribution)",
            metrics=("mse",),
        )

    def prepare_data(self) -> None:
        """Build the travel-time table and the datasets once (rank 0), into the on-disk cache."""
        generate_all(self.eq, cache_dir=self.cache_dir)

    def build(self) -> DataSplits:
        data = generate_all(self.eq, cache_dir=self.cache_dir)
        x_tr, y_tr = data["train"]
        self.x_scaler, self.y_scaler = Standardizer.fit(x_tr), Standardizer.fit(y_tr.astype(np.float64))
        tests = [
            TestSet(
                shift=0,
                x=self.x_scaler.transform(data["id_test"][0]),
                y=self.y_scaler.transform(data["id_test"][1]),
            )
        ]
        for k in range(1, self.eq.n_regions + 1):
            x, y = data[k]
            tests.append(TestSet(shift=k, x=self.x_scaler.transform(x), y=self.y_scaler.transform(y)))
        card = {
            "source": "generated (ak135 via obspy.taup)",
            "spec": self.eq.to_dict(),
            "split_counts": {str(k): v for k, v in split_counts(self.eq).items()},
            "standardisation": "features and labels, statistics of the in-distribution training split (all folds)",
            "labels": ["longitude_deg", "latitude_deg", "depth_km", "origin_time_rel_anchor_s"],
        }
        return DataSplits(
            x_train=self.x_scaler.transform(x_tr),
            y_train=self.y_scaler.transform(y_tr),
            tests=tests,
            card=card,
        )

    def physical(self, v: torch.Tensor) -> np.ndarray:
        """Standardised labels back to (longitude deg, latitude deg, depth km, time s)."""
        return self.y_scaler.inverse(v.double().cpu().numpy())

    def evaluate(self, pred, y, shift, idx=None):
        out = super().evaluate(pred, y, shift, idx)
        p, t = self.physical(pred.reshape(y.shape)), self.physical(y)
        out["lon_mae_deg"] = float(np.mean(np.abs(p[:, 0] - t[:, 0])))
        out["lon_wrapped_mae_deg"] = float(np.mean(np.abs(longitude_difference(p[:, 0], t[:, 0]))))
        out["lat_mae_deg"] = float(np.mean(np.abs(p[:, 1] - t[:, 1])))
        out["depth_mae_km"] = float(np.mean(np.abs(p[:, 2] - t[:, 2])))
        out["time_mae_s"] = float(np.mean(np.abs(p[:, 3] - t[:, 3])))
        lat_p = np.clip(p[:, 1], -90, 90)
        out["epicentral_median_km"] = float(
            np.median(epicentral_distance_km(lat_p, p[:, 0], t[:, 1], t[:, 0]))
        )
        return out

    def write_artifacts(self, outputs, folder: Path, rows):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = {r["shift"]: r for r in rows}
        ks = [k for k in rows if k > 0]
        paths = []
        # Figure 7 (right): per-label error vs k
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
        for ax, (key, label) in zip(
            axes,
            [
                ("lon_wrapped_mae_deg", "longitude MAE (deg, wrapped)"),
                ("lat_mae_deg", "latitude MAE (deg)"),
                ("depth_mae_km", "depth MAE (km)"),
                ("time_mae_s", "origin time MAE (s)"),
            ],
            strict=True,
        ):
            ax.plot(ks, [rows[k][key] for k in ks], marker="o")
            if 0 in rows:
                ax.axhline(rows[0][key], ls="--", c="grey", label="in-distribution")
            ax.set_xlabel("region k")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Earthquake location: error per label vs extrapolation region (paper Figure 7, right)")
        fig.tight_layout()
        paths.append(folder / "earthquake_error_vs_k.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
        # Map of training and test regions coloured by standardised MSE
        fig, ax = plt.subplots(figsize=(10, 4.2))
        ax.axvspan(
            -self.eq.train_lon_max, self.eq.train_lon_max, color="tab:green", alpha=0.15, label="training"
        )
        vals = [rows[k]["mse"] for k in ks]
        cmap = plt.get_cmap("magma_r")
        vmax = max(vals) if vals else 1.0
        from .earthquake_data import region_bands

        for k in ks:
            for lo, hi in region_bands(self.eq, k):
                ax.axvspan(lo, hi, color=cmap(rows[k]["mse"] / vmax), alpha=0.85)
                ax.text((lo + hi) / 2, 72, f"k={k}\n{rows[k]['mse']:.2g}", ha="center", fontsize=7)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_xlabel("longitude (deg)")
        ax.set_ylabel("latitude (deg)")
        ax.set_title("Training band and test regions (colour and label: standardised MSE per region)")
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        paths.append(folder / "earthquake_regions_map.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
        return paths
