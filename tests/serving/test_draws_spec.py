"""SPEC.md is implementable: the published vectors, and an independent plain-Python re-run.

The re-implementation below is deliberately naive — ``hashlib``, Python ints, ``Fraction``,
lists and dicts, no numpy, no pandas, nothing imported from ``serving.draws`` — and written from
SPEC.md alone. If it reproduces the engine (and the published vectors) the spec says enough.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.draws import draw
from serving.draws.synthetic import example_inputs, pool_frame
from serving.draws.vectors import PATH, expected, inputs_from_vector

VECTORS = json.loads(Path(PATH).read_text(encoding="utf-8"))
M64 = (1 << 64) - 1


# --- SPEC §2 -------------------------------------------------------------------------------
def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def spec_seed_hash(seed: str) -> str:
    return hashlib.sha256(b"draws/v1/seed-commitment\x00" + seed.encode()).hexdigest()


def spec_seed_key(seed: str) -> int:
    return int.from_bytes(sha(b"draws/v1/seed-key\x00" + seed.encode())[:8], "big")


def fnv(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def key(seed_key: int, salt: str, unit: str) -> int:
    return mix(mix(seed_key ^ fnv(salt.encode())) ^ fnv(unit.encode()))


# --- SPEC §3 -------------------------------------------------------------------------------
POOL_COLUMNS = [
    "credit_code", "tier", "region", "industry", "department", "last_inspected_on",
    "draws_this_year",
]  # fmt: skip


def cell(v) -> str:
    return "" if v is None else str(v)


def pool_csv(pool: list[dict]) -> bytes:
    lines = [",".join(POOL_COLUMNS)]
    for row in sorted(pool, key=lambda r: r["credit_code"]):
        lines.append(",".join(cell(row.get(c)) for c in POOL_COLUMNS))
    return ("\n".join(lines) + "\n").encode()


def inspectors_csv(staff: list[dict]) -> bytes:
    lines = ["inspector_id,department,region,conflicts,load"]
    for r in sorted(staff, key=lambda r: r["inspector_id"]):
        conflicts = ";".join(sorted(r.get("conflicts") or []))
        lines.append(
            f"{r['inspector_id']},{r['department']},{r['region']},{conflicts},{r.get('load', 0)}"
        )
    return ("\n".join(lines) + "\n").encode()


def dec(x: float) -> Fraction:
    return Fraction(repr(x))


def half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


# --- SPEC §5 -------------------------------------------------------------------------------
def allocate(total: int, sizes: dict, floors: dict) -> dict:
    n = {c: 0 for c in sizes}
    active = sorted(sizes)
    while True:
        r = total - sum(n[c] for c in sizes if c not in active)
        w = sum(sizes[c] for c in active)
        q = {c: Fraction(r * sizes[c], w) for c in active}
        low = [c for c in active if q[c] < floors[c]]
        if not low:
            break
        for c in low:
            n[c] = floors[c]
        active = [c for c in active if c not in low]
    for c in active:
        n[c] = math.floor(q[c])
    rest = total - sum(n.values())
    for c in sorted(active, key=lambda c: (-(q[c] - math.floor(q[c])), c))[:rest]:
        n[c] += 1
    return n


def counts_for(policy: dict, sizes: dict) -> dict:
    floors = {c: min(s, math.ceil(dec(policy["floor"]) * s)) for c, s in sizes.items()}
    a = policy["allocation"]
    out = {}
    if a["kind"] == "ratios":
        for t in a["tiers"]:
            cells = {c: s for c, s in sizes.items() if c[1] == t}
            if cells:
                want = half_up(dec(a["ratios"][t]) * sum(cells.values()))
                out |= allocate(max(want, sum(floors[c] for c in cells)), cells, floors)
        return out
    high = {c: s for c, s in sizes.items() if c[1] in a["high_risk_tiers"]}
    low = {c: s for c, s in sizes.items() if c[1] not in a["high_risk_tiers"]}
    q, nh, nl = a["quota"], sum(high.values()), sum(low.values())
    fh, fl = sum(floors[c] for c in high), sum(floors[c] for c in low)
    need = math.ceil(dec(a["min_high_risk_share"]) * q)
    prop = half_up(Fraction(q * nh, nh + nl))
    th = max(min(nh, max(need, prop, fh), q - fl), q - nl)
    if high:
        out |= allocate(th, high, floors)
    if low:
        out |= allocate(q - th, low, floors)
    return out


# --- SPEC §4–§7: the whole draw ----------------------------------------------------------------
def spec_draw(v: dict, repair: bool = True, step4: bool = True, step5: bool = True) -> dict:
    policy, params, seed = v["policy"], v["parameters"], v["seed"]
    sk = spec_seed_key(seed)
    flt = policy.get("filters") or {}
    ex = policy.get("exclusions") or {}
    dept = lambda r: r.get("department") or params["department"]  # noqa: E731
    rows = sorted(v["pool"], key=lambda r: r["credit_code"])
    if flt.get("regions"):
        rows = [r for r in rows if r["region"] in flt["regions"]]
    if flt.get("industries"):
        rows = [r for r in rows if r["industry"] in flt["industries"]]
    if flt.get("departments"):
        rows = [r for r in rows if dept(r) in flt["departments"]]
    if flt.get("credit_codes"):
        rows = [r for r in rows if r["credit_code"] in flt["credit_codes"]]
    today = date.fromisoformat(params["draw_date"])
    eligible = []
    for r in rows:
        recent = (
            ex.get("inspected_within_days")
            and r.get("last_inspected_on")
            and (today - date.fromisoformat(r["last_inspected_on"])).days
            < ex["inspected_within_days"]
        )
        capped = (
            ex.get("yearly_cap")
            and r.get("draws_this_year") is not None
            and r["draws_this_year"] >= ex["yearly_cap"]
        )
        if not recent and not capped:
            eligible.append(r)
    by = policy.get("stratify_by")
    stratum = lambda r: r[by] if by else "*"  # noqa: E731
    cells: dict = {}
    for r in eligible:
        cells.setdefault((stratum(r), r["tier"]), []).append(r)
    n = counts_for(policy, {c: len(m) for c, m in cells.items()})
    risk = set()
    for c, members in cells.items():
        ranked = sorted(
            members,
            key=lambda r: (key(sk, f"risk|{c[0]}|{c[1]}", r["credit_code"]), r["credit_code"]),
        )
        risk |= {r["credit_code"] for r in ranked[: n[c]]}
    n_c = min(len(eligible), half_up(dec(policy.get("control_fraction", 0.1)) * sum(n.values())))
    ranked = sorted(
        eligible, key=lambda r: (key(sk, "control", r["credit_code"]), r["credit_code"])
    )
    control = {r["credit_code"] for r in ranked[:n_c]}
    targets = []
    for r in eligible:
        code = r["credit_code"]
        if code in risk or code in control:
            c = (stratum(r), r["tier"])
            big, small = len(cells[c]), n[c]
            pi = 1 - (1 - Fraction(small, big)) * (1 - Fraction(n_c, len(eligible)))
            arm = (
                "both"
                if code in risk and code in control
                else ("risk" if code in risk else "control")
            )
            targets.append(
                {
                    "credit_code": code, "arm": arm, "stratum": c[0], "tier": c[1],
                    "pi_fraction": str(pi),
                    "key_risk": f"{key(sk, f'risk|{c[0]}|{c[1]}', code):016x}",
                    "key_control": f"{key(sk, 'control', code):016x}",
                }
            )  # fmt: skip
    # §7 teams
    rules = policy.get("teams") or {}
    size, cap = rules.get("team_size", 2), rules.get("load_cap")
    staff = sorted(v["inspectors"], key=lambda s: s["inspector_id"])
    left = {
        s["inspector_id"]: (10**9 if cap is None else max(0, cap - s.get("load", 0))) for s in staff
    }

    def group(t):
        return [s for s in staff if s["region"] == t["region"] and s["department"] == dept(t)]

    free = lambda s, code: code not in (s.get("conflicts") or [])  # noqa: E731
    by_code = {r["credit_code"]: r for r in eligible}
    todo = sorted(
        (by_code[t["credit_code"]] for t in targets),
        key=lambda r: (sum(free(s, r["credit_code"]) for s in group(r)), r["credit_code"]),
    )

    def ranking(code: str) -> list[dict]:
        return sorted(
            group(by_code[code]),
            key=lambda s: (key(sk, f"team|{code}", s["inspector_id"]), s["inspector_id"]),
        )

    def previous(code: str) -> set:
        return set(params["previous_teams"].get(code, []))

    teams: dict[str, list[str]] = {}

    def group_holders(t: str) -> dict[str, list[str]]:
        """Inspector → the served targets of ``t``'s group holding it, in code order."""
        mine = (by_code[t]["region"], dept(by_code[t]))
        holders: dict[str, list[str]] = {}
        for c in sorted(teams):
            if (by_code[c]["region"], dept(by_code[c])) == mine:
                for i in teams[c]:
                    holders.setdefault(i, []).append(c)
        return holders

    def repair_search(t: str, barred: str | None = None) -> tuple[bool, int]:
        """§7 Repair (1)–(3), one breadth-first search from ``t``: (path applied, paths rejected)."""
        holders = group_holders(t)
        gives: dict[str, str | None] = {t: None}  # reached target -> inspector it would give up
        taken: dict[str, str] = {}  # reached inspector -> the target that took it
        queue, rejected = [t], 0
        while queue:
            u = queue.pop(0)
            for s in ranking(u):
                i = s["inspector_id"]
                if i in taken or i in teams[u] or not free(s, u) or (u == t and i == barred):
                    continue
                taken[i] = u
                if left[i] > 0:
                    new, x = {}, i
                    while True:
                        w = taken[x]
                        team = list(teams[w])
                        if gives[w] is None:
                            new[w] = [*team, x]
                            break
                        team[team.index(gives[w])] = x
                        new[w] = team
                        x = gives[w]
                    if not any(
                        len(team) == size and previous(w) and set(team) == previous(w)
                        for w, team in new.items()
                    ):
                        teams.update(new)
                        left[i] -= 1
                        return True, rejected
                    rejected += 1
                for w in holders.get(i, []):
                    if w not in gives:
                        gives[w] = i
                        queue.append(w)
        return False, rejected

    def possible_previous(u: str) -> set:
        """§7 step 5: ``u``'s previous team if it has team_size members, all eligible for ``u``."""
        staff_of = {s["inspector_id"]: s for s in group(by_code[u])}
        prev = previous(u)
        ok = len(prev) == size and all(i in staff_of and free(staff_of[i], u) for i in prev)
        return prev if ok else set()

    def exact_search(t: str) -> bool:
        """§7 step 5, one breadth-first search over the nodes (u, False) = ⟨u⟩ and
        (u, True) = ⟨u,P⟩; True when a path was applied."""
        mine = (by_code[t]["region"], dept(by_code[t]))
        holders = group_holders(t)
        p = {
            c: possible_previous(c)
            for c in teams
            if (by_code[c]["region"], dept(by_code[c])) == mine
        }
        how: dict = {(t, False): None}  # node -> ("through", inspector) | ("from", node) | None
        taken: dict = {}  # inspector -> the node that took it
        queue = [(t, False)]
        while queue:
            node = queue.pop(0)
            u, side = node
            for s in ranking(u):
                i = s["inspector_id"]
                if i in taken or i in teams[u] or not free(s, u) or (i in p[u]) != side:
                    continue
                taken[i] = node
                if left[i] > 0:
                    x = i
                    while True:
                        n = taken[x]
                        if how[n] is not None and how[n][0] == "from":
                            n = how[n][1]
                        if how[n] is None:
                            teams[t].append(x)
                            break
                        team = teams[n[0]]
                        team[team.index(how[n][1])] = x
                        x = how[n][1]
                    left[i] -= 1
                    return True
                for w in holders.get(i, []):
                    other = (w, i in p[w])
                    if other not in how:
                        how[other] = ("through", i)
                        queue.append(other)
            held = len(p[u] & set(teams[u]))
            if p[u] and (u, not side) not in how and (held > 0 if side else held < size - 1):
                how[(u, not side)] = ("from", node)
                queue.append((u, not side))
        return False

    def repair_team(t: str) -> bool:
        """§7 Repair: searches until ``t``'s team is full; (4) when the previous-team rule
        stopped a search, retry without each of ``t``'s members in turn; (5) then the exact
        search. False: refuse."""
        while len(teams[t]) < size:
            applied, rejected = repair_search(t)
            if applied:
                continue
            if not rejected or not step4:
                return False
            for a in list(teams[t]):
                saved_teams, saved_left = {c: list(x) for c, x in teams.items()}, dict(left)
                teams[t] = [i for i in teams[t] if i != a]
                left[a] += 1
                while len(teams[t]) < size and repair_search(t, barred=a)[0]:
                    pass
                if len(teams[t]) == size:
                    return True
                teams.update(saved_teams)
                left.update(saved_left)
            while step5 and len(teams[t]) < size and exact_search(t):
                pass
            return len(teams[t]) == size
        return True

    for r in todo:
        code = r["credit_code"]
        prev = previous(code)
        team, replaced = [], False
        for s in ranking(code):
            if left[s["inspector_id"]] <= 0 or not free(s, code):
                continue
            team.append(s["inspector_id"])
            if len(team) == size:
                if not replaced and prev and set(team) == prev:
                    team.pop()
                    replaced = True
                    continue
                break
        for i in team:
            left[i] -= 1
        teams[code] = team
        if len(teams[code]) < size:
            assert repair and repair_team(code), "the spec re-run would refuse this draw"
    return {"targets": targets, "teams": dict(sorted(teams.items()))}


def spec_commitment(v: dict, policy_canonical: dict) -> str:
    params = dict(v["parameters"])
    params["previous_teams"] = {k: sorted(x) for k, x in sorted(params["previous_teams"].items())}
    doc = {
        "spec": "draws/1",
        "seed_hash": spec_seed_hash(v["seed"]),
        "pool_sha256": hashlib.sha256(pool_csv(v["pool"])).hexdigest(),
        "inspectors_sha256": hashlib.sha256(inspectors_csv(v["inspectors"])).hexdigest(),
        "policy": policy_canonical,
        "model_version": v["model_version"],
        "data_fingerprint": v["data_fingerprint"],
        "parameters": params,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# --- the tests -------------------------------------------------------------------------------
def test_primitives_match_the_published_vectors() -> None:
    p = VECTORS["primitives"]
    assert spec_seed_hash(p["seed"]) == p["seed_hash"]
    assert f"{spec_seed_key(p['seed']):016x}" == p["seed_key"]
    for text, h in p["fnv1a64"].items():
        assert f"{fnv(text.encode()):016x}" == h
    for x, h in p["mix64"].items():
        assert f"{mix(int(x)):016x}" == h
    assert mix(0) == 0xE220A8397B1DCDAF  # SplitMix64's well-known first output for state 0
    u = p["unit_key"]
    assert f"{key(spec_seed_key(p['seed']), u['salt'], u['unit']):016x}" == u["key"]


@pytest.mark.parametrize("vector", VECTORS["draws"], ids=lambda v: v["name"])
def test_engine_reproduces_the_published_vector(vector: dict) -> None:
    inputs = inputs_from_vector(vector)
    assert expected(inputs, vector["seed"]) == vector["expected"]


@pytest.mark.parametrize("vector", VECTORS["draws"], ids=lambda v: v["name"])
def test_plain_python_reading_of_the_spec_reproduces_the_vector(vector: dict) -> None:
    want = vector["expected"]
    got = spec_draw(vector)
    assert got["targets"] == want["targets"]
    assert got["teams"] == want["teams"]
    assert hashlib.sha256(pool_csv(vector["pool"])).hexdigest() == want["pool_sha256"]
    assert (
        hashlib.sha256(inspectors_csv(vector["inspectors"])).hexdigest()
        == want["inspectors_sha256"]
    )
    canonical = inputs_from_vector(vector).policy.canonical()  # defaults spelt out (SPEC §8)
    assert spec_commitment(vector, canonical) == want["commitment"]


def test_the_repair_vector_is_refused_by_the_walk_alone_and_completed_by_the_repair() -> None:
    """The vector exercises §7's repair: the greedy walk alone ends short on it."""
    (vector,) = [v for v in VECTORS["draws"] if v["name"] == "repair-moves-inspectors"]
    with pytest.raises(AssertionError, match="would refuse"):
        spec_draw(vector, repair=False)
    for other in VECTORS["draws"]:
        if not other["name"].startswith("repair-"):  # the earlier vectors never need it
            assert spec_draw(other, repair=False)["teams"] == other["expected"]["teams"]


def test_the_previous_team_vector_needs_step_4_of_the_repair() -> None:
    (vector,) = [v for v in VECTORS["draws"] if v["name"] == "repair-avoids-a-previous-team"]
    with pytest.raises(AssertionError, match="would refuse"):
        spec_draw(vector, step4=False)
    assert spec_draw(vector)["teams"] == vector["expected"]["teams"]


def test_the_exact_step_vector_needs_step_5_of_the_repair() -> None:
    """Steps 1-4 refuse it (the engine refused it before step 5 existed); step 5 completes it."""
    (vector,) = [v for v in VECTORS["draws"] if v["name"] == "repair-exact-step"]
    with pytest.raises(AssertionError, match="would refuse"):
        spec_draw(vector, step5=False)
    assert spec_draw(vector)["teams"] == vector["expected"]["teams"]
    for other in VECTORS["draws"]:  # step 5 changes no draw that steps 1-4 complete
        if other is not vector:
            assert spec_draw(other, step5=False)["teams"] == other["expected"]["teams"]


def vector_of(inputs, seed: str) -> dict:
    """A draw's inputs written as a test vector (the plain JSON values the spec reads)."""
    pool = inputs.pool.frame()
    pool["last_inspected_on"] = [
        None if d is None or d != d else d.isoformat() for d in pool["last_inspected_on"]
    ]
    rows = [
        {k: (None if (x is None or x != x or x == "") and k != "tier" else x) for k, x in r.items()}
        for r in pool.to_dict(orient="records")
    ]
    for r in rows:
        r["draws_this_year"] = None if r["draws_this_year"] is None else int(r["draws_this_year"])
    staff = inputs.inspectors.frame()
    staff["conflicts"] = [c.split(";") if c else [] for c in staff["conflicts"]]
    return {
        "seed": seed,
        "pool": rows,
        "inspectors": staff.to_dict(orient="records"),
        "policy": inputs.policy.canonical(),
        "parameters": inputs.parameters(),
        "model_version": inputs.model_version,
        "data_fingerprint": inputs.data_fingerprint,
    }


def assert_spec_reproduces(vector: dict, inputs, result) -> None:
    """The plain-Python reading of the spec gives the engine's targets, teams and commitment."""
    got = spec_draw(vector)
    cols = ["credit_code", "arm", "stratum", "tier", "pi_fraction", "key_risk", "key_control"]
    assert got["targets"] == result.targets[cols].to_dict(orient="records")
    assert got["teams"] == {k: list(v) for k, v in sorted(result.teams.items())}
    assert spec_commitment(vector, inputs.policy.canonical()) == result.commitment


@pytest.mark.parametrize("seed", ["alpha", "beta", "gamma", "δ-seed 2026"])
def test_plain_python_reading_matches_the_engine_on_fresh_draws(seed: str) -> None:
    """Beyond the vectors: a 200-enterprise pool with conflicts, caps and exclusions."""
    inputs = example_inputs(seed=seed, previous_teams={})
    assert_spec_reproduces(vector_of(inputs, seed), inputs, draw(inputs, seed))


def tight_draw_inputs(x: int, seed: str):
    """A draw whose every enterprise is a target, on a roster built tight around a hidden
    assignment (every inspector's capacity is what it uses there, or one less), with previous
    teams that are mostly those hidden teams: where the repair's steps 1-4 give up most often."""
    rng = np.random.default_rng(x)
    size = int(rng.integers(2, 4))
    pool = pool_frame(
        int(rng.integers(3, 9)), seed=x, regions=int(rng.integers(1, 3)), industries=1
    )
    pool = pool.assign(last_inspected_on=pd.NaT, draws_this_year=0)
    codes, regions = pool["credit_code"].tolist(), pool["region"].tolist()
    n_staff = int(rng.integers(size, 3 + 3 * size))
    staff_region = [regions[int(rng.integers(len(regions)))] for _ in range(n_staff)]
    hidden = {}
    for c, r in zip(codes, regions, strict=True):
        mates = [k for k in range(n_staff) if staff_region[k] == r]
        if len(mates) >= size:
            hidden[c] = [int(k) for k in rng.permutation(mates)[:size]]
    used = Counter(k for team in hidden.values() for k in team)
    cap = max(2, max(used.values(), default=0))
    pairs = {(c, k) for c, team in hidden.items() for k in team}
    conflicts = [
        [c for c, r in zip(codes, regions, strict=True)
         if r == staff_region[k] and (c, k) not in pairs and rng.random() < 0.2]
        for k in range(n_staff)
    ]  # fmt: skip
    staff = pd.DataFrame(
        {
            "inspector_id": [f"I{k:02d}" for k in range(n_staff)],
            "department": "market",
            "region": staff_region,
            "conflicts": conflicts,
            "load": [max(0, cap - used[k] - int(rng.integers(0, 2))) for k in range(n_staff)],
        }
    )
    previous = {}
    for c, r in zip(codes, regions, strict=True):
        mates = [f"I{k:02d}" for k in range(n_staff) if staff_region[k] == r]
        if c in hidden and rng.random() < 0.7:
            previous[c] = [f"I{k:02d}" for k in hidden[c]]
        elif len(mates) >= size and rng.random() < 0.5:
            previous[c] = rng.permutation(mates)[:size].tolist()
    policy = {
        "allocation": {"kind": "ratios", "tiers": ["A", "B", "C", "D"],
                       "ratios": {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0}},
        "floor": 0.2,
        "control_fraction": 0.0,
        "teams": {"team_size": size, "load_cap": cap},
    }  # fmt: skip
    return example_inputs(seed, pool=pool, inspectors=staff, policy=policy, previous_teams=previous)


@pytest.mark.parametrize("x", [27, 117, 152, 1795, 3861, 5623])
def test_plain_python_reading_matches_the_engine_where_step_5_completes_the_teams(x: int) -> None:
    """Draws (found by searching x) that steps 1-4 of the repair refuse and step 5 completes;
    in 1795, 3861 and 5623 a path goes from one node of a target to its other (§7 step 5 b)."""
    inputs = tight_draw_inputs(x, "tight")
    vector = vector_of(inputs, "tight")
    with pytest.raises(AssertionError, match="would refuse"):
        spec_draw(vector, step5=False)
    assert_spec_reproduces(vector, inputs, draw(inputs, "tight"))
