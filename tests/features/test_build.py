"""Point-in-time semantics on hand-built validated tables: windows, repairs, objections, leakage."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.build import build_features
from features.catalogue import CATALOGUE, FEATURE_NAMES
from features.contracts import SOURCES, SQL_TYPES

ARROW = {
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
}
CODE = "91330102MA2B3C4D5X"
T = date(2024, 6, 1)


def write(folder: Path, tables: dict[str, list[dict]]) -> Path:
    """Write every source as typed Parquet (empty when not given), like validation does."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in SOURCES.items():
        rows = tables.get(name, [])
        schema = pa.schema(
            [(c.name, ARROW[SQL_TYPES[c.dtype]]) for c in source.columns]
            + [("source_row", pa.int64())]
        )
        cols = {c: [r.get(c) for r in rows] for c in schema.names}
        cols["source_row"] = list(range(1, len(rows) + 1))
        pq.write_table(pa.table(cols, schema=schema), folder / f"{name}.parquet")
    return folder


def registry(code: str = CODE) -> dict:
    return dict(
        credit_code=code,
        name="x",
        founded_on=date(2010, 1, 1),
        industry="H",
        region="330102",
        registered_capital=50.0,
        enterprise_type="limited_company",
        status="active",
        closed_on=None,
        recorded_at=date(2010, 1, 5),
    )


def penalty(
    rid: str,
    decided: date,
    recorded: date | None = None,
    kind: str = "fine",
    amount: float | None = 1000.0,
) -> dict:
    return dict(
        record_id=rid,
        credit_code=CODE,
        decided_on=decided,
        kind=kind,
        procedure="general",
        amount=amount,
        legal_basis=None,
        department="MR",
        recorded_at=recorded or decided,
    )


def features_at(folder: Path, *dates: date) -> pd.DataFrame:
    pairs = pd.DataFrame({"credit_code": CODE, "as_of": list(dates)})
    return build_features(folder, pairs).set_index("as_of")


def test_five_year_window_edges_and_the_as_of_day(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "registry": [registry()],
            "penalties": [
                penalty("P-edge", date(2019, 6, 1)),  # exactly t - 5y: counts
                penalty("P-old", date(2019, 5, 31)),  # one day earlier: does not
                penalty("P-today", T),  # on t itself: not yet known
                penalty("P-late", date(2024, 5, 1), recorded=T),  # recorded on t: not known
                penalty("P-recent", date(2024, 1, 10), kind="revocation", amount=None),
            ],
        },
    )
    row = features_at(folder, T).iloc[0]
    assert row.penalty_count_5y == 2
    assert row.penalty_count_1y == 1
    assert row.serious_penalty_count_5y == 1
    assert row.penalty_max_severity_5y == 5
    assert row.penalty_amount_5y == 1000.0
    assert row.days_since_last_penalty == (T - date(2024, 1, 10)).days


def test_repair_stops_counting_from_the_repair_date_once_recorded(tmp_path: Path) -> None:
    repair = dict(
        record_id="R1",
        credit_code=CODE,
        target_source="penalties",
        target_record_id="P1",
        applied_on=date(2023, 1, 1),
        repaired_on=date(2023, 3, 1),
        recorded_at=date(2023, 3, 10),
    )
    folder = write(
        tmp_path,
        {
            "registry": [registry()],
            "penalties": [penalty("P1", date(2022, 6, 1))],
            "credit_repairs": [repair],
        },
    )
    f = features_at(folder, date(2023, 3, 1), date(2023, 3, 5), date(2023, 3, 11))
    assert list(f.penalty_count_5y) == [1, 1, 0]  # repaired 03-01, but only known from 03-10


@pytest.mark.parametrize(
    ("outcome", "resolved", "expected"),
    [
        ("pending", None, [1, 0, 0]),
        ("rejected", date(2023, 5, 1), [1, 0, 1]),
        ("upheld", date(2023, 5, 1), [1, 0, 0]),
    ],
)
def test_objection_semantics(
    tmp_path: Path, outcome: str, resolved: date | None, expected: list[int]
) -> None:
    objection = dict(
        record_id="O1",
        credit_code=CODE,
        target_source="penalties",
        target_record_id="P1",
        filed_on=date(2023, 4, 1),
        recorded_at=date(2023, 4, 1),
        resolved_on=resolved,
        outcome=outcome,
    )
    folder = write(
        tmp_path,
        {
            "registry": [registry()],
            "penalties": [penalty("P1", date(2022, 6, 1))],
            "objections": [objection],
        },
    )
    f = features_at(folder, date(2023, 4, 1), date(2023, 4, 15), date(2023, 6, 1))
    assert list(f.penalty_count_5y) == expected


def test_list_status_follows_removal_and_its_recorded_date(tmp_path: Path) -> None:
    entry = dict(
        record_id="L1",
        credit_code=CODE,
        list_type="abnormal",
        entered_on=date(2023, 1, 1),
        removed_on=date(2023, 6, 1),
        reason=None,
        department="MR",
        recorded_at=date(2023, 1, 2),
        removal_recorded_at=date(2023, 7, 1),
    )
    folder = write(tmp_path, {"registry": [registry()], "list_entries": [entry]})
    f = features_at(
        folder,
        date(2023, 1, 2),
        date(2023, 1, 3),
        date(2023, 6, 15),
        date(2023, 7, 2),
        date(2024, 1, 2),
    )
    assert list(f.on_abnormal_list) == [0, 1, 1, 0, 0]
    assert list(f.abnormal_entries_1y) == [0, 1, 1, 1, 0]


def test_latest_evaluation_and_trend_with_ties(tmp_path: Path) -> None:
    def ev(rid, d, s, g):
        return dict(
            record_id=rid,
            credit_code=CODE,
            evaluated_on=d,
            score=s,
            grade=g,
            department="DRC",
            recorded_at=d,
        )

    folder = write(
        tmp_path,
        {
            "registry": [registry()],
            "credit_evaluations": [
                ev("E1", date(2023, 1, 1), 800.0, "B"),
                ev("E2", date(2023, 4, 1), 700.0, "C"),
                ev("E3", date(2023, 4, 1), 650.0, "D"),
            ],
        },
    )
    f = features_at(folder, date(2023, 2, 1), date(2023, 5, 1)).iloc
    assert np.isnan(f[0].credit_score_change) and f[0].credit_score_latest == 800.0
    assert f[1].credit_score_latest == 650.0 and f[1].credit_grade_latest == 4
    assert f[1].credit_score_change == pytest.approx(650.0 - 700.0)


def test_an_enterprise_without_records_gets_zeros_and_nulls(tmp_path: Path) -> None:
    folder = write(tmp_path, {"registry": [registry()]})
    pairs = pd.DataFrame({"credit_code": [CODE, "91330102MA2B3C4D6Y"], "as_of": [T, T]})
    f = build_features(folder, pairs).set_index("credit_code")
    known, unknown = f.loc[CODE], f.loc["91330102MA2B3C4D6Y"]
    counts = [c.name for c in CATALOGUE if c.dtype == "BIGINT"]
    assert (known[counts] == 0).all() and (unknown[counts] == 0).all()
    assert pd.isna(known.days_since_last_penalty) and pd.isna(known.past_problem_rate_5y)
    assert known.industry == "H" and pd.isna(unknown.industry)


def test_catalogue_is_complete_in_both_languages() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 29
    for f in CATALOGUE:
        assert f.description_en and f.description_zh
        assert "{value}" in f.reason_en and "{value}" in f.reason_zh
        assert "3" in f.reason_en.format(value=3) and "3" in f.reason_zh.format(value=3)


# ---------------------------------------------------------------- leakage -----------------

DATE_COLS = {name: [c.name for c in s.columns if c.dtype == "date"] for name, s in SOURCES.items()}


def random_province(rng: np.random.Generator, n: int = 150) -> dict[str, list[dict]]:
    day0 = date(2016, 1, 1)
    d = lambda lo=0, hi=3000: day0 + timedelta(days=int(rng.integers(lo, hi)))  # noqa: E731
    codes = [f"91330102MA{i:07d}X" for i in range(n)]
    tables: dict[str, list[dict]] = {k: [] for k in SOURCES}
    for i, code in enumerate(codes):
        tables["registry"].append({**registry(code), "founded_on": date(2012, 1, 1)})
        for j in range(rng.integers(0, 6)):
            e = d()
            tables["penalties"].append(
                dict(
                    record_id=f"P{i}-{j}",
                    credit_code=code,
                    decided_on=e,
                    kind=str(rng.choice(["warning", "fine", "suspension"])),
                    procedure="general",
                    amount=float(rng.integers(0, 5000)),
                    legal_basis=None,
                    department="MR",
                    recorded_at=e + timedelta(days=int(rng.integers(0, 200))),
                )
            )
            if rng.random() < 0.3:
                f = e + timedelta(days=int(rng.integers(1, 400)))
                res = f + timedelta(days=int(rng.integers(1, 100))) if rng.random() < 0.7 else None
                tables["objections"].append(
                    dict(
                        record_id=f"O{i}-{j}",
                        credit_code=code,
                        target_source="penalties",
                        target_record_id=f"P{i}-{j}",
                        filed_on=f,
                        recorded_at=f,
                        resolved_on=res,
                        outcome="pending"
                        if res is None
                        else str(rng.choice(["upheld", "rejected"])),
                    )
                )
            if rng.random() < 0.2:
                r = e + timedelta(days=int(rng.integers(100, 800)))
                tables["credit_repairs"].append(
                    dict(
                        record_id=f"R{i}-{j}",
                        credit_code=code,
                        target_source="penalties",
                        target_record_id=f"P{i}-{j}",
                        applied_on=None,
                        repaired_on=r,
                        recorded_at=r + timedelta(days=int(rng.integers(0, 30))),
                    )
                )
        for j in range(rng.integers(0, 4)):
            e = d()
            removed = e + timedelta(days=int(rng.integers(10, 500))) if rng.random() < 0.5 else None
            tables["list_entries"].append(
                dict(
                    record_id=f"L{i}-{j}",
                    credit_code=code,
                    list_type=str(rng.choice(["red", "black", "abnormal"])),
                    entered_on=e,
                    removed_on=removed,
                    reason=None,
                    department="MR",
                    recorded_at=e + timedelta(days=int(rng.integers(0, 60))),
                    removal_recorded_at=None
                    if removed is None
                    else removed + timedelta(days=int(rng.integers(0, 60))),
                )
            )
        for j in range(rng.integers(0, 12)):
            e = d()
            tables["credit_evaluations"].append(
                dict(
                    record_id=f"E{i}-{j}",
                    credit_code=code,
                    evaluated_on=e,
                    score=float(rng.integers(300, 1000)),
                    grade=str(rng.choice(list("ABCDE"))),
                    department="DRC",
                    recorded_at=e + timedelta(days=int(rng.integers(0, 40))),
                )
            )
        for j in range(rng.integers(0, 5)):
            e = d()
            tables["inspections"].append(
                dict(
                    record_id=f"I{i}-{j}",
                    credit_code=code,
                    task_id=None,
                    inspected_on=e,
                    department="MR",
                    inspector_ids="A;B",
                    selection="targeted",
                    selection_probability=None,
                    problem_found=bool(rng.random() < 0.3),
                    recorded_at=e + timedelta(days=int(rng.integers(0, 40))),
                )
            )
        for j in range(rng.integers(0, 6)):
            e = d()
            tables["complaints"].append(
                dict(
                    record_id=f"C{i}-{j}",
                    credit_code=code,
                    received_on=e,
                    channel="online",
                    substantiated=bool(rng.random() < 0.5),
                    department=None,
                    recorded_at=e + timedelta(days=int(rng.integers(0, 40))),
                )
            )
    return tables


def perturb_future(
    tables: dict[str, list[dict]], t: date, rng: np.random.Generator
) -> dict[str, list[dict]]:
    """Scramble, move, delete and add every record with any date on or after ``t``."""
    out: dict[str, list[dict]] = {}
    later = lambda: t + timedelta(days=int(rng.integers(0, 900)))  # noqa: E731
    for name, rows in tables.items():
        kept = []
        for row in rows:
            if name != "registry" and any(
                row[c] is not None and row[c] >= t for c in DATE_COLS[name]
            ):
                source = SOURCES[name]
                whole_future = row[source.event_date] >= t or row[source.recorded_date] >= t
                if whole_future and rng.random() < 0.3:
                    continue  # deleted
                row = dict(row)
                for c in DATE_COLS[name]:
                    if row[c] is not None and row[c] >= t:
                        row[c] = later()
                if row.get("resolved_on") is not None and row["resolved_on"] >= t:
                    row["outcome"] = str(rng.choice(["upheld", "rejected"]))  # a future fact
                if not whole_future:
                    kept.append(row)  # known at t: only its later facts (removal…) moved
                    continue
                for key, choices in (
                    ("kind", ["warning", "revocation"]),
                    ("list_type", ["black", "red"]),
                ):
                    if key in row:
                        row[key] = str(rng.choice(choices))
                for key in ("amount", "score"):
                    if key in row and row[key] is not None:
                        row[key] = float(rng.integers(0, 999))
                for key in ("problem_found", "substantiated"):
                    if key in row and row[key] is not None:
                        row[key] = not row[key]
            kept.append(row)
        out[name] = kept
    code = tables["registry"][0]["credit_code"]
    out["penalties"].append(penalty("P-new", later(), kind="revocation") | {"credit_code": code})
    out["complaints"].append(
        dict(
            record_id="C-new",
            credit_code=code,
            received_on=t,
            channel="letter",
            substantiated=True,
            department=None,
            recorded_at=t,
        )
    )
    return out


@pytest.mark.parametrize("t", [date(2019, 3, 1), date(2021, 7, 15), date(2023, 12, 31)])
def test_no_leakage_records_dated_or_recorded_on_or_after_t_change_nothing(
    tmp_path: Path, t: date
) -> None:
    rng = np.random.default_rng(t.toordinal())
    tables = random_province(rng)
    codes = [r["credit_code"] for r in tables["registry"]]
    pairs = pd.DataFrame({"credit_code": codes, "as_of": t})
    base = build_features(write(tmp_path / "a", tables), pairs)
    moved = build_features(write(tmp_path / "b", perturb_future(tables, t, rng)), pairs)
    pd.testing.assert_frame_equal(base, moved)
    assert base["penalty_count_5y"].sum() > 0 and base["complaints_1y"].sum() > 0

    # Control: the same kind of change before t does change the features (the test can fail).
    past = perturb_future(tables, date(2016, 1, 1), rng)
    changed = build_features(write(tmp_path / "c", past), pairs)
    assert not changed.equals(base)
