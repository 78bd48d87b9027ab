"""``draw(inputs, seed)``: scope → exclusions → cells → allocation → keys → arms → teams.

The one place that knows the order of the steps (SPEC.md §4–§8); every step is a pure function
of the validated inputs and the seed, so the same inputs and seed give the same draw anywhere.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from serving.draws.allocate import DrawRefused, cell_counts, control_count
from serving.draws.gc_pause import gc_paused
from serving.draws.inputs import SPEC_VERSION, DrawInputs, commit
from serving.draws.keys import salt_key, seed_hash, seed_key, unit_keys
from serving.draws.pool import CODE_LENGTH, NO_DATE, PoolTable, day_number
from serving.draws.select import select_cells, smallest
from serving.draws.teams import Target, assign_teams

NO_STRATUM = "*"
ARMS = ("", "risk", "control", "both")
BACKGROUND_HASH_ROWS = 100_000
CONTROL_SALT = "control"


def risk_salt(stratum: str, tier: str) -> str:
    """Salt of a risk-arm cell's keys."""
    return f"risk|{stratum}|{tier}"


@dataclass(frozen=True, eq=False)
class DrawResult:
    """A draw: its targets (with arm, cell, π, keys), teams, receipt, and every row's π."""

    inputs: DrawInputs
    seed: str
    commitment: str
    targets: pd.DataFrame
    teams: dict[str, tuple[str, ...]]
    receipt: dict
    _rows: dict = field(repr=False)

    @property
    def population(self) -> pd.DataFrame:
        """Every in-scope enterprise, drawn or not: eligibility, exclusion reason, π, keys."""
        r = self._rows
        rows, eligible = r["rows"], r["eligible"]
        safe = np.maximum(r["cell_of"], 0)
        cell_n = np.where(eligible, r["n_cell"][safe], 0)
        cell_N = np.where(eligible, r["big_n"][safe], 0)
        pi_risk = np.where(eligible, cell_n / np.maximum(cell_N, 1), 0.0)
        pi_control = np.where(eligible, r["n_control"] / r["n_eligible"], 0.0)
        pool = self.inputs.pool
        return pd.DataFrame(
            {
                "credit_code": pd.Series(pool.codes.take(rows).to_pandas(), dtype="str"),
                "tier": pool.tier.values(rows),
                "stratum": r["stratum"][0][r["stratum"][1]],
                "excluded_reason": r["reason"][0][r["reason"][1]],
                "cell_n": cell_n,
                "cell_N": cell_N,
                "pi_risk": pi_risk,
                "pi_control": pi_control,
                "pi": 1.0 - (1.0 - pi_risk) * (1.0 - pi_control),
                "key_risk": np.where(eligible, r["key_risk"], np.uint64(0)),
                "key_control": np.where(eligible, r["key_control"], np.uint64(0)),
                "arm": np.asarray(ARMS, dtype=object)[r["arm"]],
            }
        )


def _effective_department(pool: PoolTable, department: str) -> tuple[np.ndarray, tuple[str, ...]]:
    names = tuple(name or department for name in pool.department.names)
    return pool.department.idx, names


def _scope(inputs: DrawInputs) -> np.ndarray:
    """Rows in the draw's population (filters of SPEC.md §4), as sorted row numbers."""
    pool, flt = inputs.pool, inputs.policy.filters
    n = len(pool)
    keep = np.ones(n, dtype=bool)
    described = []
    for name, wanted in (("region", flt.regions), ("industry", flt.industries)):
        if wanted is not None:
            labels = getattr(pool, name)
            allowed = [labels.position(w) for w in wanted]
            keep &= np.isin(labels.idx, [a for a in allowed if a >= 0])
            described.append(f"{name} in {list(wanted)}")
    if flt.departments is not None:
        idx, names = _effective_department(pool, inputs.department)
        allowed = [i for i, name in enumerate(names) if name in flt.departments]
        keep &= np.isin(idx, allowed)
        described.append(f"department in {list(flt.departments)}")
    if flt.credit_codes is not None:
        wanted = np.array(sorted(set(flt.credit_codes)), dtype="S18")
        flat = pool.code_bytes.view("S18").ravel()
        pos = np.searchsorted(flat, wanted)
        found = (pos < n) & (flat[np.minimum(pos, n - 1)] == wanted)
        if not found.all():
            missing = [w.decode() for w in wanted[~found][:5]]
            raise ValueError(
                f"filters.credit_codes: {int((~found).sum())} code(s) not in the pool, e.g. {missing}"
            )
        listed = np.zeros(n, dtype=bool)
        listed[pos] = True
        keep &= listed
        described.append(f"{len(wanted)} listed credit codes")
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise ValueError(
            f"the pool is empty after filters: {', '.join(described)} matched 0 of {n} enterprises"
        )
    return rows


REASONS = ("", "inspected_within_{days}_days", "yearly_cap_{cap}_reached")


def _exclusions(inputs: DrawInputs, rows: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Exclusion reason per in-scope row: codes into the returned names (0 = eligible)."""
    ex = inputs.policy.exclusions
    pool = inputs.pool
    code = np.zeros(len(rows), dtype=np.int8)
    recent_tag = f"inspected_within_{ex.inspected_within_days}_days"
    cap_tag = f"yearly_cap_{ex.yearly_cap}_reached"
    if ex.inspected_within_days is not None:
        last = pool.last_inspected[rows]
        recent = (last != NO_DATE) & (
            day_number(inputs.draw_date) - last < ex.inspected_within_days
        )
        code[recent] |= 1
    if ex.yearly_cap is not None:
        code[pool.draws_this_year[rows] >= ex.yearly_cap] |= 2
    return code, ("", recent_tag, cap_tag, f"{recent_tag};{cap_tag}")


def draw(inputs: DrawInputs, seed: str, *, fresh_hashes: bool = False) -> DrawResult:
    """Run the draw. ``seed`` must hash to ``inputs.seed_hash`` (commit–reveal).

    ``fresh_hashes`` recomputes the snapshot hashes instead of reusing cached ones (verify).
    Raises ``ValueError`` (empty pool, unknown tier), :class:`DrawRefused` (infeasible quota,
    too few inspectors).
    """
    if seed_hash(seed) != inputs.seed_hash:
        raise ValueError("seed: its SHA-256 does not match the committed seed_hash")
    with gc_paused():
        return _draw_and_commit(inputs, seed, cached=not fresh_hashes)


def _draw_and_commit(inputs: DrawInputs, seed: str, cached: bool) -> DrawResult:
    if len(inputs.pool) >= BACKGROUND_HASH_ROWS:
        # Hash the pool snapshot on the second core while drawing (hashlib and Arrow drop the GIL).
        with ThreadPoolExecutor(max_workers=1) as pool_hasher:
            pending = pool_hasher.submit(inputs.pool.sha256, cached)
            result = _draw(inputs, seed)
            pool_sha = pending.result()
    else:
        pool_sha = inputs.pool.sha256(cached)
        result = _draw(inputs, seed)
    commitment = commit(inputs, pool_sha, cached)
    result["receipt"]["inspectors_sha256"] = inputs.inspectors.sha256()  # as just committed
    result["receipt"]["commitment"] = commitment
    result["receipt"]["pool_sha256"] = pool_sha
    return DrawResult(inputs=inputs, seed=seed, commitment=commitment, **result)


def _draw(inputs: DrawInputs, seed: str) -> dict:
    pool, policy = inputs.pool, inputs.policy
    skey = seed_key(seed)
    rows = _scope(inputs)

    tier_idx = pool.tier.idx[rows]
    known = set(policy.tiers)
    for t, name in enumerate(pool.tier.names):
        if name not in known and bool(np.any(tier_idx == t)):
            count = int(np.count_nonzero(tier_idx == t))
            raise ValueError(
                f"pool.tier: {name!r} ({count} enterprises in scope) is not a tier of the "
                f"policy's scheme {list(policy.tiers)}"
            )

    reason, reason_names = _exclusions(inputs, rows)
    eligible = reason == 0
    n_eligible = int(eligible.sum())
    excluded = {
        reason_names[k]: int(v) for k, v in enumerate(np.bincount(reason, minlength=4)) if k and v
    }
    if n_eligible == 0:
        counts = excluded
        raise ValueError(
            f"the pool is empty after exclusions: all {len(rows)} enterprises in scope are "
            f"excluded ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})"
        )

    # Cells: (stratum, tier), numbered in (stratum name, tier name) order.
    if policy.stratify_by is None:
        strata, stratum_idx = (NO_STRATUM,), np.zeros(len(rows), dtype=np.int64)
    else:
        labels = getattr(pool, policy.stratify_by)
        strata, stratum_idx = labels.names, labels.idx[rows].astype(np.int64)
    tiers = pool.tier.names
    cell_code = stratum_idx * len(tiers) + tier_idx
    sizes_all = np.bincount(cell_code[eligible], minlength=len(strata) * len(tiers))
    present = np.flatnonzero(sizes_all)
    cells = [(strata[c // len(tiers)], tiers[c % len(tiers)]) for c in present]
    cell_number = np.full(len(strata) * len(tiers), -1, dtype=np.int64)
    cell_number[present] = np.arange(len(present))
    cell_of = np.where(eligible, cell_number[cell_code], -1)
    sizes = {cell: int(sizes_all[c]) for cell, c in zip(cells, present, strict=True)}
    counts = cell_counts(policy, sizes)
    n_cell = np.array([counts[c] for c in cells], dtype=np.int64)
    big_n = np.array([sizes[c] for c in cells], dtype=np.int64)

    # Keys and the risk arm.
    cell_keys = np.array([salt_key(skey, risk_salt(*c)) for c in cells], dtype=np.uint64)
    hashes = pool.code_hash[rows]
    key_risk = unit_keys(cell_keys[np.maximum(cell_of, 0)], hashes)
    risk = select_cells(cell_of, key_risk, n_cell)

    # Control arm: SRSWOR over all eligible rows, independent salt.
    risk_total = int(n_cell.sum())
    n_control = control_count(policy, risk_total, n_eligible)
    key_control = unit_keys(np.uint64(salt_key(skey, CONTROL_SALT)), hashes)
    elig_pos = np.flatnonzero(eligible)
    control = np.zeros(len(rows), dtype=bool)
    control[elig_pos[smallest(key_control[elig_pos], n_control)]] = True

    # Inclusion probabilities.
    target_cells = cell_of[risk | control]
    cell_n, cell_N = n_cell[target_cells], big_n[target_cells]  # targets only (all eligible)
    pi_risk = cell_n / cell_N
    pi = 1.0 - (1.0 - pi_risk) * (1.0 - n_control / n_eligible)
    arm = risk.astype(np.int8) + 2 * control.astype(np.int8)  # index into ARMS
    stratum_names = np.asarray(strata, dtype=object)

    # Targets, in credit-code order.
    chosen = np.flatnonzero(risk | control)
    target_rows = rows[chosen]
    code_bytes = pool.code_bytes[target_rows].view(f"S{CODE_LENGTH}").ravel().tolist()
    codes = [c.decode("ascii") for c in code_bytes]
    dept_idx, dept_names = _effective_department(pool, inputs.department)
    regions = pool.region.values(target_rows)
    departments = np.asarray(dept_names, dtype=object)[dept_idx[target_rows]]
    targets_list = list(map(Target, codes, code_bytes, regions, departments))
    teams = assign_teams(targets_list, inputs.inspectors, policy.teams, skey, inputs.previous_teams)

    targets = pd.DataFrame(
        {
            "credit_code": codes,
            "arm": np.asarray(ARMS, dtype=object)[arm[chosen]],
            "stratum": stratum_names[stratum_idx[chosen]],
            "tier": pool.tier.values(target_rows),
            "region": regions,
            "industry": pool.industry.values(target_rows),
            "department": departments,
            "pi": pi,
            "pi_fraction": _pi_fractions(cell_n, cell_N, n_control, n_eligible),
            "cell_n": cell_n,
            "cell_N": cell_N,
            "control_n": n_control,
            "control_N": n_eligible,
            "key_risk": hex_keys(key_risk[chosen]),
            "key_control": hex_keys(key_control[chosen]),
            "team": [";".join(teams[c]) for c in codes],
        }
    )
    receipt = {
        "spec": SPEC_VERSION,
        "draw_id": inputs.draw_id,
        "draw_date": inputs.draw_date.isoformat(),
        "department": inputs.department,
        "seed": seed,
        "seed_hash": inputs.seed_hash,
        "inspectors_sha256": inputs.inspectors.sha256(),
        "model_version": inputs.model_version,
        "data_fingerprint": inputs.data_fingerprint,
        "policy": policy.canonical(),
        "counts": {
            "pool": len(pool),
            "in_scope": len(rows),
            "excluded": dict(sorted(excluded.items())),
            "eligible": n_eligible,
            "risk": risk_total,
            "control": n_control,
            "both": int((risk & control).sum()),
            "targets": len(chosen),
        },
        "cells": [
            {"stratum": s, "tier": t, "N": sizes[(s, t)], "n": counts[(s, t)]} for s, t in cells
        ],
    }
    return {
        "targets": targets,
        "teams": teams,
        "receipt": receipt,
        "_rows": {
            "rows": rows,
            "eligible": eligible,
            "stratum": (stratum_names, stratum_idx),
            "reason": (np.asarray(reason_names, dtype=object), reason),
            "cell_of": cell_of,
            "n_cell": n_cell,
            "big_n": big_n,
            "n_control": n_control,
            "n_eligible": n_eligible,
            "key_risk": key_risk,
            "key_control": key_control,
            "arm": arm,
        },
    }


def hex_keys(keys: np.ndarray) -> list[str]:
    """64-bit keys as 16 lowercase hex digits each (SPEC.md §2), without a Python loop per key."""
    text = keys.astype(">u8").tobytes().hex()
    return [text[i : i + 16] for i in range(0, len(text), 16)]


def _pi_fractions(n: np.ndarray, big_n: np.ndarray, n_c: int, big_n_c: int) -> list[str]:
    """π = 1 − (1 − n/N)(1 − n_c/N_c) = (N·N_c − (N − n)(N_c − n_c)) / (N·N_c), reduced."""
    out = []
    for a, b in zip(n.tolist(), big_n.tolist(), strict=True):
        den = b * big_n_c
        num = den - (b - a) * (big_n_c - n_c)
        g = math.gcd(num, den)
        out.append(f"{num // g}/{den // g}" if den != g else str(num // g))
    return out


__all__ = ["DrawRefused", "DrawResult", "draw"]
