"""First-arrival P travel times from the 1D ak135 model (``obspy.taup``), tabulated, cached and interpolated.

Pure numpy + obspy (no torch / Lightning).

How the table is built
----------------------
A call to :meth:`obspy.taup.TauPyModel.get_travel_times` costs milliseconds, so a 481 x 181 table built node by
node takes many minutes. Instead, for every source depth we depth-correct the tau model and construct each
phase (``P`` and ``p``) *once*; a :class:`~obspy.taup.seismic_phase.SeismicPhase` then holds its sampled
travel-time curve (``ray_param`` [s/rad], ``dist`` [rad], ``time`` [s]). For all target distances at once we
reproduce what ``SeismicPhase.calc_time`` does per distance:

1. find every curve segment ``[dist[i], dist[i+1]]`` that brackets the distance (the same rules as obspy's C
   loop: shadow-zone segments with equal ray parameters are skipped, and so is a shared end point);
2. estimate the time with the stationarity of the tau function (Buland & Chapman 1983), i.e. the tangent
   lines ``time[i] + ray_param[i] * (x - dist[i])`` of both segment ends (``linear_interp_arrival``); the
   true time lies between this estimate and the chord, which bounds the error;
3. where that bound exceeds ``refine_tol`` seconds (and the segment can still hold the first arrival), refine
   the ray parameter with a few vectorised Illinois (regula falsi) steps, "shooting" all rays at once through
   the tau branches with ``TauBranch.calc_time_dist`` (obspy's ``refine_arrival`` does the same one ray at a
   time with ``brentq``), and evaluate the stationary-tau time at the final ray;
4. take the minimum over segments and phases (``P`` may triplicate; ``p`` is first for deep sources close in).

The default grid (0.01 deg steps to 2 deg, 0.1 deg to 30 deg; 1 km steps to 50 km depth, 5 km to 700 km) takes a
few seconds and agrees with ``get_travel_times`` at the nodes to better than 1e-3 s; bilinear interpolation between nodes
adds at most ~0.03 s (where the up-going ``p`` and down-going ``P`` branches cross), typically < 0.002 s.

Cache
-----
Tables are cached as ``.npz`` files under a cache directory (argument, else ``$LIGHTNING_IMPLICIT_CACHE``, else
``~/.cache/lightning-implicit``), named by a key hashing the grid, the model, the phases, the refinement
settings, the obspy version and this module's algorithm version. The key and a SHA-256 checksum of the times
are stored inside the file and verified on load; a truncated, corrupted or mismatching file is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ALGORITHM_VERSION",
    "TravelTimeTable",
    "atomic_savez",
    "default_cache_dir",
    "default_depth_grid",
    "default_distance_grid",
    "exact_first_arrival",
    "obspy_version",
]

#: Bumped whenever the table-building algorithm changes (part of the cache key).
ALGORITHM_VERSION = "ttable-v1"
#: Environment variable overriding the default cache directory.
CACHE_ENV = "LIGHTNING_IMPLICIT_CACHE"

_DEFAULT_PHASES = ("P", "p")


# ----------------------------------------------------------------------------------------------------------
# small shared helpers (also used by lightning_implicit.datamodules.earthquake_data)
# ----------------------------------------------------------------------------------------------------------


def obspy_version() -> str:
    """The installed obspy version string (part of every cache key)."""
    import obspy

    return str(obspy.__version__)


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the cache directory: ``cache_dir`` if given, else ``$LIGHTNING_IMPLICIT_CACHE``, else
    ``~/.cache/lightning-implicit``. The directory is not created here."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lightning-implicit"


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed ``.npz`` atomically (temporary file in the same directory, then ``os.replace``),
    so a crash never leaves a half-written cache file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _sha256(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# grids
# ----------------------------------------------------------------------------------------------------------


def _piecewise_grid(edges: Sequence[float], steps: Sequence[float]) -> np.ndarray:
    """Nodes from ``edges[0]`` to ``edges[-1]`` with spacing ``steps[i]`` on ``[edges[i], edges[i+1]]``.
    Nodes are computed as ``edge + j * step`` and rounded to 1e-9 to avoid accumulated float drift."""
    if len(edges) != len(steps) + 1:
        raise ValueError("need len(edges) == len(steps) + 1")
    parts = [np.array([edges[0]], dtype=np.float64)]
    for lo, hi, step in zip(edges[:-1], edges[1:], steps, strict=True):
        if step <= 0 or hi <= lo:
            raise ValueError(f"bad grid piece [{lo}, {hi}] step {step}")
        n = int(round((hi - lo) / step))
        if not np.isclose(lo + n * step, hi, rtol=0, atol=1e-9):
            raise ValueError(f"step {step} does not tile [{lo}, {hi}]")
        parts.append(lo + step * np.arange(1, n + 1, dtype=np.float64))
    return np.round(np.concatenate(parts), 9)


def default_distance_grid(coarsen: int = 1) -> np.ndarray:
    """Epicentral-distance nodes [deg], shape ``(481,)``: 0.01 deg steps on [0, 2], 0.1 deg steps on [2, 30].
    ``coarsen`` multiplies both steps (a cheap grid for tests; it must still tile the pieces)."""
    return _piecewise_grid([0.0, 2.0, 30.0], [0.01 * coarsen, 0.1 * coarsen])


def default_depth_grid(coarsen: int = 1) -> np.ndarray:
    """Source-depth nodes [km], shape ``(181,)``: 1 km steps on [0, 50], 5 km steps on [50, 700].
    ``coarsen`` multiplies both steps."""
    return _piecewise_grid([0.0, 50.0, 700.0], [1.0 * coarsen, 5.0 * coarsen])


def _check_grid(g: np.ndarray, name: str) -> np.ndarray:
    g = np.asarray(g, dtype=np.float64).ravel()
    if g.size < 2 or not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
        raise ValueError(f"{name} grid must be finite, strictly increasing and have >= 2 nodes")
    if g[0] < 0:
        raise ValueError(f"{name} grid must be non-negative")
    return g


# ----------------------------------------------------------------------------------------------------------
# exact reference (slow; for verification only)
# ----------------------------------------------------------------------------------------------------------


def exact_first_arrival(
    depth_km: float, distance_deg: float, model=None, phases: Sequence[str] = _DEFAULT_PHASES
) -> float:
    """Exact first-arrival time [s] from ``TauPyModel.get_travel_times`` (one call; milliseconds).

    ``model`` is a :class:`obspy.taup.TauPyModel` (``ak135`` when ``None``). Returns ``nan`` if no phase arrives.
    """
    if model is None:
        from obspy.taup import TauPyModel

        model = TauPyModel("ak135")
    arrivals = model.get_travel_times(
        source_depth_in_km=float(depth_km), distance_in_degree=float(distance_deg), phase_list=list(phases)
    )
    return float(min((a.time for a in arrivals), default=np.nan))


# ----------------------------------------------------------------------------------------------------------
# vectorised table construction
# ----------------------------------------------------------------------------------------------------------


class _Shooter:
    """Vectorised ``SeismicPhase.shoot_ray``: time [s] and distance [rad] of many rays of one phase at once."""

    def __init__(self, phase, tau_model):
        s_mod = tau_model.s_mod
        mult = phase.calc_branch_mult(tau_model)
        self._terms = []
        for j in range(tau_model.tau_branches.shape[1]):
            for wave, is_p in ((0, s_mod.p_wave), (1, s_mod.s_wave)):
                if mult[wave, j] != 0:
                    br = tau_model.get_tau_branch(j, is_p)
                    top = s_mod.layer_number_below(br.top_depth, is_p)
                    bot = s_mod.layer_number_above(br.bot_depth, is_p)
                    self._terms.append((float(mult[wave, j]), br, top, bot))
        self._s_mod = s_mod

    def __call__(self, ray_param: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.ascontiguousarray(ray_param, dtype=np.float64)
        time = np.zeros_like(p)
        dist = np.zeros_like(p)
        for m, br, top, bot in self._terms:
            # rays with p > max_ray_param never enter the branch (obspy's C loop gives them zeros): skip them
            enter = np.nonzero(p <= br.max_ray_param)[0]
            if enter.size == 0:
                continue
            td = br.calc_time_dist(self._s_mod, top, bot, p[enter], allow_turn_in_layer=True)
            time[enter] += m * td["time"]
            dist[enter] += m * td["dist"]
        return time, dist


def _phase_candidates(phase, x: np.ndarray):
    """All (target, segment) pairs of ``phase``'s sampled curve bracketing target distances ``x`` [rad],
    with obspy's rules. Returns target indices and segment indices (1-D int arrays)."""
    d, rp = phase.dist, phase.ray_param
    n = len(d)
    if n < 2:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    xs = x[:, None]
    d0, d1 = d[None, :-1], d[None, 1:]
    cond = (d0 - xs) * (xs - d1) >= 0
    # obspy: "so we don't get 2 arrivals for the same ray"
    cond &= ~((xs == d1) & (np.arange(1, n)[None, :] != n - 1))
    if n > 2:  # shadow zone: equal ray parameters are not an arrival
        cond &= (rp[:-1] != rp[1:])[None, :]
    return np.nonzero(cond)


def _depth_times(
    tau_model, phases: Sequence[str], x: np.ndarray, refine_tol: float, max_iter: int
) -> np.ndarray:
    """First-arrival times [s] at distances ``x`` [rad] for one depth-corrected tau model (inf: no arrival)."""
    from obspy.taup.helper_classes import TauModelError
    from obspy.taup.seismic_phase import SeismicPhase

    est, lo_b, hi_b, tgt, refine_args = [], [], [], [], []
    for name in phases:
        try:
            ph = SeismicPhase(name, tau_model, 0.0)
        except TauModelError:
            continue
        ti, si = _phase_candidates(ph, x)
        if ti.size == 0:
            continue
        d, t, rp = ph.dist, ph.time, ph.ray_param
        xs = x[ti]
        dl, dr, tl, tr, pl, pr = d[si], d[si + 1], t[si], t[si + 1], rp[si], rp[si + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            dpdx = (pl - pr) / (dl - dr)
            w = np.where(dr != dl, (xs - dl) / (dr - dl), 0.0)
        thl = tl + pl * (xs - dl)
        thr = tr + pr * (xs - dr)
        th = np.where(dpdx > 0, np.maximum(thl, thr), np.minimum(thl, thr))
        th = np.where(xs == dl, tl, np.where(xs == dr, tr, th))
        chord = tl + w * (tr - tl)
        exact = (xs == dl) | (xs == dr)
        chord = np.where(exact, th, chord)
        est.append(th)
        lo_b.append(np.minimum(th, chord))
        hi_b.append(np.maximum(th, chord))
        tgt.append(ti)
        can_refine = not ph.head_or_diffract_seq and not name.endswith("kmps")
        refine_args.append((ph, can_refine, xs, dl, dr, pl, pr, exact))

    out = np.full(x.shape, np.inf)
    if not est:
        return out
    # the best upper bound per target prunes segments that cannot hold the first arrival
    hi_all = np.concatenate(hi_b)
    best_hi = np.full(x.shape, np.inf)
    np.minimum.at(best_hi, np.concatenate(tgt), hi_all)

    for k, (ph, can_refine, xs, dl, dr, pl, pr, exact) in enumerate(refine_args):
        th = est[k]
        ti = tgt[k]
        if can_refine and max_iter > 0:
            need = (~exact) & (hi_b[k] - lo_b[k] > refine_tol) & (lo_b[k] <= best_hi[ti] + refine_tol)
            if np.any(need):
                th = th.copy()
                th[need] = _refine(
                    _Shooter(ph, ph.tau_model),
                    xs[need],
                    pl[need],
                    pr[need],
                    xs[need] - dl[need],
                    xs[need] - dr[need],
                    th[need],
                    lo_b[k][need],
                    hi_b[k][need],
                    max_iter,
                )
        np.minimum.at(out, ti, th)
    return out


def _refine(shoot, x, a, b, fa, fb, th0, lo, hi, max_iter, x_tol=1e-10):
    """Vectorised Illinois root-finding of ``X(p) = x`` on brackets ``[a, b]`` of the ray parameter, then the
    stationary-tau time ``T(p) + p * (x - X(p))`` at the best ray (error second order in the distance
    residual). Rays drop out once their residual is below ``x_tol`` rad; falls back to ``th0`` if no step
    lands inside the ``[lo, hi]`` bracket of the true time."""
    a, b, fa, fb = a.copy(), b.copy(), fa.copy(), fb.copy()
    best = th0.copy()
    best_res = np.full(x.shape, np.inf)
    active = np.arange(x.size)
    for _ in range(max_iter):
        aa, bb, ffa, ffb = a[active], b[active], fa[active], fb[active]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = bb - ffb * (bb - aa) / (ffb - ffa)
        c = np.where(np.isfinite(c), c, 0.5 * (aa + bb))
        tc, xc = shoot(c)
        fc = x[active] - xc
        thc = tc + c * fc
        ok = np.isfinite(thc) & (thc >= lo[active] - 1e-6) & (thc <= hi[active] + 1e-6)
        better = ok & (np.abs(fc) < best_res[active])
        best[active] = np.where(better, thc, best[active])
        best_res[active] = np.where(better, np.abs(fc), best_res[active])
        flip = fc * ffb < 0
        # Illinois: if the sign did not flip, halve the retained end's residual
        a[active] = np.where(flip, bb, aa)
        fa[active] = np.where(flip, ffb, 0.5 * ffa)
        b[active], fb[active] = c, fc
        active = active[best_res[active] > x_tol]
        if active.size == 0:
            break
    return best


def _build_times(
    distances: np.ndarray,
    depths: np.ndarray,
    model_name: str,
    phases: Sequence[str],
    refine_tol: float,
    max_iter: int,
    progress: bool,
) -> np.ndarray:
    from obspy.taup import TauPyModel
    from tqdm.auto import tqdm

    model = TauPyModel(model_name, cache=False)
    x = np.radians(distances)
    times = np.empty((depths.size, distances.size), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, z in enumerate(
            tqdm(depths, desc=f"{model_name} P travel-time table", unit="depth", disable=not progress)
        ):
            tau_model = model.model.depth_correct(float(z))
            times[i] = _depth_times(tau_model, phases, x, refine_tol, max_iter)
    return times


# ----------------------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------------------


class TravelTimeTable:
    """First-arrival P travel times on a (depth, distance) grid with vectorised bilinear interpolation.

    Attributes:
        distances: node distances [deg], shape ``(n_dist,)``, strictly increasing.
        depths: node source depths [km], shape ``(n_depth,)``, strictly increasing.
        times: travel times [s], shape ``(n_depth, n_dist)``, finite.
        key: the cache key (hex string) identifying grid, model, phases, settings and obspy version.

    Build or load with :meth:`load_or_build`; evaluate with ``table(distance_deg, depth_km)``.
    """

    def __init__(self, distances: np.ndarray, depths: np.ndarray, times: np.ndarray, key: str = ""):
        self.distances = _check_grid(distances, "distance")
        self.depths = _check_grid(depths, "depth")
        times = np.asarray(times, dtype=np.float64)
        if times.shape != (self.depths.size, self.distances.size):
            raise ValueError(f"times shape {times.shape} != {(self.depths.size, self.distances.size)}")
        if not np.all(np.isfinite(times)):
            raise ValueError("travel-time table has non-finite entries (a distance with no P arrival?)")
        self.times = times
        self.key = key

    # -- construction ---------------------------------------------------------------------------------
    @staticmethod
    def cache_key(
        distances: np.ndarray,
        depths: np.ndarray,
        model_name: str = "ak135",
        phases: Sequence[str] = _DEFAULT_PHASES,
        refine_tol: float = 1e-3,
        max_iter: int = 3,
    ) -> str:
        """Hex key hashing the grid, model, phases, refinement settings, obspy and algorithm versions."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(distances, dtype=np.float64).tobytes())
        h.update(b"|")
        h.update(np.ascontiguousarray(depths, dtype=np.float64).tobytes())
        meta = f"|{model_name}|{','.join(phases)}|{refine_tol!r}|{max_iter}|obspy={obspy_version()}|{ALGORITHM_VERSION}"
        h.update(meta.encode())
        return h.hexdigest()[:20]

    @classmethod
    def build(
        cls,
        distances: np.ndarray | None = None,
        depths: np.ndarray | None = None,
        model_name: str = "ak135",
        phases: Sequence[str] = _DEFAULT_PHASES,
        refine_tol: float = 1e-3,
        max_iter: int = 3,
        progress: bool = True,
    ) -> TravelTimeTable:
        """Compute a table without touching any cache (see the module docstring for the method).

        Args:
            distances: distance nodes [deg] (default :func:`default_distance_grid`).
            depths: depth nodes [km] (default :func:`default_depth_grid`).
            model_name: obspy.taup model name.
            phases: phases whose minimum is the first arrival.
            refine_tol: refine segments whose error bound exceeds this many seconds.
            max_iter: regula-falsi steps per refined arrival (0: obspy's linear estimate only).
            progress: show a tqdm progress bar over depths.
        """
        distances = _check_grid(default_distance_grid() if distances is None else distances, "distance")
        depths = _check_grid(default_depth_grid() if depths is None else depths, "depth")
        times = _build_times(distances, depths, model_name, tuple(phases), refine_tol, max_iter, progress)
        key = cls.cache_key(distances, depths, model_name, tuple(phases), refine_tol, max_iter)
        return cls(distances, depths, times, key)

    @classmethod
    def cache_path(cls, cache_dir: str | os.PathLike | None, key: str, model_name: str = "ak135") -> Path:
        """Where the table with ``key`` is cached: ``<cache_dir>/traveltime_<model>_<key>.npz``."""
        return default_cache_dir(cache_dir) / f"traveltime_{model_name}_{key}.npz"

    @classmethod
    def load(cls, path: str | os.PathLike, expected_key: str | None = None) -> TravelTimeTable:
        """Load a cached table, verifying the stored key, shapes and checksum.

        Raises:
            ValueError: if the file is unreadable, truncated, corrupted or for another key.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                distances = np.array(z["distances"])
                depths = np.array(z["depths"])
                times = np.array(z["times"])
                key = str(z["key"])
                checksum = str(z["checksum"])
        except Exception as exc:  # any failure to read means the file cannot be trusted
            raise ValueError(f"unreadable travel-time cache {path}: {exc}") from exc
        if expected_key is not None and key != expected_key:
            raise ValueError(f"travel-time cache {path} has key {key}, expected {expected_key}")
        if times.shape != (depths.size, distances.size):
            raise ValueError(f"travel-time cache {path} has inconsistent shapes")
        if _sha256(distances, depths, times) != checksum:
            raise ValueError(f"travel-time cache {path} fails its checksum")
        return cls(distances, depths, times, key)

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write the table (with its key and checksum) to ``path`` (``.npz``)."""
        path = Path(path)
        atomic_savez(
            path,
            distances=self.distances,
            depths=self.depths,
            times=self.times,
            key=np.array(self.key),
            checksum=np.array(_sha256(self.distances, self.depths, self.times)),
        )
        return path

    @classmethod
    def load_or_build(
        cls,
        cache_dir: str | os.PathLike | None = None,
        distances: np.ndarray | None = None,
        depths: np.ndarray | None = None,
        model_name: str = "ak135",
        phases: Sequence[str] = _DEFAULT_PHASES,
        refine_tol: float = 1e-3,
        max_iter: int = 3,
        progress: bool = True,
        use_cache: bool = True,
    ) -> TravelTimeTable:
        """Return the cached table for this grid/settings, building (and caching) it if it is missing or
        invalid. A corrupted cache file is reported with a warning, rebuilt and overwritten.

        Args:
            cache_dir: cache directory (see :func:`default_cache_dir`).
            distances, depths, model_name, phases, refine_tol, max_iter, progress: see :meth:`build`.
            use_cache: ``False`` builds in memory and writes nothing.
        """
        distances = _check_grid(default_distance_grid() if distances is None else distances, "distance")
        depths = _check_grid(default_depth_grid() if depths is None else depths, "depth")
        key = cls.cache_key(distances, depths, model_name, tuple(phases), refine_tol, max_iter)
        path = cls.cache_path(cache_dir, key, model_name)
        if use_cache and path.exists():
            try:
                table = cls.load(path, expected_key=key)
                if np.array_equal(table.distances, distances) and np.array_equal(table.depths, depths):
                    return table
                warnings.warn(f"travel-time cache {path} grid mismatch; rebuilding", stacklevel=2)
            except ValueError as exc:
                warnings.warn(f"{exc}; rebuilding", stacklevel=2)
        table = cls.build(distances, depths, model_name, phases, refine_tol, max_iter, progress)
        if use_cache:
            try:
                table.save(path)
            except OSError as exc:  # a read-only cache must not break data generation
                warnings.warn(f"could not write travel-time cache {path}: {exc}", stacklevel=2)
        return table

    # -- evaluation -----------------------------------------------------------------------------------
    @property
    def max_distance(self) -> float:
        """Largest tabulated distance [deg]."""
        return float(self.distances[-1])

    @property
    def max_depth(self) -> float:
        """Largest tabulated depth [km]."""
        return float(self.depths[-1])

    def __call__(self, distance_deg, depth_km) -> np.ndarray:
        """Bilinearly interpolated first-arrival P time [s].

        Args:
            distance_deg: epicentral distances [deg], any shape.
            depth_km: source depths [km], broadcastable against ``distance_deg``.

        Returns:
            float64 array of the broadcast shape, in seconds.

        Raises:
            ValueError: if any value is NaN or outside the grid.
        """
        x = np.asarray(distance_deg, dtype=np.float64)
        z = np.asarray(depth_km, dtype=np.float64)
        gx, gz = self.distances, self.depths
        for v, g, name, unit in ((x, gx, "distance", "deg"), (z, gz, "depth", "km")):
            if v.size and not (np.all(v >= g[0]) and np.all(v <= g[-1])):  # also rejects NaN
                bad = v[~((v >= g[0]) & (v <= g[-1]))]
                raise ValueError(
                    f"{name} outside the travel-time grid [{g[0]}, {g[-1]}] {unit}: e.g. {bad.ravel()[:3]}"
                )
        x, z = np.broadcast_arrays(x, z)
        i = np.clip(np.searchsorted(gx, x, side="right") - 1, 0, gx.size - 2)
        j = np.clip(np.searchsorted(gz, z, side="right") - 1, 0, gz.size - 2)
        wx = (x - gx[i]) / (gx[i + 1] - gx[i])
        wz = (z - gz[j]) / (gz[j + 1] - gz[j])
        t = self.times
        t00 = t[j, i]
        t01 = t[j, i + 1]
        t10 = t[j + 1, i]
        t11 = t[j + 1, i + 1]
        top = t00 + wx * (t01 - t00)
        bot = t10 + wx * (t11 - t10)
        return top + wz * (bot - top)

    def __repr__(self) -> str:
        return (
            f"TravelTimeTable(distances=[{self.distances[0]}..{self.distances[-1]}] deg x{self.distances.size}, "
            f"depths=[{self.depths[0]}..{self.depths[-1]}] km x{self.depths.size}, key={self.key!r})"
        )
