"""Teams where only the exact step of the repair (SPEC §7 step 5) finds, or rules out, an
assignment: the previous-team rule is what binds, not the number of places."""

from __future__ import annotations

from unittest import mock

import pytest

from serving.draws import DrawRefused
from serving.draws.teams import _Exact
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
