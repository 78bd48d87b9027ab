"""Traceability: the records behind each feature, with their status, on constructed data."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.lineage import linked_records
from tests.features.test_build import CODE, penalty, random_province, registry, write

T = date(2024, 6, 1)


def objection(rid: str, target: str, filed: date, outcome: str, resolved: date | None) -> dict:
    return dict(
        record_id=rid,
        credit_code=CODE,
        target_source="penalties",
        target_record_id=target,
        filed_on=filed,
        recorded_at=filed,
        resolved_on=resolved,
        outcome=outcome,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    repair = dict(
        record_id="R1",
        credit_code=CODE,
        target_source="penalties",
        target_record_id="P_REPAIRED",
        applied_on=date(2023, 1, 1),
        repaired_on=date(2023, 3, 1),
        recorded_at=date(2023, 3, 10),
    )
    return write(
        tmp_path,
        {
            "registry": [registry(), registry("91330102MA2B3C4D6Y")],
            "penalties": [
                penalty("P_OLD", date(2018, 1, 5)),  # older than five years
                penalty("P_FINE", date(2023, 12, 1), kind="fine"),
                penalty("P_SERIOUS", date(2022, 2, 1), kind="suspension"),
                penalty("P_REPAIRED", date(2022, 6, 1)),
                penalty("P_OBJECTED", date(2024, 1, 10)),
                penalty("P_UPHELD", date(2023, 5, 1)),
                penalty("P_REJECTED", date(2023, 2, 1)),
                penalty("P_LATE", date(2024, 5, 20), recorded=date(2024, 6, 3)),
                penalty("P_FUTURE", date(2024, 7, 1)),
                {**penalty("P_OTHER", date(2024, 1, 1)), "credit_code": "91330102MA2B3C4D6Y"},
            ],
            "objections": [
                objection("O1", "P_OBJECTED", date(2024, 3, 1), "pending", None),
                objection("O2", "P_UPHELD", date(2023, 6, 1), "upheld", date(2023, 8, 1)),
                objection("O3", "P_REJECTED", date(2023, 3, 1), "rejected", date(2023, 4, 1)),
            ],
            "credit_repairs": [repair],
        },
    )


def test_each_record_has_its_status_and_the_features_it_feeds(folder: Path) -> None:
    records = linked_records(folder, CODE, T).set_index("record_id")
    assert "P_FUTURE" not in records.index and "P_OTHER" not in records.index
    expected = {
        "P_OLD": "outside_window",
        "P_FINE": "counted",
        "P_SERIOUS": "counted",
        "P_REPAIRED": "repaired",
        "P_OBJECTED": "under_objection",
        "P_UPHELD": "withdrawn",
        "P_REJECTED": "counted",
        "P_LATE": "not_yet_known",
    }
    assert records["status"].to_dict() == expected
    assert records.at["P_OBJECTED", "objection_id"] == "O1"
    assert records.at["P_REJECTED", "objection_outcome"] == "rejected"
    assert records.at["P_REPAIRED", "repair_id"] == "R1"
    assert records.at["P_REPAIRED", "repaired_on"] == pd.Timestamp(2023, 3, 1)
    assert records.at["P_FINE", "department"] == "MR"
    assert records.at["P_FINE", "event_date"] == pd.Timestamp(2023, 12, 1)
    assert "fine" in records.at["P_FINE", "detail"]
    # Only counted records feed features; the newest counted one sets days-since.
    assert set(records.at["P_SERIOUS", "features"]) >= {"serious_penalty_count_5y"}
    assert "penalty_count_1y" in records.at["P_FINE", "features"]
    assert "penalty_count_1y" not in records.at["P_SERIOUS", "features"]
    assert "days_since_last_penalty" in records.at["P_FINE", "features"]
    for rid in ("P_OLD", "P_REPAIRED", "P_OBJECTED", "P_UPHELD", "P_LATE"):
        assert records.at[rid, "features"] == ()

    feats = build_features(folder, pd.DataFrame({"credit_code": [CODE], "as_of": [T]})).iloc[0]
    counted = records[records["status"] == "counted"]
    assert feats.penalty_count_5y == len(counted) == 3
    assert feats.serious_penalty_count_5y == 1


def test_status_is_as_of_the_date_asked(folder: Path) -> None:
    before = linked_records(folder, CODE, date(2023, 3, 5)).set_index("record_id")
    # The repair is dated 03-01 but only recorded on 03-10; the objection was not yet filed.
    assert before.at["P_REPAIRED", "status"] == "counted"
    assert "P_OBJECTED" not in before.index
    during = linked_records(folder, CODE, date(2023, 7, 1)).set_index("record_id")
    assert during.at["P_UPHELD", "status"] == "under_objection"
    assert during.at["P_UPHELD", "objection_outcome"] == "pending"


def test_unknown_enterprise_has_no_records_and_bad_codes_are_refused(folder: Path) -> None:
    assert linked_records(folder, "91330102MA2B3C4D7Y", T).empty
    with pytest.raises(ValueError, match="credit_code"):
        linked_records(folder, "x' OR 1=1 --", T)


@pytest.mark.parametrize("t", [date(2019, 3, 1), date(2023, 12, 31)])
def test_counted_records_add_up_to_the_features_on_a_random_province(
    tmp_path: Path, t: date
) -> None:
    """Lineage and the feature SQL are two codings of the same rules: hold them together."""
    tables = random_province(np.random.default_rng(t.toordinal()), n=40)
    folder = write(tmp_path, tables)
    codes = [r["credit_code"] for r in tables["registry"]]
    feats = build_features(folder, pd.DataFrame({"credit_code": codes, "as_of": t}))
    checked = 0
    for row in feats.itertuples():
        records = linked_records(folder, row.credit_code, t)
        fed = records.explode("features")
        for name in (
            "penalty_count_5y",
            "penalty_count_1y",
            "serious_penalty_count_5y",
            "inspections_5y",
            "problems_found_5y",
            "problems_found_1y",
            "complaints_1y",
            "substantiated_complaints_1y",
            "complaints_90d",
            "black_list_entries_5y",
            "abnormal_entries_1y",
        ):
            assert (fed["features"] == name).sum() == getattr(row, name), (row.credit_code, name)
        for name in ("on_black_list", "on_abnormal_list", "on_red_list"):
            assert int((fed["features"] == name).any()) == getattr(row, name), name
        checked += len(records)
    assert checked > 100
