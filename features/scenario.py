"""One enterprise's features as of a date, optionally with its records edited (what-if).

Why the real feature SQL on a one-enterprise slice, not a feature tweak: a what-if for credit
repair must give exactly the features batch scoring would give if the repair had been
recorded, so an edit becomes the record the platform would hold (a completed repair, an
upheld or pending objection) and ``features.build.feature_sql`` runs unchanged on the
enterprise's rows. With no edits the row equals ``build_features`` for the same pair (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator

from features.build import feature_sql
from features.catalogue import FEATURE_NAMES
from features.contracts import SOURCES, TARGETABLE_SOURCES
from features.engine import quiet_progress
from features.lineage import check_code, linked_records

EditKind = Literal["repair", "withdraw", "drop_objection", "add_objection"]


class Edit(BaseModel):
    """A change to one record: ``repair`` (credit repair completed), ``withdraw`` (an
    objection upheld), ``drop_objection`` (as if no objection had been filed),
    ``add_objection`` (an objection pending). ``on`` is when it happens; default: the day
    before the date the features are computed for, so the edit counts on that date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EditKind
    source: str
    record_id: str
    on: date | None = None

    @field_validator("source")
    @classmethod
    def _targetable(cls, v: str) -> str:
        if v not in TARGETABLE_SOURCES:
            raise ValueError(
                f"{v!r} records cannot be repaired or objected to; "
                f"one of {', '.join(TARGETABLE_SOURCES)}"
            )
        return v

    @property
    def label(self) -> str:
        return f"{self.kind} {self.source}:{self.record_id}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _edit_rows(code: str, as_of: date, edits: Sequence[Edit]) -> tuple[str, str]:
    """Extra repair and objection rows (SQL VALUES) standing for the edits."""
    repairs, objections = [], []
    for i, e in enumerate(edits):
        on = e.on or as_of - timedelta(days=1)
        if on >= as_of:
            raise ValueError(
                f"{e.label}: on {on} is not before {as_of}, so it would not count on that date"
            )
        d = f"DATE '{on}'"
        target = f"{_quote(e.source)}, {_quote(e.record_id)}"
        if e.kind == "repair":
            repairs.append(f"('what-if-{i}', '{code}', {target}, {d}, {d}, {d})")
        elif e.kind in ("withdraw", "add_objection"):
            outcome = "'upheld'" if e.kind == "withdraw" else "'pending'"
            resolved = d if e.kind == "withdraw" else "NULL::DATE"
            objections.append(
                f"('what-if-{i}', '{code}', {target}, {d}, {d}, {resolved}, {outcome})"
            )
    return ", ".join(repairs), ", ".join(objections)


def _check_targets(validated_dir: Path, code: str, as_of: date, edits: Sequence[Edit]) -> None:
    if not edits:
        return
    records = linked_records(validated_dir, code, as_of)
    known = set(zip(records["source"], records["record_id"], strict=True))
    for e in edits:
        if (e.source, e.record_id) not in known:
            raise ValueError(f"{e.source}:{e.record_id}: no such record of {code} before {as_of}")


def features_for(
    validated_dir: Path,
    credit_code: str,
    as_of: date,
    edits: Sequence[Edit] = (),
) -> pd.DataFrame:
    """The enterprise's feature row as of ``as_of`` with ``edits`` applied (a 1-row frame with
    the columns of ``build_features``). LookupError if it is not registered on that date."""
    code = check_code(credit_code)
    _check_targets(validated_dir, code, as_of, edits)
    repair_rows, objection_rows = _edit_rows(code, as_of, edits)
    dropped = [(e.source, e.record_id) for e in edits if e.kind == "drop_objection"]
    con = duckdb.connect(config={"threads": 1})
    quiet_progress(con)
    try:
        for name in SOURCES:
            path = str(validated_dir / f"{name}.parquet").replace("'", "''")
            con.execute(
                f"CREATE VIEW {name}_base AS SELECT * FROM read_parquet('{path}') "
                f"WHERE credit_code = '{code}'"
            )
        keep = " AND ".join(
            f"NOT (target_source = {_quote(s)} AND target_record_id = {_quote(r)})"
            for s, r in dropped
        )
        con.execute(
            "CREATE VIEW objections_edited AS SELECT * FROM objections_base"
            + (f" WHERE {keep}" if keep else "")
            + (
                " UNION ALL BY NAME SELECT * FROM (VALUES "
                + objection_rows
                + ") v(record_id, credit_code, target_source, target_record_id, filed_on, "
                "recorded_at, resolved_on, outcome)"
                if objection_rows
                else ""
            )
        )
        con.execute(
            "CREATE VIEW credit_repairs_edited AS SELECT * FROM credit_repairs_base"
            + (
                " UNION ALL BY NAME SELECT * FROM (VALUES "
                + repair_rows
                + ") v(record_id, credit_code, target_source, target_record_id, applied_on, "
                "repaired_on, recorded_at)"
                if repair_rows
                else ""
            )
        )
        registered = con.execute(
            f"SELECT count(*) FROM registry_base WHERE founded_on < DATE '{as_of}' "
            f"AND recorded_at < DATE '{as_of}' "
            f"AND (closed_on IS NULL OR closed_on >= DATE '{as_of}')"
        ).fetchone()[0]
        if not registered:
            raise LookupError(f"{code}: no such enterprise in the registry as of {as_of}")
        sources = {n: f"{n}_base" for n in SOURCES}
        sources["objections"] = "objections_edited"
        sources["credit_repairs"] = "credit_repairs_edited"
        pairs = f"(SELECT '{code}' AS credit_code, DATE '{as_of}' AS as_of)"
        out = con.execute(feature_sql(sources, pairs)).df()
    finally:
        con.close()
    assert list(out.columns) == ["credit_code", "as_of", *FEATURE_NAMES]
    return out


def with_and_without_objections(
    validated_dir: Path, credit_code: str, as_of: date
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Features now (pending objections not counted), as if those objections had not been
    filed, and the ``source:record_id`` of the objected records."""
    records = linked_records(validated_dir, credit_code, as_of)
    objected = records[records["status"] == "under_objection"]
    edits = [
        Edit(kind="drop_objection", source=s, record_id=r)
        for s, r in zip(objected["source"], objected["record_id"], strict=True)
    ]
    now = features_for(validated_dir, credit_code, as_of)
    as_if = features_for(validated_dir, credit_code, as_of, edits)
    return now, as_if, [e.label.removeprefix("drop_objection ") for e in edits]
