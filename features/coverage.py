"""Data coverage per enterprise: which event sources hold any record of it, known before t.

Why: the seeds name thin data in one region as the fairness risk — a region whose departments
pushed few records looks safer than it is. Coverage is reported next to every per-slice
metric so that a slice's poor (or suspiciously good) score can be read against its data.
Coverage is a reporting column, never a model feature.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Event sources whose presence is counted, with the column holding the event date.
COVERED_SOURCES: dict[str, str] = {
    "credit_evaluations": "evaluated_on",
    "list_entries": "entered_on",
    "penalties": "decided_on",
    "inspections": "inspected_on",
    "complaints": "received_on",
}


def coverage_sql(sources: Mapping[str, str], pairs: str) -> str:
    """credit_code, as_of, one 0/1 column per covered source, and ``coverage`` (their mean)."""
    flags = [
        f"CAST(EXISTS (SELECT 1 FROM {sources[name]} e WHERE e.credit_code = p.credit_code "
        f"AND e.{event} < p.as_of AND e.recorded_at < p.as_of) AS INTEGER) AS has_{name}"
        for name, event in COVERED_SOURCES.items()
    ]
    mean = " + ".join(f"has_{name}" for name in COVERED_SOURCES)
    return f"""
WITH p AS (SELECT DISTINCT credit_code, CAST(as_of AS DATE) AS as_of FROM {pairs}),
f AS (SELECT p.credit_code, p.as_of, {", ".join(flags)} FROM p)
SELECT *, CAST({mean} AS DOUBLE) / {len(COVERED_SOURCES)} AS coverage FROM f
ORDER BY credit_code, as_of
"""
