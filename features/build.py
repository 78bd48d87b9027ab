"""Point-in-time features as of any date, as SQL over the validated sources.

Each feature family is a range join (same enterprise, dates before the as-of date and inside
the window) plus a GROUP BY — no engine-specific as-of join — so the same definitions can run
on DuckDB here and on Spark for a province. Window bounds are computed once per pair, so the
joins only compare dates. A record counts at *t* only if it happened and was recorded before
*t*, is not repaired (from the repair date) and is not under objection (see README).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
from pydantic import BaseModel, ConfigDict

from features.catalogue import CATALOGUE, CATALOGUE_VERSION, FEATURE_NAMES
from features.contracts import PENALTY_KINDS, SOURCES
from features.coverage import coverage_sql
from features.engine import quiet_progress

log = logging.getLogger(__name__)

_SEVERITY = " ".join(f"WHEN '{k}' THEN {i + 1}" for i, k in enumerate(PENALTY_KINDS))
_GRADE = " ".join(f"WHEN '{g}' THEN {i + 1}" for i, g in enumerate("ABCDE"))


#: A known list entry is still listed at t unless its removal happened and was recorded before t.
_LISTED = (
    "NOT (e.removed_on IS NOT NULL AND e.removed_on < p.as_of AND e.removal_recorded_at < p.as_of)"
)


def _known(alias: str, event: str) -> str:
    return f"{alias}.{event} < p.as_of AND {alias}.recorded_at < p.as_of"


def _not_excluded(source: str, alias: str) -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM excluded x WHERE x.credit_code = p.credit_code "
        f"AND x.as_of = p.as_of AND x.src = '{source}' AND x.rid = {alias}.record_id)"
    )


def feature_sql(sources: Mapping[str, str], pairs: str) -> str:
    """One SELECT computing every catalogue feature for the (credit_code, as_of) in ``pairs``."""
    s = dict(sources)
    return f"""
WITH p AS (
  SELECT DISTINCT credit_code, CAST(as_of AS DATE) AS as_of,
         CAST(CAST(as_of AS DATE) - INTERVAL 5 YEAR AS DATE) AS t_5y,
         CAST(CAST(as_of AS DATE) - INTERVAL 1 YEAR AS DATE) AS t_1y,
         CAST(CAST(as_of AS DATE) - INTERVAL 90 DAY AS DATE) AS t_90d
  FROM {pairs}
),
excluded AS (
  SELECT p.credit_code, p.as_of, r.target_source AS src, r.target_record_id AS rid
  FROM p JOIN {s["credit_repairs"]} r ON r.credit_code = p.credit_code
  WHERE r.repaired_on < p.as_of AND r.recorded_at < p.as_of
  UNION
  SELECT p.credit_code, p.as_of, o.target_source, o.target_record_id
  FROM p JOIN {s["objections"]} o ON o.credit_code = p.credit_code
  WHERE o.filed_on < p.as_of AND o.recorded_at < p.as_of
    AND NOT (o.outcome = 'rejected' AND o.resolved_on < p.as_of)
),
pen AS (
  SELECT p.credit_code, p.as_of,
    COUNT(*) AS penalty_count_5y,
    SUM(CASE WHEN e.decided_on >= p.t_1y THEN 1 ELSE 0 END) AS penalty_count_1y,
    SUM(CASE WHEN e.kind IN ('confiscation', 'suspension', 'revocation') THEN 1 ELSE 0 END)
      AS serious_penalty_count_5y,
    MAX(CASE e.kind {_SEVERITY} END) AS penalty_max_severity_5y,
    SUM(COALESCE(e.amount, 0)) AS penalty_amount_5y,
    MAX(e.decided_on) AS last_penalty
  FROM p JOIN {s["penalties"]} e ON e.credit_code = p.credit_code
  WHERE {_known("e", "decided_on")} AND e.decided_on >= p.t_5y
    AND {_not_excluded("penalties", "e")}
  GROUP BY p.credit_code, p.as_of
),
lst AS (
  SELECT p.credit_code, p.as_of,
    MAX(CASE WHEN e.list_type = 'black' AND {_LISTED} THEN 1 ELSE 0 END) AS on_black_list,
    MAX(CASE WHEN e.list_type = 'abnormal' AND {_LISTED} THEN 1 ELSE 0 END) AS on_abnormal_list,
    MAX(CASE WHEN e.list_type = 'red' AND {_LISTED} THEN 1 ELSE 0 END) AS on_red_list,
    SUM(CASE WHEN e.list_type = 'black' AND e.entered_on >= p.t_5y THEN 1 ELSE 0 END)
      AS black_list_entries_5y,
    SUM(CASE WHEN e.list_type = 'abnormal' AND e.entered_on >= p.t_1y THEN 1 ELSE 0 END)
      AS abnormal_entries_1y
  FROM p JOIN {s["list_entries"]} e ON e.credit_code = p.credit_code
  WHERE {_known("e", "entered_on")} AND {_not_excluded("list_entries", "e")}
  GROUP BY p.credit_code, p.as_of
),
ev_ranked AS (
  SELECT p.credit_code, p.as_of, e.score, e.grade, e.evaluated_on,
    ROW_NUMBER() OVER (PARTITION BY p.credit_code, p.as_of
                       ORDER BY e.evaluated_on DESC, e.record_id DESC) AS rn
  FROM p JOIN {s["credit_evaluations"]} e ON e.credit_code = p.credit_code
  WHERE {_known("e", "evaluated_on")}
),
ev AS (
  SELECT credit_code, as_of,
    MAX(CASE WHEN rn = 1 THEN score END) AS credit_score_latest,
    MAX(CASE WHEN rn = 1 THEN CASE grade {_GRADE} END END) AS credit_grade_latest,
    MAX(CASE WHEN rn = 1 THEN score END) - MAX(CASE WHEN rn = 2 THEN score END)
      AS credit_score_change,
    MAX(CASE WHEN rn = 1 THEN evaluated_on END) AS last_evaluation
  FROM ev_ranked WHERE rn <= 2
  GROUP BY credit_code, as_of
),
insp AS (
  SELECT p.credit_code, p.as_of,
    COUNT(*) AS inspections_5y,
    SUM(CASE WHEN e.problem_found THEN 1 ELSE 0 END) AS problems_found_5y,
    SUM(CASE WHEN e.problem_found AND e.inspected_on >= p.t_1y THEN 1 ELSE 0 END)
      AS problems_found_1y,
    MAX(e.inspected_on) AS last_inspection
  FROM p JOIN {s["inspections"]} e ON e.credit_code = p.credit_code
  WHERE {_known("e", "inspected_on")} AND e.inspected_on >= p.t_5y
    AND {_not_excluded("inspections", "e")}
  GROUP BY p.credit_code, p.as_of
),
comp AS (
  SELECT p.credit_code, p.as_of,
    COUNT(*) AS complaints_1y,
    SUM(CASE WHEN e.substantiated THEN 1 ELSE 0 END) AS substantiated_complaints_1y,
    SUM(CASE WHEN e.received_on >= p.t_90d THEN 1 ELSE 0 END) AS complaints_90d
  FROM p JOIN {s["complaints"]} e ON e.credit_code = p.credit_code
  WHERE {_known("e", "received_on")} AND e.received_on >= p.t_1y
    AND {_not_excluded("complaints", "e")}
  GROUP BY p.credit_code, p.as_of
)
SELECT p.credit_code, p.as_of,
  CAST(DATE_DIFF('day', g.founded_on, p.as_of) AS DOUBLE) / 365.25 AS age_years,
  g.registered_capital, g.industry, g.region, g.enterprise_type,
  CAST(CASE WHEN p.credit_code LIKE '92%' THEN 1 ELSE 0 END AS INTEGER) AS is_individual_business,
  CAST(COALESCE(pen.penalty_count_5y, 0) AS BIGINT) AS penalty_count_5y,
  CAST(COALESCE(pen.penalty_count_1y, 0) AS BIGINT) AS penalty_count_1y,
  CAST(COALESCE(pen.serious_penalty_count_5y, 0) AS BIGINT) AS serious_penalty_count_5y,
  CAST(COALESCE(pen.penalty_max_severity_5y, 0) AS INTEGER) AS penalty_max_severity_5y,
  CAST(COALESCE(pen.penalty_amount_5y, 0) AS DOUBLE) AS penalty_amount_5y,
  CAST(DATE_DIFF('day', pen.last_penalty, p.as_of) AS INTEGER) AS days_since_last_penalty,
  CAST(COALESCE(lst.on_black_list, 0) AS INTEGER) AS on_black_list,
  CAST(COALESCE(lst.on_abnormal_list, 0) AS INTEGER) AS on_abnormal_list,
  CAST(COALESCE(lst.on_red_list, 0) AS INTEGER) AS on_red_list,
  CAST(COALESCE(lst.black_list_entries_5y, 0) AS BIGINT) AS black_list_entries_5y,
  CAST(COALESCE(lst.abnormal_entries_1y, 0) AS BIGINT) AS abnormal_entries_1y,
  CAST(ev.credit_score_latest AS DOUBLE) AS credit_score_latest,
  CAST(ev.credit_grade_latest AS INTEGER) AS credit_grade_latest,
  CAST(ev.credit_score_change AS DOUBLE) AS credit_score_change,
  CAST(DATE_DIFF('day', ev.last_evaluation, p.as_of) AS INTEGER) AS days_since_evaluation,
  CAST(COALESCE(insp.inspections_5y, 0) AS BIGINT) AS inspections_5y,
  CAST(COALESCE(insp.problems_found_5y, 0) AS BIGINT) AS problems_found_5y,
  CAST(insp.problems_found_5y AS DOUBLE) / insp.inspections_5y AS past_problem_rate_5y,
  CAST(COALESCE(insp.problems_found_1y, 0) AS BIGINT) AS problems_found_1y,
  CAST(DATE_DIFF('day', insp.last_inspection, p.as_of) AS INTEGER) AS days_since_last_inspection,
  CAST(COALESCE(comp.complaints_1y, 0) AS BIGINT) AS complaints_1y,
  CAST(COALESCE(comp.substantiated_complaints_1y, 0) AS BIGINT) AS substantiated_complaints_1y,
  CAST(COALESCE(comp.complaints_90d, 0) AS BIGINT) AS complaints_90d
FROM p
LEFT JOIN {s["registry"]} g ON g.credit_code = p.credit_code
LEFT JOIN pen ON pen.credit_code = p.credit_code AND pen.as_of = p.as_of
LEFT JOIN lst ON lst.credit_code = p.credit_code AND lst.as_of = p.as_of
LEFT JOIN ev ON ev.credit_code = p.credit_code AND ev.as_of = p.as_of
LEFT JOIN insp ON insp.credit_code = p.credit_code AND insp.as_of = p.as_of
LEFT JOIN comp ON comp.credit_code = p.credit_code AND comp.as_of = p.as_of
ORDER BY p.credit_code, p.as_of
"""


def population_sql(registry: str, as_of: date) -> str:
    """Enterprises registered at ``as_of``: founded and recorded before it, not yet closed."""
    return (
        f"SELECT credit_code, DATE '{as_of}' AS as_of FROM {registry} "
        f"WHERE founded_on < DATE '{as_of}' AND recorded_at < DATE '{as_of}' "
        f"AND (closed_on IS NULL OR closed_on >= DATE '{as_of}')"
    )


def connect(
    validated_dir: Path, *, memory_limit: str | None = None, spill_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per validated source.

    With ``memory_limit`` DuckDB spills to ``spill_dir`` instead of growing with the province
    (the snapshot of 2.5 M enterprises otherwise peaks at ~6 GiB).
    """
    con = duckdb.connect(config={"threads": os.cpu_count() or 2})
    quiet_progress(con)
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if spill_dir:
        con.execute(f"SET temp_directory = '{spill_dir}'")
    for name in SOURCES:
        path = str(validated_dir / f"{name}.parquet").replace("'", "''")
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    return con


def query_pairs(
    validated_dir: Path, pairs: pd.DataFrame | Path, sql: Callable[[Mapping[str, str], str], str]
) -> pd.DataFrame:
    """Run a per-(credit_code, as_of) query, e.g. ``feature_sql``, over the given pairs."""
    con = connect(validated_dir)
    try:
        if isinstance(pairs, Path):
            con.execute(f"CREATE VIEW pairs AS SELECT * FROM read_parquet('{pairs}')")
        else:
            frame = pairs[["credit_code", "as_of"]].copy()
            frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
            con.register("pairs", frame)
        return con.execute(sql({n: n for n in SOURCES}, "pairs")).df()
    finally:
        con.close()


def build_features(validated_dir: Path, pairs: pd.DataFrame | Path) -> pd.DataFrame:
    """Features for each distinct (credit_code, as_of) pair, sorted by code then date."""
    out = query_pairs(validated_dir, pairs, feature_sql)
    assert list(out.columns) == ["credit_code", "as_of", *FEATURE_NAMES]
    return out


def build_coverage(validated_dir: Path, pairs: pd.DataFrame | Path) -> pd.DataFrame:
    """Which sources hold records of each pair's enterprise before its date (see coverage)."""
    return query_pairs(validated_dir, pairs, coverage_sql)


def spark_sql(pairs: str = "pairs") -> str:
    """The same definitions in Spark SQL, transpiled from the one DuckDB definition."""
    import sqlglot

    sql = feature_sql({n: n for n in SOURCES}, pairs)
    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


def build_features_spark(spark, validated_dir: Path, pairs: pd.DataFrame) -> pd.DataFrame:
    """Run the feature definitions on a Spark session (a province that outgrew one machine)."""
    for name in SOURCES:
        spark.read.parquet(str(validated_dir / f"{name}.parquet")).createOrReplaceTempView(name)
    frame = pairs[["credit_code", "as_of"]].copy()
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    spark.createDataFrame(frame).createOrReplaceTempView("pairs")
    return spark.sql(spark_sql("pairs")).toPandas()


class SnapshotInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    as_of: date
    rows: int
    catalogue_version: str
    data_fingerprint: str | None
    path: Path
    built_at: datetime


def build_snapshot(
    validated_dir: Path, as_of: date, out_path: Path, *, memory_limit: str = "4GB"
) -> SnapshotInfo:
    """Features of the whole registered population as of ``as_of``, written to Parquet."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spill = out_path.parent / f".spill-{out_path.stem}"
    con = connect(validated_dir, memory_limit=memory_limit, spill_dir=spill)
    tmp = out_path.with_suffix(".parquet.tmp")
    try:
        con.execute(f"CREATE VIEW pairs AS {population_sql('registry', as_of)}")
        sql = feature_sql({n: n for n in SOURCES}, "pairs")
        con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet)")
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}')").fetchone()[0]
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    tmp.replace(out_path)
    report = validated_dir / "validation_report.json"
    fingerprint = json.loads(report.read_text())["data_fingerprint"] if report.exists() else None
    info = SnapshotInfo(
        as_of=as_of,
        rows=rows,
        catalogue_version=CATALOGUE_VERSION,
        data_fingerprint=fingerprint,
        path=out_path,
        built_at=datetime.now(UTC),
    )
    out_path.with_suffix(".json").write_text(info.model_dump_json(indent=2))
    return info


__all__ = [
    "CATALOGUE",
    "SnapshotInfo",
    "build_coverage",
    "build_features",
    "build_snapshot",
    "feature_sql",
]
