"""One self-contained, offline, escaped HTML page for a rendered dashboard.

We write the page ourselves around ``vl_convert.javascript_bundle()`` because the HTML writers of
Altair and vl-convert do not escape the embedded spec. Rules this module keeps:

* the Vega, Vega-Lite and vega-embed code is inlined once per page, never fetched;
* every spec is JSON inside ``<script type="application/json">`` with ``<``, ``>``, ``&``, U+2028
  and U+2029 written as ``\\u003c`` ... so no data value can close the script element;
* every title, label and table cell goes through :func:`html.escape`;
* a Content-Security-Policy meta tag allows nothing external: ``default-src 'none'``, scripts only
  by the SHA-256 hash of the two inline scripts (no ``'unsafe-inline'``, no ``'unsafe-eval'``:
  vega-embed runs with ``ast: true`` so Vega interprets expressions instead of compiling them);
  styles inline; images only ``data:``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
from html import escape as _html_escape
from pathlib import Path
from typing import Any

__all__ = [
    "BOOT_SCRIPT",
    "build_page",
    "content_security_policy",
    "escape_json",
    "javascript_bundle",
]

_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_JSON_RE = re.compile("[<>&\u2028\u2029]")


def escape_json(value: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (and valid for ``JSON.parse``)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return _JSON_RE.sub(lambda m: _JSON_ESCAPES[m.group(0)], text)


@functools.lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """vega + vega-lite + vega-embed as one script, verified by its SHA-256 before it is used.

    The bundle comes from vl-convert (about a second to build) and is cached in
    ``$DATA_PIPELINE_CACHE_DIR`` (default ``~/.cache/data-pipeline``), keyed by the vl-convert
    and Vega-Lite versions. A cached file is used only when its SHA-256 equals the one shipped
    in this package for those versions (``vega_bundles.json``) or, for versions not shipped,
    the one recorded beside it when it was built; any other file is rebuilt and rewritten. An
    unwritable cache is ignored. The page's CSP allows exactly this verified text.
    """
    import vl_convert as vlc

    from data_pipeline.visualization.base import vl_version

    version = vl_version()
    key = bundle_key(str(getattr(vlc, "__version__", "x")), version)
    cache = _cache_dir() / f"vega-bundle-{key.replace('|', '-')}.js"
    shipped = shipped_bundle_hashes().get(key)
    expected = shipped or _recorded_hash(cache)
    try:
        cached = cache.read_text(encoding="utf-8")
        if expected is not None and sha256_hex(cached) == expected:
            return cached
    except OSError:
        pass
    make: Any = vlc.javascript_bundle
    bundle = str(make(None, vl_version=version))
    # a literal "</script" would end the element early; "<\/script" means the same to JavaScript
    bundle = re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)
    if "<!--" in bundle:
        bundle = bundle.replace("<!--", "<\\!--")
    digest = sha256_hex(bundle)
    if shipped is not None and digest != shipped:
        from data_pipeline.core.log import get_logger

        get_logger(__name__).warning(
            "the Vega bundle vl-convert %s built has SHA-256 %s, not the %s shipped for it; "
            "using what the installed vl-convert built",
            key,
            digest,
            shipped,
        )
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        for target, text in ((cache, bundle), (_hash_file(cache), digest + "\n")):
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
    except OSError:
        pass
    return bundle


def bundle_key(vl_convert_version: str, vega_lite_version: str | None) -> str:
    """``"1.9.0|6.4"``: which bundle a hash belongs to."""
    return f"{vl_convert_version}|{vega_lite_version or 'latest'}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def shipped_bundle_hashes() -> dict[str, str]:
    """The SHA-256 of the Vega bundle of each (vl-convert, Vega-Lite) version we ship a hash for."""
    from importlib.resources import files

    text = files("data_pipeline.visualization").joinpath("vega_bundles.json").read_text("utf-8")
    return {str(k): str(v) for k, v in json.loads(text).items()}


def _hash_file(cache: Path) -> Path:
    return cache.with_name(cache.name + ".sha256")


def _recorded_hash(cache: Path) -> str | None:
    try:
        value = _hash_file(cache).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value if re.fullmatch(r"[0-9a-f]{64}", value) else None


def _cache_dir() -> Path:
    configured = os.environ.get("DATA_PIPELINE_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "data-pipeline"


def escape(text: str) -> str:
    """HTML-escape text for element content or a quoted attribute (also U+2028/U+2029)."""
    return (
        _html_escape(text, quote=True).replace("\u2028", "&#x2028;").replace("\u2029", "&#x2029;")
    )


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(*scripts: str) -> str:
    """A policy allowing exactly the given inline scripts and nothing external."""
    hashes = " ".join(_hash(s) for s in scripts)
    return (
        "default-src 'none'; "
        f"script-src {hashes}; "
        "style-src 'unsafe-inline'; "
        "img-src data:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'; object-src 'none'; frame-src 'none'"
    )


#: The page's own script: draws each chart, sorts tables, applies the dashboard filter.
#: It is constant (hashed in the CSP); everything variable comes from the JSON data block.
BOOT_SCRIPT = r"""
(function () {
  "use strict";
  var payload = JSON.parse(document.getElementById("dp-payload").textContent);
  var options = {renderer: "svg", actions: false, ast: true};
  var views = {};
  var pending = payload.charts.map(function (chart) {
    var el = document.getElementById(chart.id);
    return vegaEmbed(el, chart.spec, options).then(function (result) {
      views[chart.id] = result.view;
      el.setAttribute("data-rendered", "true");
    }).catch(function (err) {
      el.setAttribute("data-error", "true");
      el.textContent = "This chart could not be drawn: " + String(err && err.message ? err.message : err);
      console.error(err);
    });
  });
  Promise.all(pending).then(function () {
    document.body.setAttribute("data-dp-ready", "true");
  });

  function sortKey(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null || raw === "") { return {empty: true}; }
    var num = Number(raw);
    return isNaN(num) ? {text: raw} : {num: num};
  }
  function compare(a, b) {
    if (a.empty || b.empty) { return a.empty === b.empty ? 0 : (a.empty ? 1 : -1); }
    if (a.num !== undefined && b.num !== undefined) { return a.num - b.num; }
    var x = a.num !== undefined ? String(a.num) : a.text;
    var y = b.num !== undefined ? String(b.num) : b.text;
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.dp-table"), function (table) {
    var buttons = table.querySelectorAll("thead button");
    Array.prototype.forEach.call(buttons, function (button, index) {
      button.addEventListener("click", function () {
        var th = button.parentNode;
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(table.querySelectorAll("thead th"), function (other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(sortKey(r1.cells[index]), sortKey(r2.cells[index]));
          return ascending ? c : -c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });

  // a category equal to a prototype name carries an invisible mark in the charts' rows
  var mark = payload.prototype_mark;
  function unmark(value) {
    if (typeof value === "string" && value.slice(-mark.length) === mark &&
        payload.prototype_names.indexOf(value.slice(0, -mark.length)) >= 0) {
      return value.slice(0, -mark.length);
    }
    return value;
  }
  var filter = payload.filter;
  var select = document.getElementById("dp-filter");
  var from = document.getElementById("dp-from");
  var to = document.getElementById("dp-to");
  if (filter && filter.type === "date_range" && from && to) {
    // ISO dates compare as text: "2024-01-31" < "2024-02-01"; rows carry "YYYY-MM-DD..." values
    var inRange = function (value, lo, hi) {
      if (lo === "" && hi === "") { return true; }
      if (value === null || value === undefined) { return false; }
      var day = String(value).slice(0, 10);
      return (lo === "" || day >= lo) && (hi === "" || day <= hi);
    };
    var applyRange = function (lo, hi) {
      payload.charts.forEach(function (chart) {
        if (!chart.filterable || !views[chart.id]) { return; }
        var rows = chart.spec.datasets.source;
        var kept = rows.filter(function (row) { return inRange(row[filter.chart_field], lo, hi); });
        views[chart.id].data("source", kept).runAsync();
      });
      Array.prototype.forEach.call(document.querySelectorAll("tr[data-dp-d]"), function (row) {
        var day = row.getAttribute("data-dp-d");
        row.hidden = !inRange(day === "" ? null : day, lo, hi);
      });
    };
    var onChange = function () { applyRange(from.value, to.value); };
    from.addEventListener("change", onChange);
    to.addEventListener("change", onChange);
    var reset = document.getElementById("dp-range-reset");
    if (reset) {
      reset.addEventListener("click", function () {
        from.value = filter.min || "";
        to.value = filter.max || "";
        applyRange("", "");  // every row again, also those without a date
      });
    }
  }
  if (filter && filter.type !== "date_range" && select) {
    select.addEventListener("change", function () {
      var choice = select.value === "" ? null : filter.values[Number(select.value)];
      var key = choice === null ? null : JSON.stringify(choice);
      payload.charts.forEach(function (chart) {
        if (!chart.filterable || !views[chart.id]) { return; }
        var rows = chart.spec.datasets.source;
        var kept = key === null ? rows : rows.filter(function (row) {
          return JSON.stringify(unmark(row[filter.chart_field])) === key;
        });
        views[chart.id].data("source", kept).runAsync();
      });
      Array.prototype.forEach.call(document.querySelectorAll("tr[data-dp-f]"), function (row) {
        row.hidden = select.value !== "" && row.getAttribute("data-dp-f") !== select.value;
      });
    });
  }
})();
"""

_CSS = """
:root { color-scheme: light; --bg: #f6f7f9; --card: #ffffff; --fg: #1d2330; --muted: #5b6475;
  --border: #dde1e8; --up: #1a7f37; --down: #c62828; --accent: #2563eb; }
html[data-theme="dark"] { color-scheme: dark; --bg: #1f2227; --card: #333333; --fg: #f1f3f5;
  --muted: #b8c0cc; --border: #4a4f57; --up: #4ade80; --down: #f87171; --accent: #60a5fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { margin-bottom: 16px; }
h1 { margin: 0 0 4px; font-size: 24px; }
.dp-description { margin: 0 0 4px; color: var(--muted); }
.dp-generated { margin: 0; color: var(--muted); font-size: 12px; }
.dp-filter { margin-top: 12px; }
.dp-filter select { margin-left: 6px; padding: 2px 4px; }
.dp-range label { margin-left: 10px; }
.dp-range input { margin-left: 6px; padding: 1px 4px; }
.dp-range button { margin-left: 10px; padding: 2px 8px; }
.dp-grid { display: grid; gap: 16px; grid-template-columns: repeat(var(--dp-columns, 2), minmax(0, 1fr)); }
.dp-card { background: var(--card); border: 1px solid var(--border); border-radius: 8px; padding: 12px;
  overflow: auto; min-width: 0; }
.dp-card h2 { margin: 0 0 8px; font-size: 16px; }
.dp-chart { width: 100%; }
.dp-caption { margin: 6px 0 0; color: var(--muted); font-size: 12px; }
.dp-viz-description { margin: 0 0 6px; color: var(--muted); font-size: 13px; }
.dp-table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
.dp-table th, .dp-table td { border-bottom: 1px solid var(--border); padding: 4px 8px; text-align: left; }
.dp-table td.dp-num { text-align: right; }
.dp-table th button { all: unset; cursor: pointer; font-weight: 600; }
.dp-table th[aria-sort="ascending"] button::after { content: " \\25B2"; }
.dp-table th[aria-sort="descending"] button::after { content: " \\25BC"; }
.dp-kpi-label { color: var(--muted); font-size: 13px; }
.dp-kpi-value { font-size: 32px; font-weight: 700; margin: 2px 0; }
.dp-kpi-delta { font-size: 13px; }
.dp-kpi-delta.dp-good { color: var(--up); }
.dp-kpi-delta.dp-bad { color: var(--down); }
.dp-kpi-delta.dp-flat { color: var(--muted); }
@media (max-width: 800px) { .dp-grid { grid-template-columns: minmax(0, 1fr); } .dp-card { grid-column: auto !important; } }
"""


def _span_css(columns: int) -> str:
    rules = [f".dp-grid {{ --dp-columns: {int(columns)}; }}"]
    rules += [f".dp-span-{n} {{ grid-column: span {n}; }}" for n in range(2, int(columns) + 1)]
    return "\n".join(rules)


def _table_html(
    item: dict[str, Any],
    filter_field: str | None,
    filter_index: dict[str, int],
    *,
    date_range: bool = False,
    note_id: str | None = None,
) -> str:
    spec = item["spec"]
    columns = spec["columns"]
    head = "".join(
        f'<th scope="col"><button type="button">{escape(c["title"])}</button></th>' for c in columns
    )
    body = []
    for display, raw in zip(spec["rows"], spec["records"], strict=True):
        cells = []
        for col, text, value in zip(
            columns, display, (raw.get(c["name"]) for c in columns), strict=True
        ):
            sort = "" if value is None else str(value)
            cls = ' class="dp-num"' if col["numeric"] else ""
            cells.append(f'<td{cls} data-sort="{escape(sort)}">{escape(text)}</td>')
        attr = ""
        if filter_field is not None and filter_field in raw and date_range:
            day = raw[filter_field]
            attr = f' data-dp-d="{escape(day[:10] if isinstance(day, str) else "")}"'
        elif filter_field is not None and filter_field in raw:
            index = filter_index.get(json.dumps(raw[filter_field]), -1)
            attr = f' data-dp-f="{index}"'
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    caption = spec.get("caption")
    note = f'<p class="dp-caption">{escape(caption)}</p>' if caption else ""
    described = f' aria-describedby="{note_id}"' if note_id and spec.get("description") else ""
    return (
        f'<table class="dp-table"{described}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{note}"
    )


def _note_html(spec: dict[str, Any], note_id: str) -> str:
    """A table's or KPI tile's ``description``: a line of text under its heading."""
    text = spec.get("description")
    if not text:
        return ""
    return f'<p class="dp-viz-description" id="{note_id}">{escape(str(text))}</p>'


def _kpi_html(item: dict[str, Any], chart_id: str | None, note_id: str) -> str:
    spec = item["spec"]
    parts = [
        f'<div class="dp-kpi-label">{escape(spec["title"])}</div>',
        _note_html(spec, note_id),
        f'<div class="dp-kpi-value">{escape(spec["formatted_value"])}</div>',
    ]
    if spec.get("delta_text"):
        parts.append(
            f'<div class="dp-kpi-delta dp-{escape(spec["tone"])}">{escape(spec["delta_text"])}</div>'
        )
    if chart_id is not None:
        parts.append(f'<div class="dp-chart dp-sparkline" id="{chart_id}"></div>')
    return "".join(parts)


def build_page(rendered: dict[str, Any]) -> str:
    """The HTML text of a dashboard from :meth:`Dashboard.render`'s result."""
    charts: list[dict[str, Any]] = []
    cards: list[str] = []
    flt = rendered.get("filter")
    filter_field = flt["field"] if flt else None
    date_range = flt is not None and flt.get("type") == "date_range"
    filter_index = (
        {json.dumps(v): i for i, v in enumerate(flt["values"])} if flt and not date_range else {}
    )
    for i, item in enumerate(rendered["visualizations"]):
        span = min(int(item.get("span", 1)), int(rendered["layout"]["columns"]))
        span_cls = f" dp-span-{span}" if span > 1 else ""
        kind = item["kind"]
        card_id = f"dp-viz-{i}"
        chart_id = f"dp-chart-{i}"
        note_id = f"dp-note-{i}"
        name_attr = escape(item["name"])
        if kind == "vega-lite":
            inner = f'<div class="dp-chart" id="{chart_id}"></div>'
            charts.append(
                {"id": chart_id, "spec": item["spec"], "filterable": bool(item.get("filterable"))}
            )
        elif kind == "table":
            title = item["spec"].get("title")
            heading = f"<h2>{escape(title)}</h2>" if title else ""
            inner = (
                heading
                + _note_html(item["spec"], note_id)
                + _table_html(
                    item, filter_field, filter_index, date_range=date_range, note_id=note_id
                )
            )
        elif kind == "kpi":
            spark = item["spec"].get("sparkline")
            inner = _kpi_html(item, chart_id if spark else None, note_id)
            if spark:
                charts.append({"id": chart_id, "spec": spark, "filterable": False})
        else:  # pragma: no cover - Dashboard.render only makes the three kinds
            raise ValueError(f"unknown visualization kind {kind!r}")
        cards.append(
            f'<section class="dp-card dp-{kind}{span_cls}" id="{card_id}" '
            f'data-name="{name_attr}" data-kind="{kind}">{inner}</section>'
        )

    header = [f"<h1>{escape(rendered['title'])}</h1>"]
    if rendered.get("description"):
        header.append(f'<p class="dp-description">{escape(rendered["description"])}</p>')
    header.append(
        f'<p class="dp-generated">Generated <time datetime="{escape(rendered["generated_at"])}">'
        f"{escape(rendered['generated_at'])}</time></p>"
    )
    if flt and date_range:
        bounds = "".join(f' {k}="{escape(str(flt[k]))}"' for k in ("min", "max") if flt.get(k))
        lo = f' value="{escape(str(flt["min"]))}"' if flt.get("min") else ""
        hi = f' value="{escape(str(flt["max"]))}"' if flt.get("max") else ""
        header.append(
            f'<div class="dp-filter dp-range"><span class="dp-range-label">{escape(flt["label"])}</span>'
            f'<label>from<input type="date" id="dp-from"{bounds}{lo}></label>'
            f'<label>to<input type="date" id="dp-to"{bounds}{hi}></label>'
            '<button type="button" id="dp-range-reset">All dates</button></div>'
        )
    elif flt:
        options = ['<option value="">All</option>']
        options += [
            f'<option value="{i}">{escape("(missing)" if v is None else str(v))}</option>'
            for i, v in enumerate(flt["values"])
        ]
        header.append(
            f'<div class="dp-filter"><label>{escape(flt["label"])}'
            f'<select id="dp-filter">{"".join(options)}</select></label></div>'
        )

    from data_pipeline.visualization.base import PROTOTYPE_MARK, PROTOTYPE_NAMES, vega_name

    payload = {
        "charts": charts,
        "filter": {**flt, "chart_field": vega_name(flt["field"])} if flt else None,
        "prototype_mark": PROTOTYPE_MARK,
        "prototype_names": list(PROTOTYPE_NAMES),
    }
    bundle = javascript_bundle() if charts else ""
    scripts = [s for s in (bundle, BOOT_SCRIPT) if s]
    csp = content_security_policy(*scripts)
    theme = "dark" if rendered.get("theme") == "dark" else "light"
    bundle_tag = f"<script>{bundle}</script>\n" if bundle else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en" data-theme="{theme}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(rendered['title'])}</title>\n"
        f"<style>{_CSS}\n{_span_css(rendered['layout']['columns'])}</style>\n</head>\n<body>\n"
        f"<header>{''.join(header)}</header>\n"
        f'<main class="dp-grid">\n{chr(10).join(cards)}\n</main>\n'
        f'<script type="application/json" id="dp-payload">{escape_json(payload)}</script>\n'
        f"{bundle_tag}"
        f"<script>{BOOT_SCRIPT}</script>\n"
        "</body>\n</html>\n"
    )
