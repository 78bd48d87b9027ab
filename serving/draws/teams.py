"""Inspector teams: the second "random" of 双随机 — who inspects each drawn enterprise.

Why greedy by key with the scarcest targets first: the team of a target is the first
``team_size`` inspectors, in the order of their keys under the salt ``team|<credit code>``,
who are eligible (same department and region, no declared conflict with the enterprise) and
still under the load cap — a uniform random choice among the eligible when no cap binds.
Targets are served in order of how few inspectors they could have (ties by credit code), so a
target that only two inspectors can take is served before those inspectors are used up
elsewhere. A team identical (as a set) to the enterprise's previous team is not allowed: the
last member picked is replaced by the next available inspector in key order.

Why a repair: with tight load caps and conflicts the greedy walk can end short although some
other assignment meets every rule. Only then (so a draw the walk completes costs nothing more
and is unchanged) a breadth-first augmenting-path search moves inspectors between the group's
teams until the short team is full, or proves by max-flow/min-cut that no assignment exists
(SPEC.md §7). Where the previous-team rule stops that search, a last search in which the rule is
a capacity (a team holds at most ``team_size - 1`` members of its previous team) is exact, so a
draw is refused only when no assignment meets every rule."""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numba
import numpy as np
import pandas as pd
from pydantic_core import core_schema

from serving.draws.allocate import DrawRefused
from serving.draws.keys import (
    fnv1a64,
    fnv1a64_rows,
    fnv1a64_strings,
    mix64_array,
    smallest_keys,
    unit_keys,
)
from serving.draws.policy import TeamRules

COLUMNS = ("inspector_id", "department", "region", "conflicts", "load")
TEAM_SALT_PREFIX = b"team|"
_FORBIDDEN = ',"\r\n;|'


@dataclass(frozen=True, eq=False)
class InspectorTable:
    """Validated inspectors, sorted by ``inspector_id``."""

    ids: tuple[str, ...]
    department: tuple[str, ...]
    region: tuple[str, ...]
    conflicts: tuple[frozenset[str], ...]
    load: np.ndarray  # int64
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def canonical_csv(self) -> bytes:
        """Canonical CSV (SPEC.md §3): conflicts sorted and joined by ';'."""
        lines = [",".join(COLUMNS)]
        for i in range(len(self.ids)):
            conflicts = ";".join(sorted(self.conflicts[i]))
            lines.append(
                f"{self.ids[i]},{self.department[i]},{self.region[i]},{conflicts},{int(self.load[i])}"
            )
        return ("\n".join(lines) + "\n").encode("utf-8")

    def sha256(self, cached: bool = True) -> str:
        """SHA-256 of :meth:`canonical_csv` (computed once unless ``cached=False``)."""
        if not cached or "sha256" not in self._cache:
            self._cache["sha256"] = hashlib.sha256(self.canonical_csv()).hexdigest()
        return self._cache["sha256"]

    def frame(self) -> pd.DataFrame:
        """Back to a DataFrame (conflicts as ';'-joined sorted codes, '' when none)."""
        return pd.DataFrame(
            {
                "inspector_id": list(self.ids),
                "department": list(self.department),
                "region": list(self.region),
                "conflicts": [";".join(sorted(c)) for c in self.conflicts],
                "load": self.load,
            }
        )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: object) -> object:
        """Pydantic: accept a DataFrame (validated by :meth:`from_frame`) or a table."""
        return core_schema.no_info_plain_validator_function(cls.from_frame)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame | InspectorTable) -> InspectorTable:
        """Validate an inspectors DataFrame (errors name the column and the first bad row)."""
        if isinstance(frame, InspectorTable):
            return frame
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in COLUMNS[:3] if c not in frame.columns]
        if missing:
            raise ValueError(f"missing column(s) {missing}; required: {list(COLUMNS[:3])}")
        unknown = [c for c in frame.columns if c not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; allowed: {list(COLUMNS)}")
        text = {}
        for name in COLUMNS[:3]:
            values = []
            for row, v in zip(frame.index, frame[name], strict=True):
                if not isinstance(v, str) or not v or any(ch in v for ch in _FORBIDDEN):
                    raise ValueError(
                        f"{name}: {v!r} at row {row!r} is not a non-empty label without {_FORBIDDEN!r}"
                    )
                values.append(v)
            text[name] = values
        conflicts = [frozenset()] * len(frame)
        if "conflicts" in frame.columns:
            conflicts = [
                _conflicts(v, row) for row, v in zip(frame.index, frame["conflicts"], strict=True)
            ]
        load = np.zeros(len(frame), dtype=np.int64)
        if "load" in frame.columns:
            values = pd.to_numeric(frame["load"], errors="coerce").fillna(0)
            if (values < 0).any() or (values != values.round()).any():
                row = frame.index[((values < 0) | (values != values.round())).to_numpy()][0]
                raise ValueError(f"load: {frame['load'][row]!r} at row {row!r} is not a count ≥ 0")
            load = values.to_numpy(dtype=np.int64)
        order = sorted(range(len(frame)), key=lambda i: text["inspector_id"][i].encode("utf-8"))
        ids = tuple(text["inspector_id"][i] for i in order)
        for a, b in itertools.pairwise(ids):
            if a == b:
                raise ValueError(f"inspector_id: {a!r} appears more than once")
        return cls(
            ids=ids,
            department=tuple(text["department"][i] for i in order),
            region=tuple(text["region"][i] for i in order),
            conflicts=tuple(conflicts[i] for i in order),
            load=load[order] if len(order) else load,
        )


def _conflicts(value: object, row: object) -> frozenset[str]:
    if value is None or (isinstance(value, float) and value != value):
        return frozenset()
    if isinstance(value, str):
        items = [v for v in value.split(";") if v]
    else:
        try:
            items = list(value)  # type: ignore[call-overload]
        except TypeError:
            raise ValueError(
                f"conflicts: {value!r} at row {row!r} is not a set of credit codes"
            ) from None
    for v in items:
        if not isinstance(v, str) or len(v) != 18:
            raise ValueError(f"conflicts: {v!r} at row {row!r} is not an 18-character credit code")
    return frozenset(items)


class Target(NamedTuple):
    """What team assignment needs to know of one drawn enterprise (a tuple: cheap to build by
    the tens of thousands)."""

    code: str
    code_bytes: bytes
    region: str
    department: str


def assign_teams(
    targets: list[Target],
    inspectors: InspectorTable,
    rules: TeamRules,
    skey: int,
    previous: Mapping[str, tuple[str, ...]],
) -> dict[str, tuple[str, ...]]:
    """Team of every target (inspector ids in pick order), or :class:`DrawRefused`.

    Why compiled: a province draw serves ~27,000 targets. Everything per target is computed for
    all of them at once, and the walk (:func:`_walk_targets`) runs compiled until a target ends
    short; Python then walks that target's full ranking and, if still short, repairs as before.
    """
    if not targets:
        return {}
    size = rules.team_size
    capacity = (
        np.full(len(inspectors), np.iinfo(np.int64).max // 2, dtype=np.int64)
        if rules.load_cap is None
        else np.maximum(rules.load_cap - inspectors.load, 0)
    )
    members: dict[tuple[str, str], np.ndarray] = {}
    for i, (dept, region) in enumerate(zip(inspectors.department, inspectors.region, strict=True)):
        members.setdefault((region, dept), []).append(i)  # type: ignore[arg-type]
    members = {k: np.asarray(v, dtype=np.int64) for k, v in members.items()}
    insp_hash = _id_hashes(inspectors.ids)
    conflicted = {(code, i) for i, codes in enumerate(inspectors.conflicts) for code in codes}

    codes, code_bytes, regions, departments = zip(*targets, strict=True)
    keys = list(zip(regions, departments, strict=True))
    groups: dict[tuple[str, str], list[int]] = {}
    for t, key in enumerate(keys):
        groups.setdefault(key, []).append(t)

    # Inspectors each target could have, conflicts aside from load: the scarcity order.
    sizes = {key: len(members.get(key, ())) for key in groups}
    eligible_count = np.fromiter(map(sizes.__getitem__, keys), dtype=np.int64, count=len(keys))
    position = dict(zip(codes, range(len(codes)), strict=True))
    for code, i in conflicted:
        t = position.get(code)
        if t is not None and (inspectors.region[i], inspectors.department[i]) == (
            regions[t],
            departments[t],
        ):
            eligible_count[t] -= 1

    # Pre-checks per (region, department): refuse with counts before anything is assigned.
    for (region, dept), idx in sorted(groups.items()):
        group = members.get((region, dept), np.empty(0, dtype=np.int64))
        usable = int((capacity[group] > 0).sum())
        if usable < size:
            word = "inspector" if usable == 1 else "inspectors"
            raise DrawRefused(
                f"region {region}, department {dept}: {usable} eligible {word} for {len(idx)} "
                f"target{'s' if len(idx) != 1 else ''}, teams of {size} need at least {size}"
            )
        total_capacity = int(np.minimum(capacity[group], len(idx)).sum())
        if total_capacity < size * len(idx):
            raise DrawRefused(
                f"region {region}, department {dept}: load cap {rules.load_cap} leaves "
                f"{total_capacity} assignments for {len(idx)} targets, teams of {size} need "
                f"{size * len(idx)}"
            )

    matrix = np.frombuffer(b"".join(code_bytes), dtype=np.uint8).reshape(-1, 18)
    salt_hash = fnv1a64_rows(matrix, start=fnv1a64(TEAM_SALT_PREFIX))
    with np.errstate(over="ignore"):
        salt_keys = mix64_array(np.uint64(skey) ^ salt_hash)
    prefix, widths = _ranked_prefixes(groups, members, salt_keys, insp_hash, size, len(targets))

    # Scarcest first, ties by credit code. Stable sort on the count alone suffices when the
    # targets come in credit-code order (as the engine passes them); otherwise sort fully.
    if all(map(operator.lt, codes, codes[1:])):
        order = np.argsort(eligible_count, kind="stable")
    else:
        counts = eligible_count.tolist()
        order = np.array(sorted(range(len(targets)), key=lambda t: (counts[t], codes[t])))
    conflict_start, conflict_members = _conflicts_per_target(codes, conflicted)
    previous_members = _previous_members(codes, previous, inspectors.ids, size)
    team = np.zeros((len(targets), size), dtype=np.int64)  # members in pick order
    filled = np.zeros(len(targets), dtype=np.int64)
    args = (prefix, widths, capacity, conflict_start, conflict_members, previous_members)
    pos = 0
    while (pos := _walk_targets(order, pos, *args, team, filled)) < len(targets):
        t = int(order[pos])
        key = (regions[t], departments[t])
        group = members[key]
        if widths[t] < len(group):
            full = np.asarray(_rank(salt_keys[t], insp_hash[group], group), dtype=np.int64)
            conflicts = conflict_members[conflict_start[t] : conflict_start[t + 1]]
            filled[t] = _walk(full, capacity, conflicts, previous_members[t], team[t])
        capacity[team[t, : filled[t]]] -= 1
        if filled[t] < size:
            # The walk ended short: exchange inspectors between this group's teams (SPEC §7).
            served = set(order[: pos + 1].tolist())
            team_of = {u: team[u, : filled[u]].tolist() for u in groups[key] if u in served}
            repair = _Repair(
                targets, groups[key], group, team_of, capacity, conflicted, size, previous,
                inspectors, salt_keys, insp_hash,
            )  # fmt: skip
            repair.fill(t, rules.load_cap)
            for u, picked in team_of.items():
                team[u], filled[u] = picked, size
        pos += 1
    names = np.asarray(inspectors.ids, dtype=object)[team[order]].tolist()
    return dict(
        zip(np.asarray(codes, dtype=object)[order].tolist(), map(tuple, names), strict=True)
    )


def _id_hashes(ids: tuple[str, ...]) -> np.ndarray:
    """FNV-1a-64 of each id's UTF-8 bytes (:func:`fnv1a64_strings`), vectorised per byte length:
    a byte loop in Python over 5,000 ids costs more than the rest of the set-up."""
    if len(ids) < 64:  # numpy's cost per call exceeds the byte loop's
        return fnv1a64_strings(ids)
    encoded = [v.encode("utf-8") for v in ids]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    out = np.empty(len(encoded), dtype=np.uint64)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        chunk = b"".join([encoded[k] for k in rows.tolist()])
        out[rows] = fnv1a64_rows(np.frombuffer(chunk, dtype=np.uint8).reshape(len(rows), length))
    return out


def _conflicts_per_target(
    codes: tuple[str, ...], conflicted: set[tuple[str, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """The inspectors in conflict with target ``t`` are ``members[start[t]:start[t + 1]]``: the
    compiled walk's form of ``(code, i) in conflicted``."""
    of_code: dict[str, list[int]] = {}
    for code, i in conflicted:
        of_code.setdefault(code, []).append(i)
    per_target = list(map(of_code.get, codes, itertools.repeat(())))
    lengths = itertools.accumulate(map(len, per_target), initial=0)
    start = np.fromiter(lengths, dtype=np.int64, count=len(codes) + 1)
    members = np.fromiter(itertools.chain.from_iterable(per_target), dtype=np.int64)
    return start, members


def _previous_members(
    codes: tuple[str, ...], previous: Mapping[str, tuple[str, ...]], ids: tuple[str, ...], size: int
) -> np.ndarray:
    """Each target's previous team as inspector positions (-1: not an inspector of the table),
    a row of -1 where it has fewer than ``size`` distinct ids: the compiled walk compares
    positions where the rule compares sets of ids. A row of ``size`` positions that repeats one
    never equals a team (``size`` distinct inspectors), as the rule's sets never would.

    Teams of ``size`` ids (the usual case) are looked up all at once; only longer ones, which
    may repeat an id, go through a set each."""
    out = np.full((len(codes), size), -1, dtype=np.int64)
    index = dict(zip(ids, range(len(ids)), strict=True))
    teams = list(map(previous.get, codes, itertools.repeat(())))
    exact = list(map(size.__eq__, map(len, teams)))
    rows = list(itertools.compress(range(len(codes)), exact))
    if rows:
        flat = itertools.chain.from_iterable(itertools.compress(teams, exact))
        found = np.fromiter(map(index.get, flat, itertools.repeat(-1)), dtype=np.int64)
        out[rows] = found.reshape(len(rows), size)
    for t in itertools.compress(range(len(codes)), map(size.__lt__, map(len, teams))):
        team = frozenset(teams[t])
        if len(team) == size:
            out[t] = [index.get(i, -1) for i in team]
    return out


def _rank(salt_key: np.uint64, hashes: np.ndarray, group: np.ndarray) -> list[int]:
    """All of a group's inspectors by (key, inspector id)."""
    keys = unit_keys(salt_key, hashes)
    return group[np.lexsort((group, keys))].tolist()


def _ranked_prefixes(
    groups: Mapping[tuple[str, str], list[int]],
    members: Mapping[tuple[str, str], np.ndarray],
    salt_keys: np.ndarray,
    insp_hash: np.ndarray,
    size: int,
    n_targets: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per target, its first few inspectors by (key, id): enough unless loads or conflicts bite.
    Target ``t``'s are ``prefix[t, :width[t]]``.

    Compiled per group (:func:`serving.draws.keys.smallest_keys`); the prefix is exactly the
    head of the full ranking by (key, id) — the group is id-sorted — ties included.
    """
    prefix = np.zeros((n_targets, size + 6), dtype=np.int64)
    width = np.zeros(n_targets, dtype=np.int64)
    for key, idx in groups.items():
        group = members[key]
        rows = np.asarray(idx, dtype=np.int64)
        w = min(len(group), size + 6)
        prefix[rows, :w] = group[smallest_keys(salt_keys[rows], insp_hash[group], w)]
        width[rows] = w
    return prefix, width


@numba.njit(cache=True)
def _holds(values, x):  # pragma: no cover - compiled
    for v in values:  # noqa: SIM110 - numba compiles no any() over a generator
        if v == x:
            return True
    return False


@numba.njit(cache=True)
def _walk(ranked, capacity, conflicts, previous, team):  # pragma: no cover - compiled
    """SPEC §7 "Pick" for one target: walk ``ranked`` into ``team``, skipping inspectors with no
    capacity left or in ``conflicts``; the first time the team is full and every member is in
    ``previous`` (positions, see :func:`_previous_members`), drop the last one appended and go
    on. Returns how many it holds; capacities are not taken."""
    size = len(team)
    n = 0
    replaced = False
    for i in ranked:
        if capacity[i] <= 0 or _holds(conflicts, i):
            continue
        team[n] = i
        n += 1
        if n == size:
            if not replaced:
                same = True
                for j in team:
                    same = same and _holds(previous, j)
                if same:
                    n -= 1
                    replaced = True
                    continue
            break
    return n


@numba.njit(cache=True)
def _walk_targets(
    order, start, prefix, width, capacity, conflict_start, conflict_members, previous, team, filled
):  # pragma: no cover - compiled
    """Walk ``order[start:]`` (each target's ranked prefix), each full team taking one unit of
    its members' capacities, up to the first target that ends short: its position in ``order``
    (its capacities not taken), or ``len(order)``."""
    for pos in range(start, len(order)):
        t = order[pos]
        conflicts = conflict_members[conflict_start[t] : conflict_start[t + 1]]
        filled[t] = _walk(prefix[t, : width[t]], capacity, conflicts, previous[t], team[t])
        if filled[t] < team.shape[1]:
            return pos
        for i in team[t]:
            capacity[i] -= 1
    return len(order)


class _Repair:
    """Augmenting paths for a target whose walk ended short (SPEC.md §7, "Repair").

    The group's teams are a flow: each served target holds ``team_size`` distinct eligible
    inspectors, each inspector at most its capacity. A breadth-first search from the short
    target finds an inspector with capacity left, reached through a chain of exchanges (target
    ``u`` gives its member ``i`` to the target before it in the chain and takes ``j`` instead);
    one such path adds one member. No path, and none was rejected by the previous-team rule,
    proves (max-flow/min-cut) that no assignment of this group's targets meets every rule.
    When that rule did reject a path, the short target may give up one of its own members and
    search again (step 4); if that fails too, :class:`_Exact` (step 5) completes the team or
    proves that no assignment exists. Steps 1–4 are kept because they decide the teams of every
    draw they complete.
    """

    def __init__(
        self,
        targets: list[Target],
        group_targets: list[int],
        group: np.ndarray,
        team_of: dict[int, list[int]],
        capacity: np.ndarray,
        conflicted: set[tuple[str, int]],
        size: int,
        previous: Mapping[str, tuple[str, ...]],
        inspectors: InspectorTable,
        salt_keys: np.ndarray,
        insp_hash: np.ndarray,
    ) -> None:
        self.targets, self.group, self.team_of = targets, group, team_of
        self.capacity, self.conflicted, self.size = capacity, conflicted, size
        self.previous, self.inspectors = previous, inspectors
        self.salt_keys, self.hashes = salt_keys, insp_hash[group]
        self.group_targets = group_targets
        self.rankings: dict[int, list[int]] = {}
        self.barred = -1  # an inspector the short target may not take back (see _without_one)

    def ranking(self, u: int) -> list[int]:
        if u not in self.rankings:
            self.rankings[u] = _rank(self.salt_keys[u], self.hashes, self.group)
        return self.rankings[u]

    def fill(self, t: int, load_cap: int | None) -> set[int]:
        """Add members to ``t`` until full; the targets whose teams changed, or refuse."""
        changed: set[int] = set()
        while len(self.team_of[t]) < self.size:
            found, reached, rejected = self._search(t)
            if found is None and rejected:
                found = self._without_one(t)
                if found is None:
                    found = _Exact(self).fill(t, load_cap)  # step 5: complete, or refuses
            if found is None:
                raise DrawRefused(self._reason(t, reached, load_cap))
            changed |= found
        return changed - {t}

    def _without_one(self, t: int) -> set[int] | None:
        """After a search stopped by the previous-team rule: for each member ``a`` of ``t`` in
        team order, take ``a`` out (its capacity back) and search again with ``a`` barred from
        ``t``; keep the first attempt that completes ``t``, undo the others."""
        mine = [u for u in self.group_targets if u in self.team_of]
        for a in list(self.team_of[t]):
            saved = {u: self.team_of[u] for u in mine}
            saved_capacity = self.capacity[self.group].copy()
            self.team_of[t] = [i for i in self.team_of[t] if i != a]
            self.capacity[a] += 1
            self.barred = a
            changed = {t}
            while len(self.team_of[t]) < self.size:
                found, _, _ = self._search(t)
                if found is None:
                    break
                changed |= found
            self.barred = -1
            if len(self.team_of[t]) == self.size:
                return changed
            self.team_of.update(saved)
            self.capacity[self.group] = saved_capacity
        return None

    def _search(self, t: int) -> tuple[set[int] | None, dict[int, int], int]:
        """One breadth-first search; applies the first acceptable augmenting path found."""
        holders: dict[int, list[int]] = {}
        served = sorted(
            (u for u in self.group_targets if u in self.team_of),
            key=lambda u: self.targets[u].code_bytes,
        )
        for u in served:
            for i in self.team_of[u]:
                holders.setdefault(i, []).append(u)
        via: dict[int, int] = {t: -1}  # target -> the member it would give up (-1: the root)
        taken_by: dict[int, int] = {}  # inspector -> the target that would take it
        queue = deque([t])
        rejected = 0
        while queue:
            u = queue.popleft()
            code, team = self.targets[u].code, self.team_of[u]
            barred = self.barred if u == t else -1
            for i in self.ranking(u):
                if i in taken_by or i in team or (code, i) in self.conflicted or i == barred:
                    continue
                taken_by[i] = u
                if self.capacity[i] > 0:
                    new = self._path(i, via, taken_by)
                    if self._allowed(new):
                        self.team_of.update(new)
                        self.capacity[i] -= 1
                        return set(new), via, rejected
                    rejected += 1
                for w in holders.get(i, ()):
                    if w not in via:
                        via[w] = i
                        queue.append(w)
        return None, via, rejected

    def _path(self, k: int, via: dict[int, int], taken_by: dict[int, int]) -> dict[int, list[int]]:
        """New teams along the path ending at ``k``: each target takes, in place, a new member."""
        new: dict[int, list[int]] = {}
        i = k
        while True:
            u = taken_by[i]
            gives = via[u]
            team = list(self.team_of[u])
            if gives < 0:
                team.append(i)
                new[u] = team
                return new
            team[team.index(gives)] = i
            new[u] = team
            i = gives

    def _allowed(self, new: dict[int, list[int]]) -> bool:
        """False when a team the path completes or changes equals its target's previous team."""
        for u, team in new.items():
            prev = self.previous.get(self.targets[u].code)
            ids = frozenset(self.inspectors.ids[i] for i in team)
            if prev and len(team) == self.size and ids == frozenset(prev):
                return False
        return True

    def able(self, reached: Iterable[int], load_cap: int | None) -> int:
        """How many of the group's inspectors had capacity before the draw and are eligible
        for at least one of the ``reached`` targets (the refusals' ``k``)."""
        loads = self.inspectors.load
        return len({
            int(i)
            for u in reached
            for i in self.group
            if (load_cap is None or loads[i] < load_cap)
            and (self.targets[u].code, int(i)) not in self.conflicted
        })  # fmt: skip

    def _reason(self, t: int, reached: dict[int, int], load_cap: int | None) -> str:
        target, size = self.targets[t], self.size
        where = f"region {target.region}, department {target.department}: "
        m = len(self.group_targets)
        k = self.able(reached, load_cap)
        word = "inspector" if k == 1 else "inspectors"
        if len(reached) == 1:
            return (
                f"{where}target {target.code} has {k} eligible {word} with capacity (load cap "
                f"{load_cap}; {m} target{'s' if m != 1 else ''} in the group), teams of {size} "
                f"need at least {size}"
            )
        places = size * len(reached)
        filled = sum(len(self.team_of[u]) for u in reached)
        n = len(reached) - 1
        return (
            f"{where}no assignment meets every rule ({m} targets, teams of {size}, load cap "
            f"{load_cap}): target {target.code} and the {n} other target{'s' if n != 1 else ''} "
            f"it could exchange inspectors with need {places} places, and the {k} eligible "
            f"{word} with capacity they can draw on fill at most {filled} of them"
        )


_ROOT, _OTHER_SIDE = -1, -2  # how _Exact reached a node, besides through an inspector


class _Exact:
    """Step 5 of the repair (SPEC.md §7): augmenting paths in a flow where the previous-team
    rule is a capacity, so the search is complete.

    A team equals its previous team exactly when it holds all ``team_size`` of its members, so
    "never the previous team" is "at most ``team_size - 1`` of them": each target whose previous
    team it could form again (every member eligible) gets a second node ⟨u,P⟩ through which
    alone it takes those members, and the edge ⟨u⟩ → ⟨u,P⟩ carries at most ``team_size - 1``.
    Every assignment meeting every rule is a flow in this network and conversely, so a
    breadth-first search that finds no augmenting path proves (max-flow/min-cut) that none
    exists. Each search is linear in the group's eligible pairs; at most ``team_size`` run.
    """

    def __init__(self, repair: _Repair) -> None:
        self.r = repair
        index = {repair.inspectors.ids[i]: int(i) for i in repair.group}
        self.prev: dict[int, frozenset[int]] = {}
        for u in repair.group_targets:
            ids = frozenset(repair.previous.get(repair.targets[u].code, ()))
            members = frozenset(index[i] for i in ids if i in index)
            code = repair.targets[u].code
            if (
                len(ids) == repair.size == len(members)
                and not any((code, i) in repair.conflicted for i in members)
            ):  # fmt: skip
                self.prev[u] = members

    def fill(self, t: int, load_cap: int | None) -> set[int]:
        """Searches until ``t`` is full: the targets whose teams changed, or refuse."""
        changed = {t}
        while len(self.r.team_of[t]) < self.r.size:
            found, reached = self._search(t)
            if found is None:
                raise DrawRefused(self._reason(t, reached, load_cap))
            changed |= found
        return changed

    def _search(self, t: int) -> tuple[set[int] | None, set[int]]:
        """One breadth-first search from ⟨t⟩; applies the first augmenting path found."""
        r, size = self.r, self.r.size
        served = sorted(
            (u for u in r.group_targets if u in r.team_of), key=lambda u: r.targets[u].code_bytes
        )
        holders: dict[int, list[int]] = {}
        for u in served:
            for i in r.team_of[u]:
                holders.setdefault(i, []).append(u)
        # A node is (target, side), side 1 being ⟨u,P⟩; via[node] is how it was reached: the
        # inspector its target would give up, _ROOT (⟨t⟩) or _OTHER_SIDE (from its other node).
        via: dict[tuple[int, int], int] = {(t, 0): _ROOT}
        taken_by: dict[int, tuple[int, int]] = {}
        queue = deque([(t, 0)])
        while queue:
            node = queue.popleft()
            u, side = node
            code, team, prev = r.targets[u].code, r.team_of[u], self.prev.get(u, frozenset())
            for i in r.ranking(u):
                if i in taken_by or i in team or (code, i) in r.conflicted or (i in prev) != side:
                    continue
                taken_by[i] = node
                if r.capacity[i] > 0:
                    new = self._path(i, via, taken_by)
                    r.team_of.update(new)
                    r.capacity[i] -= 1
                    return set(new), set()
                for w in holders.get(i, ()):
                    gives = (w, int(i in self.prev.get(w, ())))
                    if gives not in via:
                        via[gives] = i
                        queue.append(gives)
            held = len(prev.intersection(team))
            if prev and (u, 1 - side) not in via and (held < size - 1 if side == 0 else held > 0):
                via[(u, 1 - side)] = _OTHER_SIDE
                queue.append((u, 1 - side))
        return None, {u for u, _ in via}

    def _path(
        self, k: int, via: dict[tuple[int, int], int], taken_by: dict[int, tuple[int, int]]
    ) -> dict[int, list[int]]:
        """New teams along the path ending at ``k``: each target puts what it takes in the place
        of what it gives up (``t`` appends); a target may be on it by both of its nodes."""
        new: dict[int, list[int]] = {}
        i = k
        while True:
            u, side = taken_by[i]
            gives = via[(u, side)]
            if gives == _OTHER_SIDE:
                gives = via[(u, 1 - side)]
            team = new.setdefault(u, list(self.r.team_of[u]))
            if gives == _ROOT:
                team.append(i)
                return new
            team[team.index(gives)] = i
            i = gives

    def _reason(self, t: int, reached: set[int], load_cap: int | None) -> str:
        r, size = self.r, self.r.size
        target, m, n = r.targets[t], len(r.group_targets), len(reached) - 1
        k = r.able(reached, load_cap)
        x = sum(u in self.prev for u in reached)
        tail = (
            f"a previous team ({x} of these {n + 1} targets could repeat theirs)"
            if n
            else "its previous team"
        )
        who = f"target {target.code} needs"
        if n:
            who = (
                f"target {target.code} and the {n} other target{'s' if n != 1 else ''} it could "
                f"exchange inspectors with need"
            )
        return (
            f"region {target.region}, department {target.department}: no assignment meets every "
            f"rule ({m} target{'s' if m != 1 else ''}, teams of {size}, load cap {load_cap}): "
            f"{who} {size * len(reached)} places, and the {k} eligible "
            f"inspector{'s' if k != 1 else ''} with capacity they can draw on fill at most "
            f"{sum(len(r.team_of[u]) for u in reached)} of them without repeating {tail}"
        )
