"""The synthetic province: deterministic, contract-conforming, defects as documented, real signal.

The contract checks are derived from ``features.contracts`` (not from the generator), run in
DuckDB over the written files, and exclude exactly the rows the defect manifest lists; so a
clean row that breaks a rule, or a manifest row that is in fact clean, fails a test.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features import credit_code as cc
from features.contracts import SOURCES, SQL_TYPES, DType, ValidationWindow
from features.synthetic import (
    DEFECT_RATES,
    INDUSTRY_PROFILES,
    QUALITY_CUTOFF,
    REGIONS,
    THIN_COVERAGE,
    SyntheticSummary,
    defect_rates_markdown,
    generate,
)
from tests.support import hash_tree

SMALL = 1_500
MEDIUM = 12_000
EXTRACTED = date(2026, 6, 30)
EVENT_SOURCES = [s for s in SOURCES if s != "registry"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small") / "csv"
    # Several chunks, so numbering and manifest rows are checked across chunk boundaries.
    generate(out, enterprises=SMALL, seed=11, fmt="csv", chunk_size=400)
    return out


@pytest.fixture(scope="module")
def small_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small") / "parquet"
    generate(out, enterprises=SMALL, seed=11, fmt="parquet", chunk_size=400)
    return out


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("medium") / "raw"
    generate(out, enterprises=MEDIUM, seed=3, fmt="parquet", chunk_size=5_000)
    return out


def _connect(folder: Path) -> duckdb.DuckDBPyConnection:
    """Typed views of every source (CSV read as text and cast, like validation does)."""
    con = duckdb.connect()
    for name, src in SOURCES.items():
        csv = folder / f"{name}.csv"
        if csv.exists():
            raw = (
                f"read_csv('{csv}', all_varchar=true, header=true, "
                "auto_detect=false, columns={"
                + ", ".join(f"'{c}': 'VARCHAR'" for c in src.column_names)
                + "})"
            )
        else:
            raw = f"read_parquet('{folder / f'{name}.parquet'}')"
        casts = ", ".join(
            f"CAST({c.name} AS {SQL_TYPES[c.dtype]}) AS {c.name}" for c in src.columns
        )
        con.execute(
            f"CREATE VIEW {name} AS SELECT row_number() OVER () AS source_row, {casts} FROM {raw}"
        )
    con.execute(
        f"CREATE VIEW defects AS SELECT * FROM read_csv('{folder / '_truth' / 'defects.csv'}', "
        "header=true, all_varchar=true)"
    )
    return con


def _column_checks(name: str) -> dict[str, str]:
    """SQL conditions that are TRUE on a violating row, one per rule of the contract."""
    src = SOURCES[name]
    window = ValidationWindow(extracted_on=EXTRACTED)
    checks: dict[str, str] = {}
    for c in src.columns:
        if c.required:
            checks[f"missing:{c.name}"] = f"{c.name} IS NULL"
        if c.required_if:
            other, _, value = c.required_if.partition("=")
            cond = f"{other} = '{value}'" if value else f"{other} IS NOT NULL"
            checks[f"missing_if:{c.name}"] = f"{c.name} IS NULL AND {cond}"
        if c.allowed:
            values = ", ".join(f"'{v}'" for v in c.allowed)
            checks[f"allowed:{c.name}"] = f"{c.name} NOT IN ({values})"
        if c.pattern:
            checks[f"pattern:{c.name}"] = f"NOT regexp_full_match({c.name}, '{c.pattern}')"
        if c.min_value is not None:
            op = "<=" if c.min_exclusive else "<"
            checks[f"min:{c.name}"] = f"{c.name} {op} {c.min_value}"
        if c.max_value is not None:
            checks[f"max:{c.name}"] = f"{c.name} > {c.max_value}"
        if c.credit_code:
            pattern = cc.CODE_PATTERN.pattern
            checks[f"code:{c.name}"] = (
                f"NOT regexp_full_match({c.name}, '{pattern}') OR "
                f"substr({c.name}, 18, 1) <> {cc.sql_check_character(c.name)}"
            )
        if c.dtype == DType.DATE:
            earliest = window.earliest_founding if c.name == "founded_on" else window.earliest_event
            checks[f"date_range:{c.name}"] = (
                f"{c.name} < DATE '{earliest}' OR {c.name} > DATE '{window.extracted_on}'"
            )
    for order in src.date_orders:
        checks[f"order:{order.earlier}<={order.later}"] = f"{order.earlier} > {order.later}"
    for rule in src.consistency:
        checks[f"consistency:{rule.column}"] = f"NOT ({rule.sql})"
    return checks


def _violations(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, int]:
    checks = _column_checks(name)
    counts = ", ".join(
        f'count(*) FILTER (WHERE coalesce({sql}, false)) AS "{key}"' for key, sql in checks.items()
    )
    clean = (
        f"SELECT * FROM {name} WHERE source_row NOT IN "
        f"(SELECT CAST(source_row AS BIGINT) FROM defects WHERE source = '{name}')"
    )
    row = con.execute(f"SELECT {counts} FROM ({clean})").fetchone()
    return {k: v for k, v in zip(checks, row, strict=True) if v}


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(
    small_csv: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate(again, enterprises=SMALL, seed=11, fmt="csv", chunk_size=400)
    first = hash_tree(small_csv)
    assert hash_tree(again) == first
    assert {f"{s}.csv" for s in SOURCES} <= set(first)
    assert {"_truth/defects.csv", "_truth/generation.json"} <= set(first)

    other = tmp_path / "other"
    generate(other, enterprises=SMALL, seed=12, fmt="csv", chunk_size=400)
    second = hash_tree(other)
    assert second.keys() == first.keys()
    for source in SOURCES:  # every single source changes with the seed
        assert second[f"{source}.csv"] != first[f"{source}.csv"], source


def test_parquet_and_csv_hold_the_same_data(small_csv: Path, small_parquet: Path) -> None:
    csv_con, pq_con = _connect(small_csv), _connect(small_parquet)
    for name, src in SOURCES.items():
        order = ", ".join(src.column_names)
        a = csv_con.execute(f"SELECT * FROM {name} ORDER BY source_row").df()
        b = pq_con.execute(f"SELECT * FROM {name} ORDER BY source_row").df()
        assert list(a.columns) == ["source_row", *src.column_names], order
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=name)
    for truth in ("defects.csv", "inspectors.csv"):
        assert (small_csv / "_truth" / truth).read_bytes() == (
            small_parquet / "_truth" / truth
        ).read_bytes()


# ----------------------------------------------------------------------------- the contract


def test_files_have_exactly_the_contract_columns_in_order(
    small_csv: Path, small_parquet: Path
) -> None:
    for name, src in SOURCES.items():
        header = (small_csv / f"{name}.csv").read_text(encoding="utf-8").split("\n", 1)[0]
        assert [h.strip('"') for h in header.split(",")] == src.column_names, name
        assert pq.read_schema(small_parquet / f"{name}.parquet").names == src.column_names


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_row_not_in_the_manifest_satisfies_every_contract_rule(
    small_csv: Path, name: str
) -> None:
    con = _connect(small_csv)
    assert con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] > 0
    assert _violations(con, name) == {}


def test_registry_codes_are_valid_unique_and_structured(small_parquet: Path) -> None:
    reg = pd.read_parquet(small_parquet / "registry.parquet")
    assert len(reg) == SMALL
    assert reg["credit_code"].is_unique
    assert reg["credit_code"].map(cc.is_valid).all()
    assert (reg["credit_code"].str[0] == "9").all()
    assert (reg["credit_code"].str[2:8] == reg["region"]).all()
    category = reg["credit_code"].str[1]
    assert (category.eq("2") == reg["enterprise_type"].eq("individual_business")).all()
    assert (category.eq("3") == reg["enterprise_type"].eq("cooperative")).all()
    assert reg["region"].isin([r.code for r in REGIONS]).all()
    assert (
        reg.loc[reg["enterprise_type"].eq("individual_business"), "registered_capital"].isna().all()
    )
    assert 0.25 < reg["enterprise_type"].eq("individual_business").mean() < 0.42
    assert reg["founded_on"].min() >= date(1995, 1, 1)
    assert reg["founded_on"].max() <= EXTRACTED
    founded_year = pd.to_datetime(reg["founded_on"]).dt.year
    assert (founded_year >= 2016).mean() > (founded_year < 2005).mean()  # recent more common
    assert 0.05 < reg["status"].ne("active").mean() < 0.5


def test_clean_event_rows_reference_the_registry(small_csv: Path) -> None:
    con = _connect(small_csv)
    for name in EVENT_SOURCES:
        orphans = con.execute(
            f"""SELECT count(*) FROM {name} e
            WHERE source_row NOT IN (SELECT CAST(source_row AS BIGINT) FROM defects
                                     WHERE source = '{name}')
              AND credit_code NOT IN (SELECT credit_code FROM registry)"""
        ).fetchone()[0]
        assert orphans == 0, name


def test_events_happen_while_the_enterprise_exists(small_csv: Path) -> None:
    con = _connect(small_csv)
    for name in ("credit_evaluations", "list_entries", "penalties", "inspections", "complaints"):
        date_col = SOURCES[name].event_date
        bad = con.execute(
            f"""SELECT count(*) FROM {name} e JOIN registry r USING (credit_code)
            WHERE e.{date_col} <= r.founded_on OR e.{date_col} >= r.closed_on"""
        ).fetchone()[0]
        assert bad == 0, name


def test_objections_and_repairs_target_clean_records_of_the_same_enterprise(
    small_csv: Path,
) -> None:
    con = _connect(small_csv)
    for name in ("objections", "credit_repairs"):
        rows = con.execute(f"SELECT target_source, count(*) FROM {name} GROUP BY 1").fetchall()
        assert rows, name
        for target, _ in rows:
            missing = con.execute(
                f"""SELECT count(*) FROM {name} o WHERE target_source = '{target}'
                AND NOT EXISTS (
                    SELECT 1 FROM {target} t
                    WHERE t.record_id = o.target_record_id AND t.credit_code = o.credit_code
                      AND t.source_row NOT IN (SELECT CAST(source_row AS BIGINT) FROM defects
                                               WHERE source = '{target}'))"""
            ).fetchone()[0]
            assert missing == 0, (name, target)
        hits_defective_id = con.execute(
            f"""SELECT count(*) FROM {name} o JOIN defects d
            ON d.source = o.target_source AND d.record_id = o.target_record_id"""
        ).fetchone()[0]
        assert hits_defective_id == 0, name
    # Repairs happen after the repaired event.
    late = con.execute(
        """SELECT count(*) FROM credit_repairs r JOIN penalties p
        ON r.target_source = 'penalties' AND p.record_id = r.target_record_id
        WHERE r.repaired_on <= p.decided_on"""
    ).fetchone()[0]
    assert late == 0


def test_grades_agree_with_scores(small_parquet: Path) -> None:
    ev = pd.read_parquet(small_parquet / "credit_evaluations.parquet")
    ranks = ev.groupby("grade")["score"].agg(["min", "max"]).sort_index()
    assert list(ranks.index) == ["A", "B", "C", "D", "E"]
    # Non-overlapping score bands, A highest.
    assert (ranks["min"].to_numpy()[:-1] > ranks["max"].to_numpy()[1:]).all()
    # Quarterly, from 2017 on.
    assert ev["evaluated_on"].min() >= date(2017, 1, 1)
    assert set(pd.to_datetime(ev["evaluated_on"]).dt.strftime("%m-%d")) <= {
        "03-31", "06-30", "09-30", "12-31",
    }  # fmt: skip


def test_random_draws_carry_their_inclusion_probability_and_targeted_checks_do_not(
    small_parquet: Path,
) -> None:
    ins = pd.read_parquet(small_parquet / "inspections.parquet")
    rnd = ins[ins["selection"] == "random"]
    tgt = ins[ins["selection"] == "targeted"]
    assert len(rnd) > 100 and len(tgt) > 100
    assert ((rnd["selection_probability"] > 0) & (rnd["selection_probability"] <= 1)).all()
    assert rnd["selection_probability"].between(0.015, 0.24).all()
    assert tgt["selection_probability"].isna().all()
    assert rnd["task_id"].str.startswith("SJ-").all()
    # task id names the year, county and department of the draw
    parts = rnd["task_id"].str.split("-", expand=True)
    assert (parts[1].astype(int) == pd.to_datetime(rnd["inspected_on"]).dt.year).mean() > 0.9
    assert (parts[2] + "-" + parts[3] == rnd["department"]).all()
    teams = ins["inspector_ids"].str.split(";")
    assert teams.map(len).isin([2, 3]).all()
    assert teams.map(lambda t: len(set(t)) == len(t)).all()
    assert (teams.map(lambda t: t[0][5:14]) == ins["department"]).all()


def test_credit_linked_draws_oversample_bad_grades(medium: Path) -> None:
    ins = pd.read_parquet(medium / "inspections.parquet")
    rnd = ins[(ins["selection"] == "random")]
    year = pd.to_datetime(rnd["inspected_on"]).dt.year
    # Before 2020 probabilities are the base 3-8 %; from 2020 they are scaled by the grade.
    assert rnd.loc[year < 2019, "selection_probability"].between(0.03, 0.08).all()
    late = rnd.loc[year >= 2021, "selection_probability"]
    assert (late > 0.08).any() and (late < 0.03).any()


def test_draw_probabilities_are_the_base_rate_times_the_latest_known_grade(
    medium: Path,
) -> None:
    """Recompute every random draw's inclusion probability from the published draws and the
    evaluations in the data: base (3-8 %) x 0.5 for A, x3 for D/E, from 2020 on, using the
    latest evaluation evaluated and recorded before the draw date.

    The platform knew the true evaluation rows; the data holds a few defective ones. A mistyped
    check character is repaired here (the first 17 characters still name the enterprise); rows
    of an unknown enterprise or recorded before their date cannot be, hence 99.6 % not 100 %.
    """
    con = duckdb.connect()
    con.create_function(
        "fix_code", lambda c: c[:17] + cc.check_character(c[:17]), ["VARCHAR"], "VARCHAR"
    )
    df = con.execute(
        f"""
        WITH draws AS (SELECT * FROM read_csv('{medium / "_truth" / "draws.csv"}')),
             bad AS (SELECT record_id FROM read_csv('{medium / "_truth" / "defects.csv"}')
                     WHERE source = 'inspections'),
             ins AS (SELECT * FROM '{medium / "inspections.parquet"}'
                     WHERE selection = 'random' AND record_id NOT IN (SELECT * FROM bad)),
             ev AS (SELECT fix_code(credit_code) AS credit_code, evaluated_on, recorded_at, grade
                    FROM '{medium / "credit_evaluations.parquet"}')
        SELECT ins.record_id, any_value(ins.selection_probability) AS prob,
               any_value(draws.base_probability) AS base,
               any_value(draws.credit_linked) AS linked,
               any_value(draws.department) = any_value(ins.department) AS same_department,
               any_value(ins.inspected_on) > any_value(draws.draw_date) AS after_draw,
               arg_max(ev.grade, ev.evaluated_on) AS grade
        FROM ins JOIN draws ON draws.task_id = ins.task_id
        LEFT JOIN ev ON ev.credit_code = ins.credit_code
             AND ev.evaluated_on < draws.draw_date AND ev.recorded_at < draws.draw_date
        GROUP BY ins.record_id
        """
    ).df()
    # Every clean random-draw inspection belongs to a published draw.
    assert len(df) > 0.97 * (_rows(medium, "inspections")["selection"] == "random").sum()
    assert df["same_department"].all() and df["after_draw"].all()
    assert df["base"].between(0.03, 0.08).all()
    multiplier = df["grade"].map({"A": 0.5, "B": 1.0, "C": 1.0, "D": 3.0, "E": 3.0}).fillna(1.0)
    expected = np.where(df["linked"], (df["base"] * multiplier).round(4), df["base"])
    match = np.isclose(df["prob"], expected, rtol=0, atol=1e-9)
    assert match[~df["linked"].to_numpy()].all()
    assert match.mean() > 0.996
    # ... and bad grades really are drawn: D/E are a tenth of grades, tripled in the draws.
    assert df.loc[df["linked"], "grade"].isin(["D", "E"]).mean() > 0.15


# ----------------------------------------------------------------------------- defects


def _rows(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(folder / f"{name}.parquet")


def _isin(values: pd.Series, universe: pd.Series | set[str]) -> np.ndarray:
    """Membership via Arrow (pandas 3's ``isin`` on ``str`` columns is slow)."""
    pool = pa.array(list(universe) if isinstance(universe, set) else universe, pa.string())
    return pc.is_in(pa.array(values, pa.string()), value_set=pool).to_numpy(zero_copy_only=False)


def test_manifest_rows_really_have_their_defect_and_only_it(medium: Path) -> None:
    truth = pd.read_csv(medium / "_truth" / "defects.csv", dtype=str)
    assert set(truth.columns) == {
        "source", "record_id", "source_row", "defect", "expected_reason", "expected_column",
    }  # fmt: skip
    registry = _rows(medium, "registry")["credit_code"]
    for (name, defect), group in truth.groupby(["source", "defect"]):
        spec = DEFECT_RATES[defect]
        assert name in spec.sources
        assert (group["expected_reason"] == spec.reason.value).all()
        assert (group["expected_column"] == spec.column).all()
        frame = _rows(medium, name)
        idx = group["source_row"].astype(int).to_numpy() - 1
        rows = frame.iloc[idx]
        assert (rows["record_id"].to_numpy() == group["record_id"].to_numpy()).all()
        code = rows["credit_code"]
        if defect == "missing_credit_code":
            assert code.isna().all()
        else:
            assert code.notna().all()
        if defect == "missing_kind":
            assert rows["kind"].isna().all()
        if defect == "missing_procedure":
            assert rows["procedure"].isna().all()
        if defect == "bad_check_character":
            assert code.map(cc.is_well_formed).all()
            assert not code.map(cc.is_valid).any()
        if defect == "unknown_enterprise":
            assert code.map(cc.is_valid).all()
            assert not _isin(code, registry).any()
        src = SOURCES[name]
        if defect == "recorded_before_event":
            assert (rows[src.recorded_date] < rows[src.event_date]).all()
        if defect == "duplicate_row":
            first = frame.drop_duplicates("record_id", keep="first").set_index("record_id")
            earlier = first.loc[rows["record_id"]]
            assert (first.index.get_indexer(rows["record_id"]) < idx).all()
            pd.testing.assert_frame_equal(
                earlier.reset_index(), rows.reset_index(drop=True), check_dtype=False
            )
        else:
            assert not frame["record_id"].duplicated(keep=False).iloc[idx].any()


def test_rows_outside_the_manifest_have_none_of_the_defects(medium: Path) -> None:
    truth = pd.read_csv(medium / "_truth" / "defects.csv", dtype=str)
    registry = _rows(medium, "registry")["credit_code"]
    for name in SOURCES:
        frame = _rows(medium, name)
        listed = truth.loc[truth["source"] == name, "source_row"].astype(int) - 1
        clean = frame.drop(index=listed.to_numpy())
        src = SOURCES[name]
        assert clean["credit_code"].notna().all(), name
        assert clean["credit_code"].map(cc.is_valid).all(), name
        assert clean["record_id" if name != "registry" else "credit_code"].is_unique, name
        if name != "registry":
            assert _isin(clean["credit_code"], registry).all(), name
        assert (clean[src.recorded_date] >= clean[src.event_date]).all(), name
        if name == "penalties":
            assert clean[["kind", "procedure"]].notna().all().all()


def test_defect_rates_match_the_documented_table(medium: Path) -> None:
    truth = pd.read_csv(medium / "_truth" / "defects.csv", dtype=str)
    summary = SyntheticSummary.model_validate_json(
        json.dumps(
            {
                k: v
                for k, v in json.loads(
                    (medium / "_truth" / "generation.json").read_text(encoding="utf-8")
                ).items()
                if k in SyntheticSummary.model_fields
            }
        )
    )
    counted = truth.groupby(["source", "defect"]).size()
    for name, per in summary.defects.items():
        for defect, n in per.items():
            assert counted[(name, defect)] == n
    checked = 0
    for defect, spec in DEFECT_RATES.items():
        for name in spec.sources:
            frame = _rows(medium, name)
            dups = truth[(truth["source"] == name) & (truth["defect"] == "duplicate_row")]
            originals = frame.drop(index=dups["source_row"].astype(int).to_numpy() - 1)
            early = originals[SOURCES[name].event_date] < QUALITY_CUTOFF
            expected = early.sum() * spec.rate_before + (~early).sum() * spec.rate_after
            observed = counted.get((name, defect), 0)
            if expected == 0:
                assert observed == 0, (name, defect)
                continue
            # Binomial: within 4 standard deviations (a real deviation is caught, noise not).
            assert abs(observed - expected) <= 4 * np.sqrt(expected) + 2, (
                name, defect, observed, expected,
            )  # fmt: skip
            checked += 1
    assert checked >= 15


def test_old_penalties_lack_codes_far_more_often(medium: Path) -> None:
    pen = _rows(medium, "penalties")
    early = pen["decided_on"] < QUALITY_CUTOFF
    assert pen.loc[early, "credit_code"].isna().mean() > 0.08
    assert pen.loc[~early, "credit_code"].isna().sum() == 0
    assert pen.loc[early, "kind"].isna().mean() > 2 * pen.loc[~early, "kind"].isna().mean()
    # Optional fields are emptier before the reform too (not defects: they may be empty).
    assert (
        pen.loc[early, "legal_basis"].isna().mean()
        > 3 * pen.loc[~early, "legal_basis"].isna().mean()
    )


def test_defect_table_docs_come_from_the_constant() -> None:
    table = defect_rates_markdown()
    for name, spec in DEFECT_RATES.items():
        assert f"| {name} |" in table
        assert spec.reason.value in table
    assert DEFECT_RATES["missing_credit_code"].rate_before == pytest.approx(0.15)


# ----------------------------------------------------------------------------- lags


def test_publication_lags_are_mostly_short_with_a_long_tail(medium: Path) -> None:
    truth = pd.read_csv(medium / "_truth" / "defects.csv", dtype=str)
    for name in ("penalties", "inspections", "complaints", "list_entries"):
        frame = _rows(medium, name)
        bad = truth.loc[truth["source"] == name, "source_row"].astype(int) - 1
        frame = frame.drop(index=bad.to_numpy())
        src = SOURCES[name]
        late = frame[frame[src.event_date] >= date(2019, 1, 1)]  # after the 2018 back-fill
        lag = (
            pd.to_datetime(late[src.recorded_date]) - pd.to_datetime(late[src.event_date])
        ).dt.days
        assert lag.min() >= 0
        assert (lag <= 30).mean() > 0.75, name
        assert lag.max() > 60, name
        assert lag.max() <= 366, name


# ----------------------------------------------------------------------------- the signal


@pytest.fixture(scope="module")
def random_draws(medium: Path) -> pd.DataFrame:
    """Random-draw inspections with registry attributes and prior penalties (last year, 1-5 y)."""
    con = duckdb.connect()
    return con.execute(
        f"""
        WITH reg AS (SELECT * FROM '{medium / "registry.parquet"}'),
             ins AS (SELECT * FROM '{medium / "inspections.parquet"}'
                     WHERE selection = 'random' AND credit_code IN (SELECT credit_code FROM reg)),
             pen AS (SELECT * FROM '{medium / "penalties.parquet"}')
        SELECT ins.record_id, any_value(ins.problem_found) AS problem,
               any_value(reg.industry) AS industry,
               any_value(datediff('day', reg.founded_on, ins.inspected_on)) / 365.25 AS age,
               count(pen.record_id) FILTER (
                   WHERE pen.decided_on >= ins.inspected_on - INTERVAL 365 DAY) AS penalties_1y,
               count(pen.record_id) FILTER (
                   WHERE pen.decided_on < ins.inspected_on - INTERVAL 365 DAY) AS penalties_old
        FROM ins JOIN reg USING (credit_code)
        LEFT JOIN pen ON pen.credit_code = ins.credit_code
             AND pen.decided_on < ins.inspected_on
             AND pen.decided_on >= ins.inspected_on - INTERVAL 1826 DAY
        GROUP BY ins.record_id
        """
    ).df()


def test_random_draw_problem_rate_is_realistic(random_draws: pd.DataFrame, medium: Path) -> None:
    assert len(random_draws) > 3_000
    assert 0.15 <= random_draws["problem"].mean() <= 0.28
    ins = _rows(medium, "inspections")
    targeted = ins.loc[ins["selection"] == "targeted", "problem_found"].mean()
    assert targeted > random_draws["problem"].mean() + 0.1


def test_a_penalty_in_the_year_before_raises_the_problem_rate(random_draws: pd.DataFrame) -> None:
    with_penalty = random_draws.loc[random_draws["penalties_1y"] > 0, "problem"]
    without = random_draws.loc[random_draws["penalties_1y"] == 0, "problem"]
    assert len(with_penalty) > 150
    assert with_penalty.mean() > 1.6 * without.mean()


def test_recent_penalties_matter_far_more_than_old_ones(random_draws: pd.DataFrame) -> None:
    no_recent = random_draws["penalties_1y"] == 0
    recent = random_draws.loc[~no_recent, "problem"].mean()
    old_only = random_draws.loc[no_recent & (random_draws["penalties_old"] > 0), "problem"].mean()
    none = random_draws.loc[no_recent & (random_draws["penalties_old"] == 0), "problem"].mean()
    # The latent drift alone gives ~0.1 between recent and old; the direct effect doubles it.
    assert recent - old_only > 0.15
    assert old_only > none


def test_catering_is_riskier_than_it_and_the_young_riskier_than_the_middle_aged(
    random_draws: pd.DataFrame,
) -> None:
    rate = random_draws.groupby("industry")["problem"].mean()
    assert rate["H"] > rate["I"] + 0.08
    assert rate["H"] > random_draws["problem"].mean()
    young = random_draws.loc[random_draws["age"] < 2, "problem"].mean()
    middle = random_draws.loc[random_draws["age"].between(5, 15), "problem"].mean()
    assert young > middle + 0.04


def test_complaints_follow_risk_in_catering_but_not_in_it(medium: Path) -> None:
    truth = pq.read_table(medium / "_truth" / "enterprise_risk.parquet").to_pandas()
    reg = _rows(medium, "registry")
    cmp = _rows(medium, "complaints")
    per = cmp.groupby("credit_code").size().rename("complaints")
    risk = truth.groupby("credit_code")["propensity"].mean().rename("propensity")
    frame = reg.set_index("credit_code").join(per).join(risk).fillna({"complaints": 0})
    frame = frame[frame["status"] == "active"]
    corr = {
        ind: np.corrcoef(g["propensity"], g["complaints"])[0, 1]
        for ind, g in frame.groupby("industry")
        if ind in ("H", "I")
    }
    assert INDUSTRY_PROFILES["I"].complaint_signal == 0.0
    assert corr["H"] > 0.25
    assert abs(corr["I"]) < 0.15


def test_thin_coverage_counties_pushed_only_their_share_of_penalties(medium: Path) -> None:
    pen = _rows(medium, "penalties").dropna(subset=["department"])
    county, dept = pen["department"].str[:6], pen["department"].str[7:]
    thin = {c for c, _ in THIN_COVERAGE}

    def odds(mask: pd.Series, department: str) -> float:
        share = (dept[mask] == department).mean()
        return share / (1 - share)

    rest = ~county.isin(thin)
    for (c, d), share in THIN_COVERAGE.items():
        # Only that department's penalties are missing: its odds against the county's other
        # departments shrink by the pushed share (compared with fully covered counties).
        ratio = odds(county == c, d) / odds(rest, d)
        assert ratio < share + 0.25, (c, d, ratio)
        assert ratio > share / 3, (c, d, ratio)


# ----------------------------------------------------------------------------- the API


def test_summary_matches_the_files(small_parquet: Path) -> None:
    doc = json.loads((small_parquet / "_truth" / "generation.json").read_text(encoding="utf-8"))
    summary = SyntheticSummary.model_validate({k: doc[k] for k in SyntheticSummary.model_fields})
    assert summary.params.enterprises == SMALL and summary.params.fmt == "parquet"
    for name in SOURCES:
        assert pq.read_metadata(small_parquet / f"{name}.parquet").num_rows == summary.rows[name]
    on_disk = {str(p.relative_to(small_parquet)) for p in small_parquet.rglob("*") if p.is_file()}
    assert set(summary.files) == on_disk
    assert "defect_rates" in doc and "thin_coverage" in doc
    rows_per_enterprise = sum(summary.rows.values()) / SMALL
    assert 20 < rows_per_enterprise < 45
    with pytest.raises(Exception):  # noqa: B017 - frozen
        summary.rows = {}  # type: ignore[misc]


def test_refuses_a_folder_that_already_holds_sources(small_csv: Path) -> None:
    before = hash_tree(small_csv)
    with pytest.raises(FileExistsError, match="already holds source files"):
        generate(small_csv, enterprises=100)
    assert hash_tree(small_csv) == before


def test_writes_into_an_existing_empty_folder_and_leaves_no_temporary_files(
    tmp_path: Path,
) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    summary = generate(out, enterprises=120, seed=1, fmt="parquet", progress=True)
    assert summary.rows["registry"] == 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "xlsx"}, "fmt"),
        ({"enterprises": 0}, "enterprises"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"extracted_on": date(2016, 6, 30)}, "extracted_on"),
    ],
)
def test_rejects_bad_parameters_without_writing(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_an_earlier_extraction_date_keeps_every_date_before_it(tmp_path: Path) -> None:
    out = tmp_path / "early"
    generate(out, enterprises=300, seed=5, fmt="parquet", extracted_on=date(2021, 3, 31))
    con = _connect(out)
    for name in SOURCES:
        for c in SOURCES[name].columns:
            if c.dtype == DType.DATE:
                latest = con.execute(f"SELECT max({c.name}) FROM {name}").fetchone()[0]
                assert latest is None or latest <= date(2021, 3, 31), (name, c.name)
