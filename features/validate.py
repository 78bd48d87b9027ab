"""Validation and quarantine: raw source files → typed tables + quarantine + report.

All checks are SQL generated from ``features.contracts`` and run inside DuckDB, so a province's
hundred million rows never pass through Python one by one. A row that fails any check goes to
the quarantine with every reason it failed; nothing is dropped silently and the input files
are only read. Outputs are written to a temporary folder and renamed into place, so a failed
run leaves the previous validated folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from datetime import date
from pathlib import Path

import duckdb
from pydantic import BaseModel, ConfigDict
from tqdm import tqdm

from features.contracts import (
    SOURCES,
    SQL_TYPES,
    Column,
    DType,
    Reason,
    Source,
    ValidationWindow,
)
from features.credit_code import CODE_PATTERN, sql_check_character
from features.engine import quiet_progress

log = logging.getLogger(__name__)


class SourceError(Exception):
    """A source file that cannot be validated at all: names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: {problem}")
        self.path = path
        self.problem = problem


class SourceReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    file: str
    format: str
    sha256: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    #: "reason:column" → rows whose first failure it is.
    quarantined_by: dict[str, int]
    ignored_columns: list[str]


class ValidationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    window: ValidationWindow
    sources: dict[str, SourceReport]
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    data_fingerprint: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(data_dir: Path, source: Source) -> Path:
    """The one file holding ``source``: CSV or Parquet, not both, not neither."""
    found = [
        p
        for p in (data_dir / f"{source.name}.csv", data_dir / f"{source.name}.parquet")
        if p.exists()
    ]
    if not found:
        raise SourceError(data_dir / f"{source.name}.csv", "missing source file (.csv or .parquet)")
    if len(found) == 2:
        raise SourceError(found[0], f"both {found[0].name} and {found[1].name} exist; keep one")
    return found[0]


def _read_parquet_sql(path: Path) -> str:
    quoted = str(path).replace("'", "''")
    return (
        "SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS source_row "
        f"FROM read_parquet('{quoted}', file_row_number = true)"
    )


def _open(con: duckdb.DuckDBPyConnection, source: Source, path: Path) -> list[str]:
    """Register ``raw_<source>`` with a 1-based ``source_row``; return the file's columns."""
    try:
        if path.suffix == ".csv":
            quoted = str(path).replace("'", "''")
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE raw_{source.name} AS "
                f"SELECT row_number() OVER () AS source_row, * FROM read_csv('{quoted}', "
                "all_varchar = true, header = true, sample_size = -1)"
            )
        else:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE raw_{source.name} AS {_read_parquet_sql(path)}"
            )
    except duckdb.Error as exc:
        raise SourceError(path, f"unreadable: {str(exc).splitlines()[0]}") from None
    columns = [r[0] for r in con.execute(f"DESCRIBE raw_{source.name}").fetchall()]
    missing = [c for c in source.column_names if c not in columns]
    if missing:
        raise SourceError(path, "missing columns: " + ", ".join(missing))
    return [c for c in columns if c != "source_row"]


def _typed(col: Column) -> str:
    raw = f'CAST(r."{col.name}" AS VARCHAR)'
    blank = f"NULLIF(trim({raw}), '')"
    if col.dtype == DType.BOOL:
        return (
            f"CASE lower({blank}) WHEN 'true' THEN true WHEN '1' THEN true WHEN 'yes' THEN true "
            "WHEN 'false' THEN false WHEN '0' THEN false WHEN 'no' THEN false END"
        )
    if col.dtype == DType.STRING:
        return blank
    return f"TRY_CAST({blank} AS {SQL_TYPES[col.dtype]})"


def _checks(source: Source, window: ValidationWindow) -> list[tuple[Reason, str, str]]:
    """(reason, column, SQL true when the row FAILS), in the documented order."""
    checks: list[tuple[Reason, str, str]] = []
    raw = {c.name: f"NULLIF(trim(t.\"raw__{c.name}\"), '')" for c in source.columns}
    typed = {c.name: f't."{c.name}"' for c in source.columns}
    for col in source.columns:
        cond = None
        if col.required:
            cond = "true"
        elif col.required_if:
            other, _, value = col.required_if.partition("=")
            cond = f"{typed[other]} IS NOT NULL" + (
                f" AND {typed[other]} = '{value}'" if value else ""
            )
        if cond:
            checks.append((Reason.MISSING_VALUE, col.name, f"({cond}) AND {raw[col.name]} IS NULL"))
    for col in source.columns:
        if col.dtype != DType.STRING:
            checks.append(
                (
                    Reason.UNPARSEABLE_VALUE,
                    col.name,
                    f"{raw[col.name]} IS NOT NULL AND {typed[col.name]} IS NULL",
                )
            )
    for col in source.columns:
        v = typed[col.name]
        if col.credit_code:
            checks.append(
                (
                    Reason.MALFORMED_CREDIT_CODE,
                    col.name,
                    f"{v} IS NOT NULL AND NOT regexp_full_match({v}, '{CODE_PATTERN.pattern[1:-1]}')",
                )
            )
            checks.append(
                (
                    Reason.BAD_CHECK_CHARACTER,
                    col.name,
                    f"{v} IS NOT NULL AND regexp_full_match({v}, '{CODE_PATTERN.pattern[1:-1]}') "
                    f"AND substr({v}, 18, 1) <> {sql_check_character(v)}",
                )
            )
        if col.allowed:
            values = ", ".join(f"'{a}'" for a in col.allowed)
            checks.append(
                (Reason.UNKNOWN_VALUE, col.name, f"{v} IS NOT NULL AND {v} NOT IN ({values})")
            )
        if col.pattern:
            checks.append(
                (
                    Reason.PATTERN_MISMATCH,
                    col.name,
                    f"{v} IS NOT NULL AND NOT regexp_full_match({v}, '{col.pattern[1:-1]}')",
                )
            )
        bounds = []
        if col.min_value is not None:
            bounds.append(f"{v} {'<=' if col.min_exclusive else '<'} {col.min_value}")
        if col.max_value is not None:
            bounds.append(f"{v} > {col.max_value}")
        if bounds:
            checks.append(
                (Reason.OUT_OF_RANGE, col.name, f"{v} IS NOT NULL AND ({' OR '.join(bounds)})")
            )
        if col.dtype == DType.DATE:
            earliest = (
                window.earliest_founding if col.name == "founded_on" else window.earliest_event
            )
            checks.append(
                (
                    Reason.DATE_OUT_OF_RANGE,
                    col.name,
                    f"{v} IS NOT NULL AND ({v} < DATE '{earliest}' "
                    f"OR {v} > DATE '{window.extracted_on}')",
                )
            )
    for order in source.date_orders:
        checks.append(
            (
                Reason.DATES_OUT_OF_ORDER,
                order.later,
                f"{typed[order.earlier]} > {typed[order.later]}",
            )
        )
    for rule in source.consistency:
        checks.append(
            (Reason.INCONSISTENT_VALUES, rule.column, f"NOT ({_qualify(rule.sql, source)})")
        )
    return checks


def _qualify(sql: str, source: Source) -> str:
    """Prefix bare column names in a contract rule with the typed alias ``t``."""

    names = sorted(source.column_names, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w'.])(" + "|".join(map(re.escape, names)) + r")(?![\w'])")
    return pattern.sub(lambda m: f't."{m.group(1)}"', sql)


def _validate_source(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    path: Path,
    window: ValidationWindow,
    file_columns: list[str],
) -> tuple[int, int, dict[str, int], list[str]]:
    ignored = [c for c in file_columns if c not in source.column_names]
    typed_cols = ", ".join(f'{_typed(c)} AS "{c.name}"' for c in source.columns)
    raw_cols = ", ".join(
        f'CAST(r."{c.name}" AS VARCHAR) AS "raw__{c.name}"' for c in source.columns
    )
    checks = _checks(source, window)
    fail_list = ", ".join(
        f"CASE WHEN coalesce({sql}, false) THEN '{reason.value}:{col}' END"
        for reason, col, sql in checks
    )
    raw_json = (
        "to_json(struct_pack("
        + ", ".join(f'"{c}" := CAST(r."{c}" AS VARCHAR)' for c in file_columns)
        + "))"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE checked_{source.name} AS
        WITH typed AS (SELECT r.source_row, {typed_cols}, {raw_cols}
                       FROM raw_{source.name} r)
        SELECT t.* EXCLUDE ({", ".join(f'"raw__{c}"' for c in source.column_names)}),
               list_filter([{fail_list}], lambda x: x IS NOT NULL) AS fails
        FROM typed t"""
    )
    key = f'"{source.key}"'
    # Later checks only judge rows that passed the row checks.
    later: list[str] = [
        f"CASE WHEN row_number() OVER (PARTITION BY {key} ORDER BY source_row) > 1 "
        f"THEN 'duplicate_record:{source.key}' END"
    ]
    if source.references_registry:
        later.append(
            "CASE WHEN credit_code NOT IN (SELECT credit_code FROM clean_registry) "
            "THEN 'unknown_enterprise:credit_code' END"
        )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE passed_{source.name} AS
        SELECT * EXCLUDE (fails), list_filter([{", ".join(later)}], lambda x: x IS NOT NULL) AS fails
        FROM checked_{source.name} WHERE len(fails) = 0"""
    )
    if source.targets_records:
        ids = []
        for target in ("penalties", "list_entries", "inspections", "complaints"):
            ids.append(f"SELECT '{target}' AS s, record_id, credit_code FROM raw_{target}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE target_ids AS {' UNION ALL '.join(ids)}")
        con.execute(
            f"""UPDATE passed_{source.name} p SET fails = list_append(fails,
            'unknown_target_record:target_record_id')
            WHERE NOT EXISTS (SELECT 1 FROM target_ids i WHERE i.s = p.target_source
              AND i.record_id = p.target_record_id AND i.credit_code = p.credit_code)"""
        )
    cols = ", ".join(f'"{c}"' for c in source.column_names)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE clean_{source.name} AS SELECT {cols}, source_row "
        f"FROM passed_{source.name} WHERE len(fails) = 0 ORDER BY source_row"
    )
    rec = "credit_code" if source.key == "credit_code" else "record_id"
    con.execute(
        f"""INSERT INTO quarantine
        SELECT '{source.name}', '{path.name}', source_row, CAST("{rec}" AS VARCHAR),
          credit_code, split_part(fails[1], ':', 1), split_part(fails[1], ':', 2),
          'value ' || coalesce(json_extract_string(raw, split_part(fails[1], ':', 2)), '<empty>')
            || ' : ' || split_part(fails[1], ':', 1),
          array_to_string(fails, ';'), raw, coalesce(starts_with(credit_code, '92'), false)
        FROM (SELECT source_row, "{rec}", credit_code, fails FROM checked_{source.name}
              WHERE len(fails) > 0
              UNION ALL SELECT source_row, "{rec}", credit_code, fails
              FROM passed_{source.name} WHERE len(fails) > 0) f
        JOIN (SELECT source_row, {raw_json} AS raw FROM raw_{source.name} r) USING (source_row)"""
    )
    read = con.execute(f"SELECT count(*) FROM raw_{source.name}").fetchone()[0]
    kept = con.execute(f"SELECT count(*) FROM clean_{source.name}").fetchone()[0]
    by = dict(
        con.execute(
            f"SELECT reason || ':' || \"column\", count(*) FROM quarantine WHERE source = '{source.name}' "
            "GROUP BY ALL ORDER BY 2 DESC"
        ).fetchall()
    )
    return read, kept, by, ignored


def validate(
    data_dir: Path,
    out_dir: Path,
    *,
    window: ValidationWindow | None = None,
    progress: bool = False,
    memory_limit: str = "4GB",
) -> ValidationReport:
    """Validate every source in ``data_dir`` into ``out_dir`` (replaced atomically)."""
    window = window or ValidationWindow(extracted_on=date.today())
    paths = {name: locate(data_dir, source) for name, source in SOURCES.items()}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        con = duckdb.connect(config={"preserve_insertion_order": True})
        quiet_progress(con)
        # Spill to disk instead of growing without bound on a province's files.
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{staging / '.spill'}'")
        con.execute(
            """CREATE TEMP TABLE quarantine (source VARCHAR, file VARCHAR, source_row BIGINT,
            record_id VARCHAR, credit_code VARCHAR, reason VARCHAR, "column" VARCHAR,
            detail VARCHAR, all_reasons VARCHAR, raw VARCHAR, personal_data BOOLEAN)"""
        )
        # Every file must open with its columns before anything is written.
        columns = {name: _open(con, source, paths[name]) for name, source in SOURCES.items()}
        reports: dict[str, SourceReport] = {}
        for name, source in tqdm(SOURCES.items(), desc="validate", disable=not progress):
            read, kept, by, ignored = _validate_source(
                con, source, paths[name], window, columns[name]
            )
            assert read == kept + sum(by.values()), f"{name}: rows lost"
            con.execute(f"COPY clean_{name} TO '{staging / (name + '.parquet')}' (FORMAT parquet)")
            reports[name] = SourceReport(
                source=name,
                file=str(paths[name]),
                format=paths[name].suffix[1:],
                sha256=_sha256(paths[name]),
                rows_read=read,
                rows_kept=kept,
                rows_quarantined=read - kept,
                quarantined_by=by,
                ignored_columns=ignored,
            )
        con.execute(
            f"COPY (SELECT * FROM quarantine ORDER BY source, source_row) TO "
            f"'{staging / 'quarantine.parquet'}' (FORMAT parquet)"
        )
        con.close()
        shutil.rmtree(staging / ".spill", ignore_errors=True)
        fingerprint = hashlib.sha256(
            "".join(r.sha256 for r in reports.values()).encode()
        ).hexdigest()
        report = ValidationReport(
            window=window,
            sources=reports,
            rows_read=sum(r.rows_read for r in reports.values()),
            rows_kept=sum(r.rows_kept for r in reports.values()),
            rows_quarantined=sum(r.rows_quarantined for r in reports.values()),
            data_fingerprint=fingerprint,
        )
        (staging / "validation_report.json").write_text(report.model_dump_json(indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        return report
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def load_report(out_dir: Path) -> ValidationReport:
    return ValidationReport.model_validate(
        json.loads((out_dir / "validation_report.json").read_text())
    )
