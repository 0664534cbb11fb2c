"""Issue 15 in the dashboards: field names Vega can read, categories of any text, a verified
Vega bundle, and charts that keep no per-call state on themselves."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_pipeline.visualization import BarChart, Dashboard
from data_pipeline.visualization import html as html_module
from data_pipeline.visualization.base import (
    PROTOTYPE_MARK,
    PROTOTYPE_NAMES,
    Chart,
    field_ref,
    to_records,
    unmark,
    vega_name,
)

# -- field names ----------------------------------------------------------------------------


def split_access_path(path: str) -> list[str]:
    """Vega's ``splitAccessPath`` (vega-util), written out in Python: the oracle for field_ref."""
    out: list[str] = []
    q: str | None = None
    b = 0
    s = ""
    i = j = 0
    n = len(path)

    def push() -> None:
        nonlocal s, i
        out.append(s + path[i:j])
        s = ""
        i = j + 1

    while j < n:
        c = path[j]
        if c == "\\":
            s += path[i:j]
            j += 1
            i = j
        elif c == q:
            push()
            q = None
            b = -1
        elif q:
            pass
        elif i == b and c in "\"'":
            i = j + 1
            q = c
        elif c == "." and not b:
            if j > i:
                push()
            else:
                i = j + 1
        elif c == "[":
            if j > i:
                push()
            b = i = j + 1
        elif c == "]":
            if not b:
                raise ValueError("Access path missing open bracket")
            if b > 0:
                push()
            b = 0
            i = j + 1
        j += 1
    if b:
        raise ValueError("Access path missing closing bracket")
    if q:
        raise ValueError("Access path missing closing quote")
    if i < n:
        out.append(s + path[i:])
    return out


NAMES = ["it's", 'say "hi"', "'lead", '"lead', "a.b", "x[0]", "back\\slash", "][.'\"\\", "plain"]


@pytest.mark.parametrize("name", NAMES)
def test_field_ref_is_read_back_as_the_column_name(name: str) -> None:
    """Read back as the name the column has in the embedded rows (a backslash stands as ``＼``,
    since Vega-Lite re-escapes paths without escaping backslashes)."""
    assert split_access_path(field_ref(name)) == [vega_name(name)]
    assert vega_name(name) == name or "\\" in name


def test_the_oracle_fails_on_unescaped_names() -> None:
    """The broken variant (only dots and brackets escaped) is what Vega refused."""
    with pytest.raises(ValueError, match="missing closing quote"):
        split_access_path("'lead")
    assert split_access_path("a.b") == ["a", "b"]


# -- categories -----------------------------------------------------------------------------


def test_prototype_names_are_marked_in_chart_rows_and_unmarked_for_filters() -> None:
    frame = pl.DataFrame({"c": [*PROTOTYPE_NAMES, "normal", None]})
    rows = to_records(frame)
    assert [r["c"] for r in rows] == [f"{n}{PROTOTYPE_MARK}" for n in PROTOTYPE_NAMES] + [
        "normal",
        None,
    ]
    assert [unmark(r["c"]) for r in rows] == [*PROTOTYPE_NAMES, "normal", None]
    assert unmark("normal" + PROTOTYPE_MARK) == "normal" + PROTOTYPE_MARK  # only our marks


def test_dashboard_filter_values_are_the_data_values() -> None:
    d = Dashboard("d", {"filter": {"field": "c"}})
    d.add_visualization(BarChart("b", {"x": "c", "y": "v"}))
    spec = d.render(pl.DataFrame({"c": ["constructor", "__proto__", "x"], "v": [1, 2, 3]}))
    assert spec["filter"]["values"] == ["__proto__", "constructor", "x"]


# -- the Vega bundle ------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATA_PIPELINE_CACHE_DIR", str(tmp_path))
    html_module.javascript_bundle.cache_clear()
    yield tmp_path
    html_module.javascript_bundle.cache_clear()


def _bundle_file(folder: Path) -> Path:
    (path,) = folder.glob("vega-bundle-*.js")
    return path


POISON = "alert('poisoned');\n/* data-pipeline: end of vega bundle */\n"


def test_a_poisoned_cache_is_rebuilt(cache: Path) -> None:
    genuine = html_module.javascript_bundle()
    path = _bundle_file(cache)
    path.write_text(POISON, encoding="utf-8")  # ends with the old marker: was trusted
    html_module.javascript_bundle.cache_clear()
    again = html_module.javascript_bundle()
    assert again == genuine and "poisoned" not in again
    assert path.read_text(encoding="utf-8") == genuine  # the cache was rewritten


def test_broken_variant_without_the_hash_check_serves_the_poison(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html_module.javascript_bundle()
    _bundle_file(cache).write_text(POISON, encoding="utf-8")
    html_module.javascript_bundle.cache_clear()
    monkeypatch.setattr(html_module, "sha256_hex", lambda text: "same")
    monkeypatch.setattr(html_module, "shipped_bundle_hashes", lambda: {})
    monkeypatch.setattr(html_module, "_recorded_hash", lambda cache: "same")
    assert "poisoned" in html_module.javascript_bundle()


def test_the_shipped_hash_matches_what_vl_convert_builds(cache: Path) -> None:
    import vl_convert as vlc

    from data_pipeline.visualization.base import vl_version

    key = html_module.bundle_key(vlc.__version__, vl_version())
    shipped = html_module.shipped_bundle_hashes()
    bundle = html_module.javascript_bundle()
    if key not in shipped:
        pytest.fail(f"add {key!r}: {html_module.sha256_hex(bundle)!r} to vega_bundles.json")
    assert html_module.sha256_hex(bundle) == shipped[key]


def test_versions_not_shipped_use_the_hash_recorded_at_build(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html_module, "shipped_bundle_hashes", lambda: {})
    genuine = html_module.javascript_bundle()
    path = _bundle_file(cache)
    recorded = path.with_name(path.name + ".sha256").read_text(encoding="utf-8").strip()
    assert recorded == html_module.sha256_hex(genuine)
    path.write_text(POISON, encoding="utf-8")
    html_module.javascript_bundle.cache_clear()
    assert html_module.javascript_bundle() == genuine


# -- no per-call state on the chart ---------------------------------------------------------


def test_a_chart_keeps_no_per_call_state() -> None:
    chart = BarChart("b", {"x": "c", "y": "v", "aggregate": "sum"})
    before = set(vars(chart))
    chart.render(pl.DataFrame({"c": ["a"], "v": [1], "r": ["x"]}), keep_fields=["r"])
    assert set(vars(chart)) - before <= {"status", "_last", "_last_time", "_last_duration",
                                         "_last_error"}  # fmt: skip


def _concurrent_rollups(chart: Chart, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Render with and without a filter field at the same time (both inside render at once)."""
    barrier = threading.Barrier(2, timeout=30)
    real = type(chart)._rollup_field

    def meet(self: Any, *args: Any) -> Any:
        result = real(self, *args)
        barrier.wait()
        return result

    monkeypatch.setattr(type(chart), "_rollup_field", meet)
    data = pl.DataFrame({"c": ["a", "a", "b"], "v": [1, 2, 3], "r": ["x", "y", "x"]})
    results: dict[str, Any] = {}

    def run(label: str, keep: list[str]) -> None:
        spec = chart.render(data, keep_fields=keep)
        results[label] = spec["usermeta"]["data_pipeline"].get("rollup")

    threads = [threading.Thread(target=run, args=a) for a in (("kept", ["r"]), ("plain", []))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_renders_do_not_mix(monkeypatch: pytest.MonkeyPatch) -> None:
    chart = BarChart("b", {"x": "c", "y": "v", "aggregate": "sum"})
    results = _concurrent_rollups(chart, monkeypatch)
    assert results == {"kept": {"field": "r", "op": "sum"}, "plain": None}


def test_broken_variant_with_state_on_self_mixes_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chart that keeps keep_fields on self (what issue 13 found) gives the drill a mixed result."""

    class Stateful(BarChart):
        def _rollup_field(self, names: Any, wanted: Any, keep_fields: Any) -> Any:
            self.kept = keep_fields  # per-call state on the shared component
            barrier.wait()
            return super()._rollup_field(names, wanted, self.kept)

    barrier = threading.Barrier(2, timeout=30)
    chart = Stateful("b", {"x": "c", "y": "v", "aggregate": "sum"})
    data = pl.DataFrame({"c": ["a", "a", "b"], "v": [1, 2, 3], "r": ["x", "y", "x"]})
    results: dict[str, Any] = {}
    go = threading.Event()

    def run(label: str, keep: list[str], first: bool) -> None:
        if not first:
            go.wait(30)
        spec = chart.render(data, keep_fields=keep)
        results[label] = spec["usermeta"]["data_pipeline"].get("rollup")

    a = threading.Thread(target=run, args=("kept", ["r"], True))
    b = threading.Thread(target=run, args=("plain", [], False))
    a.start()
    b.start()
    while chart.__dict__.get("kept") != ("r",):
        pass
    go.set()
    a.join()
    b.join()
    assert results != {"kept": {"field": "r", "op": "sum"}, "plain": None}
