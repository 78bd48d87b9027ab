"""Properties every draw must have, whatever the pool, roster and policy (hypothesis).

Teams: exact size, distinct members, same department and region as the target, no declared
conflict, never the previous team, load caps respected. Probabilities: every eligible
enterprise has π ≥ floor, excluded ones π = 0. Quotas: each cell gets exactly its count, the
quota policy's risk arm holds exactly the quota with at least the high-risk share.
A refusal is allowed only when it is true (checked for the inspector-count refusal).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from serving.draws import DrawRefused, draw
from serving.draws.synthetic import example_inputs, inspectors_frame, pool_frame

TIERS = ["A", "B", "C", "D"]
SEED = "property-seed"


@st.composite
def scenarios(draw_: st.DrawFn) -> dict:
    n = draw_(st.integers(4, 50))
    regions = draw_(st.integers(1, 3))
    pool = pool_frame(n, seed=draw_(st.integers(0, 10_000)), regions=regions, industries=2)
    staff = inspectors_frame(
        draw_(st.integers(2 * regions, 8 * regions)),
        pool,
        seed=draw_(st.integers(0, 10_000)),
        conflict_rate=draw_(st.sampled_from([0.0, 0.3, 0.6])),
    )
    if draw_(st.booleans()):
        allocation = {
            "kind": "ratios",
            "tiers": TIERS,
            "ratios": {t: draw_(st.integers(0, 100)) / 100 for t in TIERS},
        }
    else:
        allocation = {
            "kind": "quota",
            "tiers": TIERS,
            "quota": draw_(st.integers(min(n, 12), n)),
            "high_risk_tiers": draw_(st.lists(st.sampled_from(TIERS), min_size=1, unique=True)),
            "min_high_risk_share": draw_(st.integers(0, 60)) / 100,
        }
    policy = {
        "allocation": allocation,
        "floor": draw_(st.sampled_from([0.01, 0.05, 0.2])),
        "stratify_by": draw_(st.sampled_from([None, "region", "industry"])),
        "control_fraction": draw_(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
        "exclusions": {"inspected_within_days": 60, "yearly_cap": 2},
        "teams": {
            "team_size": draw_(st.integers(2, 3)),
            "load_cap": draw_(st.one_of(st.none(), st.integers(4, 16))),
        },
    }
    previous = {}
    for code, region in zip(pool["credit_code"], pool["region"], strict=True):
        mates = staff.loc[staff["region"] == region, "inspector_id"].tolist()
        size = policy["teams"]["team_size"]
        if len(mates) >= size and draw_(st.integers(0, 3)) == 0:
            previous[code] = tuple(draw_(st.permutations(mates))[:size])
    return {"pool": pool, "inspectors": staff, "policy": policy, "previous_teams": previous}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.text(min_size=1, max_size=12))
def test_draw_invariants(scenario: dict, seed: str) -> None:
    inputs = example_inputs(seed, **scenario)
    policy = inputs.policy
    try:
        result = draw(inputs, seed)
    except DrawRefused as exc:
        event("refused: " + re.sub(r"[0-9]+|region \S+|target \S+", "#", str(exc))[:60])
        check_refusal_is_true(str(exc), inputs)
        return
    except ValueError as exc:
        event("empty pool")
        assert "empty after exclusions" in str(exc)
        return
    event("drawn")

    pop = result.population
    eligible = pop["excluded_reason"] == ""
    assert (pop.loc[eligible, "pi"] >= policy.floor - 1e-12).all()
    assert (pop.loc[eligible, "pi_risk"] >= policy.floor - 1e-12).all()
    assert (pop.loc[~eligible, "pi"] == 0).all()
    assert (pop.loc[~eligible, "arm"] == "").all()

    # Each cell holds exactly its allocated count; the control arm exactly its size.
    risk = pop[pop["arm"].isin(["risk", "both"])]
    drawn = Counter(zip(risk["stratum"], risk["tier"], strict=True))
    for cell in result.receipt["cells"]:
        assert drawn[(cell["stratum"], cell["tier"])] == cell["n"] <= cell["N"]
        assert Fraction(cell["n"], cell["N"]) >= Fraction(repr(policy.floor))
    counts = result.receipt["counts"]
    assert pop["arm"].isin(["control", "both"]).sum() == counts["control"]
    alloc = policy.allocation
    if alloc.kind == "quota":
        assert len(risk) == alloc.quota
        high = risk["tier"].isin(alloc.high_risk_tiers).sum()
        assert high >= math.ceil(Fraction(repr(alloc.min_high_risk_share)) * alloc.quota)

    # Teams.
    staff = inputs.inspectors
    where = {i: k for k, i in enumerate(staff.ids)}
    assigned = Counter()
    rules = policy.teams
    for row in result.targets.itertuples():
        team = result.teams[row.credit_code]
        assert len(team) == rules.team_size == len(set(team))
        for member in team:
            k = where[member]
            assert staff.region[k] == row.region
            assert staff.department[k] == row.department
            assert row.credit_code not in staff.conflicts[k]
            assigned[member] += 1
        previous = inputs.previous_teams.get(row.credit_code)
        assert previous is None or set(previous) != set(team)
    if rules.load_cap is not None:
        for member, extra in assigned.items():
            assert staff.load[where[member]] + extra <= rules.load_cap


def check_refusal_is_true(message: str, inputs) -> None:
    """The inspector-count refusal must state true counts; others must name what failed."""
    m = re.match(r"region (\S+), department (\S+): (\d+) eligible inspectors? for", message)
    if m:
        region, dept, usable = m.group(1), m.group(2), int(m.group(3))
        staff = inputs.inspectors
        cap = inputs.policy.teams.load_cap
        capacity = [
            (cap is None or staff.load[k] < cap)
            for k in range(len(staff))
            if staff.region[k] == region and staff.department[k] == dept
        ]
        assert usable == int(np.sum(capacity)) < inputs.policy.teams.team_size
        return
    assert re.match(r"(region \S+, department \S+: |allocation\.)", message), message
