"""Tier policy: validation (both ways), resolution of shares, assignment, round trips."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from training.tiers import PolicyError, TierPolicy, load_policy

DEFAULT = Path(__file__).resolve().parents[2] / "training" / "policies" / "tiers.yaml"

# A small valid policy; the broken variants below each change one thing in it.
GOOD = """
version: "t1"
active: risk3
schemes:
  risk3:
    basis: probability
    tiers:
      - {name: low, label_en: Low, label_zh: 低, up_to: 0.2, sampling_ratio: 0.05}
      - {name: medium, label_en: Medium, label_zh: 中, up_to: 0.5, sampling_ratio: 0.2}
      - {name: high, label_en: High, label_zh: 高, up_to: 1.0, sampling_ratio: 0.6}
  national4:
    basis: share
    tiers:
      - {name: A, label_en: A, label_zh: A, share: 0.4}
      - {name: B, label_en: B, label_zh: B, share: 0.35}
      - {name: C, label_en: C, label_zh: C, share: 0.15}
      - {name: D, label_en: D, label_zh: D, share: 0.1}
"""


def _variant(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def _problems(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        TierPolicy.from_yaml_text(text, source="policy.yaml")
    return info.value


# ------------------------------------------------------------------------------ validation


def test_the_default_policy_loads_and_is_what_the_service_expects() -> None:
    policy = load_policy(DEFAULT)
    assert policy.active == "risk3"
    assert policy.scheme_names == ("risk3", "national4", "grade5")
    assert policy.tier_names("risk3") == ("low", "medium", "high")
    assert policy.tier_names("national4") == ("A", "B", "C", "D")
    assert policy.tier_names("grade5") == ("A", "B", "C", "D", "E")
    assert policy.schemes["risk3"].basis == "share"
    assert [t.share for t in policy.schemes["risk3"].tiers] == [0.6, 0.3, 0.1]
    assert policy.schemes["grade5"].basis == "probability"
    assert policy.schemes["grade5"].cutoffs[-1] == 1.0
    for scheme in policy.scheme_names:
        ratios = list(policy.sampling_ratios(scheme).values())
        assert ratios == sorted(ratios) and ratios[0] < ratios[-1]


def test_the_good_inline_policy_loads() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    assert policy.rank("risk3", "high") == 2
    assert policy.rank(None, "low") == 0  # the active scheme
    assert policy.rank("national4", "A") == 0  # A is the LOWEST risk


BROKEN = {
    "unknown key in a tier": (
        _variant("share: 0.1}", "share: 0.1, colour: red}"),
        ["scheme 'national4', tier 'D'", "unknown key 'colour'"],
    ),
    "unknown top-level key": (_variant('version: "t1"', 'version: "t1"\nowner: me'), ["owner"]),
    "unknown key in a scheme": (
        _variant("basis: share", "basis: share\n    cutoffs: [1]"),
        ["scheme 'national4'", "unknown key 'cutoffs'"],
    ),
    "tier with both up_to and share": (
        _variant("up_to: 0.5,", "up_to: 0.5, share: 0.3,"),
        ["scheme 'risk3'", "tier 'medium'", "mixed basis", "'share'"],
    ),
    "share in a probability scheme": (
        _variant("up_to: 0.5,", "share: 0.5,"),
        ["scheme 'risk3'", "tier 'medium'", "mixed basis", "missing 'up_to'"],
    ),
    "up_to in a share scheme": (
        _variant("share: 0.35}", "up_to: 0.35}"),
        ["scheme 'national4'", "tier 'B'", "mixed basis", "missing 'share'"],
    ),
    "cut-offs not increasing": (
        _variant("up_to: 0.5,", "up_to: 0.2,"),
        ["scheme 'risk3'", "tier 'medium'", "not ordered"],
    ),
    "last cut-off below 1": (
        _variant("up_to: 1.0,", "up_to: 0.9,"),
        ["scheme 'risk3'", "tier 'high'", "not covering", "1.0"],
    ),
    "first cut-off at 0": (
        _variant("up_to: 0.2,", "up_to: 0,"),
        ["scheme 'risk3'", "tier 'low'", "> 0"],
    ),
    "cut-off above 1": (
        _variant("up_to: 0.5,", "up_to: 1.5,"),
        ["scheme 'risk3'", "tier 'medium'", "outside [0, 1]"],
    ),
    "shares with a gap": (
        _variant("share: 0.35}", "share: 0.30}"),
        ["scheme 'national4'", "sum to 0.95", "no gaps"],
    ),
    "negative share": (
        _variant("share: 0.35}", "share: -0.35}"),
        ["scheme 'national4'", "tier 'B'", "share -0.35"],
    ),
    "duplicate tier names": (
        _variant("{name: C,", "{name: B,"),
        ["scheme 'national4'", "duplicate tier name 'B'"],
    ),
    "a single tier": (
        """
version: "1"
active: one
schemes:
  one:
    basis: probability
    tiers: [{name: all, label_en: All, label_zh: 全部, up_to: 1.0}]
""",
        ["scheme 'one'", "at least 2 tiers"],
    ),
    "active not a scheme": (
        _variant("active: risk3", "active: risk5"),
        ["active", "'risk5' is not a scheme"],
    ),
    "sampling ratio above 1": (
        _variant("sampling_ratio: 0.6}", "sampling_ratio: 1.6}"),
        ["scheme 'risk3'", "tier 'high'", "sampling_ratio 1.6 is outside [0, 1]"],
    ),
    "riskier tier sampled less": (
        _variant("sampling_ratio: 0.6}", "sampling_ratio: 0.1}"),
        ["scheme 'risk3'", "tier 'high'", "sampled less"],
    ),
    "sampling ratio on some tiers only": (
        _variant(", sampling_ratio: 0.2}", "}"),
        ["scheme 'risk3'", "['medium']", "all or none"],
    ),
    "a flag where a number belongs": (
        _variant("up_to: 0.5,", "up_to: true,"),
        ["scheme 'risk3'", "tier 'medium'", "up_to"],
    ),
    "NaN cut-off": (
        _variant("up_to: 0.5,", "up_to: .nan,"),
        ["scheme 'risk3'", "tier 'medium'", "up_to"],
    ),
    "missing label": (
        _variant("label_zh: 中, ", ""),
        ["scheme 'risk3'", "tier 'medium'", "missing key 'label_zh'"],
    ),
    "unknown basis": (_variant("basis: share", "basis: rank"), ["scheme 'national4'", "basis"]),
    "not YAML": ("version: [1\n", ["not valid YAML"]),
    "not a mapping": ("- a\n- b\n", ["expected a mapping"]),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_each_kind_of_broken_policy_is_rejected_with_a_precise_message(case: str) -> None:
    text, fragments = BROKEN[case]
    err = _problems(text)
    message = str(err)
    assert message.startswith("policy.yaml: ")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_every_problem_is_listed_at_once_with_the_file_path(tmp_path: Path) -> None:
    text = (
        GOOD.replace("up_to: 0.5,", "up_to: 0.1,")  # risk3 medium: not ordered
        .replace("up_to: 1.0,", "up_to: 0.95,")  # risk3 high: not covering
        .replace("share: 0.35}", "share: 0.30}")  # national4: gap
        .replace("{name: C,", "{name: B,")  # national4: duplicate
        .replace("active: risk3", "active: nope")
    )
    path = tmp_path / "tiers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert str(path) in str(err)
    assert len(err.problems) == 5, err.problems
    for fragment in ("not ordered", "not covering", "no gaps", "duplicate tier name", "'nope'"):
        assert sum(fragment in p for p in err.problems) == 1, (fragment, err.problems)


def test_a_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such tier policy file"):
        load_policy(tmp_path / "absent.yaml")


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


# ------------------------------------------------------------------------------ resolve


def _realised(policy: TierPolicy, scheme: str, p: np.ndarray) -> np.ndarray:
    tiers = policy.assign(p, scheme)
    return np.array([(tiers == t).mean() for t in policy.tier_names(scheme)])


def test_resolve_on_distinct_scores_gives_the_target_shares_exactly() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    p = np.random.default_rng(3).permutation(np.linspace(0.001, 0.9, 1000))
    resolved = policy.resolve(p)
    scheme = resolved.schemes["national4"]
    assert scheme.basis == "probability"
    assert scheme.resolved_from is not None
    assert scheme.resolved_from.shares == (0.4, 0.35, 0.15, 0.1)
    assert scheme.resolved_from.population == 1000
    assert all(t.share is None for t in scheme.tiers)
    np.testing.assert_allclose(_realised(resolved, "national4", p), [0.4, 0.35, 0.15, 0.1])
    # probability schemes are left alone
    assert resolved.schemes["risk3"] == policy.schemes["risk3"]


@pytest.mark.parametrize("n", [7, 101, 9_999])
def test_resolve_on_a_skewed_population_is_within_one_over_n(n: int) -> None:
    policy = load_policy(DEFAULT)
    p = np.random.default_rng(n).beta(1.2, 8.0, n)
    resolved = policy.resolve(p)
    for name, scheme in policy.schemes.items():
        if scheme.basis != "share":
            continue
        target = np.array([t.share for t in scheme.tiers])
        realised = _realised(resolved, name, p)
        assert np.abs(realised - target).max() <= 1 / n + 1e-12
        # cumulative shares are rounded to the nearest enterprise
        assert np.abs(np.cumsum(realised) - np.cumsum(target)).max() <= 0.5 / n + 1e-12


def test_ties_at_a_cut_off_go_to_the_lower_tier() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    # 50 % of the population shares one score: the A/B cut-off (at 40 %) lands on it.
    p = np.concatenate([np.linspace(0.01, 0.09, 20), np.full(50, 0.1), np.linspace(0.2, 0.9, 30)])
    resolved = policy.resolve(p)
    cut = resolved.schemes["national4"].cutoffs
    assert cut[0] == 0.1
    tiers = resolved.assign(p, "national4")
    assert set(tiers[p == 0.1]) == {"A"}
    shares = _realised(resolved, "national4", p)
    # A takes the whole tie (70 % instead of 40 %): the error is bounded by 1/n + tied mass.
    assert shares[0] == pytest.approx(0.7)
    assert abs(shares[0] - 0.4) <= 1 / p.size + 0.5


def test_resolved_cut_offs_stay_strictly_increasing_when_quantiles_coincide() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    for p in (np.full(10, 0.3), np.zeros(5), np.ones(5), np.array([0.0, 1.0])):
        resolved = policy.resolve(p)
        cut = resolved.schemes["national4"].cutoffs
        assert (np.diff(cut) > 0).all(), (p, cut)
        assert cut[0] > 0 and cut[-1] == 1.0
        # still a valid policy after a YAML round trip
        assert TierPolicy.from_yaml_text(resolved.to_yaml()) == resolved
        # every score still gets a tier
        assert resolved.assign(p, "national4").size == p.size


def test_resolve_is_deterministic_and_order_free() -> None:
    policy = load_policy(DEFAULT)
    p = np.random.default_rng(1).uniform(size=500)
    first = policy.resolve(p)
    assert policy.resolve(p[::-1].copy()) == first
    assert first.fingerprint() == policy.resolve(p).fingerprint()
    assert first.resolve(np.random.default_rng(2).uniform(size=50)) == first  # nothing left


@pytest.mark.parametrize(
    "bad", [np.array([0.2, np.nan]), np.array([0.2, 1.01]), np.array([-0.1]), np.array([])]
)
def test_resolve_rejects_unusable_populations(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        TierPolicy.from_yaml_text(GOOD).resolve(bad)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(0.0, 1.0, allow_nan=False) | st.sampled_from([0.0, 0.25, 1.0]),
        min_size=1,
        max_size=60,
    )
)
def test_resolve_always_gives_a_valid_policy(values: list[float]) -> None:
    p = np.array(values)
    resolved = load_policy(DEFAULT).resolve(p)
    for name in resolved.scheme_names:
        cut = resolved.schemes[name].cutoffs
        assert (np.diff(cut) > 0).all() and cut[0] > 0 and cut[-1] == 1.0
        assert resolved.assign(p, name).size == p.size
    assert TierPolicy.from_yaml_text(resolved.to_yaml()) == resolved


# ------------------------------------------------------------------------------ assign


def test_assign_at_the_exact_cut_offs_and_just_above() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    p = np.array([0.0, 0.2, np.nextafter(0.2, 1), 0.5, np.nextafter(0.5, 1), 1.0])
    tiers = policy.assign(p, "risk3")
    assert tiers.tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert tiers.dtype == object
    assert policy.assign(p).tolist() == tiers.tolist()  # active scheme by default


@pytest.mark.parametrize("bad", [np.nan, -1e-9, 1.0000001, np.inf])
def test_assign_rejects_nan_and_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or outside"):
        TierPolicy.from_yaml_text(GOOD).assign(np.array([0.1, bad]))


def test_assign_needs_a_resolved_scheme() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    with pytest.raises(PolicyError, match=r"national4.*share-based.*resolve"):
        policy.assign(np.array([0.1]), "national4")
    with pytest.raises(PolicyError, match="no tier scheme 'risk9'"):
        policy.assign(np.array([0.1]), "risk9")


@st.composite
def _cutoffs_and_pairs(draw):
    inner = draw(
        st.lists(st.floats(1e-6, 1.0, exclude_max=True), min_size=1, max_size=6, unique=True)
    )
    cut = [*sorted(inner), 1.0]
    probs = draw(st.lists(st.floats(0.0, 1.0) | st.sampled_from(cut), min_size=2, max_size=40))
    return cut, np.array(probs)


@settings(max_examples=100, deadline=None)
@given(_cutoffs_and_pairs())
def test_a_higher_probability_never_gets_a_lower_tier(case) -> None:
    cut, p = case
    tiers = [
        {"name": f"T{i}", "label_en": f"T{i}", "label_zh": f"T{i}", "up_to": c}
        for i, c in enumerate(cut)
    ]
    policy = TierPolicy.model_validate(
        {"version": "h", "active": "s", "schemes": {"s": {"basis": "probability", "tiers": tiers}}}
    )
    names = policy.assign(p, "s")
    ranks = np.array([policy.rank("s", n) for n in names])
    order = np.argsort(p, kind="stable")
    assert (np.diff(ranks[order]) >= 0).all()
    # and each probability sits inside its tier's interval
    up = np.array(cut)[ranks]
    low = np.concatenate([[-np.inf], cut])[ranks]
    assert ((p <= up) & (p > low)).all()


# ------------------------------------------------------------------------------ round trip etc.


def test_yaml_round_trip_of_the_default_and_a_resolved_policy() -> None:
    policy = load_policy(DEFAULT)
    assert TierPolicy.from_yaml_text(policy.to_yaml()) == policy
    resolved = policy.resolve(np.random.default_rng(0).beta(1, 5, 2000))
    again = TierPolicy.from_yaml_text(resolved.to_yaml())
    assert again == resolved
    assert again.fingerprint() == resolved.fingerprint()
    assert again.schemes["risk3"].resolved_from == resolved.schemes["risk3"].resolved_from


def test_fingerprint_changes_when_a_cut_off_changes() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    assert re.fullmatch(r"[0-9a-f]{12}", policy.fingerprint())
    moved = TierPolicy.from_yaml_text(_variant("up_to: 0.5,", "up_to: 0.5000001,"))
    assert moved.fingerprint() != policy.fingerprint()
    # comments and layout do not matter, content does
    reformatted = TierPolicy.from_yaml_text("# a comment\n" + policy.to_yaml())
    assert reformatted.fingerprint() == policy.fingerprint()
    relabelled = TierPolicy.from_yaml_text(_variant("label_zh: 高", "label_zh: 高风险"))
    assert relabelled.fingerprint() != policy.fingerprint()


def test_sampling_ratios_and_rank() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    assert policy.sampling_ratios("risk3") == {"low": 0.05, "medium": 0.2, "high": 0.6}
    assert list(policy.sampling_ratios()) == ["low", "medium", "high"]
    with pytest.raises(PolicyError, match=r"national4.*no sampling ratios"):
        policy.sampling_ratios("national4")
    assert [policy.rank("national4", t) for t in "ABCD"] == [0, 1, 2, 3]
    with pytest.raises(PolicyError, match="no tier 'E'"):
        policy.rank("national4", "E")


def test_policies_are_frozen() -> None:
    policy = TierPolicy.from_yaml_text(GOOD)
    with pytest.raises(ValueError):
        policy.active = "national4"  # type: ignore[misc]


def test_the_default_file_documents_itself_in_both_languages() -> None:
    text = DEFAULT.read_text(encoding="utf-8")
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert any(re.search(r"[\u4e00-\u9fff]", c) for c in comments)
    assert any(re.search(r"[A-Za-z]{4,}", c) for c in comments)
    assert yaml.safe_load(text)["active"] == "risk3"
