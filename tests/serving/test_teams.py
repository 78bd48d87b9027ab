"""Teams where only the exact step of the repair (SPEC §7 step 5) finds, or rules out, an
assignment: the previous-team rule is what binds, not the number of places. Then the compiled
walk and the arrays it reads, against plain-Python readings of the rule."""

from __future__ import annotations

import itertools
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from serving.draws import DrawRefused
from serving.draws import teams as teams_module
from serving.draws.keys import fnv1a64_strings
from serving.draws.policy import TeamRules
from serving.draws.teams import (
    InspectorTable,
    Target,
    _Exact,
    _id_hashes,
    _previous_members,
    _Repair,
    _walk,
    assign_teams,
)
from tests.serving.test_draws_engine import code, teams_for


def test_a_draw_steps_1_to_4_refuse_gets_the_only_assignment_meeting_every_rule() -> None:
    """Target 1 may have a, b, c; target 2 a, b, d, and b+d was its previous team. With one place
    left on a, b and c (two on d) the only assignment is {b, c} and {a, d}. Depending on the
    seed the walk and steps 1-4 reach it or give up; step 5 always finds it."""
    staff = {"a": ([], 1), "b": ([], 1), "c": ([2], 1), "d": ([1], 0)}
    with mock.patch.object(_Exact, "fill", autospec=True, side_effect=_Exact.fill) as exact:
        for skey in range(40):
            teams = teams_for(staff, 2, cap=2, skey=skey, previous={code(2): ("d", "b")})
            assert set(teams[code(1)]) == {"b", "c"} and set(teams[code(2)]) == {"a", "d"}
    assert 0 < exact.call_count < 40


def three_pairs(third_previous: tuple[str, str]) -> dict:
    """Three targets, inspectors a, b, c with two places each: the teams must be ab, ac and bc
    in some order. Targets 1 and 2 had a+b before; target 3 had ``third_previous``."""
    staff = {"a": ([], 0), "b": ([], 0), "c": ([], 0)}
    previous = {code(1): ("a", "b"), code(2): ("b", "a"), code(3): third_previous}
    return teams_for(staff, 3, cap=2, previous=previous)


def test_a_previous_team_can_force_who_takes_which_pair() -> None:
    teams = {k: set(v) for k, v in three_pairs(("a", "c")).items()}
    assert teams[code(3)] == {"a", "b"}
    assert sorted(map(sorted, teams.values())) == [["a", "b"], ["a", "c"], ["b", "c"]]


def test_previous_teams_that_rule_out_every_assignment_are_refused_with_counts() -> None:
    """Every target had a+b before, and one of them must have it: impossible although the
    places suffice (six places, a, b and c give two each)."""
    with pytest.raises(
        DrawRefused,
        match=r"^region 330101, department market: no assignment meets every rule \(3 targets, "
        r"teams of 2, load cap 2\): target \d+ and the 2 other targets it could exchange "
        r"inspectors with need 6 places, and the 3 eligible inspectors with capacity they can "
        r"draw on fill at most 5 of them without repeating a previous team \(3 of these 3 "
        r"targets could repeat theirs\)$",
    ):
        three_pairs(("b", "a"))


def pick(ranked, capacity, conflicts, previous, size) -> list[int]:
    """SPEC §7 "Pick", read plainly: sets of positions stand for sets of ids."""
    team: list[int] = []
    replaced = False
    for i in ranked:
        if capacity[i] <= 0 or i in conflicts:
            continue
        team.append(i)
        if len(team) == size:
            if not replaced and previous is not None and set(team) == previous:
                team.pop()
                replaced = True
                continue
            break
    return team


def test_the_compiled_walk_picks_as_the_rule_reads() -> None:
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n, size = int(rng.integers(2, 12)), int(rng.integers(1, 4))
        ranked = rng.permutation(n)[: int(rng.integers(0, n + 1))]
        capacity = rng.integers(-1, 3, n)
        conflicts = rng.choice(n, int(rng.integers(0, 4)))
        previous = None
        row = np.full(size, -1, dtype=np.int64)
        if size <= n and rng.random() < 0.7:
            # often the team the walk would form, so the rule binds
            mine = pick(ranked, capacity, set(conflicts.tolist()), None, size)
            row[:] = mine if len(mine) == size and rng.random() < 0.7 else rng.permutation(n)[:size]
            previous = set(row.tolist())
        team = np.zeros(size, dtype=np.int64)
        got = _walk(ranked, capacity, conflicts, row, team)
        expected = pick(ranked, capacity, set(conflicts.tolist()), previous, size)
        assert team[:got].tolist() == expected


def test_id_hashes_are_fnv1a_of_each_ids_utf8_bytes() -> None:
    ids = ("a", "INS000001", "检查员-7", "b", "INS000002", "ü", "")
    assert _id_hashes(ids).tolist() == fnv1a64_strings(ids).tolist()


def test_a_team_holds_all_its_previous_members_exactly_when_it_repeats_that_team() -> None:
    """What the compiled walk tests (every member among the row's positions) is what the rule
    says (the same set of ids), for every team of two distinct inspectors."""
    ids = ("a", "b", "c", "d")
    previous = {
        code(1): ("b", "d"),
        code(2): ("b", "b"),  # one inspector: no team of two repeats it
        code(3): ("b", "x"),  # x is not an inspector
        code(4): ("c",),
        code(5): ("d", "a", "d"),  # as a set, a and d
        code(6): ("a", "b", "c"),
        code(7): (),
    }
    codes = tuple(code(k) for k in range(1, 9))
    rows = _previous_members(codes, previous, ids, 2).tolist()
    for c, row in zip(codes, rows, strict=True):
        for team in itertools.combinations(range(len(ids)), 2):
            repeats = {ids[i] for i in team} == set(previous.get(c, ()))
            assert all(i in row for i in team) == repeats, (c, team)


def test_a_walk_past_the_ranked_prefix_takes_the_full_ranking() -> None:
    """Twelve inspectors, ten of them in conflict with target 1 or full: its first few by key
    (the compiled prefix) cannot hold a team, the full ranking can, without any repair."""
    staff = {f"i{k:02d}": ([1] if k < 6 else [], 2 if 6 <= k < 10 else 0) for k in range(12)}
    with (
        mock.patch.object(_Repair, "fill", autospec=True, side_effect=_Repair.fill) as repair,
        mock.patch.object(teams_module, "_rank", side_effect=teams_module._rank) as full,
    ):
        for skey in range(20):
            teams = teams_for(staff, 1, cap=2, skey=skey)
            assert sorted(teams[code(1)]) == ["i10", "i11"]
    assert repair.call_count == 0 and 0 < full.call_count < 20


def test_targets_in_any_order_get_the_same_teams() -> None:
    """The walk serves targets by (eligible inspectors, credit code) whatever order they come in."""
    rng = np.random.default_rng(3)
    ids = [f"I{k:02d}" for k in range(10)]
    codes = [code(k) for k in range(1, 16)]
    table = InspectorTable.from_frame(
        pd.DataFrame(
            {
                "inspector_id": ids,
                "department": "market",
                "region": ["330101"] * 6 + ["330102"] * 4,
                "conflicts": [[c for c in codes if rng.random() < 0.2] for _ in ids],
                "load": rng.integers(0, 2, len(ids)),
            }
        )
    )
    targets = [Target(c, c.encode(), "330101" if k % 3 else "330102", "market") for k, c in
               enumerate(codes)]  # fmt: skip
    previous = {codes[0]: ("I00", "I01"), codes[4]: ("I07", "I06")}
    rules = TeamRules(team_size=2, load_cap=6)
    expected = assign_teams(targets, table, rules, 5, previous)
    for _ in range(5):
        shuffled = [targets[k] for k in rng.permutation(len(targets))]
        assert assign_teams(shuffled, table, rules, 5, previous) == expected
