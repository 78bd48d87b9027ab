"""What-if edits run the real feature SQL: no edit equals batch features; edits move them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.build import build_features
from features.scenario import Edit, features_for, with_and_without_objections
from tests.features.test_build import CODE, penalty, random_province, registry, write
from tests.features.test_lineage import objection

T = date(2024, 6, 1)


def test_without_edits_one_enterprise_equals_batch_features(tmp_path: Path) -> None:
    t = date(2022, 9, 30)
    tables = random_province(np.random.default_rng(11), n=30)
    folder = write(tmp_path, tables)
    codes = [r["credit_code"] for r in tables["registry"]]
    batch = build_features(folder, pd.DataFrame({"credit_code": codes, "as_of": t}))
    for i, code in enumerate(codes):
        row = features_for(folder, code, t)
        # Values equal; an all-null integer column comes back as float from one row.
        pd.testing.assert_frame_equal(
            row, batch.iloc[[i]].reset_index(drop=True), check_dtype=False
        )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "registry": [registry()],
            "penalties": [
                penalty("P1", date(2024, 1, 10), kind="suspension"),
                penalty("P2", date(2020, 3, 1)),
                penalty("P3", date(2023, 11, 1)),
            ],
            "objections": [objection("O1", "P3", date(2024, 2, 1), "pending", None)],
        },
    )


def test_repair_and_withdraw_stop_a_record_counting(folder: Path) -> None:
    now = features_for(folder, CODE, T).iloc[0]
    assert now.penalty_count_5y == 2 and now.serious_penalty_count_5y == 1
    repaired = features_for(
        folder, CODE, T, [Edit(kind="repair", source="penalties", record_id="P1")]
    )
    assert repaired.iloc[0].penalty_count_5y == 1
    assert repaired.iloc[0].serious_penalty_count_5y == 0
    withdrawn = features_for(
        folder, CODE, T, [Edit(kind="withdraw", source="penalties", record_id="P2")]
    )
    assert withdrawn.iloc[0].penalty_count_5y == 1
    assert withdrawn.iloc[0].serious_penalty_count_5y == 1


def test_an_edit_dated_on_or_after_the_date_does_not_count_and_is_refused(folder: Path) -> None:
    later = Edit(kind="repair", source="penalties", record_id="P1", on=T)
    with pytest.raises(ValueError, match="not before"):
        features_for(folder, CODE, T, [later])
    earlier = Edit(kind="repair", source="penalties", record_id="P1", on=date(2024, 5, 1))
    assert features_for(folder, CODE, T, [earlier]).iloc[0].penalty_count_5y == 1


def test_objections_shown_with_and_without(folder: Path) -> None:
    now, as_if, ids = with_and_without_objections(folder, CODE, T)
    assert ids == ["penalties:P3"]
    assert now.iloc[0].penalty_count_5y == 2
    assert as_if.iloc[0].penalty_count_5y == 3
    added = features_for(
        folder, CODE, T, [Edit(kind="add_objection", source="penalties", record_id="P1")]
    )
    assert added.iloc[0].serious_penalty_count_5y == 0


def test_bad_edits_and_unknown_enterprises_are_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="no such record"):
        features_for(folder, CODE, T, [Edit(kind="repair", source="penalties", record_id="NOPE")])
    with pytest.raises(ValidationError, match="cannot be repaired"):
        Edit(kind="repair", source="registry", record_id="x")
    with pytest.raises(ValidationError):
        Edit(kind="erase", source="penalties", record_id="P1")
    with pytest.raises(LookupError, match="no such enterprise"):
        features_for(folder, "91330102MA2B3C4D7Y", T)
    with pytest.raises(LookupError, match="no such enterprise"):
        features_for(folder, CODE, date(2009, 1, 1))
