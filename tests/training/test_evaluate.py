"""Tests of training.evaluate against hand-computed cases and invariances."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.evaluate import (
    DetectionResult,
    binary_metrics,
    calibration_table,
    detection_at_share,
    detection_curve,
    expected_calibration_error,
    fairness_gap,
    inclusion_probabilities,
    size_band,
    slice_table,
    tier_weighted_draw,
)

# ------------------------------------------------------------------------------------------
# binary_metrics

Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.6, 0.4, 0.8])
W = np.array([1.0, 3.0, 1.0, 1.0])


def test_binary_metrics_unweighted_by_hand() -> None:
    m = binary_metrics(Y, P)
    assert m["n"] == 4
    assert m["positives"] == 2
    assert m["base_rate"] == pytest.approx(0.5)
    # positive/negative pairs ranked correctly: (.4>.1), (.8>.1), (.8>.6) of 4
    assert m["roc_auc"] == pytest.approx(0.75)
    # ranking 0.8(+), 0.6(-), 0.4(+): precision 1 then 2/3
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.04) / 4)
    expected_ll = -(np.log(0.9) + np.log(0.4) + np.log(0.4) + np.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_binary_metrics_weighted_by_hand() -> None:
    m = binary_metrics(Y, P, W)
    assert m["n"] == 4  # rows, not weight
    assert m["positives"] == 2
    assert m["base_rate"] == pytest.approx(2 / 6)
    # weighted pairs: 1*1 (.4>.1) + 1*1 (.8>.1) + 1*3 (.8>.6) over 2*4
    assert m["roc_auc"] == pytest.approx(5 / 8)
    # 0.8(+, w1): precision 1; then 0.6(-, w3), 0.4(+, w1): precision 2/5
    assert m["pr_auc"] == pytest.approx((1 + 2 / 5) / 2)
    assert m["brier"] == pytest.approx((0.01 + 3 * 0.36 + 0.36 + 0.04) / 6)
    expected_ll = -(np.log(0.9) + 3 * np.log(0.4) + np.log(0.4) + np.log(0.8)) / 6
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_integer_weights_equal_repeated_rows() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    p = rng.random(60)
    w = rng.integers(0, 4, 60)
    weighted = binary_metrics(y, p, w)
    repeated = binary_metrics(np.repeat(y, w), np.repeat(p, w))
    for key in ("base_rate", "roc_auc", "pr_auc", "brier", "log_loss"):
        assert weighted[key] == pytest.approx(repeated[key]), key


def test_one_class_gives_nan_aucs() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    # positives exist but carry no weight: still one class
    m = binary_metrics([0, 1, 0], [0.1, 0.2, 0.3], [1, 0, 1])
    assert math.isnan(m["roc_auc"])


@pytest.mark.parametrize(
    ("y", "p", "w"),
    [
        ([0, 2], [0.1, 0.2], None),
        ([0, 1], [0.1, 1.2], None),
        ([0, 1], [0.1, np.nan], None),
        ([0, 1], [0.1, 0.2], [1, -1]),
        ([0, 1], [0.1, 0.2], [0, 0]),
        ([0, 1], [0.1, 0.2, 0.3], None),
        ([], [], None),
    ],
)
def test_binary_metrics_rejects_bad_input(y, p, w) -> None:
    with pytest.raises(ValueError):
        binary_metrics(y, p, w)


# ------------------------------------------------------------------------------------------
# calibration


def test_calibration_small_case_keeps_ties_together() -> None:
    p = [0.1, 0.1, 0.1, 0.5, 0.9, 0.9]
    y = [0, 1, 0, 1, 1, 0]
    table = calibration_table(y, p, bins=4)
    assert list(table.columns) == [
        "bin",
        "lower",
        "upper",
        "mean_predicted",
        "observed_rate",
        "n",
        "weight",
    ]
    # quantile edges 0.1, 0.1, 0.9 -> one interior edge 0.1 -> bins (<=0.1] and (0.1, 0.9]
    assert table["n"].tolist() == [3, 3]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, (0.5 + 0.9 + 0.9) / 3])
    assert table["observed_rate"].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert table["lower"].tolist() == pytest.approx([0.1, 0.1])
    assert table["upper"].tolist() == pytest.approx([0.1, 0.9])
    ece = expected_calibration_error(table)
    assert ece == pytest.approx(0.5 * abs(0.1 - 1 / 3) + 0.5 * abs(2.3 / 3 - 2 / 3))


def test_calibration_all_tied_is_one_bin() -> None:
    table = calibration_table([0, 1, 1, 0], [0.3] * 4, bins=10)
    assert len(table) == 1
    assert table["observed_rate"].iloc[0] == pytest.approx(0.5)


def test_calibration_deciles_are_balanced_and_deterministic() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(1000)
    y = rng.random(1000) < p
    table = calibration_table(y, p)
    assert len(table) == 10
    assert table["n"].tolist() == [100] * 10
    assert (table["upper"].to_numpy() >= table["lower"].to_numpy()).all()
    pd.testing.assert_frame_equal(table, calibration_table(y, p))


def test_ece_small_when_calibrated_large_when_not() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 50_000)
    y = rng.random(p.size) < p
    assert expected_calibration_error(calibration_table(y, p)) < 0.02
    y_bad = rng.random(p.size) < p**2  # the model over-predicts
    assert expected_calibration_error(calibration_table(y_bad, p)) > 0.1


def test_weights_undo_selection_bias_in_calibration() -> None:
    """Targeted-style selection (problems over-sampled) looks miscalibrated; 1/pi fixes it."""
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.6, 200_000)
    y = rng.random(p.size) < p
    pi = np.where(y, 0.9, 0.3)
    kept = rng.random(p.size) < pi
    biased = calibration_table(y[kept], p[kept])
    weighted = calibration_table(y[kept], p[kept], weight=1 / pi[kept])
    assert expected_calibration_error(biased) > 0.1
    assert expected_calibration_error(weighted) < 0.02
    assert weighted["weight"].sum() == pytest.approx((1 / pi[kept]).sum())


# ------------------------------------------------------------------------------------------
# detection


def test_detection_at_share_includes_straddling_tie_group_fractionally() -> None:
    # top 40 % of 5 rows = 2 rows: the row scored 3 (a problem) and one of the three rows
    # tied at score 2 (one problem among them) -> expected problems found 1 + 1/3.
    r = detection_at_share([1, 1, 0, 0, 0], [3, 2, 2, 2, 1], 0.4)
    assert isinstance(r, DetectionResult)
    assert r.selected_weight == pytest.approx(2)
    assert r.detection_rate == pytest.approx((1 + 1 / 3) / 2)
    assert r.random_rate == pytest.approx(0.4)
    assert r.lift_pp == pytest.approx(100 * ((1 + 1 / 3) / 2 - 0.4))
    assert r.ratio == pytest.approx((1 + 1 / 3) / 2 / 0.4)


def test_detection_with_a_single_tie_group_equals_base_rate() -> None:
    r = detection_at_share([1, 0, 0, 1, 0], [7] * 5, 0.1)
    assert r.detection_rate == pytest.approx(0.4)
    assert r.lift_pp == pytest.approx(0)


def test_detection_weighted_share_is_share_of_weight() -> None:
    # weights 3, 1, 1, 1 (total 6): top 50 % = weight 3 = exactly the first row
    r = detection_at_share([1, 0, 1, 0], [4, 3, 2, 1], 0.5, weight=[3, 1, 1, 1])
    assert r.selected_weight == pytest.approx(3)
    assert r.detection_rate == pytest.approx(1.0)
    assert r.random_rate == pytest.approx(4 / 6)


@pytest.mark.parametrize("share", [0.05, 0.1, 0.2, 0.3, 0.5, 1.0])
def test_perfect_score_detects_min_one_base_rate_over_share(share: float) -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(997) < 0.2).astype(int)
    w = rng.uniform(0.5, 3, y.size)
    for weight in (None, w):
        r = detection_at_share(y, y.astype(float), share, weight)
        assert r.detection_rate == pytest.approx(min(1.0, r.random_rate / share))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(1, 5)),
        min_size=1,
        max_size=40,
    ),
    share=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_detection_is_invariant_to_row_order(rows, share, seed) -> None:
    y, s, w = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    perm = np.random.default_rng(seed).permutation(y.size)
    for weight in (None, w):
        a = detection_at_share(y, s, share, weight)
        b = detection_at_share(y[perm], s[perm], share, None if weight is None else w[perm])
        assert a.detection_rate == pytest.approx(b.detection_rate, abs=1e-12)
        assert 0 <= a.detection_rate <= 1 + 1e-12
    # integer weights behave like repeated rows
    c = detection_at_share(np.repeat(y, w.astype(int)), np.repeat(s, w.astype(int)), share)
    assert detection_at_share(y, s, share, w).detection_rate == pytest.approx(
        c.detection_rate, abs=1e-12
    )


@pytest.mark.parametrize("share", [0, -0.1, 1.5])
def test_detection_rejects_bad_share(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        detection_at_share([0, 1], [0.1, 0.2], share)


def test_detection_curve_is_a_gain_chart() -> None:
    rng = np.random.default_rng(6)
    y = (rng.random(500) < 0.3).astype(int)
    score = np.round(y + rng.normal(0, 1, y.size), 1)  # informative, with ties
    curve = detection_curve(y, score, points=11)
    assert list(curve.columns) == ["share_inspected", "share_of_problems_found", "detection_rate"]
    assert len(curve) == 11
    found = curve["share_of_problems_found"].to_numpy()
    assert found[0] == 0 and found[-1] == pytest.approx(1)
    assert (np.diff(found) >= -1e-12).all()
    assert (found[1:-1] > curve["share_inspected"].to_numpy()[1:-1]).all()
    r = detection_at_share(y, score, 0.3)
    assert curve["detection_rate"].iloc[3] == pytest.approx(r.detection_rate)
    # a constant score is the random diagonal
    flat = detection_curve(y, np.zeros(y.size), points=5)
    assert flat["share_of_problems_found"].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert flat["detection_rate"].tolist() == pytest.approx([y.mean()] * 5)


# ------------------------------------------------------------------------------------------
# inclusion probabilities and tier-weighted draws


def test_inclusion_probabilities_by_hand_with_cap() -> None:
    pi = inclusion_probabilities([100, 1, 1, 1, 0], 2)
    assert pi.tolist() == pytest.approx([1, 1 / 3, 1 / 3, 1 / 3, 0])


def test_inclusion_probabilities_weighted() -> None:
    # weights 1, 2: c*(1*1 + 2*1) = 1.5 -> pi = 0.5 each, sum w*pi = 1.5
    assert inclusion_probabilities([1, 1], 1.5, weight=[1, 2]).tolist() == pytest.approx([0.5, 0.5])
    # all drawable weight requested: every row with ratio > 0 is certain
    assert inclusion_probabilities([2, 1, 0], 3, weight=[1, 2, 5]).tolist() == [1, 1, 0]


@settings(max_examples=200, deadline=None)
@given(
    ratios=st.lists(
        st.one_of(st.just(0.0), st.floats(0.01, 100), st.sampled_from([0.5, 1.0, 3.0])),
        min_size=1,
        max_size=50,
    ),
    fraction=st.floats(0.01, 1.0),
)
def test_inclusion_probabilities_properties(ratios, fraction) -> None:
    r = np.array(ratios)
    n_pos = int((r > 0).sum())
    if n_pos == 0:
        with pytest.raises(ValueError):
            inclusion_probabilities(r, 1)
        return
    m = fraction * n_pos
    pi = inclusion_probabilities(r, m)
    assert pi.sum() == pytest.approx(m)
    assert ((pi >= 0) & (pi <= 1 + 1e-12)).all()
    assert (pi[r == 0] == 0).all()
    below = (pi < 1 - 1e-9) & (r > 0)
    if below.any():
        c = pi[below] / r[below]
        assert c == pytest.approx(np.full(c.size, c[0]))  # proportional below the cap
        capped = pi >= 1 - 1e-9
        if capped.any():  # capped rows have ratios at least as large, and c*r >= 1
            assert r[capped].min() >= r[below].max() - 1e-12
            assert (c[0] * r[capped] >= 1 - 1e-9).all()


@pytest.mark.parametrize(
    ("ratios", "count", "message"),
    [
        ([1, 1, 0], 3, "exceeds"),
        ([1, 1], 0, "> 0"),
        ([1, 1], -1, "> 0"),
        ([1, -1], 1, "non-negative"),
        ([1, np.nan], 1, "finite"),
    ],
)
def test_inclusion_probabilities_errors(ratios, count, message) -> None:
    with pytest.raises(ValueError, match=message):
        inclusion_probabilities(ratios, count)


def test_tier_weighted_draw_by_hand() -> None:
    # A: 10 rows, 5 problems, ratio 3; B: 30 rows, 3 problems, ratio 1; 8 drawn:
    # 60c = 8 -> pi_A = 0.4 (4 drawn), pi_B = 2/15 (4 drawn) -> rate (2 + 0.4) / 8 = 0.3
    y = [1] * 5 + [0] * 5 + [1] * 3 + [0] * 27
    tiers = ["A"] * 10 + ["B"] * 30
    d = tier_weighted_draw(y, tiers, {"A": 3, "B": 1, "C": 2}, 8)
    assert d.expected_count == 8
    assert d.weighted_rate == pytest.approx(0.3)
    assert d.uniform_rate == pytest.approx(0.2)
    assert d.lift_pp == pytest.approx(10)
    assert d.ratio == pytest.approx(1.5)
    assert d.tier_shares == pytest.approx({"A": 0.5, "B": 0.5, "C": 0.0})
    assert list(d.tier_shares) == ["A", "B", "C"]


def test_tier_weighted_draw_with_capping_and_weights() -> None:
    # A: 2 rows (both problems), ratio 10 -> capped at 1; the other 2 expected draws spread
    # over B's 8 rows (1 problem): pi_B = 0.25 -> rate (2 + 0.25) / 4
    y = [1, 1] + [1] + [0] * 7
    tiers = ["A", "A"] + ["B"] * 8
    d = tier_weighted_draw(y, tiers, {"A": 10, "B": 1}, 4)
    assert d.weighted_rate == pytest.approx(2.25 / 4)
    assert d.uniform_rate == pytest.approx(0.3)
    assert d.lift_pp == pytest.approx(100 * (2.25 / 4 - 0.3))
    assert d.tier_shares == pytest.approx({"A": 0.5, "B": 0.5})
    # weight 2 on every B row = B rows duplicated
    w = [1, 1] + [2] * 8
    dw = tier_weighted_draw(y, tiers, {"A": 10, "B": 1}, 4, weight=w)
    dup = tier_weighted_draw(
        [1, 1] + [1, 1] + [0] * 14, ["A", "A"] + ["B"] * 16, {"A": 10, "B": 1}, 4
    )
    assert dw.weighted_rate == pytest.approx(dup.weighted_rate)
    assert dw.uniform_rate == pytest.approx(dup.uniform_rate)
    assert dw.tier_shares == pytest.approx(dup.tier_shares)


def test_tier_weighted_draw_unknown_tier_is_named() -> None:
    with pytest.raises(ValueError, match="Z"):
        tier_weighted_draw([0, 1], ["A", "Z"], {"A": 1}, 1)


# ------------------------------------------------------------------------------------------
# slices


def test_size_band_boundaries() -> None:
    capital = pd.Series([None, 0, 9.99, 10, 99.99, 100, 999.99, 1000, 5e5, 50, np.nan])
    etype = ["limited_company"] * 9 + ["individual_business", "individual_business"]
    bands = size_band(capital, etype)
    assert bands.tolist() == [
        "unknown",
        "micro",
        "micro",
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
        "individual",
        "individual",
    ]
    assert bands.index.equals(capital.index)
    # nullable dtypes with pd.NA, as read from Parquet
    nullable = size_band(
        pd.Series([1.0, None, 50], dtype="Float64"),
        pd.Series(["joint_stock", pd.NA, "individual_business"], dtype="string"),
    )
    assert nullable.tolist() == ["micro", "unknown", "individual"]


def _slice_frame(rng: np.random.Generator) -> pd.DataFrame:
    parts = []
    for name, n, signal in (("b", 600, 2.0), ("a", 600, 2.0), ("c", 600, 0.0), ("d", 12, -5)):
        y = (rng.random(n) < 0.3).astype(int)
        score = 1 / (1 + np.exp(-(signal * (y - 0.5) + rng.normal(0, 1, n))))
        parts.append(
            pd.DataFrame(
                {
                    "region": name,
                    "label": y,
                    "probability": score,
                    "coverage": 0.5 if name == "c" else 1.0,
                    "w": 2.0,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_slice_table_flags_the_constructed_worst_slice() -> None:
    frame = _slice_frame(np.random.default_rng(7))
    table = slice_table(frame, "region")
    assert table["slice"].tolist() == ["a", "b", "c", "d"]
    assert table["n"].tolist() == [600, 600, 600, 12]
    assert table["largest_gap"].tolist() == [False, False, True, False]
    assert math.isnan(table.loc[3, "roc_auc"])  # too few examples, never flagged
    assert table.loc[2, "roc_auc"] == pytest.approx(0.5, abs=0.07)
    assert table["coverage"].tolist() == pytest.approx([1, 1, 0.5, 1])
    sub = frame[frame["region"] == "a"]
    assert table.loc[0, "positives"] == sub["label"].sum()
    assert table.loc[0, "base_rate"] == pytest.approx(sub["label"].mean())
    assert table.loc[0, "mean_predicted"] == pytest.approx(sub["probability"].mean())
    assert table.loc[0, "calibration_gap"] == pytest.approx(
        sub["probability"].mean() - sub["label"].mean()
    )
    det = detection_at_share(sub["label"], sub["probability"], 0.1)
    assert table.loc[0, "detection_rate_at_share"] == pytest.approx(det.detection_rate)
    assert table.loc[0, "lift_pp"] == pytest.approx(det.lift_pp)
    overall = binary_metrics(frame["label"], frame["probability"])["roc_auc"]
    assert table.attrs["overall_roc_auc"] == pytest.approx(overall)
    assert fairness_gap(table) == pytest.approx(abs(table.loc[2, "roc_auc"] - overall))
    # a constant weight changes nothing
    weighted = slice_table(frame, "region", weight="w")
    pd.testing.assert_frame_equal(weighted, table)


def test_slice_table_tie_goes_to_first_slice_and_missing_coverage_is_nan() -> None:
    rng = np.random.default_rng(8)
    y = (rng.random(200) < 0.4).astype(int)
    p = rng.random(200)
    frame = pd.DataFrame(
        {"g": ["y"] * 100 + ["x"] * 100, "label": y, "probability": np.r_[p[:100], p[:100]]}
    )
    frame.loc[100:, "label"] = y[:100]
    table = slice_table(frame, "g", min_examples=50)
    assert table["slice"].tolist() == ["x", "y"]
    assert table["roc_auc"].iloc[0] == pytest.approx(table["roc_auc"].iloc[1])
    assert table["largest_gap"].tolist() == [True, False]
    assert table["coverage"].isna().all()


def test_fairness_gap_needs_an_overall_auc() -> None:
    table = pd.DataFrame({"roc_auc": [0.7, np.nan, 0.9]})
    assert fairness_gap(table, overall=0.75) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="overall"):
        fairness_gap(table)
    assert math.isnan(fairness_gap(pd.DataFrame({"roc_auc": [np.nan]}), overall=0.7))
