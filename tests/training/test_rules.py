"""Trigger rules: conditions, validation against a policy, force/floor semantics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.rules import Condition, RuleSet, apply_rules, load_rules
from training.tiers import PolicyError, TierPolicy, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "training" / "policies"

POLICY = TierPolicy.from_yaml_text(
    """
version: "t"
active: risk3
schemes:
  risk3:
    basis: probability
    tiers:
      - {name: low, label_en: Low, label_zh: 低, up_to: 0.3}
      - {name: medium, label_en: Medium, label_zh: 中, up_to: 0.6}
      - {name: high, label_en: High, label_zh: 高, up_to: 1.0}
  national4:
    basis: probability
    tiers:
      - {name: A, label_en: A, label_zh: A, up_to: 0.2}
      - {name: B, label_en: B, label_zh: B, up_to: 0.4}
      - {name: C, label_en: C, label_zh: C, up_to: 0.6}
      - {name: D, label_en: D, label_zh: D, up_to: 1.0}
"""
)


def _rule(rid: str, when: str, action: str, risk3: str, national4: str = "D") -> str:
    return (
        f"  - id: {rid}\n"
        f"    description_en: {rid}\n"
        f"    description_zh: {rid}\n"
        f"    when: {when}\n"
        f"    action: {action}\n"
        f"    tiers: {{risk3: {risk3}, national4: {national4}}}\n"
    )


def _rules(*rules: str) -> RuleSet:
    return RuleSet.from_yaml_text('version: "r"\nrules:\n' + "".join(rules))


def _cond(text: str) -> Condition:
    return _rules(_rule("X", text, "force", "high")).rules[0].when


# ------------------------------------------------------------------------------ defaults


def test_the_default_rules_load_and_fit_the_default_policy() -> None:
    rules = load_rules(POLICIES / "trigger_rules.yaml")
    rules.check_against(load_policy(POLICIES / "tiers.yaml"))
    first = rules.rules[0]
    assert first.id == "R01_BLACKLIST" and first.action == "force"
    assert first.tiers == {"risk3": "high", "national4": "D", "grade5": "E"}
    assert first.when.describe() == "on_black_list == 1"
    assert len(set(rules.ids)) == len(rules.ids) >= 3


def test_the_default_blacklist_rule_forces_the_worst_tier_in_every_scheme() -> None:
    policy = load_policy(POLICIES / "tiers.yaml")
    rules = load_rules(POLICIES / "trigger_rules.yaml")
    frame = pd.DataFrame({name: [0, 0] for name in _features(rules)})
    frame.loc[1, "on_black_list"] = 1
    resolved = policy.resolve(np.linspace(0.01, 0.99, 50))
    for scheme in policy.scheme_names:
        lowest = policy.tier_names(scheme)[0]
        out = apply_rules(np.array([lowest, lowest]), frame, rules, resolved, scheme)
        assert out["tier"].tolist() == [lowest, policy.tier_names(scheme)[-1]]
        assert out["rule"].iloc[1] == "R01_BLACKLIST"


def _features(rules: RuleSet) -> list[str]:
    return list(dict.fromkeys(f for r in rules.rules for f in r.when.features()))


# ------------------------------------------------------------------------------ conditions

X = pd.DataFrame({"penalty_count_1y": [0.0, 1.0, 2.0, np.nan]})


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (">", [False, False, True, False]),
        (">=", [False, True, True, False]),
        ("<", [True, False, False, False]),
        ("<=", [True, True, False, False]),
        ("==", [False, True, False, False]),
        ("!=", [True, False, True, False]),  # NaN is not "different from 1": unknown
    ],
)
def test_each_operator_and_nan_never_matches(op: str, expected: list[bool]) -> None:
    cond = _cond(f'{{feature: penalty_count_1y, op: "{op}", value: 1}}')
    assert cond.mask(X).tolist() == expected


def test_nan_never_matches_even_in_any_or_negative_looking_leaves() -> None:
    frame = pd.DataFrame(
        {
            "penalty_count_1y": pd.array([pd.NA, 1, pd.NA], dtype="Int64"),
            "complaints_90d": pd.Series([None, None, 5], dtype=object),
        }
    )
    cond = _cond(
        "{any: [{feature: penalty_count_1y, op: '!=', value: 0},"
        " {feature: complaints_90d, op: '<', value: 3}]}"
    )
    assert cond.mask(frame).tolist() == [False, True, False]


def test_all_and_any_nest() -> None:
    frame = pd.DataFrame(
        {
            "on_black_list": [1, 0, 0, 0, 1],
            "penalty_count_1y": [0, 2, 2, 0, 0],
            "complaints_90d": [0, 0, 5, 5, np.nan],
        }
    )
    cond = _cond(
        "{any: [{feature: on_black_list, op: '==', value: 1},"
        " {all: [{feature: penalty_count_1y, op: '>=', value: 1},"
        "        {any: [{feature: complaints_90d, op: '>=', value: 3},"
        "               {feature: complaints_90d, op: '<', value: 0}]}]}]}"
    )
    assert cond.mask(frame).tolist() == [True, False, True, False, True]
    only_all = _cond(
        "{all: [{feature: on_black_list, op: '==', value: 1},"
        " {feature: complaints_90d, op: '>=', value: 0}]}"
    )
    assert only_all.mask(frame).tolist() == [True, False, False, False, False]  # NaN fails all
    assert only_all.describe() == "(on_black_list == 1 and complaints_90d >= 0)"


def test_evaluate_is_a_boolean_matrix_in_file_order_keeping_the_index() -> None:
    rules = _rules(
        _rule("B", "{feature: penalty_count_1y, op: '>=', value: 1}", "floor", "medium"),
        _rule("A", "{feature: on_black_list, op: '==', value: 1}", "force", "high"),
    )
    frame = pd.DataFrame(
        {"penalty_count_1y": [0, 3, 1], "on_black_list": [1, 0, 1]}, index=[10, 20, 30]
    )
    m = rules.evaluate(frame)
    assert list(m.columns) == ["B", "A"]
    assert list(m.index) == [10, 20, 30]
    assert all(d == np.dtype(bool) for d in m.dtypes)
    assert m.to_numpy().tolist() == [[False, True], [True, False], [True, True]]


def test_a_missing_or_text_column_is_named() -> None:
    cond = _cond("{feature: complaints_90d, op: '>', value: 1}")
    with pytest.raises(ValueError, match=r"complaints_90d.*missing"):
        cond.mask(pd.DataFrame({"other": [1]}))
    with pytest.raises(ValueError, match=r"complaints_90d.*not numeric"):
        cond.mask(pd.DataFrame({"complaints_90d": ["many"]}))


# ------------------------------------------------------------------------------ structure

BROKEN_RULES = {
    "unknown op": ("{feature: on_black_list, op: '=~', value: 1}", ["rule 'X'", "op"]),
    "leaf without value": ("{feature: on_black_list, op: '=='}", ["rule 'X'", "missing value"]),
    "leaf and all at once": (
        "{feature: on_black_list, op: '==', value: 1, all: [{feature: a, op: '>', value: 1}]}",
        ["rule 'X'", "either"],
    ),
    "empty any": ("{any: []}", ["rule 'X'", "any: needs at least one condition"]),
    "text value": ("{feature: on_black_list, op: '==', value: 'yes'}", ["rule 'X'", "value"]),
    "flag value": ("{feature: on_black_list, op: '==', value: true}", ["rule 'X'", "value"]),
    "unknown key in a nested leaf": (
        "{all: [{feature: on_black_list, op: '==', value: 1, weight: 2}]}",
        ["rule 'X'", "when.all[0]", "unknown key 'weight'"],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_RULES), ids=list(BROKEN_RULES))
def test_structurally_broken_rules_are_rejected_naming_the_rule(case: str) -> None:
    when, fragments = BROKEN_RULES[case]
    with pytest.raises(PolicyError) as info:
        _rules(_rule("X", when, "force", "high"))
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_bad_action_and_eval_like_text_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: "r"\nrules:\n'
        + _rule("X", "{feature: on_black_list, op: '==', value: 1}", "raise", "high")
        + _rule("Y", "'on_black_list == 1'", "force", "high"),
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    assert "rule 'X'" in message and "action" in message
    assert "rule 'Y'" in message and "when" in message


def test_check_against_lists_every_problem() -> None:
    rules = _rules(
        _rule("R1", "{feature: on_blacklist, op: '==', value: 1}", "force", "high"),
        _rule("R2", "{feature: industry, op: '==', value: 1}", "floor", "severe"),
        _rule("R1", "{feature: penalty_count_1y, op: '>', value: 0}", "floor", "medium", "Z"),
        "  - id: R4\n    description_en: x\n    description_zh: x\n"
        "    when: {feature: penalty_count_1y, op: '>', value: 0}\n"
        "    action: floor\n    tiers: {risk3: medium, risk5: x}\n",
    )
    with pytest.raises(PolicyError) as info:
        rules.check_against(POLICY)
    problems = info.value.problems
    expected = [
        "duplicate rule id 'R1'",
        "rule 'R1': unknown feature 'on_blacklist' (did you mean 'on_black_list'?)",
        "rule 'R2': feature 'industry' is categorical",
        "rule 'R2': scheme 'risk3' has no tier 'severe'",
        "rule 'R1': scheme 'national4' has no tier 'Z'",
        "rule 'R4': unknown scheme 'risk5'",
        "rule 'R4': no tier given for scheme 'national4'",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert len(problems) == len(expected)


def test_round_trip_and_fingerprint() -> None:
    rules = load_rules(POLICIES / "trigger_rules.yaml")
    again = RuleSet.from_yaml_text(rules.to_yaml())
    assert again == rules
    assert again.fingerprint() == rules.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", rules.fingerprint())
    a = _rules(_rule("X", "{feature: problems_found_1y, op: '>=', value: 2}", "floor", "medium"))
    b = _rules(_rule("X", "{feature: problems_found_1y, op: '>=', value: 3}", "floor", "medium"))
    assert a.fingerprint() != b.fingerprint()


# ------------------------------------------------------------------------------ apply_rules

FRAME = pd.DataFrame(
    {
        "on_black_list": [0, 1, 0, 0, 0, 1, 0],
        "on_red_list": [0, 0, 1, 0, 0, 0, 0],
        "penalty_count_1y": [0, 2, 0, 2, 1, 0, np.nan],
        "problems_found_1y": [0, 0, 0, 3, 0, 0, np.nan],
    },
    index=list("abcdefg"),
)
RULES = _rules(
    _rule("F_PENALTY", "{feature: penalty_count_1y, op: '>=', value: 1}", "floor", "medium"),
    _rule("F_PROBLEMS", "{feature: problems_found_1y, op: '>=', value: 2}", "floor", "high"),
    _rule("F_PENALTY2", "{feature: penalty_count_1y, op: '>=', value: 2}", "floor", "medium"),
    _rule("X_RED", "{feature: on_red_list, op: '==', value: 1}", "force", "low", "A"),
    _rule("X_BLACK", "{feature: on_black_list, op: '==', value: 1}", "force", "high"),
)


def test_force_floor_and_the_deciding_rule() -> None:
    model = np.array(["low", "low", "high", "low", "high", "high", "low"], dtype=object)
    out = apply_rules(model, FRAME, RULES, POLICY, "risk3")
    assert list(out.columns) == ["tier", "model_tier", "rule", "rules_fired"]
    assert list(out.index) == list("abcdefg")
    assert out["model_tier"].tolist() == model.tolist()
    assert out["tier"].tolist() == ["low", "high", "low", "high", "high", "high", "low"]
    rule = [None if pd.isna(r) else r for r in out["rule"]]
    assert rule == [
        None,  # a: nothing fired
        "X_BLACK",  # b: force beats the two floors that also matched
        "X_RED",  # c: a force may lower the model's tier
        "F_PROBLEMS",  # d: the highest floor wins
        None,  # e: a floor below the model's tier never lowers it, and did not decide
        "X_BLACK",  # f: a force to the model's own tier still decided it
        None,  # g: NaN features match nothing
    ]
    assert out["rules_fired"].tolist() == [
        "",
        "F_PENALTY;F_PENALTY2;X_BLACK",
        "X_RED",
        "F_PENALTY;F_PROBLEMS;F_PENALTY2",
        "F_PENALTY",
        "X_BLACK",
        "",
    ]


def test_among_equal_floors_or_forces_the_first_in_file_order_decides() -> None:
    model = np.array(["low", "low"], dtype=object)
    frame = FRAME.loc[["d", "b"]].assign(problems_found_1y=0)
    out = apply_rules(model, frame, RULES, POLICY, "risk3")
    assert out["tier"].tolist() == ["medium", "high"]
    assert out["rule"].tolist() == ["F_PENALTY", "X_BLACK"]  # not F_PENALTY2


def test_the_most_severe_force_wins_whatever_the_file_order() -> None:
    both = FRAME.loc[["c"]].assign(on_black_list=1)
    for order in (RULES.rules, RULES.rules[::-1]):
        rules = RuleSet(version="r", rules=order)
        out = apply_rules(np.array(["medium"]), both, rules, POLICY, "risk3")
        assert out["tier"].tolist() == ["high"] and out["rule"].tolist() == ["X_BLACK"]


def test_rules_use_each_schemes_own_tier() -> None:
    model = np.array(["B"] * 7, dtype=object)
    out = apply_rules(model, FRAME, RULES, POLICY, "national4")
    assert out["tier"].tolist() == ["B", "D", "A", "D", "D", "D", "B"]


def test_apply_rules_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="7 rows"):
        apply_rules(np.array(["low"]), FRAME, RULES, POLICY, "risk3")
    with pytest.raises(ValueError, match=r"not in scheme 'risk3'.*severe"):
        apply_rules(np.array(["severe"] * 7), FRAME, RULES, POLICY, "risk3")
    bad = _rules(_rule("X", "{feature: on_black_list, op: '==', value: 1}", "force", "worst"))
    with pytest.raises(PolicyError, match="no tier 'worst'"):
        apply_rules(np.array(["low"] * 7), FRAME, bad, POLICY, "risk3")


def test_no_rules_leave_the_model_tier() -> None:
    out = apply_rules(np.array(["medium"] * 7), FRAME, RuleSet(version="0"), POLICY, "risk3")
    assert (out["tier"] == "medium").all() and out["rule"].isna().all()
    assert (out["rules_fired"] == "").all()


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["low", "medium", "high"]),
            st.sampled_from([0.0, 1.0, 2.0, 3.0, np.nan]),
            st.sampled_from([0.0, 1.0, 2.0, 3.0, np.nan]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_floors_never_lower_and_always_reach_their_floor(rows) -> None:
    model = np.array([r[0] for r in rows], dtype=object)
    frame = pd.DataFrame(
        {"penalty_count_1y": [r[1] for r in rows], "problems_found_1y": [r[2] for r in rows]}
    )
    floors = RuleSet(version="f", rules=tuple(r for r in RULES.rules if r.action == "floor"))
    out = apply_rules(model, frame, floors, POLICY, "risk3")
    rank = {"low": 0, "medium": 1, "high": 2}
    final = out["tier"].map(rank).to_numpy()
    before = out["model_tier"].map(rank).to_numpy()
    assert (final >= before).all()
    fired = floors.evaluate(frame).to_numpy()
    targets = np.array([rank[r.tiers["risk3"]] for r in floors.rules])
    need = np.where(fired, targets, 0).max(axis=1)
    assert (final == np.maximum(before, need)).all()
    changed = final != before
    assert out["rule"].notna().to_numpy().tolist() == changed.tolist()
