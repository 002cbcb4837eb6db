"""Synthetic earthquake-location data (paper section 2.2, appendix A.4), pure numpy + obspy, fully vectorised.

Every event is a source (longitude, latitude, depth) on a jittered mesh, observed by ``n_stations`` stations
placed at random epicentral distances and azimuths on a spherical Earth (R = 6371 km). First-arrival P travel
times come from the ak135 table of :mod:`lightning_implicit.datamodules.traveltime`. The stations are sorted by arrival time; the
first is the anchor and ``p_i = tt_i - tt_1`` are the relative times (``p_1 = 0``).

Features, shape ``(N, 6 * n_stations)`` float32 (30 for the paper), per station in arrival order:
``(cos(phi) cos(lam), cos(phi) sin(lam), sin(phi), sin(theta), cos(theta), p)`` with station latitude ``phi``,
station longitude ``lam``, back-azimuth ``theta`` (station -> source, clockwise from north) and ``p`` [s].

Labels, shape ``(N, 4)`` float32: source longitude [deg, in [-180, 180)], latitude [deg], depth [km] and
``T = -tt_1`` [s], the origin time relative to the anchor pick.

Splits: ``"train"`` (longitude cells tiling [-90, 90]), ``"id_test"`` (a fresh draw from the training
distribution, subsampled to the region size) and regions ``k = 1..9`` with longitudes
``(80 + 10k, 90 + 10k) U (-90 - 10k, -80 - 10k)``, subsampled (fixed seed) to 25 %.
Each split has its own seeded generator (derived from ``spec.seed`` and the split), so any split can be
regenerated alone and reproducibly. Paper profile (``EarthquakeSpec()``): 720,576 train samples
(144 x 139 x 36) and 20,016 per region (80,064 before the subsample).

No feature or label standardisation happens here: fit it on the training split only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning_implicit.datamodules.traveltime import (
    TravelTimeTable,
    _sha256,
    atomic_savez,
    default_cache_dir,
    obspy_version,
)

__all__ = [
    "EARTH_RADIUS_KM",
    "EarthquakeSpec",
    "epicentral_distance_km",
    "generate",
    "generate_all",
    "longitude_difference",
    "region_bands",
    "split_counts",
    "split_names",
    "wrap_longitude",
]

#: Spherical Earth radius [km] (consistent with TauP's ak135).
EARTH_RADIUS_KM = 6371.0
#: Bumped whenever generated data would change for the same spec (part of the cache key).
GENERATOR_VERSION = "eq-gen-v1"
#: Number of features per station.
FEATURES_PER_STATION = 6
#: Label column names and units.
LABEL_NAMES = ("longitude_deg", "latitude_deg", "depth_km", "origin_time_s")

_SPLIT_CODE_TRAIN = 1000
_SPLIT_CODE_ID_TEST = 1001


@dataclass(frozen=True)
class EarthquakeSpec:
    """Geometry and sizes of the earthquake data (defaults: the paper profile).

    Mesh (steps are multiplied by ``coarsen`` for cheap runs; same code path):
        lat_step: latitude cell size [deg]; cell centres ``-lat_max, -lat_max + step, ...`` (139 at paper size).
        lon_step: longitude cell width [deg]; cells tile [-train_lon_max, train_lon_max] (144) and each half
            band of a region (8 cells each).
        depth_step: depth cell size [km]; centres ``0, step, ... <= depth_max`` (36); jittered depths are
            clipped to [0, depth_max].
        lat_max: largest latitude cell centre [deg].
        depth_max: largest depth [km].
        coarsen: integer factor applied to the three steps (must keep the longitude cells tiling).
    Splits:
        train_lon_max: training longitudes are [-train_lon_max, train_lon_max] [deg].
        region_width: width of each half band of a test region [deg].
        n_regions: number of extrapolation regions k = 1..n_regions.
        region_fraction: fraction of a region's mesh kept (paper 0.25 -> 20,016).
        region_size: explicit region size (overrides ``region_fraction``).
        id_test_size: in-distribution test size (default: the region size).
    Stations:
        n_stations: stations per event (features = 6 * n_stations).
        min_station_distance, max_station_distance: epicentral-distance range [deg], uniform.
    seed: base seed; each split derives its own generator from it.
    """

    lat_step: float = 1.0
    lon_step: float = 1.25
    depth_step: float = 20.0
    lat_max: float = 69.0
    depth_max: float = 700.0
    coarsen: int = 1
    train_lon_max: float = 90.0
    region_width: float = 10.0
    n_regions: int = 9
    region_fraction: float = 0.25
    region_size: int | None = None
    id_test_size: int | None = None
    n_stations: int = 5
    min_station_distance: float = 0.5
    max_station_distance: float = 20.0
    seed: int = 0

    def __post_init__(self):
        if int(self.coarsen) != self.coarsen or self.coarsen < 1:
            raise ValueError("coarsen must be a positive integer")
        for name in ("lat_step", "lon_step", "depth_step", "region_width", "train_lon_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.lat_max < 0 or self.lat_max + self.eff_lat_step / 2 > 90:
            raise ValueError("lat_max out of range")
        if self.depth_max < 0:
            raise ValueError("depth_max must be >= 0")
        if self.train_lon_max > 180 or self.train_lon_max + self.n_regions * self.region_width > 180 + 1e-9:
            raise ValueError("training band plus regions must fit in [-180, 180]")
        for width, what in ((2 * self.train_lon_max, "training band"), (self.region_width, "region band")):
            n = width / self.eff_lon_step
            if abs(n - round(n)) > 1e-9 or round(n) < 1:
                raise ValueError(
                    f"lon_step*coarsen={self.eff_lon_step} does not tile the {what} ({width} deg)"
                )
        if self.n_stations < 1:
            raise ValueError("n_stations must be >= 1")
        if not 0 <= self.min_station_distance <= self.max_station_distance:
            raise ValueError("need 0 <= min_station_distance <= max_station_distance")
        if not 0 < self.region_fraction <= 1:
            raise ValueError("region_fraction must be in (0, 1]")
        for name in ("region_size", "id_test_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1")

    # -- effective mesh -------------------------------------------------------------------------------
    @property
    def eff_lat_step(self) -> float:
        """Latitude step after coarsening [deg]."""
        return self.lat_step * self.coarsen

    @property
    def eff_lon_step(self) -> float:
        """Longitude cell width after coarsening [deg]."""
        return self.lon_step * self.coarsen

    @property
    def eff_depth_step(self) -> float:
        """Depth step after coarsening [km]."""
        return self.depth_step * self.coarsen

    @property
    def lat_centres(self) -> np.ndarray:
        """Latitude cell centres [deg], shape ``(n_lat,)`` (139 at paper size)."""
        n = int(np.floor(2 * self.lat_max / self.eff_lat_step + 1e-9)) + 1
        return -self.lat_max + self.eff_lat_step * np.arange(n)

    @property
    def depth_centres(self) -> np.ndarray:
        """Depth cell centres [km], shape ``(n_depth,)`` (36 at paper size)."""
        n = int(np.floor(self.depth_max / self.eff_depth_step + 1e-9)) + 1
        return self.eff_depth_step * np.arange(n, dtype=np.float64)

    @property
    def n_features(self) -> int:
        """Input width: ``6 * n_stations`` (30)."""
        return FEATURES_PER_STATION * self.n_stations

    def lon_cells(self, split) -> np.ndarray:
        """Western edges [deg] of the longitude cells of ``split`` ("train", "id_test" or region k)."""
        step = self.eff_lon_step
        if split in ("train", "id_test"):
            n = int(round(2 * self.train_lon_max / step))
            return -self.train_lon_max + step * np.arange(n)
        k = _region_index(self, split)
        n = int(round(self.region_width / step))
        (e_lo, _), (w_lo, _) = region_bands(self, k)
        return np.concatenate([e_lo + step * np.arange(n), w_lo + step * np.arange(n)])

    def to_dict(self) -> dict:
        """A JSON-able dict of all fields (used for the cache key)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------
# split bookkeeping
# ----------------------------------------------------------------------------------------------------------


def region_bands(spec: EarthquakeSpec, k: int) -> list[tuple[float, float]]:
    """The two longitude bands [deg] of region ``k``: ``[(lo_east, hi_east), (lo_west, hi_west)]`` with
    east ``(train_lon_max - w + w k, train_lon_max + w k)`` and its mirror west (w = region_width)."""
    _region_index(spec, k)
    w, m = spec.region_width, spec.train_lon_max
    east = (m - w + w * k, m + w * k)
    west = (-m - w * k, -m + w - w * k)
    return [east, west]


def split_names(spec: EarthquakeSpec) -> list:
    """All split identifiers: ``["train", "id_test", 1, ..., n_regions]``."""
    return ["train", "id_test", *range(1, spec.n_regions + 1)]


def _region_index(spec: EarthquakeSpec, split) -> int:
    if isinstance(split, bool) or not isinstance(split, int | np.integer):
        raise ValueError(f"unknown split {split!r}: use 'train', 'id_test' or an int 1..{spec.n_regions}")
    k = int(split)
    if not 1 <= k <= spec.n_regions:
        raise ValueError(f"region k must be in 1..{spec.n_regions}, got {k}")
    return k


def _mesh_size(spec: EarthquakeSpec, split) -> int:
    return spec.lon_cells(split).size * spec.lat_centres.size * spec.depth_centres.size


def split_counts(spec: EarthquakeSpec) -> dict:
    """Sample counts, analytically (nothing is generated).

    Returns a dict with ``"train"`` (training mesh, 720,576 for the paper), ``"region_mesh"`` (a region's
    mesh before subsampling, 80,064), ``"id_test"`` and every region ``k`` (int keys 1..n_regions; 20,016 each)
    and ``"total"`` (the samples :func:`generate_all` produces).
    """
    train = _mesh_size(spec, "train")
    region_mesh = _mesh_size(spec, 1)
    region = (
        spec.region_size if spec.region_size is not None else int(round(spec.region_fraction * region_mesh))
    )
    region = min(region, region_mesh)
    id_test = min(spec.id_test_size if spec.id_test_size is not None else region, train)
    out = {"train": train, "region_mesh": region_mesh, "id_test": id_test}
    for k in range(1, spec.n_regions + 1):
        out[k] = region
    out["total"] = train + id_test + spec.n_regions * region
    return out


def _split_rng(spec: EarthquakeSpec, split) -> np.random.Generator:
    """An independent generator per (seed, split)."""
    if split == "train":
        code = _SPLIT_CODE_TRAIN
    elif split == "id_test":
        code = _SPLIT_CODE_ID_TEST
    else:
        code = _region_index(spec, split)
    return np.random.default_rng(np.random.SeedSequence(int(spec.seed), spawn_key=(code,)))


# ----------------------------------------------------------------------------------------------------------
# geometry helpers (vectorised, numpy)
# ----------------------------------------------------------------------------------------------------------


def wrap_longitude(deg):
    """Wrap longitudes [deg] into ``[-180, 180)`` (array or scalar)."""
    return (np.asarray(deg, dtype=np.float64) + 180.0) % 360.0 - 180.0


def longitude_difference(a, b):
    """Signed longitude difference ``a - b`` [deg] wrapped into ``[-180, 180)``; ``abs()`` of it is the
    longitude error that does not penalise the dateline."""
    return wrap_longitude(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def epicentral_distance_km(lat1, lon1, lat2, lon2, radius_km: float = EARTH_RADIUS_KM):
    """Great-circle distance [km] between points given in degrees (haversine, spherical Earth). Broadcasts."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlam = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2.0 * radius_km * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _draw_sources(spec: EarthquakeSpec, split, rng: np.random.Generator):
    """Jittered sources of ``split``: longitude, latitude [deg], depth [km], mesh index; shapes ``(N,)``."""
    cells = spec.lon_cells(split)
    lats, depths = spec.lat_centres, spec.depth_centres
    n_mesh = cells.size * lats.size * depths.size
    n = split_counts(spec)[split]
    if n < n_mesh:
        idx = np.sort(rng.choice(n_mesh, size=n, replace=False))
    else:
        idx = np.arange(n_mesh)
    i_lon, rem = np.divmod(idx, lats.size * depths.size)
    i_lat, i_dep = np.divmod(rem, depths.size)
    u = rng.random((3, idx.size))
    lon = wrap_longitude(cells[i_lon] + u[0] * spec.eff_lon_step)
    lat = lats[i_lat] + (u[1] - 0.5) * spec.eff_lat_step
    dep = np.clip(depths[i_dep] + (u[2] - 0.5) * spec.eff_depth_step, 0.0, spec.depth_max)
    return lon, lat, dep, idx


def _destination(lat_r, lon_r, dist_r, az_r):
    """Spherical destination point (radians) from a start point, distance and azimuth (radians)."""
    sin_lat, cos_lat = np.sin(lat_r), np.cos(lat_r)
    sin_d, cos_d = np.sin(dist_r), np.cos(dist_r)
    sin_lat2 = np.clip(sin_lat * cos_d + cos_lat * sin_d * np.cos(az_r), -1.0, 1.0)
    lat2 = np.arcsin(sin_lat2)
    lon2 = lon_r + np.arctan2(np.sin(az_r) * sin_d * cos_lat, cos_d - sin_lat * sin_lat2)
    return lat2, lon2


def _bearing(lat1_r, lon1_r, lat2_r, lon2_r):
    """Initial bearing (radians, clockwise from north, in (-pi, pi]) from point 1 to point 2."""
    dlon = lon2_r - lon1_r
    cos_lat2 = np.cos(lat2_r)
    y = np.sin(dlon) * cos_lat2
    x = np.cos(lat1_r) * np.sin(lat2_r) - np.sin(lat1_r) * cos_lat2 * np.cos(dlon)
    return np.arctan2(y, x)


# ----------------------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------------------


def generate(
    spec: EarthquakeSpec, table: TravelTimeTable, split, chunk_size: int = 131072
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generate one split.

    Args:
        spec: the data specification.
        table: first-arrival travel-time table covering ``[.., max_station_distance]`` deg and
            ``[0, depth_max]`` km.
        split: ``"train"``, ``"id_test"`` or a region ``k`` in ``1..n_regions``.
        chunk_size: sources processed at once (bounds temporary memory; does not change the result).

    Returns:
        features: float32 ``(N, 6 * n_stations)`` (see the module docstring).
        labels: float32 ``(N, 4)``: longitude [deg], latitude [deg], depth [km], ``T = -tt_1`` [s].
        sources: dict of float64 arrays: ``lon``, ``lat`` [deg], ``depth`` [km] and ``mesh_index`` (int64),
            shape ``(N,)``; and, shape ``(N, n_stations)`` in arrival order, ``station_lat``, ``station_lon``
            [deg, wrapped], ``distance_deg``, ``azimuth_deg`` (source -> station, [0, 360)),
            ``back_azimuth_deg`` (station -> source, [0, 360)) and ``travel_time`` [s].
    """
    if split != "train" and split != "id_test":
        _region_index(spec, split)
    if table.distances[0] > spec.min_station_distance or table.max_distance < spec.max_station_distance:
        raise ValueError("travel-time table does not cover the station distance range")
    if table.depths[0] > 0 or table.max_depth < spec.depth_max:
        raise ValueError("travel-time table does not cover the source depth range")

    rng = _split_rng(spec, split)
    lon, lat, dep, idx = _draw_sources(spec, split, rng)
    n, s = lon.size, spec.n_stations
    dist = rng.uniform(spec.min_station_distance, spec.max_station_distance, size=(n, s))
    az = rng.uniform(0.0, 360.0, size=(n, s))

    features = np.empty((n, s, FEATURES_PER_STATION), dtype=np.float32)
    labels = np.empty((n, 4), dtype=np.float32)
    st_lat = np.empty((n, s))
    st_lon = np.empty((n, s))
    baz = np.empty((n, s))
    tt_out = np.empty((n, s))
    rows = np.arange(min(chunk_size, n))[:, None]
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        r = rows[: b - a]
        lat1 = np.radians(lat[a:b])[:, None]
        lon1 = np.radians(lon[a:b])[:, None]
        tt = table(dist[a:b], dep[a:b, None])
        order = np.argsort(tt, axis=1, kind="stable")
        tt = tt[r, order]
        d = dist[a:b][r, order]
        zz = az[a:b][r, order]
        dist[a:b], az[a:b] = d, zz
        lat2, lon2 = _destination(lat1, lon1, np.radians(d), np.radians(zz))
        theta = _bearing(lat2, lon2, lat1, lon1)
        cos_lat2 = np.cos(lat2)
        f = features[a:b]
        f[..., 0] = cos_lat2 * np.cos(lon2)
        f[..., 1] = cos_lat2 * np.sin(lon2)
        f[..., 2] = np.sin(lat2)
        f[..., 3] = np.sin(theta)
        f[..., 4] = np.cos(theta)
        f[..., 5] = tt - tt[:, :1]
        labels[a:b, 0] = lon[a:b]
        labels[a:b, 1] = lat[a:b]
        labels[a:b, 2] = dep[a:b]
        labels[a:b, 3] = -tt[:, 0]
        st_lat[a:b] = np.degrees(lat2)
        st_lon[a:b] = wrap_longitude(np.degrees(lon2))
        baz[a:b] = np.degrees(theta) % 360.0
        tt_out[a:b] = tt
    sources = {
        "lon": lon,
        "lat": lat,
        "depth": dep,
        "mesh_index": idx.astype(np.int64),
        "station_lat": st_lat,
        "station_lon": st_lon,
        "distance_deg": dist,
        "azimuth_deg": az,
        "back_azimuth_deg": baz,
        "travel_time": tt_out,
    }
    return features.reshape(n, s * FEATURES_PER_STATION), labels, sources


def _split_tag(split) -> str:
    return split if isinstance(split, str) else f"region{int(split)}"


def _table_fingerprint(table: TravelTimeTable) -> str:
    return table.key or _sha256(table.distances, table.depths, table.times)[:20]


def dataset_key(spec: EarthquakeSpec, table: TravelTimeTable) -> str:
    """Hex cache key of the generated data: spec fields, table fingerprint, obspy and generator versions."""
    payload = json.dumps(
        {
            "spec": spec.to_dict(),
            "table": _table_fingerprint(table),
            "obspy": obspy_version(),
            "generator": GENERATOR_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def dataset_cache_path(spec: EarthquakeSpec, table: TravelTimeTable, cache_dir=None) -> Path:
    """``<cache_dir>/earthquake_<key>.npz`` (see :func:`lightning_implicit.datamodules.traveltime.default_cache_dir`)."""
    return default_cache_dir(cache_dir) / f"earthquake_{dataset_key(spec, table)}.npz"


def _load_dataset(path: Path, spec: EarthquakeSpec, key: str) -> dict:
    names = split_names(spec)
    with np.load(path, allow_pickle=False) as z:
        if str(z["key"]) != key:
            raise ValueError("key mismatch")
        arrays = []
        out = {}
        for split in names:
            tag = _split_tag(split)
            x = np.array(z[f"{tag}_features"])
            y = np.array(z[f"{tag}_labels"])
            arrays += [x, y]
            out[split] = (x, y)
        checksum = str(z["checksum"])
    counts = split_counts(spec)
    for split in names:
        x, y = out[split]
        if x.shape != (counts[split], spec.n_features) or y.shape != (counts[split], 4):
            raise ValueError(f"split {split!r} has the wrong shape")
        if x.dtype != np.float32 or y.dtype != np.float32:
            raise ValueError(f"split {split!r} has the wrong dtype")
    if _sha256(*arrays) != checksum:
        raise ValueError("checksum mismatch")
    return out


def generate_all(
    spec: EarthquakeSpec,
    table: TravelTimeTable | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> dict:
    """Generate (or load from the cache) every split: ``{split: (features, labels)}`` for
    ``split in split_names(spec)`` (``"train"``, ``"id_test"``, ``1..n_regions``), shapes as in :func:`generate`.

    The arrays are cached in ``<cache_dir>/earthquake_<key>.npz`` (key: :func:`dataset_key`). The key and a
    SHA-256 checksum of all arrays are stored inside and verified on load; an unreadable, truncated or
    corrupted file is rebuilt (with a warning) and overwritten. ``table=None`` loads or builds the default
    ak135 table in the same cache directory.
    """
    if table is None:
        table = TravelTimeTable.load_or_build(cache_dir=cache_dir, use_cache=use_cache)
    key = dataset_key(spec, table)
    path = dataset_cache_path(spec, table, cache_dir)
    if use_cache and path.exists():
        try:
            return _load_dataset(path, spec, key)
        except Exception as exc:  # any failure to read means the file cannot be trusted
            warnings.warn(f"earthquake data cache {path} is invalid ({exc}); rebuilding", stacklevel=2)
    out = {}
    for split in split_names(spec):
        x, y, _ = generate(spec, table, split)
        out[split] = (x, y)
    if use_cache:
        arrays = {}
        flat = []
        for split in split_names(spec):
            tag = _split_tag(split)
            arrays[f"{tag}_features"], arrays[f"{tag}_labels"] = out[split]
            flat += list(out[split])
        try:
            atomic_savez(path, key=np.array(key), checksum=np.array(_sha256(*flat)), **arrays)
        except OSError as exc:  # a read-only cache must not break data generation
            warnings.warn(f"could not write earthquake data cache {path}: {exc}", stacklevel=2)
    return out
