"""Charts given a lazy frame (Polars LazyFrame, DuckDB, Spark) cut the rows on its engine.

At most ``max_points + 1`` rows reach the driver per collection (counts are one number), and
the embedded rows and the subtitle are those of the eager Polars render where the reduction can
be the same (head, bar sums and top categories, pie merge, heatmap cells); line and scatter
reductions, which cannot, are checked against a plain-Python oracle of what docs say they do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
import pytest

from data_pipeline.visualization import (
    BarChart,
    Dashboard,
    Heatmap,
    LineChart,
    PieChart,
    ScatterPlot,
)
from tests.conftest import spark_frame

LAZY = ["polars-lazy", "duckdb", pytest.param("pyspark", marks=pytest.mark.spark)]


class Lazy:
    """Makes lazy frames of one engine and records the rows of every collection."""

    def __init__(self, engine: str, request: pytest.FixtureRequest) -> None:
        self.engine = engine
        self.request = request
        self.collected: list[int] = []

    def __call__(self, data: pl.DataFrame) -> Any:
        if self.engine == "polars-lazy":
            return data.lazy()
        if self.engine == "duckdb":
            con = self.request.getfixturevalue("duckdb_connection")
            return con.from_arrow(data.to_arrow())
        return spark_frame(self.request.getfixturevalue("spark"), data).repartition(3)

    @contextlib.contextmanager
    def counting(self, frame: Any) -> Iterator[list[int]]:
        """Record the rows of each collection of ``frame``'s engine (Spark, Polars); on Spark a
        collection by any other way than Arrow fails."""
        self.collected = []
        mp = pytest.MonkeyPatch()
        if self.engine == "pyspark":
            cls = type(frame)
            to_arrow = cls.toArrow

            def recorded(df: Any) -> Any:
                table = to_arrow(df)
                self.collected.append(table.num_rows)
                return table

            def refused(*_: Any, **__: Any) -> Any:
                raise AssertionError("rows collected without Arrow")

            mp.setattr(cls, "toArrow", recorded)
            for method in ("toPandas", "collect", "toLocalIterator"):
                mp.setattr(cls, method, refused)
        elif self.engine == "polars-lazy":
            collect = pl.LazyFrame.collect

            def recorded_pl(lf: Any, *args: Any, **kwargs: Any) -> Any:
                out = collect(lf, *args, **kwargs)
                self.collected.append(out.height)
                return out

            mp.setattr(pl.LazyFrame, "collect", recorded_pl)
        try:
            yield self.collected
        finally:
            mp.undo()

    def check(self, limit: int) -> None:
        if self.engine == "duckdb":  # a C type: nothing to patch; its results are compared
            return
        assert self.collected, "nothing was collected"
        assert max(self.collected) <= limit + 1, self.collected


@pytest.fixture(params=LAZY)
def lazy(request: pytest.FixtureRequest) -> Lazy:
    return Lazy(str(request.param), request)


def render(lazy: Lazy, chart: Any, data: pl.DataFrame) -> dict[str, Any]:
    frame = lazy(data)
    with lazy.counting(frame):
        spec: dict[str, Any] = chart.render(frame)
    lazy.check(chart.settings.max_points)
    return spec


def source(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["datasets"]["source"]  # type: ignore[no-any-return]


def same_as_eager(spec: dict[str, Any], chart: Any, data: pl.DataFrame) -> None:
    """The lazy render embeds what the eager Polars render embeds, with the same notes."""
    eager = chart.render(data)
    assert source(spec) == source(eager)
    assert spec.get("title") == eager.get("title")
    meta, want = spec["usermeta"]["data_pipeline"], eager["usermeta"]["data_pipeline"]
    assert {k: v for k, v in meta.items() if k != "rows_in"} == {
        k: v for k, v in want.items() if k != "rows_in"
    }


# -- head, sums, merges: the same as on Polars ---------------------------------------------------


def test_bar_of_raw_rows_is_summed_and_cut_on_the_engine(lazy: Lazy) -> None:
    n, cats = 3000, 400
    data = pl.DataFrame(
        {"cat": [f"c{i % cats:03d}" for i in range(n)], "v": [(i * 7) % 17 - 3 for i in range(n)]}
    )
    chart = BarChart(name="b", config={"x": "cat", "y": "v", "max_points": 50})
    spec = render(lazy, chart, data)
    # oracle: sum per category, keep the 50 largest |sum| (ties by name), drawn by name
    sums: dict[str, int] = defaultdict(int)
    for c, v in zip(data["cat"], data["v"], strict=True):
        sums[c] += v
    abs_sums: dict[str, int] = defaultdict(int)
    for c, v in sums.items():
        abs_sums[c] += abs(v)
    top = sorted(abs_sums, key=lambda c: (-abs_sums[c], c))[:50]
    assert source(spec) == [{"cat": c, "v": sums[c]} for c in sorted(top)]
    assert spec["title"]["subtitle"] == (
        "Summed 3,000 rows into 400 bars. Showing the top 50 of 400 categories by total."
    )
    same_as_eager(spec, chart, data)


def test_aggregated_bar_with_series_keeps_top_categories(lazy: Lazy) -> None:
    n = 2400
    data = pl.DataFrame(
        {
            "cat": [i % 200 for i in range(n)],
            "s": [["a", "b", None][i % 3] for i in range(n)],
            "v": [(i % 5) * (1 if i % 2 else -1) for i in range(n)],
        }
    )
    chart = BarChart(
        name="b", config={"x": "cat", "y": "v", "series": "s", "aggregate": "sum", "max_points": 50}
    )
    spec = render(lazy, chart, data)
    cells: dict[tuple[int, Any], int] = defaultdict(int)
    for c, s, v in data.iter_rows():
        cells[(c, s)] += v
    totals: dict[int, int] = defaultdict(int)
    for (c, _), v in cells.items():
        totals[c] += abs(v)
    keep_n = 50 // (len(cells) // len(totals))
    top = set(sorted(totals, key=lambda c: (-totals[c], c))[:keep_n])
    want = sorted(
        ((c, s, v) for (c, s), v in cells.items() if c in top),
        key=lambda r: (r[0], r[1] is None, r[1] or ""),
    )
    assert [(r["cat"], r["s"], r["v"]) for r in source(spec)] == want
    same_as_eager(spec, chart, data)


def test_pie_merges_the_rest_on_the_engine(lazy: Lazy) -> None:
    n = 3000
    data = pl.DataFrame(
        {
            "cat": [None if i % 97 == 0 else f"k{i % 300:03d}" for i in range(n)],
            "v": [i % 4 for i in range(n)],  # many equal sums: ties broken by category
        }
    )
    chart = PieChart(
        name="p", config={"category": "cat", "value": "v", "max_slices": 8, "max_points": 20}
    )
    spec = render(lazy, chart, data)
    sums: dict[Any, int] = defaultdict(int)
    for c, v in data.iter_rows():
        sums[c] += v
    ranked = sorted(sums, key=lambda c: (-sums[c], c is None, c or ""))
    want = [{"cat": c, "v": sums[c]} for c in ranked[:7]]
    want.append({"cat": "Other", "v": sum(sums[c] for c in ranked[7:])})
    assert [{"cat": r["cat"], "v": r["v"]} for r in source(spec)] == want
    assert (
        spec["title"]["subtitle"]
        == f"{len(sums) - 7:,} smaller categories are summed into 'Other'."
    )
    same_as_eager(spec, chart, data)


def test_heatmap_keeps_the_first_cells_with_date_labels(lazy: Lazy) -> None:
    n = 3000
    data = pl.DataFrame(
        {
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 60) for i in range(n)],
            "region": [f"r{i % 5}" for i in range(n)],
            "v": [i % 11 for i in range(n)],
        }
    )
    chart = Heatmap(
        name="h",
        config={"x": "day", "y": "region", "value": "v", "aggregate": "sum", "max_points": 40},
    )
    spec = render(lazy, chart, data)
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for d, r, v in data.iter_rows():
        cells[(r, d.isoformat())] += v
    first = sorted(cells)[:40]
    assert [(r["region"], r["day"], r["v"]) for r in source(spec)] == [
        (r, d, cells[(r, d)]) for r, d in first
    ]
    assert spec["title"]["subtitle"] == f"Showing the first 40 of {len(cells):,} rows."
    same_as_eager(spec, chart, data)


def test_dashboard_rollup_falls_back_within_the_limit(lazy: Lazy) -> None:
    n = 1200
    data = pl.DataFrame(
        {
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 40) for i in range(n)],
            "region": [["North", "South", "East"][i % 3] for i in range(n)],
            "sales": [i % 13 for i in range(n)],
        }
    )

    def dashboard() -> Dashboard:
        d = Dashboard("d", {"filter": {"field": "region"}})
        d.add_visualization(
            BarChart(
                name="big", config={"x": "day", "y": "sales", "aggregate": "sum", "max_points": 10}
            )
        )
        d.add_visualization(
            PieChart(name="pie", config={"category": "region", "value": "sales", "max_points": 10})
        )
        return d

    frame = lazy(data)
    with lazy.counting(frame):
        got = dashboard().render(frame)
    lazy.check(10)
    eager = dashboard().render(data)
    for a, b in zip(got["visualizations"], eager["visualizations"], strict=True):
        for item in (a, b):
            item["spec"]["usermeta"]["data_pipeline"].pop("rows_in", None)
        assert a == b, a["name"]
    assert len(source(got["visualizations"][0]["spec"])) == 10


# -- line and scatter: the engine's own, documented reduction ------------------------------------


def minmax_oracle(points: list[tuple[Any, float]], budget: int) -> list[tuple[Any, float]]:
    """Per series (sorted by x, y): first, last, and per bucket the first lowest and highest."""
    n = len(points)
    if n <= budget:
        return points
    buckets = (budget - 2) // 2
    keep = {0, n - 1}
    by_bucket: dict[int, list[int]] = defaultdict(list)
    for i in range(1, n - 1):  # 0-based here; the engine's index is 1-based
        by_bucket[(i - 1) * buckets // max(n - 2, 1)].append(i)
    for members in by_bucket.values():
        keep.add(min(members, key=lambda i: (points[i][1], i)))
        keep.add(min(members, key=lambda i: (-points[i][1], i)))
    return [points[i] for i in sorted(keep)]


def test_line_keeps_lowest_and_highest_per_bucket_on_the_engine(lazy: Lazy) -> None:
    n = 3000
    ys = [float((i * 37) % 101) for i in range(n)]
    ys[1234] = 500.0  # a spike
    data = pl.DataFrame(
        {
            "t": [i // 2 for i in range(n)] * 2,  # repeated x: ties broken by y
            "s": ["a"] * n + ["b"] * n,
            "v": ys + [None if i % 10 == 0 else -y for i, y in enumerate(ys)],
        }
    )
    chart = LineChart(name="c", config={"x": "t", "y": "v", "color": "s", "max_points": 100})
    spec = render(lazy, chart, data)
    want = []
    for series in ("a", "b"):
        pts = sorted((t, v) for t, s, v in data.iter_rows() if s == series and v is not None)
        want += [(series, t, v) for t, v in minmax_oracle(pts, 50)]
    assert [(r["s"], r["t"], r["v"]) for r in source(spec)] == want
    assert len(want) <= 100
    assert ("a", 617, 500.0) in want
    assert spec["title"]["subtitle"] == (
        f"Downsampled from 6,000 to {len(want)} points (lowest and highest per bucket, "
        "shape-preserving)."
    )
    assert spec["usermeta"]["data_pipeline"]["downsampled"] == "minmax"


def test_line_above_the_cap_only_by_rows_without_x_is_not_downsampled(lazy: Lazy) -> None:
    data = pl.DataFrame({"t": [None] * 30 + list(range(80)), "v": [1.0] * 110})
    chart = LineChart(name="c", config={"x": "t", "y": "v", "max_points": 100})
    spec = render(lazy, chart, data)
    same_as_eager(spec, chart, data)
    assert len(source(spec)) == 80


def test_scatter_takes_an_evenly_spaced_sample_on_the_engine(lazy: Lazy) -> None:
    n = 2500
    data = pl.DataFrame(
        {
            "a": [(i * 31) % 500 for i in range(n)],
            "b": [float((i * 7) % 13) for i in range(n)],
            "k": [f"k{i % 3}" for i in range(n)],
        }
    )
    chart = ScatterPlot(name="s", config={"x": "a", "y": "b", "color": "k", "max_points": 60})
    spec = render(lazy, chart, data)
    ordered = sorted(data.iter_rows())
    want = [r for i, r in enumerate(ordered) if (i * 60) % n < 60]
    assert [(r["a"], r["b"], r["k"]) for r in source(spec)] == want
    assert len(want) == 60
    assert spec["title"]["subtitle"] == (
        "Showing an evenly spaced sample of 60 of 2,500 points (ordered by x)."
    )


def test_every_lazy_engine_gives_the_same_line_and_scatter(
    duckdb_connection: Any, make_lazy: Callable[[str], Lazy]
) -> None:
    n = 1000
    data = pl.DataFrame({"x": [(i * 13) % 400 for i in range(n)], "y": [i % 9 for i in range(n)]})
    line = LineChart(name="l", config={"x": "x", "y": "y", "max_points": 30})
    scatter = ScatterPlot(name="s", config={"x": "x", "y": "y", "max_points": 30})
    polars_lazy, duck = make_lazy("polars-lazy"), make_lazy("duckdb")
    for chart in (line, scatter):
        assert source(render(polars_lazy, chart, data)) == source(render(duck, chart, data))


@pytest.fixture
def make_lazy(request: pytest.FixtureRequest) -> Callable[[str], Lazy]:
    return lambda engine: Lazy(engine, request)
