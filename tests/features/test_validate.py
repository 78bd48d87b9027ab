"""Validation: every reason lands in quarantine, whole-file problems stop the run, inputs untouched."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.contracts import Reason, ValidationWindow
from features.synthetic import generate
from features.validate import SourceError, validate
from tests.support import hash_tree

WINDOW = ValidationWindow(extracted_on=date(2026, 6, 30))


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prov") / "raw"
    generate(folder, enterprises=400, seed=3)
    return folder


def copy(province: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "raw"
    shutil.copytree(province, dest, ignore=shutil.ignore_patterns("_truth"))
    return dest


def read(folder: Path, source: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{source}.csv", dtype=str, keep_default_na=False)


def write(folder: Path, source: str, frame: pd.DataFrame) -> None:
    frame.to_csv(folder / f"{source}.csv", index=False)


def first_clean_row(frame: pd.DataFrame, source: str, out: Path) -> int:
    """Index of a row that passed validation untouched (so one edit gives one reason)."""
    kept = set(pd.read_parquet(out / f"{source}.parquet")["source_row"])
    return next(i for i in range(len(frame)) if i + 1 in kept)


CORRUPTIONS = [
    ("penalties", "decided_on", "2021-02-30", Reason.UNPARSEABLE_VALUE, "decided_on"),
    ("penalties", "amount", "-5", Reason.OUT_OF_RANGE, "amount"),
    ("penalties", "kind", "flogging", Reason.UNKNOWN_VALUE, "kind"),
    ("penalties", "credit_code", "91330102", Reason.MALFORMED_CREDIT_CODE, "credit_code"),
    ("penalties", "decided_on", "2031-01-01", Reason.DATE_OUT_OF_RANGE, "decided_on"),
    ("inspections", "problem_found", "maybe", Reason.UNPARSEABLE_VALUE, "problem_found"),
    ("inspections", "inspector_ids", "", Reason.MISSING_VALUE, "inspector_ids"),
    ("registry", "region", "ABC123", Reason.PATTERN_MISMATCH, "region"),
    ("registry", "status", "deregistered", Reason.INCONSISTENT_VALUES, "closed_on"),
    ("credit_evaluations", "score", "1200", Reason.OUT_OF_RANGE, "score"),
    (
        "objections",
        "target_record_id",
        "NO-SUCH-RECORD",
        Reason.UNKNOWN_TARGET_RECORD,
        "target_record_id",
    ),
]


@pytest.mark.parametrize(("source", "column", "value", "reason", "reported"), CORRUPTIONS)
def test_each_defect_lands_in_quarantine_with_its_reason(
    province: Path,
    tmp_path: Path,
    source: str,
    column: str,
    value: str,
    reason: Reason,
    reported: str,
) -> None:
    raw = copy(province, tmp_path)
    baseline = validate(raw, tmp_path / "base", window=WINDOW)
    frame = read(raw, source)
    i = first_clean_row(frame, source, tmp_path / "base")
    if source == "registry" and column == "status":
        assert frame.loc[i, "closed_on"] == "" and frame.loc[i, "status"] == "active"
    frame.loc[i, column] = value
    write(raw, source, frame)
    report = validate(raw, tmp_path / "out", window=WINDOW)
    q = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    hit = q[(q.source == source) & (q.source_row == i + 1)]
    assert len(hit) == 1
    assert (hit.iloc[0].reason, hit.iloc[0].column) == (reason.value, reported)
    assert report.rows_read == baseline.rows_read  # nothing lost: read = kept + quarantined
    assert report.sources[source].rows_kept + report.sources[source].rows_quarantined == len(frame)


def test_an_objection_to_a_quarantined_record_is_kept(province: Path, tmp_path: Path) -> None:
    raw = copy(province, tmp_path)
    objections = read(raw, "objections")
    target = objections[objections.target_source == "penalties"].iloc[0]
    penalties = read(raw, "penalties")
    penalties.loc[penalties.record_id == target.target_record_id, "kind"] = "flogging"
    write(raw, "penalties", penalties)
    validate(raw, tmp_path / "out", window=WINDOW)
    kept = pd.read_parquet(tmp_path / "out" / "objections.parquet")
    assert target.record_id in set(kept.record_id)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("delete", "complaints.csv: missing source file"),
        ("drop_column", "complaints.csv: missing columns: channel"),
        ("garbage_parquet", "complaints.parquet: unreadable"),
        ("both", "both complaints.csv and complaints.parquet"),
    ],
)
def test_whole_file_problems_stop_the_run_and_write_nothing(
    province: Path, tmp_path: Path, damage: str, expected: str
) -> None:
    raw = copy(province, tmp_path)
    path = raw / "complaints.csv"
    if damage == "delete":
        path.unlink()
    elif damage == "drop_column":
        write(raw, "complaints", read(raw, "complaints").drop(columns=["channel"]))
    elif damage == "garbage_parquet":
        path.unlink()
        (raw / "complaints.parquet").write_bytes(b"PAR1 this is not parquet at all")
    else:
        (raw / "complaints.parquet").write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(SourceError) as excinfo:
        validate(raw, out, window=WINDOW)
    assert expected in str(excinfo.value)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out-")]


def test_inputs_are_never_modified_and_a_failed_run_keeps_the_previous_output(
    province: Path, tmp_path: Path
) -> None:
    raw = copy(province, tmp_path)
    before = hash_tree(raw)
    validate(raw, tmp_path / "out", window=WINDOW)
    assert hash_tree(raw) == before
    previous = hash_tree(tmp_path / "out")
    (raw / "registry.csv").unlink()
    with pytest.raises(SourceError):
        validate(raw, tmp_path / "out", window=WINDOW)
    assert hash_tree(tmp_path / "out") == previous


def test_csv_and_parquet_inputs_give_the_same_validated_tables(
    province: Path, tmp_path: Path
) -> None:
    raw = copy(province, tmp_path)
    validate(raw, tmp_path / "from_csv", window=WINDOW)
    as_parquet = tmp_path / "pq"
    as_parquet.mkdir()
    for name in ("penalties", "registry"):
        pd.read_parquet(tmp_path / "from_csv" / f"{name}.parquet")  # sanity: readable
    for csv in raw.glob("*.csv"):
        pd.read_csv(csv, dtype=str, keep_default_na=False).replace("", None).to_parquet(
            as_parquet / f"{csv.stem}.parquet"
        )
    validate(as_parquet, tmp_path / "from_pq", window=WINDOW)
    for name in ("registry", "penalties", "objections"):
        a = pd.read_parquet(tmp_path / "from_csv" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "from_pq" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_individual_business_rows_are_flagged_personal(province: Path, tmp_path: Path) -> None:
    validate(copy(province, tmp_path), tmp_path / "out", window=WINDOW)
    q = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    coded = q[q.credit_code.notna()]
    assert (coded.personal_data == coded.credit_code.str.startswith("92")).all()
