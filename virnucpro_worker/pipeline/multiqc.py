"""MultiQC custom content: a run's numbers in the General Statistics table and its record calls
as a bar plot, so that a pipeline's MultiQC report shows VirNucPro beside its other tools.

MultiQC reads one section per `*_mqc.json` file, so there are two: `virnucpro_mqc.json` (the
General Statistics columns) and `virnucpro_calls_mqc.json` (the bar plot). Both are made from
the counts of what the other result files hold and from run.json's input, so `predict` and a
queued job's results give the same bytes. The sample is the input file's stem
(`sample1.fa.gz` -> `sample1`), as MultiQC names samples after their files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..sequences.fasta import fasta_stem

GENERAL_STATS_FILE = "virnucpro_mqc.json"
CALLS_FILE = "virnucpro_calls_mqc.json"
NAMESPACE = "VirNucPro"
DEFAULT_SAMPLE = "virnucpro"  # input read from a stream: no file name to go by

_GENERAL_STATS_COLUMNS = {
    "records": {
        "title": "Records",
        "description": "Input records (reads or contigs)",
        "format": "{:,.0f}",
        "scale": "Blues",
    },
    "viral_records": {
        "title": "Viral",
        "description": "Records called virus (at least half of their scored chunks viral)",
        "format": "{:,.0f}",
        "scale": "Reds",
    },
    "percent_viral_records": {
        "title": "% viral",
        "description": "Share of the records called virus",
        "suffix": "%",
        "min": 0,
        "max": 100,
        "format": "{:,.1f}",
        "scale": "Reds",
    },
    "percent_viral_chunks": {
        "title": "% viral chunks",
        "description": "Viral chunks among the chunks with a kept frame",
        "suffix": "%",
        "min": 0,
        "max": 100,
        "format": "{:,.1f}",
        "scale": "Oranges",
        "hidden": True,
    },
    "viral_regions": {
        "title": "Viral regions",
        "description": "Runs of viral chunks along the records (viral_regions.bed)",
        "format": "{:,.0f}",
        "scale": "Purples",
    },
}
_CALL_CATEGORIES = {
    "virus": {"name": "virus", "color": "#d62728"},
    "others": {"name": "others", "color": "#1f77b4"},
    "unscored": {"name": "unscored (no stop-free frame)", "color": "#7f7f7f"},
}


def sample_name(run: dict[str, Any]) -> str:
    path = run.get("input", {}).get("path")
    if not path or path in ("-", "<stream>"):
        return DEFAULT_SAMPLE
    return fasta_stem(Path(path))


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def multiqc_files(run: dict[str, Any], counts: Mapping[str, int]) -> dict[str, str]:
    """The two custom-content files' names and texts for the run.json content `run` and the
    `counts` of the files (records, viral_records, unscored_records, scored_chunks,
    viral_chunks, viral_regions)."""
    sample = sample_name(run)
    demo = " DEMO MODELS: these calls are meaningless." if run.get("demo_models") else ""
    general_stats = {
        "id": "virnucpro_general_stats",
        "plot_type": "generalstats",
        "namespace": NAMESPACE,
        "headers": _GENERAL_STATS_COLUMNS,
        "data": {
            sample: {
                "records": counts["records"],
                "viral_records": counts["viral_records"],
                "percent_viral_records": _percent(counts["viral_records"], counts["records"]),
                "percent_viral_chunks": _percent(counts["viral_chunks"], counts["scored_chunks"]),
                "viral_regions": counts["viral_regions"],
            }
        },
    }
    others = counts["records"] - counts["viral_records"] - counts["unscored_records"]
    calls = {
        "id": "virnucpro_calls",
        "section_name": "VirNucPro",
        "description": (
            "Record calls: <code>virus</code> when at least half of a record's scored chunks "
            f"are viral, <code>unscored</code> when no chunk has a stop-free frame.{demo}"
        ),
        "plot_type": "bargraph",
        "pconfig": {
            "id": "virnucpro_calls_plot",
            "title": "VirNucPro: record calls",
            "ylab": "Records",
        },
        "categories": _CALL_CATEGORIES,
        "data": {
            sample: {
                "virus": counts["viral_records"],
                "others": others,
                "unscored": counts["unscored_records"],
            }
        },
    }
    return {
        GENERAL_STATS_FILE: json.dumps(general_stats, indent=2) + "\n",
        CALLS_FILE: json.dumps(calls, indent=2) + "\n",
    }
