"""Lineage: the source records behind one enterprise's features as of a date.

Why a second look at the records rather than a by-product of the feature SQL: an auditor going
from a tier to the penalty that drove it needs every record *with its status* — counted,
repaired, withdrawn after an upheld objection, under objection, outside its window, superseded,
or not yet known on that date — and the features each counted record feeds. The status rules
here mirror ``features.build`` (same windows, computed by the same engine, same exclusions);
``tests/features/test_lineage.py`` holds the two to the same answers.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from features.contracts import SOURCES, TARGETABLE_SOURCES
from features.credit_code import is_well_formed

#: Statuses, in the order they are decided (the first that applies wins).
STATUSES = (
    "not_yet_known",  # happened before the date but reached the platform on or after it
    "outside_window",  # older than the window of every feature it could feed
    "superseded",  # an older credit evaluation (only the latest two count)
    "repaired",  # credit repair completed before the date (信用修复)
    "withdrawn",  # an objection against it was upheld before the date
    "under_objection",  # an objection is pending on the date: not counted meanwhile
    "counted",
)

#: Serious penalty kinds (``serious_penalty_count_5y``), as in the feature SQL.
SERIOUS_PENALTIES = ("confiscation", "suspension", "revocation")

COLUMNS = [
    "source",
    "record_id",
    "event_date",
    "recorded_at",
    "department",
    "detail",
    "status",
    "objection_id",
    "objection_outcome",
    "repair_id",
    "repaired_on",
    "features",
]

_EVENTS = {
    "penalties": "concat_ws(', ', kind, procedure, "
    "CASE WHEN amount IS NOT NULL THEN 'amount ' || CAST(amount AS VARCHAR) END, legal_basis)",
    "list_entries": "list_type || ' list' || COALESCE(': ' || reason, '') || "
    "COALESCE(', removed ' || CAST(removed_on AS VARCHAR), '')",
    "credit_evaluations": "'grade ' || grade || ', score ' || CAST(score AS VARCHAR)",
    "inspections": "selection || ' inspection, ' || "
    "CASE WHEN problem_found THEN 'problem found' ELSE 'no problem found' END",
    "complaints": "channel || ' complaint, ' || "
    "CASE WHEN substantiated THEN 'substantiated' ELSE 'not substantiated' END",
}


def check_code(credit_code: str) -> str:
    """A well-formed code, or a ValueError naming it (codes are inlined into SQL)."""
    if not isinstance(credit_code, str) or not is_well_formed(credit_code):
        raise ValueError(f"credit_code: {credit_code!r} is not an 18-character unified code")
    return credit_code


def _path(validated_dir: Path, source: str) -> str:
    return str(validated_dir / f"{source}.parquet").replace("'", "''")


def _events(con: duckdb.DuckDBPyConnection, validated_dir: Path, code: str, as_of: date):
    parts = []
    for source, detail in _EVENTS.items():
        s = SOURCES[source]
        removal = (
            "removed_on, removal_recorded_at, list_type"
            if source == "list_entries"
            else "NULL::DATE AS removed_on, NULL::DATE AS removal_recorded_at, NULL AS list_type"
        )
        extra = {
            "penalties": "kind, NULL::BOOLEAN AS flag",
            "inspections": "NULL AS kind, problem_found AS flag",
            "complaints": "NULL AS kind, substantiated AS flag",
        }.get(source, "NULL AS kind, NULL::BOOLEAN AS flag")
        parts.append(
            f"SELECT '{source}' AS source, record_id, {s.event_date} AS event_date, "
            f"recorded_at, department, {detail} AS detail, {removal}, {extra} "
            f"FROM read_parquet('{_path(validated_dir, source)}') "
            f"WHERE credit_code = '{code}' AND {s.event_date} < DATE '{as_of}'"
        )
    return con.sql(" UNION ALL BY NAME ".join(parts)).df()


def _objections(con: duckdb.DuckDBPyConnection, validated_dir: Path, code: str, as_of: date):
    """The latest objection known on the date per record, with its outcome *as of* the date."""
    return con.sql(
        f"""
        SELECT target_source AS source, target_record_id AS record_id,
               record_id AS objection_id,
               CASE WHEN resolved_on IS NOT NULL AND resolved_on < DATE '{as_of}'
                    THEN outcome ELSE 'pending' END AS objection_outcome
        FROM read_parquet('{_path(validated_dir, "objections")}')
        WHERE credit_code = '{code}' AND filed_on < DATE '{as_of}'
          AND recorded_at < DATE '{as_of}'
        QUALIFY ROW_NUMBER() OVER (PARTITION BY target_source, target_record_id
                                   ORDER BY filed_on DESC, record_id DESC) = 1
        """
    ).df()


def _repairs(con: duckdb.DuckDBPyConnection, validated_dir: Path, code: str, as_of: date):
    """The first completed repair known on the date per record."""
    return con.sql(
        f"""
        SELECT target_source AS source, target_record_id AS record_id,
               record_id AS repair_id, repaired_on
        FROM read_parquet('{_path(validated_dir, "credit_repairs")}')
        WHERE credit_code = '{code}' AND repaired_on < DATE '{as_of}'
          AND recorded_at < DATE '{as_of}'
        QUALIFY ROW_NUMBER() OVER (PARTITION BY target_source, target_record_id
                                   ORDER BY repaired_on, record_id) = 1
        """
    ).df()


def _windows(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, pd.Timestamp]:
    """Window starts computed by DuckDB, exactly as the feature SQL computes them."""
    row = con.execute(
        f"SELECT CAST(DATE '{as_of}' - INTERVAL 5 YEAR AS DATE), "
        f"CAST(DATE '{as_of}' - INTERVAL 1 YEAR AS DATE), "
        f"CAST(DATE '{as_of}' - INTERVAL 90 DAY AS DATE)"
    ).fetchone()
    return {k: pd.Timestamp(v) for k, v in zip(("5y", "1y", "90d"), row, strict=True)}


def _fed(r: pd.Series, t: dict[str, pd.Timestamp], as_of: pd.Timestamp) -> tuple[str, ...]:
    """Features a known record would feed if counted (empty: outside every window)."""
    day = r["event_date"]
    flag = r["flag"] is True or (pd.notna(r["flag"]) and bool(r["flag"]))  # NULL counts as false
    if r["source"] == "penalties":
        if day < t["5y"]:
            return ()
        fed = ["penalty_count_5y", "penalty_max_severity_5y", "penalty_amount_5y"]
        fed += ["penalty_count_1y"] if day >= t["1y"] else []
        fed += ["serious_penalty_count_5y"] if r["kind"] in SERIOUS_PENALTIES else []
        return tuple(fed)
    if r["source"] == "list_entries":
        removed = (
            pd.notna(r["removed_on"])
            and r["removed_on"] < as_of
            and r["removal_recorded_at"] < as_of
        )
        kind = r["list_type"]
        fed = [] if removed else [f"on_{kind}_list"]
        fed += ["black_list_entries_5y"] if kind == "black" and day >= t["5y"] else []
        fed += ["abnormal_entries_1y"] if kind == "abnormal" and day >= t["1y"] else []
        return tuple(fed)
    if r["source"] == "inspections":
        if day < t["5y"]:
            return ()
        fed = ["inspections_5y", "past_problem_rate_5y"]
        if flag:
            fed += ["problems_found_5y"] + (["problems_found_1y"] if day >= t["1y"] else [])
        return tuple(fed)
    if r["source"] == "complaints":
        if day < t["1y"]:
            return ()
        fed = ["complaints_1y"]
        fed += ["substantiated_complaints_1y"] if flag else []
        fed += ["complaints_90d"] if day >= t["90d"] else []
        return tuple(fed)
    return ()


_LATEST = {
    "penalties": "days_since_last_penalty",
    "inspections": "days_since_last_inspection",
}


def linked_records(validated_dir: Path, credit_code: str, as_of: date) -> pd.DataFrame:
    """Every record of the enterprise that happened before ``as_of``, with its status on that
    date and the features it feeds (empty unless counted), newest first per source."""
    code = check_code(credit_code)
    con = duckdb.connect()
    try:
        events = _events(con, validated_dir, code, as_of)
        objections = _objections(con, validated_dir, code, as_of)
        repairs = _repairs(con, validated_dir, code, as_of)
        t = _windows(con, as_of)
    finally:
        con.close()
    if events.empty:
        return pd.DataFrame(columns=COLUMNS)
    for col in ("event_date", "recorded_at", "removed_on", "removal_recorded_at"):
        events[col] = pd.to_datetime(events[col])
    keys = ["source", "record_id"]
    frame = events.merge(objections, on=keys, how="left").merge(repairs, on=keys, how="left")
    frame["repaired_on"] = pd.to_datetime(frame["repaired_on"])
    day = pd.Timestamp(as_of)
    frame["features"] = [_fed(r, t, day) for _, r in frame.iterrows()]
    frame["status"] = [_status(r, day) for _, r in frame.iterrows()]
    _evaluations(frame)
    frame.loc[frame["status"] != "counted", "features"] = pd.Series(
        [()] * int((frame["status"] != "counted").sum()),
        index=frame.index[frame["status"] != "counted"],
        dtype=object,
    )
    _latest(frame)
    frame = frame.sort_values(["source", "event_date", "record_id"], ascending=[True, False, True])
    return frame[COLUMNS].reset_index(drop=True)


def _status(r: pd.Series, as_of: pd.Timestamp) -> str:
    if r["recorded_at"] >= as_of:
        return "not_yet_known"
    if r["source"] == "credit_evaluations":
        return "counted"  # which two count is decided by ``_evaluations``
    if not r["features"]:
        return "outside_window"
    if r["source"] in TARGETABLE_SOURCES:
        if pd.notna(r["repair_id"]):
            return "repaired"
        outcome = r["objection_outcome"]
        if outcome == "upheld":
            return "withdrawn"
        if outcome == "pending":
            return "under_objection"
    return "counted"


def _evaluations(frame: pd.DataFrame) -> None:
    """The latest known evaluation feeds the score, grade and age; the one before it only the
    change; older ones are superseded (ordered as the feature SQL orders them)."""
    known = frame[(frame["source"] == "credit_evaluations") & (frame["status"] == "counted")]
    ranked = known.sort_values(["event_date", "record_id"], ascending=False).index
    latest = (
        "credit_score_latest",
        "credit_grade_latest",
        "credit_score_change",
        "days_since_evaluation",
    )
    for rank, i in enumerate(ranked):
        if rank == 0:
            frame.at[i, "features"] = latest
        elif rank == 1:
            frame.at[i, "features"] = ("credit_score_change",)
        else:
            frame.at[i, "status"] = "superseded"


def _latest(frame: pd.DataFrame) -> None:
    """The newest counted penalty and inspection also set the days-since features."""
    for source, name in _LATEST.items():
        counted = frame[(frame["source"] == source) & (frame["status"] == "counted")]
        if counted.empty:
            continue
        newest = counted["event_date"].max()
        for i in counted.index[counted["event_date"] == newest]:
            frame.at[i, "features"] = (*frame.at[i, "features"], name)
