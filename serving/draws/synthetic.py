"""Synthetic pools and inspector directories for tests, examples and the benchmark.

Why here and not in the tests: the benchmark and the (future) CLI demo need the same generator,
and it must produce codes that pass the GB 32100 check so the pool validation is exercised.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from features.credit_code import ALPHABET, set_check_characters
from serving.draws.inputs import DrawInputs
from serving.draws.keys import seed_hash

_ALPHA = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)


def credit_codes(n: int, rng: np.random.Generator, region_codes: np.ndarray) -> np.ndarray:
    """``n`` distinct well-formed codes ('91' + 6-digit region + 9 random + check), as str."""
    out = np.empty((0, 18), dtype=np.uint8)
    while len(out) < n:
        need = n - len(out)
        m = np.empty((need, 18), dtype=np.uint8)
        m[:, 0], m[:, 1] = ord("9"), ord("1")
        regions = np.frombuffer("".join(region_codes).encode(), dtype=np.uint8).reshape(-1, 6)
        m[:, 2:8] = regions[rng.integers(0, len(regions), need)]
        m[:, 8:17] = _ALPHA[rng.integers(0, len(_ALPHA), (need, 9))]
        set_check_characters(m)
        out = np.unique(np.vstack([out, m]).view("S18").ravel()).view(np.uint8).reshape(-1, 18)
    codes = out[rng.permutation(len(out))[:n]]
    return codes.view("S18").ravel().astype(str)


def pool_frame(
    n: int,
    seed: int = 0,
    regions: int = 10,
    industries: int = 20,
    tiers: tuple[str, ...] = ("A", "B", "C", "D"),
    tier_shares: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1),
    draw_date: date = date(2026, 11, 23),
) -> pd.DataFrame:
    """A pool of ``n`` enterprises: tiers by ``tier_shares``, uniform regions and industries."""
    rng = np.random.default_rng(seed)
    region_names = np.array([f"3301{i:02d}" for i in range(1, regions + 1)])
    region = rng.integers(0, regions, n)
    codes = credit_codes(n, rng, region_names)
    inspected = rng.random(n) < 0.3
    days_ago = rng.integers(0, 365, n)
    last = pd.Series(pd.Timestamp(draw_date) - pd.to_timedelta(days_ago, unit="D")).where(inspected)
    return pd.DataFrame(
        {
            "credit_code": codes,
            "tier": np.array(tiers)[rng.choice(len(tiers), n, p=np.array(tier_shares))],
            "region": region_names[region],
            "industry": np.array([f"I{i:02d}" for i in range(industries)])[
                rng.integers(0, industries, n)
            ],
            "last_inspected_on": last.astype("datetime64[s]"),
            "draws_this_year": rng.poisson(0.3, n),
        }
    )


def inspectors_frame(
    n: int,
    pool: pd.DataFrame,
    department: str = "market",
    seed: int = 0,
    conflict_rate: float = 0.0,
) -> pd.DataFrame:
    """``n`` inspectors of ``department`` spread evenly over the pool's regions; optional
    conflicts with random enterprises of their region."""
    rng = np.random.default_rng(seed)
    region_names = np.sort(pool["region"].unique())
    region = region_names[np.arange(n) % len(region_names)]
    conflicts: list[list[str]] = [[] for _ in range(n)]
    if conflict_rate > 0:
        by_region = {r: pool["credit_code"][pool["region"] == r].to_numpy() for r in region_names}
        for i in np.flatnonzero(rng.random(n) < conflict_rate):
            codes = by_region[region[i]]
            k = min(len(codes), 1 + int(rng.integers(0, 3)))
            conflicts[i] = sorted(rng.choice(codes, k, replace=False).tolist())
    return pd.DataFrame(
        {
            "inspector_id": [f"INS{i:06d}" for i in range(n)],
            "department": department,
            "region": region,
            "conflicts": conflicts,
            "load": rng.integers(0, 3, n),
        }
    )


def example_inputs(
    seed: str = "example-seed",
    n_enterprises: int = 200,
    n_inspectors: int = 24,
    pool_seed: int = 3,
    **overrides: object,
) -> DrawInputs:
    """Small, complete draw inputs (ratios policy stratified by region, control arm, caps);
    any field of :class:`DrawInputs` can be overridden."""
    pool = overrides.pop("pool", None)
    if pool is None:
        pool = pool_frame(n_enterprises, seed=pool_seed, regions=3, industries=4)
    staff = overrides.pop("inspectors", None)
    if staff is None:
        staff = inspectors_frame(n_inspectors, pool, seed=pool_seed, conflict_rate=0.3)
    fields: dict = {
        "draw_id": "example-1",
        "draw_date": date(2026, 11, 23),
        "department": "market",
        "seed_hash": seed_hash(seed),
        "pool": pool,
        "inspectors": staff,
        "policy": EXAMPLE_POLICY,
        "model_version": "risk-model@v3",
        "data_fingerprint": "snapshot-2026-11-22",
    }
    fields.update(overrides)
    return DrawInputs(**fields)


EXAMPLE_POLICY = {
    "allocation": {
        "kind": "ratios",
        "tiers": ["A", "B", "C", "D"],
        "ratios": {"A": 0.05, "B": 0.1, "C": 0.3, "D": 0.7},
    },
    "floor": 0.02,
    "stratify_by": "region",
    "control_fraction": 0.2,
    "exclusions": {"inspected_within_days": 30, "yearly_cap": 2},
    "teams": {"team_size": 2, "load_cap": 12},
}

__all__ = ["EXAMPLE_POLICY", "credit_codes", "example_inputs", "inspectors_frame", "pool_frame"]
