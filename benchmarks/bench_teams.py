"""Team assignment (SPEC §7): refusals on tight rosters, and speed at province size.

``rosters`` — ``--rosters`` random tight rosters, the numpy twin of the ``rosters()`` strategy
of tests/serving/test_draws_properties.py (its "hidden assignment" half): teams of 2 or 3, one or
two regions, 1-10 targets, ``size`` to ``3 + 3·size`` inspectors; every target gets a hidden team
of region mates, the load cap is the busiest inspector's use there (at least 2) and each
inspector's load leaves it that use or one less; conflicts (1 in 5) only off the hidden teams.
Previous teams: with ``--hidden-previous p``, a target's previous team is its hidden team with
probability p, else (probability 1/2) the first ``size`` of a random permutation of its region
mates. Each roster is decided by the tests' exhaustive search (``exists_assignment``) and given to ``assign_teams``; counted: feasible, refused although feasible,
drawn although infeasible (must be 0), completed only by step 5 of the repair (those steps 1-4
refused), and every drawn assignment is checked against every rule.

``province`` — ``assign_teams`` alone on a draw of the size of bench_draw.py's: 27,477 targets
sampled from a 2.5 M pool (10 regions), 5,000 inspectors (conflict rate 0.2), teams of 2, load
cap 25, without and with previous teams (half the targets, random region mates). Process CPU
seconds, median of ``--repeats``, with the load average.

    .venv/bin/python benchmarks/bench_teams.py --rosters 3000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from unittest import mock

import numpy as np
import pandas as pd

from serving.draws import DrawRefused
from serving.draws.policy import TeamRules
from serving.draws.synthetic import inspectors_frame, pool_frame
from serving.draws.teams import InspectorTable, Target, _Exact, assign_teams
from tests.serving.test_draws_properties import check_teams, exists_assignment


def tight_roster(rng: np.random.Generator, hidden_previous: float) -> dict:
    """One roster built tight around a hidden assignment (see the module docstring)."""
    size = int(rng.integers(2, 4))
    regions = ["330101", "330102"][: int(rng.integers(1, 3))]
    codes = [f"91330101{k:010d}" for k in range(int(rng.integers(1, 11)))]
    target_region = [regions[int(rng.integers(len(regions)))] for _ in codes]
    n_staff = int(rng.integers(size, 3 + 3 * size + 1))
    staff_region = [regions[int(rng.integers(len(regions)))] for _ in range(n_staff)]
    hidden = {}
    for c, r in zip(codes, target_region, strict=True):
        mates = [k for k in range(n_staff) if staff_region[k] == r]
        if len(mates) >= size:
            hidden[c] = [int(k) for k in rng.permutation(mates)[:size]]
    used = Counter(k for team in hidden.values() for k in team)
    cap = max(2, max(used.values(), default=0))
    loads = [max(0, cap - used[k] - int(rng.integers(0, 2))) for k in range(n_staff)]
    pairs = {(c, k) for c, team in hidden.items() for k in team}
    ids = [f"I{k:02d}" for k in range(n_staff)]
    conflicts = [
        [c for c, r in zip(codes, target_region, strict=True)
         if r == staff_region[k] and (c, k) not in pairs and rng.integers(0, 5) == 0]
        for k in range(n_staff)
    ]  # fmt: skip
    staff = pd.DataFrame(
        {
            "inspector_id": ids,
            "department": "market",
            "region": staff_region,
            "conflicts": conflicts,
            "load": loads,
        }
    )
    previous = {}
    for c, r in zip(codes, target_region, strict=True):
        mates = [ids[k] for k in range(n_staff) if staff_region[k] == r]
        if len(mates) < size:
            continue
        if c in hidden and rng.random() < hidden_previous:
            previous[c] = tuple(ids[k] for k in hidden[c])
        elif rng.random() < 0.5:
            previous[c] = tuple(rng.permutation(mates)[:size].tolist())
    return {
        "targets": [
            Target(c, c.encode(), r, "market") for c, r in zip(codes, target_region, strict=True)
        ],
        "staff": InspectorTable.from_frame(staff),
        "rules": TeamRules(team_size=size, load_cap=cap),
        "skey": int(rng.integers(0, 2**63)),
        "previous": previous,
    }


def meets_every_rule(teams: dict, targets, staff: InspectorTable, rules, previous) -> bool:
    """The tests' check of every rule of SPEC §7, as a yes/no."""
    try:
        check_teams(teams, targets, staff, rules, previous)
    except AssertionError:
        return False
    return True


def rosters(n: int, hidden_previous: float, seed: int) -> Counter:
    rng = np.random.default_rng(seed)
    out: Counter = Counter()
    with mock.patch.object(_Exact, "fill", autospec=True, side_effect=_Exact.fill) as exact:
        for _ in range(n):
            case = tight_roster(rng, hidden_previous)
            args = (case["targets"], case["staff"], case["rules"], case["previous"])
            feasible = exists_assignment(*args)
            out["feasible" if feasible else "infeasible"] += 1
            exact.reset_mock()
            try:
                teams = assign_teams(*args[:3], case["skey"], case["previous"])
            except DrawRefused:
                out["refused although feasible" if feasible else "refused, infeasible"] += 1
                out["refused by step 5"] += exact.called
                continue
            out["drawn" if feasible else "drawn although infeasible"] += 1
            out["drawn only thanks to step 5 (steps 1-4 refused)"] += exact.called
            out["drawn, a rule broken"] += not meets_every_rule(teams, *args)
    return out


def province(repeats: int) -> None:
    pool = pool_frame(2_500_000, seed=7, regions=10, industries=20)
    staff = InspectorTable.from_frame(inspectors_frame(5_000, pool, seed=7, conflict_rate=0.2))
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(len(pool), 27_477, replace=False))
    sample = pool.iloc[rows].sort_values("credit_code")
    targets = [
        Target(c, c.encode(), r, "market")
        for c, r in zip(sample["credit_code"], sample["region"], strict=True)
    ]
    mates = {
        r: [staff.ids[k] for k in range(len(staff)) if staff.region[k] == r]
        for r in set(staff.region)
    }
    previous = {
        t.code: tuple(rng.choice(mates[t.region], 2, replace=False).tolist())
        for t in targets
        if rng.random() < 0.5
    }
    rules = TeamRules(team_size=2, load_cap=25)
    with mock.patch.object(_Exact, "fill", autospec=True, side_effect=_Exact.fill) as exact:
        for label, prev in (("no previous teams", {}), ("previous teams for half", previous)):
            cpu, load = [], []
            for r in range(repeats):
                load.append(os.getloadavg()[0])
                c = time.process_time()
                assign_teams(targets, staff, rules, 1000 + r, prev)
                cpu.append(time.process_time() - c)
            print(
                f"province, {label}: assign_teams {len(targets):,} targets, {len(staff):,} "
                f"inspectors: CPU median {statistics.median(cpu):.3f} s "
                f"(min {min(cpu):.3f}, max {max(cpu):.3f}; load {min(load):.1f}-{max(load):.1f})"
            )
        print(f"step 5 called {exact.call_count} times")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rosters", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for hidden_previous in (0.0, 0.5):
        c = time.process_time()
        counts = rosters(args.rosters, hidden_previous, args.seed)
        print(
            f"{args.rosters} tight rosters, previous = hidden team with p={hidden_previous}: "
            f"{dict(sorted(counts.items()))} ({time.process_time() - c:.1f} s CPU)"
        )
    province(args.repeats)


if __name__ == "__main__":
    main()
