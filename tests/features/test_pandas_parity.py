"""The DuckDB feature build equals an independent plain-pandas reading of the spec.

Two layers: a hand-made validated folder whose edge cases (strict "before t", calendar-year
windows across 29 February, repairs, objections pending / rejected later / rejected before t,
list removals recorded late, evaluation ties) are checked against values worked out by hand
from the spec, through both implementations; then a small synthetic province, validated, with
population pairs at three as-of dates and label pairs (each inspection's own date), where the
two implementations must agree row for row.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.pandas_features import DTYPES, FEATURES, pandas_features
from features import credit_code as cc
from features.contracts import SOURCES, DType

PA_TYPES = {
    DType.STRING: pa.string(),
    DType.DATE: pa.date32(),
    DType.FLOAT: pa.float64(),
    DType.INT: pa.int64(),
    DType.BOOL: pa.bool_(),
}

CODE_A = "91330102MA2B3C4D5" + cc.check_character("91330102MA2B3C4D5")
CODE_B = "92330106MA7K8L9M0" + cc.check_character("92330106MA7K8L9M0")
CODE_C = "91330783MA1X2Y3W4" + cc.check_character("91330783MA1X2Y3W4")  # not registered
T = date(2024, 2, 29)  # a leap day: t - 1 year = 2023-02-28, t - 5 years = 2019-02-28
D = date.fromisoformat


def _write(folder: Path, source: str, rows: list[dict]) -> None:
    """Write one validated source exactly as the contract types it, plus source_row."""
    src = SOURCES[source]
    table = {
        c.name: pa.array([r.get(c.name) for r in rows], type=PA_TYPES[c.dtype]) for c in src.columns
    }
    table["source_row"] = pa.array(range(1, len(rows) + 1), type=pa.int64())
    pq.write_table(pa.table(table), folder / f"{source}.parquet")


def _penalty(rid: str, decided: str, kind: str, amount: float | None, rec: str | None = None):
    return {
        "record_id": rid,
        "credit_code": CODE_A,
        "decided_on": D(decided),
        "kind": kind,
        "procedure": "general",
        "amount": amount,
        "recorded_at": D(rec) if rec else D(decided),
    }


@pytest.fixture(scope="module")
def hand_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two registered enterprises; A has records on every side of every boundary."""
    folder = tmp_path_factory.mktemp("hand")
    reg = {"region": "330102", "status": "active", "name": "x"}
    _write(
        folder,
        "registry",
        [
            {**reg, "credit_code": CODE_A, "founded_on": D("2010-01-01"), "industry": "C",
             "registered_capital": 100.0, "enterprise_type": "limited_company",
             "recorded_at": D("2010-01-05")},
            {**reg, "credit_code": CODE_B, "founded_on": D("2020-05-05"), "industry": "H",
             "registered_capital": None, "enterprise_type": "individual_business",
             "recorded_at": D("2020-05-06")},
        ],
    )  # fmt: skip
    _write(
        folder,
        "penalties",
        [
            _penalty("P1", "2019-02-28", "fine", 1000.0, "2019-03-10"),  # first day of 5y
            _penalty("P2", "2019-02-27", "revocation", 5.0),  # a day too old
            _penalty("P3", "2024-02-28", "revocation", 9.0, "2024-02-29"),  # recorded on t
            _penalty("P4", "2023-06-01", "suspension", None),  # serious, in 1y, no amount
            _penalty("P5", "2023-03-01", "confiscation", 50.0),  # repaired before t
            _penalty("P6", "2022-05-01", "warning", None),  # objection rejected before t
            _penalty("P7", "2022-06-01", "fine", 10.0),  # objection pending
            _penalty("P8", "2022-07-01", "fine", 20.0),  # objection rejected on t itself
            _penalty("P9", "2022-08-01", "warning", 7.0),  # repair recorded on t: counts
        ],
    )
    _write(
        folder,
        "list_entries",
        [
            {"record_id": "L1", "credit_code": CODE_A, "list_type": "black",
             "entered_on": D("2020-01-01"), "recorded_at": D("2020-01-02"),
             "removed_on": D("2023-01-01"), "removal_recorded_at": D("2023-01-02"),
             "department": "amr"},
            {"record_id": "L2", "credit_code": CODE_A, "list_type": "abnormal",
             "entered_on": D("2023-05-01"), "recorded_at": D("2023-05-02"),
             "removed_on": D("2024-01-01"), "removal_recorded_at": D("2024-03-01"),
             "department": "amr"},
            {"record_id": "L3", "credit_code": CODE_A, "list_type": "red",
             "entered_on": D("2015-01-01"), "recorded_at": D("2015-01-02"), "department": "amr"},
            {"record_id": "L4", "credit_code": CODE_A, "list_type": "black",
             "entered_on": D("2021-01-01"), "recorded_at": D("2021-01-02"), "department": "amr"},
        ],
    )  # fmt: skip
    _write(
        folder,
        "credit_evaluations",
        [
            {"record_id": rid, "credit_code": CODE_A, "evaluated_on": D(on), "score": score,
             "grade": grade, "department": "dc", "recorded_at": D(rec)}
            for rid, on, score, grade, rec in [
                ("E1", "2023-01-01", 700.0, "B", "2023-01-05"),
                ("E2", "2024-01-01", 650.0, "C", "2024-01-03"),
                ("E3", "2024-01-01", 640.0, "D", "2024-01-03"),  # same day, larger id: latest
                ("E4", "2024-02-10", 100.0, "E", "2024-03-01"),  # recorded after t
            ]
        ],
    )  # fmt: skip
    _write(
        folder,
        "inspections",
        [
            {"record_id": rid, "credit_code": CODE_A, "inspected_on": D(on), "department": "amr",
             "inspector_ids": "I1;I2", "selection": "random", "selection_probability": 0.1,
             "problem_found": found, "recorded_at": D(on)}
            for rid, on, found in [
                ("S1", "2023-03-01", True),
                ("S2", "2020-01-01", False),
                ("S3", "2024-02-29", True),  # on t: not known yet
                ("S4", "2022-01-01", True),  # repaired before t
            ]
        ],
    )  # fmt: skip
    _write(
        folder,
        "complaints",
        [
            {"record_id": rid, "credit_code": CODE_A, "received_on": D(on), "channel": "online",
             "substantiated": sub, "recorded_at": D(on)}
            for rid, on, sub in [
                ("C1", "2024-01-15", True),
                ("C2", "2023-11-30", None),  # open; a day before the 90-day window
                ("C3", "2023-02-27", True),  # a day before the 1-year window
                ("C4", "2023-12-01", False),  # first day of the 90-day window
            ]
        ],
    )  # fmt: skip
    _write(
        folder,
        "objections",
        [
            {"record_id": rid, "credit_code": CODE_A, "target_source": src,
             "target_record_id": target, "filed_on": D(filed), "recorded_at": D(filed),
             "resolved_on": D(resolved) if resolved else None, "outcome": outcome}
            for rid, src, target, filed, resolved, outcome in [
                ("O1", "penalties", "P6", "2023-01-01", "2023-02-01", "rejected"),
                ("O2", "penalties", "P7", "2024-01-01", None, "pending"),
                ("O3", "penalties", "P8", "2024-01-01", "2024-02-29", "rejected"),
                ("O4", "list_entries", "L4", "2022-01-01", "2022-02-01", "upheld"),
                ("O5", "inspections", "P9", "2020-01-01", None, "pending"),  # other source
            ]
        ],
    )  # fmt: skip
    _write(
        folder,
        "credit_repairs",
        [
            {"record_id": rid, "credit_code": CODE_A, "target_source": src,
             "target_record_id": target, "applied_on": None, "repaired_on": D(on),
             "recorded_at": D(rec)}
            for rid, src, target, on, rec in [
                ("R1", "penalties", "P5", "2024-01-01", "2024-01-02"),
                ("R2", "penalties", "P9", "2024-02-01", "2024-02-29"),
                ("R3", "inspections", "S4", "2023-01-01", "2023-01-02"),
            ]
        ],
    )  # fmt: skip
    return folder


HAND_PAIRS = pd.DataFrame(
    {
        "credit_code": [CODE_A, CODE_B, CODE_C, CODE_A],
        "as_of": [T, T, T, date(2026, 6, 30)],
    }
)


def test_reference_matches_the_spec_worked_by_hand(hand_folder: Path) -> None:
    got = pandas_features(hand_folder, HAND_PAIRS)
    assert list(got.columns) == ["credit_code", "as_of", *FEATURES]
    assert list(got["credit_code"]) == list(HAND_PAIRS["credit_code"])
    a = got.iloc[0]
    expected_a = {
        "age_years": (T - date(2010, 1, 1)).days / 365.25,
        "registered_capital": 100.0,
        "industry": "C",
        "region": "330102",
        "enterprise_type": "limited_company",
        "is_individual_business": 0,
        # P1 (first day of the window), P4, P6 (objection rejected), P9 (repair not yet known)
        "penalty_count_5y": 4,
        "penalty_count_1y": 1,
        "serious_penalty_count_5y": 1,
        "penalty_max_severity_5y": 4,
        "penalty_amount_5y": 1007.0,
        "days_since_last_penalty": (T - date(2023, 6, 1)).days,
        "on_black_list": 0,
        "on_abnormal_list": 1,
        "on_red_list": 1,
        "black_list_entries_5y": 1,
        "abnormal_entries_1y": 1,
        "credit_score_latest": 640.0,
        "credit_grade_latest": 4,
        "credit_score_change": -10.0,
        "days_since_evaluation": (T - date(2024, 1, 1)).days,
        "inspections_5y": 2,
        "problems_found_5y": 1,
        "past_problem_rate_5y": 0.5,
        "problems_found_1y": 1,
        "days_since_last_inspection": (T - date(2023, 3, 1)).days,
        "complaints_1y": 3,
        "substantiated_complaints_1y": 1,
        "complaints_90d": 2,
    }
    assert {k: a[k] for k in expected_a} == expected_a

    b = got.iloc[1]
    assert b["is_individual_business"] == 1
    assert np.isnan(b["registered_capital"])
    assert b["age_years"] == pytest.approx((T - date(2020, 5, 5)).days / 365.25)
    c = got.iloc[2]
    assert pd.isna(c["age_years"]) and pd.isna(c["industry"])
    for row in (b, c):
        counts = [f for f in FEATURES if DTYPES[f] == "int64" or f.startswith("on_")]
        assert all(row[f] == 0 for f in counts)
        for f in ("days_since_last_penalty", "credit_score_latest", "past_problem_rate_5y"):
            assert pd.isna(row[f])
    # Later: P1 aged out, P3 is known, P8's objection was rejected, P9's repair is known.
    later = got.iloc[3]
    assert later["penalty_count_5y"] == 4  # P3, P4, P6, P8
    assert later["penalty_count_1y"] == 0
    assert later["credit_score_latest"] == 100.0  # E4 is known by now
    assert later["on_abnormal_list"] == 0  # its removal was recorded on 2024-03-01


def test_reference_dtypes_follow_the_spec(hand_folder: Path) -> None:
    got = pandas_features(hand_folder, HAND_PAIRS)
    assert {c: str(got[c].dtype) for c in FEATURES} == DTYPES


# ----------------------------------------------------------------------------- comparison
def assert_same_features(sql: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Same rows and columns; ints equal, floats within 1e-9 (relative above 1), NULLs alike."""
    assert list(sql.columns) == list(ref.columns) == ["credit_code", "as_of", *FEATURES]
    sql = sql.assign(as_of=pd.to_datetime(sql["as_of"]).astype("datetime64[s]"))
    ref = ref.assign(as_of=pd.to_datetime(ref["as_of"]).astype("datetime64[s]"))
    sql = sql.sort_values(["credit_code", "as_of"], ignore_index=True)
    ref = ref.sort_values(["credit_code", "as_of"], ignore_index=True)
    assert len(sql) == len(ref)
    assert (sql["credit_code"].to_numpy() == ref["credit_code"].to_numpy()).all()
    assert (sql["as_of"].to_numpy() == ref["as_of"].to_numpy()).all()
    problems = []
    for name in FEATURES:
        a, b = sql[name], ref[name]
        a_na, b_na = a.isna().to_numpy(), b.isna().to_numpy()
        both = ~(a_na | b_na)
        if DTYPES[name] == "str":
            differ = a.to_numpy(dtype=object)[both] != b.to_numpy(dtype=object)[both]
        else:
            x = a.to_numpy(dtype="float64", na_value=np.nan)[both]
            y = b.to_numpy(dtype="float64", na_value=np.nan)[both]
            if DTYPES[name] == "float64":
                differ = np.abs(x - y) > 1e-9 * np.maximum(1.0, np.abs(y))
            else:
                differ = x != y
        bad = np.flatnonzero(a_na != b_na)
        bad = np.union1d(bad, np.flatnonzero(both)[differ])
        if len(bad):
            i = bad[0]
            problems.append(
                f"{name}: {len(bad)} rows differ, e.g. {sql.at[i, 'credit_code']} "
                f"{sql.at[i, 'as_of'].date()}: duckdb={a.iloc[i]!r} pandas={b.iloc[i]!r}"
            )
    assert not problems, "\n".join(problems)


def test_the_comparison_catches_a_one_cell_difference(hand_folder: Path) -> None:
    ref = pandas_features(hand_folder, HAND_PAIRS)
    assert_same_features(ref.copy(), ref)
    for name, change in [
        ("penalty_count_5y", lambda s: s.where(s.index != 0, s + 1)),
        ("credit_score_change", lambda s: s + 1e-6),
        ("days_since_last_penalty", lambda s: s.where(s.index != 0, pd.NA)),
        ("industry", lambda s: s.where(s.index != 0, "Q")),
    ]:
        changed = ref.copy()
        changed[name] = change(changed[name]).astype(ref[name].dtype)
        with pytest.raises(AssertionError, match=name):
            assert_same_features(changed, ref)


def test_duckdb_matches_the_hand_worked_spec(hand_folder: Path) -> None:
    from features.build import build_features

    sql = build_features(hand_folder, HAND_PAIRS)
    assert {c: str(sql[c].dtype) for c in FEATURES} == DTYPES
    assert_same_features(sql, pandas_features(hand_folder, HAND_PAIRS))


# ----------------------------------------------------------------------------- province
AS_OFS = (date(2020, 3, 1), date(2024, 2, 29), date(2026, 6, 30))
EXTRACTED_ON = date(2026, 6, 30)


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic province, generated as CSV and validated."""
    from features.contracts import ValidationWindow
    from features.synthetic import generate
    from features.validate import validate

    root = tmp_path_factory.mktemp("province")
    generate(root / "raw", enterprises=2_000, seed=11, fmt="csv", extracted_on=EXTRACTED_ON)
    validate(root / "raw", root / "validated", window=ValidationWindow(extracted_on=EXTRACTED_ON))
    return root / "validated"


def _label_pairs(validated: Path) -> pd.DataFrame:
    """Each inspection's (code, inspection date): the pairs labels are trained on."""
    ins = pd.read_parquet(
        validated / "inspections.parquet", columns=["credit_code", "inspected_on"]
    )
    # build_features returns one row per distinct pair; an enterprise inspected twice on one
    # day has one feature row for that day.
    return ins.rename(columns={"inspected_on": "as_of"}).drop_duplicates(ignore_index=True)


@pytest.mark.parametrize("as_of", AS_OFS, ids=str)
def test_population_snapshot_matches_pandas(province: Path, tmp_path: Path, as_of: date) -> None:
    from features.build import build_snapshot

    info = build_snapshot(province, as_of, tmp_path / "snapshot.parquet")
    sql = pd.read_parquet(info.path)
    assert len(sql) == info.rows > 1_000
    ref = pandas_features(province, sql[["credit_code", "as_of"]])
    assert_same_features(sql, ref)


def test_label_pairs_match_pandas(province: Path) -> None:
    from features.build import build_features

    pairs = _label_pairs(province)
    sql = build_features(province, pairs)
    ref = pandas_features(province, pairs)
    assert {c: str(sql[c].dtype) for c in FEATURES} == DTYPES
    assert_same_features(sql, ref)
    # The comparison is only as strong as the data: every count and flag is non-zero somewhere.
    counts = [f for f in FEATURES if DTYPES[f] in ("int64", "int32")]
    assert [f for f in counts if not (ref[f] > 0).any()] == []


def test_province_exercises_repairs_and_objections(province: Path, tmp_path: Path) -> None:
    """Dropping the repairs and objections changes the features of some label pairs."""
    folder = tmp_path / "no_disputes"
    folder.mkdir()
    for parquet in province.glob("*.parquet"):
        table = pq.read_table(parquet)
        if parquet.stem in ("credit_repairs", "objections"):
            table = table.slice(0, 0)
        pq.write_table(table, folder / parquet.name)
    pairs = _label_pairs(province)
    with_disputes = pandas_features(province, pairs)
    without = pandas_features(folder, pairs)
    changed = {
        f for f in FEATURES if DTYPES[f] == "int64" and (with_disputes[f] != without[f]).any()
    }
    # Exclusions only ever remove records, so the counts can only go down.
    assert all((with_disputes[f] <= without[f]).all() for f in changed)
    assert {"penalty_count_5y", "complaints_1y"} <= changed
