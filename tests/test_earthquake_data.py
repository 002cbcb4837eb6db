"""Earthquake data: ak135 travel-time table, geometry, split bookkeeping, determinism and caches.

The default-grid table is built once per module (a few seconds); generation uses a coarsened mesh
(``EarthquakeSpec(coarsen=4)``) except for the cheap, subsampled test regions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning_implicit.datamodules.earthquake_data import (
    EARTH_RADIUS_KM,
    EarthquakeSpec,
    dataset_cache_path,
    epicentral_distance_km,
    generate,
    generate_all,
    longitude_difference,
    region_bands,
    split_counts,
    split_names,
    wrap_longitude,
)
from lightning_implicit.datamodules.traveltime import (
    TravelTimeTable,
    default_depth_grid,
    default_distance_grid,
    exact_first_arrival,
)

KM_PER_DEG = EARTH_RADIUS_KM * np.pi / 180.0


@pytest.fixture(scope="module")
def table_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tt-cache")


@pytest.fixture(scope="module")
def table(table_cache):
    """The real default-grid ak135 table, built once into a temporary cache."""
    return TravelTimeTable.load_or_build(cache_dir=table_cache, progress=False)


@pytest.fixture(scope="module")
def taup():
    from obspy.taup import TauPyModel

    return TauPyModel("ak135")


@pytest.fixture(scope="module")
def coarse_spec():
    return EarthquakeSpec(coarsen=4, seed=3)


@pytest.fixture(scope="module")
def coarse_train(coarse_spec, table):
    return generate(coarse_spec, table, "train")


# ---------------------------------------------------------------------------------------------------------
# travel-time table
# ---------------------------------------------------------------------------------------------------------


def test_default_grid_shape(table):
    assert table.distances.shape == (481,) and table.depths.shape == (181,)
    assert table.times.shape == (181, 481)
    np.testing.assert_allclose(table.distances[[0, 200, 201, -1]], [0.0, 2.0, 2.1, 30.0])
    np.testing.assert_allclose(table.depths[[0, 50, 51, -1]], [0.0, 50.0, 55.0, 700.0])
    assert np.isfinite(table.times).all()
    assert table.times[0, 0] == 0.0
    # travel time never decreases with distance (flat only within ~1e-3 s next to a deep source's epicentre)
    assert (np.diff(table.times, axis=1) >= 0).all()
    assert (np.diff(table.times[:, 10:], axis=1) > 0).all()


def test_table_matches_obspy_at_random_points(table, taup):
    rng = np.random.default_rng(12345)
    dist = np.concatenate([rng.uniform(0.5, 30.0, 17), [0.5, 20.0, 29.95]])
    dep = np.concatenate([rng.uniform(0.0, 700.0, 17), [0.3, 699.0, 12.5]])
    exact = np.array([exact_first_arrival(z, d, taup) for d, z in zip(dist, dep, strict=True)])
    # the reference the brief names, spelled out once
    arr = taup.get_travel_times(
        source_depth_in_km=float(dep[0]), distance_in_degree=float(dist[0]), phase_list=["P", "p"]
    )
    assert exact[0] == min(a.time for a in arr)
    got = table(dist, dep)
    np.testing.assert_allclose(got, exact, rtol=0, atol=0.05)


def test_table_nodes_match_obspy(table, taup):
    rng = np.random.default_rng(7)
    i = rng.integers(0, table.depths.size, 6)
    j = rng.integers(0, table.distances.size, 6)
    exact = [
        exact_first_arrival(table.depths[a], table.distances[b], taup) for a, b in zip(i, j, strict=True)
    ]
    np.testing.assert_allclose(table.times[i, j], exact, rtol=0, atol=2e-3)


def test_table_interpolation_nan_free_and_bounds(table):
    rng = np.random.default_rng(0)
    d = rng.uniform(0.0, 30.0, 50_000)
    z = rng.uniform(0.0, 700.0, 50_000)
    t = table(d, z)
    assert t.shape == (50_000,) and np.isfinite(t).all() and (t >= 0).all()
    # exact at nodes, including the grid's last row/column
    jj, ii = np.meshgrid(np.arange(table.depths.size), np.arange(table.distances.size), indexing="ij")
    np.testing.assert_array_equal(table(table.distances[ii], table.depths[jj]), table.times)
    # broadcasting: (n, 5) distances with (n, 1) depths
    assert table(d[:10].reshape(2, 5), z[:2, None]).shape == (2, 5)
    for bad in ((30.01, 10.0), (-0.1, 10.0), (5.0, 700.5), (5.0, -1.0), (np.nan, 1.0), (1.0, np.nan)):
        with pytest.raises(ValueError, match="outside the travel-time grid"):
            table(*bad)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 30.0), st.floats(0.0, 700.0))
def test_table_bilinear_within_cell_bounds(table, d, z):
    t = float(table(d, z))
    i = min(np.searchsorted(table.distances, d, side="right") - 1, table.distances.size - 2)
    j = min(np.searchsorted(table.depths, z, side="right") - 1, table.depths.size - 2)
    cell = table.times[j : j + 2, i : i + 2]
    assert cell.min() - 1e-9 <= t <= cell.max() + 1e-9


def test_table_cache_reused_and_corruption_rebuilt(tmp_path):
    grid = dict(distances=default_distance_grid(coarsen=10), depths=default_depth_grid(coarsen=10))
    original = TravelTimeTable.load_or_build(cache_dir=tmp_path, progress=False, **grid)
    path = TravelTimeTable.cache_path(tmp_path, original.key)
    assert path.exists() and path.name.endswith(".npz")
    good = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    again = TravelTimeTable.load_or_build(cache_dir=tmp_path, progress=False, **grid)
    assert path.stat().st_mtime_ns == mtime  # loaded, not rebuilt
    np.testing.assert_array_equal(again.times, original.times)

    # a 1-byte flip inside the times payload keeps the zip readable: the checksum must catch it
    data = np.load(path)
    raw = bytearray(good)
    pos = raw.find(data["times"].tobytes()[:64])
    data.close()
    assert pos > 0
    raw[pos + 100] ^= 0xFF
    corruptions = {
        "truncated": good[: len(good) // 2],
        "garbage": b"not a zip file at all" * 100,
        "flipped": bytes(raw),
    }
    for name, blob in corruptions.items():
        path.write_bytes(blob)
        with pytest.warns(UserWarning, match="rebuilding"):
            rebuilt = TravelTimeTable.load_or_build(cache_dir=tmp_path, progress=False, **grid)
        np.testing.assert_array_equal(rebuilt.times, original.times, err_msg=name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the rewritten cache is valid again
            TravelTimeTable.load(path, expected_key=original.key)


def test_table_key_depends_on_grid():
    a = TravelTimeTable.cache_key(default_distance_grid(), default_depth_grid())
    b = TravelTimeTable.cache_key(default_distance_grid(coarsen=2), default_depth_grid())
    assert a != b and a == TravelTimeTable.cache_key(default_distance_grid(), default_depth_grid())


# ---------------------------------------------------------------------------------------------------------
# counts and spec
# ---------------------------------------------------------------------------------------------------------


def test_split_counts_paper_profile():
    spec = EarthquakeSpec()
    counts = split_counts(spec)
    assert counts["train"] == 720_576 == 144 * 139 * 36
    assert counts["region_mesh"] == 80_064
    assert all(counts[k] == 20_016 for k in range(1, 10))
    assert counts["id_test"] == 20_016
    assert counts["total"] == 720_576 + 10 * 20_016
    assert spec.n_features == 30
    assert split_names(spec) == ["train", "id_test", *range(1, 10)]


def test_spec_validation_and_coarsen():
    c = split_counts(EarthquakeSpec(coarsen=2))
    assert c["train"] == 72 * 70 * 18 and c["region_mesh"] == 8 * 70 * 18
    assert split_counts(EarthquakeSpec(region_size=100))[5] == 100
    with pytest.raises(ValueError, match="tile"):
        EarthquakeSpec(coarsen=3)  # 3.75 deg cells do not tile a 10 deg band
    with pytest.raises(ValueError):
        EarthquakeSpec(n_regions=10)  # would go past 180 deg
    with pytest.raises(ValueError, match="split"):
        generate(EarthquakeSpec(coarsen=8), None, "validation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="region"):
        region_bands(EarthquakeSpec(), 0)
    assert region_bands(EarthquakeSpec(), 1) == [(90.0, 100.0), (-100.0, -90.0)]
    assert region_bands(EarthquakeSpec(), 9) == [(170.0, 180.0), (-180.0, -170.0)]


# ---------------------------------------------------------------------------------------------------------
# geometry and features
# ---------------------------------------------------------------------------------------------------------


def test_station_geometry_matches_obspy(coarse_train):
    from obspy.geodetics.base import gps2dist_azimuth

    _, _, src = coarse_train
    rng = np.random.default_rng(1)
    rows = rng.choice(src["lon"].size, 60, replace=False)
    for r in rows:
        for s in range(src["distance_deg"].shape[1]):
            dist_m, az, baz = gps2dist_azimuth(
                src["lat"][r],
                src["lon"][r],
                src["station_lat"][r, s],
                src["station_lon"][r, s],
                a=EARTH_RADIUS_KM * 1000.0,
                f=0.0,
            )
            assert dist_m / 1000.0 / KM_PER_DEG == pytest.approx(src["distance_deg"][r, s], abs=1e-6)
            assert abs(longitude_difference(az, src["azimuth_deg"][r, s])) < 1e-5
            assert abs(longitude_difference(baz, src["back_azimuth_deg"][r, s])) < 1e-5
    # the vectorised haversine helper agrees too
    d_km = epicentral_distance_km(
        src["lat"][:, None], src["lon"][:, None], src["station_lat"], src["station_lon"]
    )
    np.testing.assert_allclose(d_km / KM_PER_DEG, src["distance_deg"], atol=1e-6)


def test_features_and_labels_are_consistent(coarse_spec, coarse_train, table):
    x, y, src = coarse_train
    n = split_counts(coarse_spec)["train"]
    assert x.shape == (n, 30) and x.dtype == np.float32
    assert y.shape == (n, 4) and y.dtype == np.float32
    assert np.isfinite(x).all() and np.isfinite(y).all()
    f = x.reshape(n, 5, 6)
    p = f[..., 5]
    assert (p[:, 0] == 0).all()
    assert (p >= 0).all() and (np.diff(p, axis=1) >= 0).all()
    assert (np.diff(src["travel_time"], axis=1) >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(f[..., :3], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(f[..., 3] ** 2 + f[..., 4] ** 2, 1.0, atol=1e-6)
    lat, lon = np.radians(src["station_lat"]), np.radians(src["station_lon"])
    np.testing.assert_allclose(f[..., 2], np.sin(lat), atol=1e-6)
    np.testing.assert_allclose(f[..., 0], np.cos(lat) * np.cos(lon), atol=1e-6)
    baz = np.radians(src["back_azimuth_deg"])
    np.testing.assert_allclose(f[..., 3], np.sin(baz), atol=1e-6)
    np.testing.assert_allclose(f[..., 4], np.cos(baz), atol=1e-6)
    tt = table(src["distance_deg"], src["depth"][:, None])
    np.testing.assert_allclose(src["travel_time"], tt)
    np.testing.assert_allclose(p, tt - tt[:, :1], atol=1e-4)
    np.testing.assert_allclose(y[:, 3], -tt[:, 0], rtol=1e-6)
    np.testing.assert_allclose(
        y[:, :3], np.stack([src["lon"], src["lat"], src["depth"]], 1), rtol=1e-6, atol=1e-4
    )
    d = src["distance_deg"]
    assert d.min() >= 0.5 and d.max() <= 20.0
    assert y[:, 2].min() >= 0 and y[:, 2].max() <= 700
    assert np.abs(y[:, 1]).max() <= 69.0 + coarse_spec.eff_lat_step / 2


def test_training_and_region_longitudes(coarse_spec, coarse_train, table):
    _, y, _ = coarse_train
    assert y[:, 0].min() >= -90.0 and y[:, 0].max() <= 90.0
    # every training cell is populated (no empty stripe)
    counts = np.bincount(((y[:, 0] + 90.0) // coarse_spec.eff_lon_step).astype(int))
    assert counts.size == 36 and (counts > 0).all()
    for spec in (coarse_spec, EarthquakeSpec(seed=5)):  # regions are cheap even at paper size
        for k in range(1, 10):
            x, yk, _ = generate(spec, table, k)
            assert yk.shape[0] == split_counts(spec)[k] and np.isfinite(x).all()
            lon = yk[:, 0].astype(np.float64)
            (e_lo, e_hi), (w_lo, w_hi) = region_bands(spec, k)
            east = (lon >= e_lo) & (lon < e_hi)
            west = (lon >= w_lo) & (lon < w_hi)
            assert (east | west).all(), k
            assert east.any() and west.any()
            assert (np.abs(lon) > 90.0).all()
    _, yid, _ = generate(coarse_spec, table, "id_test")
    assert yid.shape[0] == split_counts(coarse_spec)["id_test"]
    assert np.abs(yid[:, 0]).max() <= 90.0


def test_wrap_and_distance_helpers():
    np.testing.assert_allclose(
        wrap_longitude([180.0, -180.0, 190.0, -190.0, 0.0, 540.0]),
        [-180.0, -180.0, -170.0, 170.0, 0.0, -180.0],
    )
    assert longitude_difference(179.0, -179.0) == pytest.approx(-2.0)
    assert epicentral_distance_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(KM_PER_DEG)
    assert epicentral_distance_km(10.0, 179.5, 10.0, -179.5) == pytest.approx(
        epicentral_distance_km(10, 0, 10, 1)
    )
    assert epicentral_distance_km(90.0, 0.0, -90.0, 0.0) == pytest.approx(np.pi * EARTH_RADIUS_KM)


# ---------------------------------------------------------------------------------------------------------
# determinism and the data cache
# ---------------------------------------------------------------------------------------------------------


def test_seeded_reproducibility(table):
    spec = EarthquakeSpec(coarsen=8, seed=11)
    for split in ("train", "id_test", 4):
        x1, y1, s1 = generate(spec, table, split)
        x2, y2, s2 = generate(spec, table, split, chunk_size=97)  # chunking does not change the draw
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(s1["mesh_index"], s2["mesh_index"])
        x3, y3, _ = generate(EarthquakeSpec(coarsen=8, seed=12), table, split)
        assert not np.array_equal(x1, x3) and not np.array_equal(y1, y3)
    # splits are independent streams: regions differ from each other
    assert not np.array_equal(generate(spec, table, 1)[0], generate(spec, table, 2)[0])


def test_generate_all_cache_and_corruption(tmp_path, table):
    spec = EarthquakeSpec(coarsen=8, seed=2)
    first = generate_all(spec, table, cache_dir=tmp_path)
    path = dataset_cache_path(spec, table, tmp_path)
    assert path.exists()
    assert set(first) == set(split_names(spec))
    for split, (x, y) in first.items():
        xs, ys, _ = generate(spec, table, split)  # each split regenerates alone, identically
        np.testing.assert_array_equal(x, xs)
        np.testing.assert_array_equal(y, ys)
    good = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    cached = generate_all(spec, table, cache_dir=tmp_path)
    assert path.stat().st_mtime_ns == mtime
    for split in first:
        np.testing.assert_array_equal(cached[split][0], first[split][0])

    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0x01  # inside an array payload: only the checksum notices
    for name, blob in {
        "truncated": good[: len(good) // 3],
        "garbage": b"\x00garbage" * 1000,
        "flipped": bytes(raw),
    }.items():
        path.write_bytes(blob)
        with pytest.warns(UserWarning, match="rebuilding"):
            rebuilt = generate_all(spec, table, cache_dir=tmp_path)
        for split in first:
            np.testing.assert_array_equal(rebuilt[split][0], first[split][0], err_msg=name)
            np.testing.assert_array_equal(rebuilt[split][1], first[split][1], err_msg=name)
        assert path.read_bytes() == good

    other = dataset_cache_path(EarthquakeSpec(coarsen=8, seed=3), table, tmp_path)
    assert other != path
