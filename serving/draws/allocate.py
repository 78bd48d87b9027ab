"""How many targets each (stratum × tier) cell gets: exact rational arithmetic, no floats.

Why exact: a third party re-implementing the allocation must get the same integers, and float
rounding of e.g. 0.05 × 1,000 differs between languages and libraries. Ratios, shares and the
floor are read as the decimal numbers they print as (``Fraction(repr(x))``), every product is a
rational, and rounding is spelt out: ``round_half_up(x) = floor(x + 1/2)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from fractions import Fraction

from serving.draws.policy import DrawPolicy, QuotaAllocation, RatioAllocation

Cell = tuple[str, str]  # (stratum, tier)


class DrawRefused(ValueError):
    """The request cannot be met as asked (counts in the message); nothing was drawn."""


@functools.lru_cache(maxsize=1024)
def exact(x: float) -> Fraction:
    """The decimal a float prints as, as an exact rational (0.05 → 1/20, not 0.05000000000000000277)."""
    return Fraction(repr(float(x)))


def round_half_up(x: Fraction) -> int:
    """floor(x + 1/2)."""
    return math.floor(x + Fraction(1, 2))


def floor_count(floor: float, size: int) -> int:
    """The fewest targets that give every unit of a cell of ``size`` a probability ≥ floor."""
    return min(size, math.ceil(exact(floor) * size))


def allocate(total: int, sizes: Mapping[Cell, int], floors: Mapping[Cell, int]) -> dict[Cell, int]:
    """Split ``total`` over cells in proportion to size, each cell at least its floor.

    Cells whose proportional quota falls below their floor are fixed at the floor and the rest
    is re-split among the others (repeat until none falls below); then largest remainder:
    every cell gets floor(quota), and the leftover units go one each to the largest fractional
    parts, ties broken by cell name ascending (stratum, then tier; Unicode code-point order).
    """
    floor_total = sum(floors.get(c, 0) for c in sizes)
    if total < floor_total or total > sum(sizes.values()):
        raise DrawRefused(
            f"cannot split {total} targets over cells of {sum(sizes.values())} enterprises "
            f"with floors totalling {floor_total}"
        )
    result: dict[Cell, int] = {c: 0 for c in sizes}
    active = sorted(c for c, n in sizes.items() if n > 0)
    while True:
        remaining = total - sum(result[c] for c in sizes if c not in active)
        weight = sum(sizes[c] for c in active)
        quotas = {c: Fraction(remaining * sizes[c], weight) for c in active} if weight else {}
        low = [c for c in active if quotas[c] < floors.get(c, 0)]
        if not low:
            break
        for c in low:
            result[c] = floors.get(c, 0)
        active = [c for c in active if c not in low]
    for c in active:
        result[c] = math.floor(quotas[c])
    leftover = total - sum(result.values())
    by_remainder = sorted(active, key=lambda c: (-(quotas[c] - math.floor(quotas[c])), c))
    for c in by_remainder[:leftover]:
        result[c] += 1
    return result


def cell_counts(policy: DrawPolicy, sizes: Mapping[Cell, int]) -> dict[Cell, int]:
    """Risk-arm targets per cell under ``policy`` for eligible cell sizes ``sizes``."""
    floors = {c: floor_count(policy.floor, n) for c, n in sizes.items()}
    alloc = policy.allocation
    if isinstance(alloc, RatioAllocation):
        out: dict[Cell, int] = {}
        for tier in alloc.tiers:
            cells = {c: n for c, n in sizes.items() if c[1] == tier}
            if not cells:
                continue
            size = sum(cells.values())
            want = round_half_up(exact(alloc.ratios[tier]) * size)
            tier_total = max(want, sum(floors[c] for c in cells))
            out.update(allocate(tier_total, cells, floors))
        return out
    return _quota_counts(alloc, sizes, floors)


def _quota_counts(
    alloc: QuotaAllocation, sizes: Mapping[Cell, int], floors: Mapping[Cell, int]
) -> dict[Cell, int]:
    high = {c: n for c, n in sizes.items() if c[1] in alloc.high_risk_tiers}
    rest = {c: n for c, n in sizes.items() if c[1] not in alloc.high_risk_tiers}
    n_high, n_rest = sum(high.values()), sum(rest.values())
    f_high = sum(floors[c] for c in high)
    f_rest = sum(floors[c] for c in rest)
    quota = alloc.quota
    tiers = "/".join(alloc.high_risk_tiers)
    if quota > n_high + n_rest:
        raise DrawRefused(
            f"allocation.quota {quota} exceeds the {n_high + n_rest} eligible enterprises"
        )
    if f_high + f_rest > quota:
        raise DrawRefused(
            f"allocation.quota {quota} is below the floor's minimum of {f_high + f_rest} targets "
            f"(every eligible enterprise must keep a probability ≥ the floor)"
        )
    need = math.ceil(exact(alloc.min_high_risk_share) * quota)
    if need > n_high:
        raise DrawRefused(
            f"allocation.min_high_risk_share {alloc.min_high_risk_share} of quota {quota} needs "
            f"{need} high-risk targets (tiers {tiers}); the eligible pool has {n_high}"
        )
    proportional = round_half_up(Fraction(quota * n_high, n_high + n_rest))
    take_high = min(n_high, max(need, proportional, f_high), quota - f_rest)
    take_high = max(take_high, quota - n_rest)
    if take_high < need or quota - take_high < f_rest:
        raise DrawRefused(
            f"allocation.quota {quota} cannot hold {need} high-risk targets (tiers {tiers}) and "
            f"the floor's {f_rest} others"
        )
    out = allocate(take_high, high, floors) if high else {}
    out.update(allocate(quota - take_high, rest, floors) if rest else {})
    return out


def control_count(policy: DrawPolicy, risk_total: int, eligible: int) -> int:
    """Control-arm size: round_half_up(control_fraction × risk-arm size), at most the pool."""
    return min(eligible, round_half_up(exact(policy.control_fraction) * risk_total))
