"""Helpers shared by the test modules, each defined once.

- An H3 oracle independent of the code under test (``core/partitioning``): it draws every
  cell of a resolution as a shapely polygon in (lon, lat) — edges densified along their
  great circles (numpy slerp), cells across the antimeridian folded into two pieces, the
  pole's cell as the cap above its boundary — and intersects a footprint with all of them.
  ``core/test_partitioning.py`` proves it agrees with ``h3.latlng_to_cell``, which is exact;
  the end-to-end tests take their expected (id, cell) pairs from it
  (:func:`expected_pairs`), never from ``fan_out``/``cells_for_geometry``.
- What an end-to-end test checks of a catalog (:func:`table_pairs`,
  :func:`catalog_holds_exactly`, ...), how it writes a synthetic day and its inventory
  (:func:`write_day`), and how it materializes a partition (:func:`materialize_partition`).

Dagster is imported inside the functions that need it, so core tests importing the oracle
stay fast.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import h3
import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Polygon, box

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import hash_ids, load_hash_index
from earthcatalog_dagster.layout import NO_CELL
from earthcatalog_dagster.synthetic import GeneratedDay, generate_day, write_inventory

WORLD = box(-180.0, -90.0, 180.0, 90.0)

# --- the H3 oracle ------------------------------------------------------------------------------


def ring_of(geometry: dict) -> list[tuple[float, float]]:
    """The exterior ring of a GeoJSON polygon as (lon, lat) floats."""
    return [(float(x), float(y)) for x, y in geometry["coordinates"][0]]


def continuous(lons: list[float]) -> list[float]:
    """Longitudes with every jump of more than 180° undone (the oracle's own unwrapping)."""
    out = [lons[0]]
    for lon in lons[1:]:
        delta = (lon - out[-1] + 180.0) % 360.0 - 180.0
        out.append(out[-1] + delta)
    return out


def planar_region(ring: list[tuple[float, float]], pole_hint: float | None = None):
    """A closed (lon, lat) ring as a shapely area inside [-180, 180] × [-90, 90].

    A ring that winds round a pole becomes the cap between it and the pole: it is rotated to
    start right after its antimeridian crossing, so its longitudes run from -180 to 180, and
    closed along the pole line with the latitude interpolated at the crossing. Other rings are
    copied at -360, 0 and +360 and clipped to the world.
    """
    if ring[0] != ring[-1]:
        ring = [*ring, ring[0]]
    lons = continuous([x for x, _ in ring])
    lats = [y for _, y in ring]
    turns = round((lons[-1] - lons[0]) / 360.0)
    if turns == 0:
        poly = shapely.make_valid(Polygon(list(zip(lons, lats, strict=True))))
        parts = [
            affinity.translate(poly, dx, 0.0).intersection(WORLD)
            for dx in (-720.0, -360.0, 0.0, 360.0, 720.0)
        ]
        return shapely.union_all([p for p in parts if not p.is_empty])
    pole = pole_hint if pole_hint is not None else math.copysign(90.0, sum(lats))
    points = list(zip([x for x, _ in ring][:-1], lats[:-1], strict=True))
    if turns < 0:
        points = points[::-1]
    # Normalise to [-180, 180) and start at the vertex right after the wrap (eastward run).
    points = [((x + 180.0) % 360.0 - 180.0, y) for x, y in points]
    n = len(points)
    start = next(i for i in range(n) if points[i][0] - points[i - 1][0] < -180.0)
    run = points[start:] + points[:start]
    (x_last, y_last), (x_first, y_first) = run[-1], run[0]
    span = (x_first + 360.0) - x_last
    y_cross = y_last + (y_first - y_last) * (180.0 - x_last) / span if span else y_first
    shell = [(-180.0, y_cross), *run, (180.0, y_cross), (180.0, pole), (-180.0, pole)]
    return shapely.make_valid(Polygon(shell)).intersection(WORLD)


def _slerp_boundary(cell: str, per_edge: int = 24) -> list[tuple[float, float]]:
    """(lon, lat) of a cell boundary with its edges densified along their great circles."""
    latlng = np.radians(np.array(h3.cell_to_boundary(cell)))
    xyz = np.column_stack(
        [
            np.cos(latlng[:, 0]) * np.cos(latlng[:, 1]),
            np.cos(latlng[:, 0]) * np.sin(latlng[:, 1]),
            np.sin(latlng[:, 0]),
        ]
    )
    out = []
    for a, b in zip(xyz, np.roll(xyz, -1, axis=0), strict=True):
        omega = np.arccos(np.clip(a @ b, -1.0, 1.0))
        t = np.arange(per_edge)[:, None] / per_edge
        v = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
        lat = np.degrees(np.arcsin(np.clip(v[:, 2], -1.0, 1.0)))
        lon = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
        out.extend(zip(lon.tolist(), lat.tolist(), strict=True))
    return out


@functools.cache
def oracle_cells(
    resolution: int, polar_only: bool = False
) -> tuple[list[str], list, shapely.STRtree]:
    """Every cell of ``resolution`` with its true (lon, lat) area, and a tree over them.

    ``polar_only`` keeps the cells whose centre lies beyond 75° of latitude: enough for
    footprints beyond 78°, and affordable at finer resolutions.
    """
    cells = sorted(
        child for base in h3.get_res0_cells() for child in h3.cell_to_children(base, resolution)
    )
    if polar_only:
        cells = [c for c in cells if abs(h3.cell_to_latlng(c)[0]) >= 75.0]
    areas = []
    for cell in cells:
        pole = math.copysign(90.0, h3.cell_to_latlng(cell)[0])
        areas.append(planar_region(_slerp_boundary(cell), pole_hint=pole))
    return cells, areas, shapely.STRtree(areas)


def oracle(geometry: dict, resolution: int = 1, polar_only: bool = False) -> set[str]:
    """Cells whose true area intersects any polygon of ``geometry`` (brute force)."""
    cells, _areas, tree = oracle_cells(resolution, polar_only)
    polygons = (
        geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    )
    found: set[str] = set()
    for rings in polygons:
        region = planar_region([(float(x), float(y)) for x, y in rings[0]])
        found.update(cells[i] for i in tree.query(region, predicate="intersects"))
    return found


def expected_cells(geometry: dict[str, Any] | None, resolution: int = 1) -> list[str]:
    """The cells an item's footprint belongs to, by the oracle: ``[NO_CELL]`` without one."""
    if geometry is None:
        return [NO_CELL]
    return sorted(oracle(geometry, resolution))


def distance_to(cell: str, geometry: dict, resolution: int = 1) -> float:
    """Planar distance (degrees) between a cell's true area and a footprint."""
    cells, areas, _tree = oracle_cells(resolution, False)
    return areas[cells.index(cell)].distance(planar_region(ring_of(geometry)))


#: How far (degrees) a cell the code adds may lie from the footprint: H3 draws cell edges as
#: straight lines where the true edges are arcs (as ``core/test_partitioning.py`` allows).
EXTRA_CELL_TOLERANCE = 0.25


def expected_pairs(*days: GeneratedDay, resolution: int = 1) -> list[tuple[str, str]]:
    """Sorted (id, cell) pairs of ``days`` by the oracle: the cells the footprints overlap.

    What the warehouse must hold at least; :func:`pairs_mismatch` also accepts the few extra
    cells next to a footprint that H3's straight cell edges give.
    """
    return sorted(
        (item["id"], cell)
        for day in days
        for item in day.items
        for cell in expected_cells(item["geometry"], resolution)
    )


def _tolerance(geometry: dict) -> float:
    """:data:`EXTRA_CELL_TOLERANCE` widened by 1/cos(latitude) of the footprint's most polar
    vertex: distances here are planar degrees, and a degree of longitude shrinks towards the
    poles (a Svalbard footprint's neighbour cell lies 0.3° away in the plane, ~10 km)."""
    top = max(abs(y) for _, y in ring_of(geometry))
    return EXTRA_CELL_TOLERANCE / max(math.cos(math.radians(top)), 0.1)


def pairs_mismatch(
    pairs: Iterable[tuple[str, str]], *days: GeneratedDay, resolution: int = 1
) -> list[str]:
    """Why ``pairs`` (id, grid_partition) are not exactly the items of ``days``; [] if they are.

    Each pair once, the ids exactly the days' items, each item in every cell the oracle
    finds, and any other cell of an item within :data:`EXTRA_CELL_TOLERANCE` of its footprint.
    """
    pairs = list(pairs)
    problems: list[str] = []
    if len(pairs) != len(set(pairs)):
        problems.append("an (id, grid_partition) pair is there twice")
    got: dict[str, set[str]] = {}
    for item_id, cell in pairs:
        got.setdefault(item_id, set()).add(cell)
    items = {item["id"]: item for day in days for item in day.items}
    if set(got) != set(items):
        missing, extra = sorted(set(items) - set(got)), sorted(set(got) - set(items))
        problems.append(
            f"ids missing {missing[:3]} ({len(missing)}), extra {extra[:3]} ({len(extra)})"
        )
    for item_id in set(got) & set(items):
        geometry = items[item_id]["geometry"]
        want = set(expected_cells(geometry, resolution))
        if not want <= got[item_id]:
            problems.append(f"{item_id}: cells {sorted(want - got[item_id])} missing")
        for cell in got[item_id] - want:
            if geometry is None or distance_to(cell, geometry, resolution) >= _tolerance(geometry):
                problems.append(f"{item_id}: cell {cell} does not touch the footprint")
    return problems


def pairs_match(pairs: Iterable[tuple[str, str]], *days: GeneratedDay, resolution: int = 1) -> bool:
    """``pairs`` are exactly the items of ``days``, each in its footprint's cells (oracle)."""
    return not pairs_mismatch(pairs, *days, resolution=resolution)


def assert_pairs_match(
    pairs: Iterable[tuple[str, str]], *days: GeneratedDay, resolution: int = 1
) -> None:
    """Assert :func:`pairs_match`, naming what is wrong."""
    problems = pairs_mismatch(pairs, *days, resolution=resolution)
    assert not problems, problems[:10]


# --- the catalog as the tests see it ----------------------------------------------------------


def load_table(settings: Settings) -> Any:
    """The Iceberg table of ``settings``' local catalog (``None`` if there is none yet)."""
    return iceberg.load_table(iceberg.open_catalog(settings.catalog, settings.warehouse))


def scan_pairs(table: Any) -> list[tuple[str, str]]:
    """Sorted (id, grid_partition) of every row of ``table``; [] without a table or snapshot."""
    if table is None or table.current_snapshot() is None:
        return []
    rows = table.scan(selected_fields=("id", "grid_partition")).to_arrow()
    return sorted(zip(rows["id"].to_pylist(), rows["grid_partition"].to_pylist(), strict=True))


def table_pairs(settings: Settings) -> list[tuple[str, str]]:
    """Sorted (id, grid_partition) of every row the table of ``settings`` holds."""
    return scan_pairs(load_table(settings))


def warehouse_files(settings: Settings) -> set[str]:
    """Every Parquet file under the warehouse root."""
    return {o.uri for o in storage.list_objects(settings.warehouse, suffix=".parquet")}


def index_is_exactly(settings: Settings, ids: Iterable[str]) -> None:
    """The hash index holds exactly the hashes of ``ids``."""
    wanted = sorted(set(ids))
    index = load_hash_index(settings.warehouse_hash)
    assert len(index) == len(wanted)
    assert bool(index.contains(hash_ids(wanted)).all())


def index_holds(settings: Settings, *days: GeneratedDay) -> None:
    """The hash index holds exactly the good ids of ``days``."""
    index_is_exactly(settings, [i for day in days for i in day.good_ids])


def catalog_holds_exactly(settings: Settings, *days: GeneratedDay, resolution: int = 1) -> None:
    """The catalog is exactly what one clean run of ``days`` gives.

    Each (id, cell) pair once and in its footprint's cells (:func:`assert_pairs_match`), the
    hash index exactly the days' ids, and every warehouse file registered (none left over).
    """
    assert_pairs_match(table_pairs(settings), *days, resolution=resolution)
    index_holds(settings, *days)
    assert warehouse_files(settings) == iceberg.registered_files(load_table(settings)), (
        "unregistered warehouse files"
    )


# --- synthetic days -------------------------------------------------------------------------


def write_day(
    settings: Settings, date: Any, n: int, *, seed: int = 0, fmt: str = "parquet"
) -> tuple[GeneratedDay, str]:
    """Write a synthetic day of ``n`` good items and its inventory; the day and its manifest."""
    day = generate_day(date, n, source_root=settings.source_root, seed=seed)
    return day, write_inventory(settings.inventory, date, day.refs, fmt=fmt)


# --- Dagster ----------------------------------------------------------------------------------


def resources_for(
    settings: Settings,
    *,
    scheduler: str = "synchronous",
    workers: int | None = None,
    s3: Any = None,
) -> dict[str, Any]:
    """The Definitions' resources for exactly ``settings`` (roots, catalog, compute, s3)."""
    from earthcatalog_dagster.definitions import build_definitions
    from earthcatalog_dagster.orchestration.resources import DaskCompute
    from earthcatalog_dagster_tests.conftest import roots_for

    roots, catalog = roots_for(settings)
    compute = (
        DaskCompute(scheduler=scheduler)
        if workers is None
        else DaskCompute(scheduler=scheduler, workers=workers)
    )
    return dict(build_definitions(roots=roots, catalog=catalog, compute=compute, s3=s3).resources)


def materialize_partition(
    settings: Settings,
    date: Any,
    *,
    selection: Any = None,
    instance: Any = None,
    scheduler: str = "synchronous",
    workers: int | None = None,
    **kwargs: Any,
) -> Any:
    """Materialize the ingest assets for partition ``date`` on an ephemeral instance."""
    from dagster import DagsterInstance, materialize

    from earthcatalog_dagster.orchestration.assets import ingest_assets

    return materialize(
        ingest_assets,
        selection=selection,
        partition_key=date.isoformat(),
        resources=resources_for(settings, scheduler=scheduler, workers=workers),
        instance=instance or DagsterInstance.ephemeral(),
        **kwargs,
    )


def metadata(result: Any, asset: str) -> dict[str, Any]:
    """The metadata values of ``asset``'s first materialization in ``result``."""
    return {
        k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()
    }


def checks_pass(result: Any) -> None:
    """Every asset check evaluated in ``result`` passed."""
    failed = [
        (c.check_name, c.metadata) for c in result.get_asset_check_evaluations() if not c.passed
    ]
    assert not failed, failed
