"""Properties every draw must have, whatever the pool, roster and policy (hypothesis).

Teams: exact size, distinct members, same department and region as the target, no declared
conflict, never the previous team, load caps respected. Probabilities: every eligible
enterprise has π ≥ floor, excluded ones π = 0. Quotas: each cell gets exactly its count, the
quota policy's risk arm holds exactly the quota with at least the high-risk share.
A refusal is allowed only when it is true (checked for the inspector-count refusal; for teams
alone, refused if and only if no assignment exists: max-flow without previous teams, an
exhaustive search with them).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from fractions import Fraction
from unittest import mock

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from serving.draws import DrawRefused, draw
from serving.draws.policy import TeamRules
from serving.draws.synthetic import example_inputs, inspectors_frame, pool_frame
from serving.draws.teams import InspectorTable, Target, _Exact, _Repair, assign_teams

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


# --- teams alone: refused if and only if no assignment exists (SPEC §7, walk + repair) --------
@st.composite
def rosters(draw_: st.DrawFn) -> dict:
    """Up to two groups of a few targets and inspectors, with random conflicts, loads and caps;
    half of them built around a hidden assignment that uses every place (feasible but tight,
    where the walk alone most often ends short)."""
    size = draw_(st.integers(2, 3))
    regions = ["330101", "330102"][: draw_(st.integers(1, 2))]
    n_targets = draw_(st.integers(1, 10))
    codes = [f"91330101{k:010d}" for k in range(n_targets)]
    target_region = [draw_(st.sampled_from(regions)) for _ in codes]
    n_staff = draw_(st.integers(size, 3 + 3 * size))
    staff_region = [draw_(st.sampled_from(regions)) for _ in range(n_staff)]
    planted: set[tuple[str, int]] = set()
    if draw_(st.booleans()):
        for c, r in zip(codes, target_region, strict=True):
            mates = [k for k in range(n_staff) if staff_region[k] == r]
            if len(mates) >= size:
                planted |= {(c, k) for k in draw_(st.permutations(mates))[:size]}
        used = Counter(k for _, k in planted)
        cap = max(2, max(used.values(), default=0))
        loads = [max(0, cap - used[k] - draw_(st.integers(0, 1))) for k in range(n_staff)]
    else:
        cap = draw_(st.one_of(st.none(), st.integers(2, 5)))
        loads = [draw_(st.integers(0, 2)) for _ in range(n_staff)]
    staff = []
    for k in range(n_staff):
        mine = [c for c, r in zip(codes, target_region, strict=True) if r == staff_region[k]]
        conflicts = [c for c in mine if (c, k) not in planted and draw_(st.integers(0, 4)) == 0]
        staff.append({"inspector_id": f"I{k:02d}", "department": "market",
                      "region": staff_region[k], "conflicts": conflicts, "load": loads[k]})  # fmt: skip
    return {
        "targets": [Target(c, c.encode(), r, "market") for c, r in zip(codes, target_region, strict=True)],
        "staff": InspectorTable.from_frame(pd.DataFrame(staff)),
        "rules": TeamRules(team_size=size, load_cap=cap),
        "skey": draw_(st.integers(0, 2**64 - 1)),
    }  # fmt: skip


def most_places(targets: list[Target], staff: InspectorTable, rules: TeamRules) -> int:
    """Max-flow (scipy): source → target (team_size) → eligible inspector (1) → sink (capacity)."""
    n, m = len(targets), len(staff)
    graph = np.zeros((n + m + 2, n + m + 2), dtype=np.int32)
    source, sink = n + m, n + m + 1
    for t, target in enumerate(targets):
        graph[source, t] = rules.team_size
        for k in range(m):
            same = (staff.region[k], staff.department[k]) == (target.region, target.department)
            if same and target.code not in staff.conflicts[k]:
                graph[t, n + k] = 1
    for k in range(m):
        cap = n if rules.load_cap is None else max(0, rules.load_cap - int(staff.load[k]))
        graph[n + k, sink] = cap
    return maximum_flow(csr_matrix(graph), source, sink).flow_value


def check_teams(teams: dict, targets, staff: InspectorTable, rules: TeamRules, previous) -> None:
    """Every rule of SPEC §7 on an assignment."""
    where = {i: k for k, i in enumerate(staff.ids)}
    assigned: Counter = Counter()
    assert sorted(teams) == sorted(t.code for t in targets)
    for target in targets:
        team = teams[target.code]
        assert len(team) == rules.team_size == len(set(team))
        for member in team:
            k = where[member]
            assert (staff.region[k], staff.department[k]) == (target.region, target.department)
            assert target.code not in staff.conflicts[k]
            assigned[member] += 1
        assert set(team) != set(previous.get(target.code, ()))
    if rules.load_cap is not None:
        for member, extra in assigned.items():
            assert staff.load[where[member]] + extra <= rules.load_cap


@settings(max_examples=400, deadline=None)
@given(rosters())
def test_teams_are_refused_exactly_when_no_assignment_exists(case: dict) -> None:
    """Without previous teams the walk plus the repair is complete: a refusal means max-flow
    falls short, and a max-flow that falls short means a refusal (stating true counts)."""
    targets, staff, rules = case["targets"], case["staff"], case["rules"]
    feasible = most_places(targets, staff, rules) == rules.team_size * len(targets)
    with mock.patch.object(_Repair, "fill", autospec=True, side_effect=_Repair.fill) as repair:
        try:
            teams = assign_teams(targets, staff, rules, case["skey"], {})
        except DrawRefused as exc:
            event("refused" + (" after a repair" if repair.called else " before any repair"))
            assert not feasible, str(exc)
            assert "previous team" not in str(exc)
            m = re.search(r"need (\d+) places, .* fill at most (\d+) of them$", str(exc))
            if m:
                assert int(m.group(2)) < int(m.group(1))
            return
    event("drawn after a repair (the walk alone refused)" if repair.called else "drawn by the walk")
    assert feasible
    check_teams(teams, targets, staff, rules, {})


def exists_assignment(targets, staff: InspectorTable, rules: TeamRules, previous) -> bool:
    """Exhaustive search: does any assignment meet every rule of SPEC §7, previous teams
    included? Every team every target could have, target by target (fewest options first),
    memoised on the capacities left — no flow, no reasoning about which rule binds."""
    size = rules.team_size
    options = []
    for target in targets:
        eligible = [
            k
            for k in range(len(staff))
            if (staff.region[k], staff.department[k]) == (target.region, target.department)
            and target.code not in staff.conflicts[k]
        ]
        prev = frozenset(previous.get(target.code, ()))
        options.append([
            team
            for team in itertools.combinations(eligible, size)
            if frozenset(staff.ids[k] for k in team) != prev
        ])  # fmt: skip
    options.sort(key=len)
    cap = rules.load_cap
    start = tuple(len(targets) if cap is None else max(0, cap - int(load)) for load in staff.load)

    @functools.cache
    def fits(d: int, left: tuple[int, ...]) -> bool:
        if d == len(options):
            return True
        for team in options[d]:
            if all(left[k] > 0 for k in team):
                rest = list(left)
                for k in team:
                    rest[k] -= 1
                if fits(d + 1, tuple(rest)):
                    return True
        return False

    return fits(0, start)


@settings(max_examples=400, deadline=None)
@given(rosters(), st.data())
def test_teams_with_previous_teams_are_refused_exactly_when_no_assignment_exists(
    case: dict, data
) -> None:
    """With previous teams (none, random region mates, or a random set of eligible inspectors,
    which binds most often): refused if and only if an exhaustive search finds no assignment;
    a refusal says the draw is impossible; every assignment meets every rule."""
    targets, staff, rules = case["targets"], case["staff"], case["rules"]
    previous = {}
    for target in targets:
        mates = [k for k in range(len(staff)) if staff.region[k] == target.region]
        eligible = [k for k in mates if target.code not in staff.conflicts[k]]
        kind = data.draw(st.sampled_from(["none", "mates", "eligible"]))
        pick = {"none": [], "mates": mates, "eligible": eligible}[kind]
        if len(pick) >= rules.team_size:
            chosen = data.draw(st.permutations(pick))[: rules.team_size]
            previous[target.code] = tuple(staff.ids[k] for k in chosen)
    feasible = exists_assignment(targets, staff, rules, previous)
    with mock.patch.object(_Exact, "fill", autospec=True, side_effect=_Exact.fill) as exact:
        try:
            teams = assign_teams(targets, staff, rules, case["skey"], previous)
        except DrawRefused as exc:
            event("refused" + (" by step 5" if exact.called else ""))
            assert not feasible, str(exc)
            assert "not ruled out" not in str(exc)
            m = re.search(r"need (\d+) places, .* fill at most (\d+) of them", str(exc))
            if m:
                assert int(m.group(2)) < int(m.group(1))
            return
    event("drawn" + (" by step 5 (steps 1-4 refused)" if exact.called else ""))
    assert feasible
    check_teams(teams, targets, staff, rules, previous)
