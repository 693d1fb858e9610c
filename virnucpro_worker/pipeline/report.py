"""report.html: one page a person reads after a run, made from the same block results as the
other files.

Self-contained (every style and script inline, figures as inline SVG drawn by matplotlib, no
font or file fetched) and readable without JavaScript: the numbers are HTML tables, the figures
SVG; a small inline script only adds sorting and filtering to the records table. Galaxy's HTML
sanitizer (on by default) removes every style, script and SVG element: each figure's numbers are
therefore also a table (the bins of the distributions, the regions of the drawn records), which
it keeps, as it keeps the counts, the records table and the provenance (tests/test_report.py).

It stays small and fast however large the input, because it summarises and samples as the
blocks stream past, holding a bounded amount whatever the number of records:
- the P(virus) distributions are histograms (fixed bins) accumulated block by block;
- the records table holds at most TABLE_ROWS records, those with the highest max P(virus)
  (ties: input order); sequence_summary.tsv has them all;
- the chunk tracks are drawn for at most TRACKS records: those with viral regions (highest
  region P(virus) first) and the LONGEST longest records, each kept with its chunk scores.
"""

from __future__ import annotations

import heapq
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from ..sequences.chunking import chunk_starts
from .calls import OTHERS, UNSCORED, VIRUS
from .regions import ViralRegion
from .results import BlockResult, ChunkCall, RecordSummary

REPORT_FILE = "report.html"
TABLE_ROWS = 2000
TRACKS = 12
LONGEST = 3
BINS = np.linspace(0.0, 1.0, 41)  # P(virus) in 40 bins of 0.025
CALL_COLORS = {VIRUS: "#d62728", OTHERS: "#1f77b4", UNSCORED: "#9e9e9e"}
_SVG_SETTINGS = {
    "svg.hashsalt": "virnucpro",  # fixed ids: the same results give the same bytes
    "svg.fonttype": "none",  # text stays text: searchable, no font embedded or fetched
    "font.family": "sans-serif",
    "font.size": 9,
}


@dataclass(order=True)
class _Track:
    """A record drawn as a chunk track, with its scored chunks and regions."""

    priority: tuple
    record: RecordSummary = field(compare=False)
    chunks: list[ChunkCall] = field(compare=False)
    regions: list[ViralRegion] = field(compare=False)


class ReportBuilder:
    """Accumulates what the report shows, block by block (`add`), in bounded memory; `render`
    gives the page."""

    def __init__(self) -> None:
        self.frame_histogram = np.zeros(len(BINS) - 1, np.int64)
        self.record_histogram = np.zeros(len(BINS) - 1, np.int64)
        self.calls = {VIRUS: 0, OTHERS: 0, UNSCORED: 0}
        self.records = self.regions = 0
        self._table: list[tuple[tuple[float, int], RecordSummary]] = []  # a min-heap
        self._with_regions: list[_Track] = []
        self._longest: list[_Track] = []

    def add(self, block: BlockResult) -> None:
        virus = np.fromiter((frame.virus_score for frame in block.frames), np.float64)
        self.frame_histogram += np.histogram(virus, BINS)[0]
        best = [r.max_virus_score for r in block.records if r.max_virus_score is not None]
        self.record_histogram += np.histogram(np.array(best, np.float64), BINS)[0]
        self.records += len(block.records)
        self.regions += len(block.regions)
        for record in block.records:
            self.calls[record.call] += 1
            score = -1.0 if record.max_virus_score is None else record.max_virus_score
            _keep(self._table, TABLE_ROWS, ((score, -record.index), record))
        # Tracks: first the records that would enter a heap, then only their chunks.
        regions: dict[int, list[ViralRegion]] = {}
        for region in block.regions:
            regions.setdefault(region.record, []).append(region)
        by_index = {record.index: record for record in block.records}
        wanted = [
            (self._with_regions, TRACKS - LONGEST, index, max(r.max_virus_score for r in own))
            for index, own in regions.items()
        ]
        wanted += [(self._longest, LONGEST, r.index, r.length) for r in block.records]
        wanted = [w for w in wanted if _would_keep(w[0], w[1], (w[3], -w[2]))]
        chunks: dict[int, list[ChunkCall]] = {index: [] for _, _, index, _ in wanted}
        for call in block.chunks:
            if call.record in chunks:
                chunks[call.record].append(call)
        for heap, size, index, value in wanted:
            track = _Track((value, -index), by_index[index], chunks[index], regions.get(index, []))
            _keep(heap, size, track)

    def table_rows(self) -> list[RecordSummary]:
        """The table's records, highest max P(virus) first (ties: input order)."""
        return [record for _, record in sorted(self._table, reverse=True)]

    def tracks(self) -> list[_Track]:
        """The records with regions (best first), then the longest ones not already drawn."""
        chosen = sorted(self._with_regions, reverse=True)
        drawn = {track.record.index for track in chosen}
        chosen += [t for t in sorted(self._longest, reverse=True) if t.record.index not in drawn]
        return chosen

    def render(self, run: dict[str, Any]) -> str:
        import matplotlib  # only the report needs it: imported when one is written

        with matplotlib.rc_context(_SVG_SETTINGS):
            figures = {
                "calls": _calls_figure(self.calls),
                "distributions": _distributions_figure(self.frame_histogram, self.record_histogram),
                "tracks": [_track_figure(t, run.get("chunk_size", 500)) for t in self.tracks()],
            }
        return _page(self, run, figures)


def _would_keep(heap: list, size: int, priority: tuple) -> bool:
    return len(heap) < size or priority > heap[0].priority


def _keep(heap: list, size: int, item: Any) -> None:
    """Keep the `size` largest items seen in the min-heap `heap`."""
    if len(heap) < size:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


# Figures ------------------------------------------------------------------------------------


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE
    # The RDF metadata (creator, licence addresses) is no use inside the page.
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)


def _calls_figure(calls: dict[str, int]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 1.3), layout="constrained")
    axes = figure.add_subplot()
    names = list(calls)
    axes.barh(names, [calls[n] for n in names], color=[CALL_COLORS[n] for n in names])
    for y, name in enumerate(names):
        axes.annotate(f" {calls[name]:,}", (calls[name], y), va="center")
    axes.invert_yaxis()
    axes.set_xlabel("records")
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(x=0.15)
    return _svg(figure)


def _distributions_figure(frames: np.ndarray, records: np.ndarray) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 2.6), layout="constrained")
    panels = figure.subplots(1, 2)
    for axes, counts, title in (
        (panels[0], frames, "P(virus) of every kept frame"),
        (panels[1], records, "max P(virus) of every scored record"),
    ):
        axes.stairs(counts, BINS, fill=True, color="#6a51a3", alpha=0.8)
        axes.axvline(0.5, color="#444", linestyle="--", linewidth=0.8)
        axes.set_title(title)
        axes.set_xlabel("P(virus)")
        axes.set_ylabel("count")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, max(1, counts.max()) * 1.05)  # an empty input: a flat axis from 0
        axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def _track_figure(track: _Track, chunk_size: int) -> str:
    from matplotlib.figure import Figure

    record = track.record
    starts = chunk_starts(record.length, chunk_size)
    figure = Figure(figsize=(9, 1.6), layout="constrained")
    axes = figure.add_subplot()
    for region in track.regions:
        axes.axvspan(region.start, region.end, color=CALL_COLORS[VIRUS], alpha=0.15, linewidth=0)
        axes.annotate(region.id, (region.start, 1.02), fontsize=7, annotation_clip=False)
    scored = {call.chunk: call for call in track.chunks}
    for number, start in enumerate(starts, start=1):
        end = min(start + chunk_size, record.length)
        call = scored.get(number)
        if call is None:  # no kept frame: no score
            axes.hlines(0, start, end, color=CALL_COLORS[UNSCORED], linewidth=3)
            continue
        color = CALL_COLORS[VIRUS] if call.is_virus else CALL_COLORS[OTHERS]
        axes.hlines(call.max_virus_score, start, end, color=color, linewidth=2)
    axes.axhline(0.5, color="#444", linestyle="--", linewidth=0.6)
    axes.set_xlim(0, record.length)
    axes.set_ylim(-0.05, 1.0)
    axes.set_ylabel("chunk P(virus)")
    axes.set_xlabel(f"{record.id} ({record.length:,} bp): position")
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


# The page ------------------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
header, main { max-width: 1100px; margin: 0 auto; padding: 0 1.2em; }
header { padding-top: 1em; }
h1 { font-size: 1.5em; margin: 0.2em 0; }
h2 { font-size: 1.15em; margin: 1.6em 0 0.4em; border-bottom: 1px solid #ddd; }
.demo { background: #b71c1c; color: #fff; padding: 0.6em 1em; font-weight: bold; }
table { border-collapse: collapse; background: #fff; }
td, th { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 0.6em; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.4em 0.9em; }
.card b { display: block; font-size: 1.4em; }
.virus { color: #d62728; font-weight: bold; } .unscored { color: #777; }
#records-wrap { max-height: 34em; overflow: auto; border: 1px solid #ddd; }
#records th { position: sticky; top: 0; background: #f0f0f0; cursor: pointer; }
figure { margin: 0.6em 0; } figure svg { max-width: 100%; height: auto; }
code { font-size: 0.92em; } .note { color: #555; font-size: 0.92em; }
"""

# Sorting and filtering of the records table; the page reads the same without it.
_SCRIPT = """
(function () {
  var table = document.getElementById("records");
  var filter = document.getElementById("records-filter");
  var count = document.getElementById("records-shown");
  if (!table || !filter) { return; }
  var body = table.tBodies[0];
  filter.hidden = false;
  function value(row, column, numeric) {
    var text = row.cells[column].getAttribute("data-v") || row.cells[column].textContent;
    return numeric ? parseFloat(text) : text.toLowerCase();
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
    var numeric = th.classList.contains("n"), ascending = false;
    th.title = "sort";
    th.addEventListener("click", function () {
      ascending = !ascending;
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = value(a, column, numeric), y = value(b, column, numeric);
        if (numeric) { x = isNaN(x) ? -1 : x; y = isNaN(y) ? -1 : y; }
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  filter.addEventListener("input", function () {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var text = row.textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
      row.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    count.textContent = shown.toLocaleString("en");
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _provenance(run: dict[str, Any]) -> str:
    """What decides the results, and only that: the same input, models and settings give the
    same panel whether `predict`, the API or a queued job ran them. What differs from one run
    to the next (times, stage seconds, paths, the command line, a job's id, shards and
    workers) is in run.json beside the page."""
    source = run.get("input", {})
    kernels = run.get("kernels", {})
    rows = [
        ("code version", run.get("code_version")),
        ("input", _input_name(source.get("path"))),
        ("input bytes / sha256", f"{source.get('bytes', '')} / {source.get('sha256', '')}"),
        ("chunk size / block bases", f"{run.get('chunk_size', '')} / {run.get('block_bases', '')}"),
        ("attention backend", run.get("attention_backend")),
        ("kernels", ", ".join(f"{k}: {v}" for k, v in kernels.items())),
        ("dtype / device", f"{run.get('dtype', '')} / {_device_kind(run.get('device', ''))}"),
        ("demo models", run.get("demo_models")),
        ("region rule", json.dumps(run.get("region_rule", {}))),
    ]
    rows += [(f"model {name}", _model_line(entry)) for name, entry in run.get("models", {}).items()]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (
        "<section id='provenance'><h2>Provenance</h2>"
        f"<table>{cells}</table><p class='note'>Times, stage seconds, paths, the command line "
        "and a queued job's id, shards and workers are in <code>run.json</code> beside this "
        "page: they differ from run to run, while this page is the same, byte for byte, for "
        "the same input, models and settings.</p></section>"
    )


def _input_name(path: str | None) -> str:
    return PurePath(path).name if path else "(records or a stream)"


def _device_kind(device: str) -> str:
    """`cuda:1 (NVIDIA H100)` -> `cuda (NVIDIA H100)`: which card of a host ran it decides
    nothing."""
    return re.sub(r"^cuda:\d+", "cuda", device)


def _model_line(entry: Any) -> str:
    """A model by its files' sha256 (paths differ between hosts)."""
    if not isinstance(entry, dict):
        return str(entry)
    if "files" in entry:  # a folder (DNABERT-S)
        files = entry["files"]
        return ", ".join(f"{name} {str(digest)[:16]}" for name, digest in sorted(files.items()))
    return f"sha256 {entry.get('sha256', '')}"


def _counts(builder: ReportBuilder, run: dict[str, Any]) -> str:
    counts = run.get("counts", {})
    shown = [
        ("records", builder.records),
        ("viral_records", builder.calls[VIRUS]),
        ("viral_regions", builder.regions),
        ("bases", counts.get("bases")),
        ("chunks", counts.get("chunks")),
        ("kept_frames", counts.get("kept_frames")),
        ("scored_chunks", counts.get("scored_chunks")),
        ("viral_chunks", counts.get("viral_chunks")),
        ("unscored_records", builder.calls[UNSCORED]),
    ]
    cards = "".join(
        f"<div class='card'><b id='count-{name}'>{value:,}</b>{_e(name.replace('_', ' '))}</div>"
        for name, value in shown
        if value is not None
    )
    return f"<section id='counts'><h2>Counts and calls</h2><div class='cards'>{cards}</div>"


def _records_table(builder: ReportBuilder) -> str:
    rows = builder.table_rows()
    head = (
        "<tr><th>record</th><th class='n'>length</th><th class='n'>chunks</th>"
        "<th class='n'>scored chunks</th><th class='n'>max P(virus)</th>"
        "<th class='n'>viral chunk fraction</th><th>call</th><th class='n'>regions</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r.id)}</td><td class='n'>{r.length}</td><td class='n'>{r.chunks}</td>"
        f"<td class='n'>{r.scored_chunks}</td><td class='n'>{_score(r.max_virus_score)}</td>"
        f"<td class='n'>{_score(r.viral_chunk_fraction)}</td>"
        f"<td class='{r.call}'>{r.call}</td><td class='n'>{r.viral_regions}</td></tr>"
        for r in rows
    )
    if len(rows) < builder.records:
        note = (
            f"The {len(rows):,} records with the highest max P(virus) of {builder.records:,}; "
            "<code>sequence_summary.tsv</code> has them all."
        )
    else:
        note = f"All {builder.records:,} records, highest max P(virus) first."
    return (
        "<section id='records-section'><h2>Records</h2>"
        f"<p class='note'>{note} <span id='records-count'><span id='records-shown'>"
        f"{len(rows):,}</span> shown.</span></p>"
        "<p><input id='records-filter' type='search' placeholder='filter: words in any column'"
        " size='40' hidden></p>"
        f"<div id='records-wrap'><table id='records'><thead>{head}</thead>"
        f"<tbody>{body}</tbody></table></div></section>"
    )


def _bins_table(builder: ReportBuilder) -> str:
    """The distributions' numbers (the figure's, for a page whose SVG was removed)."""
    rows = "".join(
        f"<tr><td>{low:.3f}-{high:.3f}</td><td class='n'>{frames}</td><td class='n'>{records}"
        "</td></tr>"
        for low, high, frames, records in zip(
            BINS[:-1], BINS[1:], builder.frame_histogram, builder.record_histogram, strict=True
        )
    )
    return (
        "<details id='bins'><summary>The numbers</summary><p>The figure's numbers: kept "
        "frames by P(virus), scored records by max P(virus), in bins that hold their lower "
        "bound (the last one both).</p>"
        "<table><thead><tr><th>P(virus)</th><th class='n'>frames</th><th class='n'>records</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _regions_table(tracks: list[_Track]) -> str:
    """The regions of the drawn records (viral_regions.bed has every region)."""
    regions = [region for track in tracks for region in track.regions]
    if not regions:
        return ""
    rows = "".join(
        f"<tr><td>{_e(r.id)}</td><td class='n'>{r.start + 1}</td><td class='n'>{r.end}</td>"
        f"<td class='n'>{r.first_chunk}-{r.last_chunk}</td><td class='n'>{r.viral_chunks}</td>"
        f"<td class='n'>{_score(r.mean_virus_score)}</td>"
        f"<td class='n'>{_score(r.max_virus_score)}</td>"
        f"<td class='n'>{r.record_fraction:.4f}</td></tr>"
        for r in regions
    )
    return (
        "<table id='regions'><thead><tr><th>region</th><th class='n'>start</th>"
        "<th class='n'>end</th><th class='n'>chunks</th><th class='n'>viral chunks</th>"
        "<th class='n'>mean P(virus)</th><th class='n'>max P(virus)</th>"
        "<th class='n'>record fraction</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _tracks(builder: ReportBuilder, figures: list[str]) -> str:
    if not figures:
        return "<section id='tracks'><h2>Chunk tracks</h2><p>No record to draw.</p></section>"
    tracks = builder.tracks()
    items = "".join(
        f"<figure class='track' data-record='{_e(track.record.id)}'>{svg}</figure>"
        for track, svg in zip(tracks, figures, strict=True)
    )
    return (
        "<section id='tracks'><h2>Chunk tracks</h2><p class='note'>Each scored chunk's max "
        "P(virus) along the record at its real window (red: viral chunk, blue: not, grey at 0: "
        "no kept frame); shaded: viral regions. Drawn for the records with regions (the "
        f"{TRACKS - LONGEST} with the highest P(virus)) and the {LONGEST} longest records; "
        "their regions (bases 1-based, as in viral_regions.gff3) follow."
        f"</p>{items}{_regions_table(tracks)}</section>"
    )


def _page(builder: ReportBuilder, run: dict[str, Any], figures: dict[str, Any]) -> str:
    demo = run.get("demo_models", False)
    banner = (
        "<div class='demo' id='demo-warning'>DEMO MODELS: every score and call in this report "
        "is meaningless (random weights).</div>"
        if demo
        else ""
    )
    path = run.get("input", {}).get("path")
    title = f"VirNucPro report: {PurePath(path).name if path else 'input'}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{banner}"
        f"<header><h1>{_e(title)}</h1><p class='note'>virnucpro-worker; the calls follow "
        "docs/ALGORITHM.md 7, the regions 10. Every figure's numbers are also in a table, "
        "for viewers that remove figures (Galaxy's HTML sanitizer).</p></header><main>"
        f"{_counts(builder, run)}<figure id='calls-figure'>{figures['calls']}</figure></section>"
        "<section id='distributions'><h2>P(virus) distributions</h2>"
        f"<figure>{figures['distributions']}</figure>{_bins_table(builder)}</section>"
        f"{_records_table(builder)}{_tracks(builder, figures['tracks'])}{_provenance(run)}"
        f"</main><script>{_SCRIPT}</script></body></html>\n"
    )
