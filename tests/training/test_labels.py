"""Labels: one example per inspection, features strictly before its date, periods out of time."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.catalogue import FEATURE_NAMES
from training.config import Splits
from training.labels import build_examples, load_inspections, periods_for, selection_weights

SPLITS = Splits(test_months=12, valid_months=12, train_start="2017-01-01")


def differs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Cell-wise inequality where two missing values count as equal."""
    return a.ne(b) & ~(a.isna() & b.isna())


@pytest.fixture(scope="module")
def examples(validated: Path) -> pd.DataFrame:
    return build_examples(validated, SPLITS)[0]


def test_one_example_per_inspection_in_the_periods(validated: Path, examples) -> None:
    insp = load_inspections(validated)
    periods = periods_for(SPLITS, insp["inspected_on"])
    days = pd.to_datetime(insp["inspected_on"])
    inside = (days >= pd.Timestamp(periods.train_start)) & (days <= pd.Timestamp(periods.end))
    assert len(examples) == int(inside.sum())
    assert examples["record_id"].is_unique
    assert set(examples["record_id"]) == set(insp.loc[inside, "record_id"])
    # the label is the inspection's own outcome
    merged = examples.merge(
        insp[["record_id", "problem_found"]], on="record_id", suffixes=("", "_src")
    )
    assert (merged["label"] == merged["problem_found_src"].astype(int)).all()


def test_periods_are_ordered_disjoint_and_the_test_period_is_the_latest(examples) -> None:
    spans = examples.groupby("period")["inspected_on"].agg(["min", "max"])
    assert spans.loc["train", "max"] < spans.loc["valid", "min"]
    assert spans.loc["valid", "max"] < spans.loc["test", "min"]
    assert set(examples["period"]) == {"train", "valid", "test"}


def test_two_inspections_of_one_enterprise_on_one_day_both_become_examples(
    validated: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "validated"
    shutil.copytree(validated, folder)
    insp = pd.read_parquet(folder / "inspections.parquet")
    twin = insp.iloc[[-1]].copy()
    twin["record_id"] = "IN-TWIN"
    twin["problem_found"] = ~twin["problem_found"]
    pd.concat([insp, twin]).to_parquet(folder / "inspections.parquet", index=False)
    ex, _ = build_examples(folder, SPLITS)
    pair = ex[ex["credit_code"] == twin["credit_code"].iloc[0]]
    pair = pair[pair["inspected_on"] == twin["inspected_on"].iloc[0]]
    assert len(pair) == 2 and sorted(pair["label"]) == [0, 1]
    # same enterprise, same day: same features, whatever the outcomes
    first, second = pair[list(FEATURE_NAMES)].iloc[[0]], pair[list(FEATURE_NAMES)].iloc[[1]]
    assert not differs(first.reset_index(drop=True), second.reset_index(drop=True)).any(axis=None)


def test_an_outcome_never_leaks_into_its_own_features(
    validated: Path, tmp_path: Path, examples
) -> None:
    """Flipping every outcome from a date on leaves the features of inspections on that date."""
    folder = tmp_path / "validated"
    shutil.copytree(validated, folder)
    insp = pd.read_parquet(folder / "inspections.parquet")
    cut = pd.Timestamp(examples.loc[examples["period"] == "valid", "inspected_on"].min())
    later = pd.to_datetime(insp["inspected_on"]) >= cut
    insp.loc[later, "problem_found"] = ~insp.loc[later, "problem_found"]
    insp.to_parquet(folder / "inspections.parquet", index=False)
    flipped, _ = build_examples(folder, SPLITS)
    on_cut = examples["inspected_on"] == cut.date()
    assert on_cut.sum() > 0
    cols = list(FEATURE_NAMES)
    before = examples.loc[on_cut, ["record_id", *cols]].set_index("record_id").sort_index()
    after = flipped.loc[flipped["inspected_on"] == cut.date(), ["record_id", *cols]]
    pd.testing.assert_frame_equal(before, after.set_index("record_id").sort_index())
    # control: later inspections of enterprises inspected again do see the flipped past
    changed = differs(examples[cols], flipped[cols]).any(axis=1)
    assert changed.any()
    assert (examples.loc[changed, "inspected_on"] > cut.date()).all()
    # and the labels themselves are flipped exactly where the outcome was
    assert (flipped["label"] != examples["label"]).sum() == int(
        (pd.to_datetime(examples["inspected_on"]) >= cut).sum()
    )


def test_inverse_probability_weights(examples) -> None:
    w = selection_weights(examples, "ipw", max_weight=50)
    random = (examples["selection"] == "random").to_numpy()
    p = examples["selection_probability"].to_numpy(dtype=float, na_value=np.nan)
    np.testing.assert_allclose(w[random], np.minimum(1 / p[random], 50))
    assert (w[~random] == 1).all()
    capped = selection_weights(examples, "ipw", max_weight=5)
    assert capped.max() == 5 and (capped <= w).all()
    assert (selection_weights(examples, "none", 50) == 1).all()


def test_a_random_draw_without_probability_is_refused(examples) -> None:
    broken = examples.copy()
    first = broken.index[broken["selection"] == "random"][0]
    broken.loc[first, "selection_probability"] = np.nan
    with pytest.raises(ValueError, match="selection_probability"):
        selection_weights(broken, "ipw", 50)
    with pytest.raises(ValueError, match="unknown scheme"):
        selection_weights(examples, "ips", 50)


def test_an_empty_training_period_is_refused(validated: Path) -> None:
    with pytest.raises(ValueError, match="training would be empty"):
        build_examples(validated, Splits(test_months=12, valid_months=12, train_start="2030-01-01"))
