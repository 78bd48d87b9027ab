"""Stored inclusion probabilities are the real ones: 2,000 seeded draws, every enterprise.

Each enterprise's count over S draws is Binomial(S, π) (draws with different seeds are
independent), so it must lie within 5 standard deviations of S·π — for the risk arm, the control
arm, "both" (π_risk·π_control under independence) and the union π = 1 − (1 − π_r)(1 − π_c). A
correct engine fails one of the ~240 checks with probability < 1e-4; the aggregate chi-square
(p > 1e-4) catches a small bias spread over many enterprises.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from serving.draws import draw, seed_hash
from serving.draws.synthetic import example_inputs, inspectors_frame, pool_frame

DRAWS = 2_000
POLICY = {
    "allocation": {
        "kind": "ratios",
        "tiers": ["A", "B", "C", "D"],
        "ratios": {"A": 0.1, "B": 0.25, "C": 0.5, "D": 0.8},
    },
    "floor": 0.05,
    "stratify_by": "region",
    "control_fraction": 0.5,
    "exclusions": {"yearly_cap": 2},
    "teams": {"team_size": 2},
}


@pytest.fixture(scope="module")
def frequencies():
    pool = pool_frame(60, seed=21, regions=2, industries=2)
    pool["draws_this_year"] = 0
    pool.loc[:3, "draws_this_year"] = 2  # four excluded enterprises: π = 0
    base = example_inputs(
        "s-0", pool=pool, inspectors=inspectors_frame(12, pool, seed=21), policy=POLICY
    )
    first = draw(base, "s-0")
    pop = first.population.set_index("credit_code")
    index = {c: i for i, c in enumerate(pop.index)}
    counts = {arm: np.zeros(len(pop)) for arm in ("risk", "control", "both", "any")}
    for s in range(DRAWS):
        seed = f"s-{s}"
        result = draw(base.model_copy(update={"seed_hash": seed_hash(seed)}), seed)
        for code, arm in zip(result.targets["credit_code"], result.targets["arm"], strict=True):
            i = index[code]
            counts["any"][i] += 1
            counts[arm][i] += 1
            if arm == "both":
                counts["risk"][i] += 1
                counts["control"][i] += 1
    return pop, counts


def within(count: np.ndarray, p: np.ndarray, what: str) -> None:
    mean, sd = DRAWS * p, np.sqrt(DRAWS * p * (1 - p))
    bad = np.abs(count - mean) > 5 * sd + 1e-9
    assert not bad.any(), (
        f"{what}: counts {count[bad]} vs expected {mean[bad]} (5σ = {5 * sd[bad]})"
    )


def test_every_enterprise_is_drawn_as_often_as_its_pi_says(frequencies) -> None:
    pop, counts = frequencies
    within(counts["any"], pop["pi"].to_numpy(), "any arm")
    within(counts["risk"], pop["pi_risk"].to_numpy(), "risk arm")
    within(counts["control"], pop["pi_control"].to_numpy(), "control arm")
    both = (pop["pi_risk"] * pop["pi_control"]).to_numpy()
    within(counts["both"], both, "both arms (independence)")


def test_excluded_enterprises_are_never_drawn_and_the_rest_keep_the_floor(frequencies) -> None:
    pop, counts = frequencies
    excluded = (pop["excluded_reason"] != "").to_numpy()
    assert excluded.sum() == 4
    assert (counts["any"][excluded] == 0).all()
    assert (pop["pi"][~excluded] >= 0.05).all()
    assert (counts["any"][~excluded] > 0).all()


def test_aggregate_chi_square(frequencies) -> None:
    pop, counts = frequencies
    p = pop["pi"].to_numpy()
    live = (p > 0) & (p < 1)
    mean = DRAWS * p[live]
    chi2 = float((((counts["any"][live] - mean) ** 2) / (mean * (1 - p[live]))).sum())
    dof = int(live.sum())
    assert stats.chi2.sf(chi2, dof) > 1e-4, f"chi2 {chi2:.1f} on {dof} dof"
    assert math.isfinite(chi2)
