"""Published test vectors (``test_vectors.json``): small draws anyone can reproduce from SPEC.md.

Regenerate (when the spec version changes or a vector is added; existing vectors must not
change) with::

    .venv/bin/python -m serving.draws.vectors > serving/draws/test_vectors.json
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from serving.draws.engine import draw
from serving.draws.inputs import SPEC_VERSION, DrawInputs, inputs_from_parameters
from serving.draws.keys import fnv1a64, mix64, seed_hash, seed_key, unit_key
from serving.draws.synthetic import inspectors_frame, pool_frame

PATH = Path(__file__).with_name("test_vectors.json")


def inputs_from_vector(vector: dict) -> DrawInputs:
    """The :class:`DrawInputs` a vector describes."""
    pool = pd.DataFrame(vector["pool"])
    pool["last_inspected_on"] = pd.to_datetime(pool["last_inspected_on"], format="%Y-%m-%d")
    staff = pd.DataFrame(vector["inspectors"])
    return inputs_from_parameters(
        vector["parameters"],
        seed_hash=seed_hash(vector["seed"]),
        pool=pool,
        inspectors=staff,
        policy=vector["policy"],
        model_version=vector["model_version"],
        data_fingerprint=vector["data_fingerprint"],
    )


def expected(inputs: DrawInputs, seed: str) -> dict:
    """What a conforming implementation must output for ``inputs`` and ``seed``."""
    result = draw(inputs, seed)
    cols = ["credit_code", "arm", "stratum", "tier", "pi_fraction", "key_risk", "key_control"]
    return {
        "seed_hash": inputs.seed_hash,
        "seed_key": f"{seed_key(seed):016x}",
        "pool_sha256": inputs.pool.sha256(),
        "inspectors_sha256": inputs.inspectors.sha256(),
        "commitment": result.commitment,
        "counts": result.receipt["counts"],
        "cells": result.receipt["cells"],
        "targets": result.targets[cols].to_dict(orient="records"),
        "teams": {code: list(team) for code, team in sorted(result.teams.items())},
    }


def _vector(
    name: str,
    seed: str,
    pool: pd.DataFrame,
    staff: pd.DataFrame,
    policy: dict,
    previous: dict,
    draw_date: str = "2026-11-23",
) -> dict:
    pool = pool.copy()
    pool["last_inspected_on"] = pd.to_datetime(pool["last_inspected_on"]).dt.strftime("%Y-%m-%d")
    pool = pool.astype(object).where(pool.notna(), None)
    vector = {
        "name": name,
        "seed": seed,
        "pool": pool.to_dict(orient="records"),
        "inspectors": staff.assign(load=staff["load"].astype(int)).to_dict(orient="records"),
        "policy": policy,
        "parameters": {
            "draw_id": name,
            "draw_date": draw_date,
            "department": "market",
            "previous_teams": previous,
        },
        "model_version": "risk-model@v3",
        "data_fingerprint": "snapshot-2026-11-22",
    }
    vector["expected"] = expected(inputs_from_vector(vector), seed)
    return vector


def _half_of_each_tier(load_cap: int) -> dict:
    """Half of every tier, pairs, a tight load cap: the repair vectors' policy."""
    return {
        "allocation": {
            "kind": "ratios",
            "tiers": ["A", "B", "C", "D"],
            "ratios": {"A": 0.5, "B": 0.5, "C": 0.5, "D": 0.5},
        },
        "floor": 0.2,
        "control_fraction": 0.0,
        "teams": {"team_size": 2, "load_cap": load_cap},
    }


def _tight_with_previous_teams(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Twelve enterprises, five inspectors with many conflicts, and a random previous pair for
    about 60 % of the enterprises: the previous-team vectors' inputs."""
    pool = pool_frame(12, seed=seed, regions=1, industries=2)
    staff = inspectors_frame(5, pool, seed=seed, conflict_rate=0.8)
    rng = np.random.default_rng(seed)
    ids = staff["inspector_id"].tolist()
    previous = {
        code: rng.choice(ids, 2, replace=False).tolist()
        for code in sorted(pool["credit_code"])
        if rng.random() < 0.6
    }
    return pool, staff, previous


def build() -> dict:
    """All vectors: primitives, then six small draws."""
    seed = "2026-11-23 county 330106 public draw"
    primitives = {
        "seed": seed,
        "seed_hash": seed_hash(seed),
        "seed_key": f"{seed_key(seed):016x}",
        "fnv1a64": {
            s: f"{fnv1a64(s.encode()):016x}" for s in ("", "a", "control", "91330106MA2B3C4D5E")
        },
        "mix64": {str(x): f"{mix64(x):016x}" for x in (0, 1, 2**64 - 1)},
        "unit_key": {
            "salt": "risk|330101|D",
            "unit": "91330106MA2B3C4D5E",
            "key": f"{unit_key(seed_key(seed), 'risk|330101|D', '91330106MA2B3C4D5E'):016x}",
        },
    }
    vectors = []

    pool = pool_frame(24, seed=11, regions=2, industries=3)
    staff = inspectors_frame(8, pool, seed=11, conflict_rate=0.5)
    first = sorted(pool["credit_code"])[:1]
    vectors.append(
        _vector(
            "ratios-stratified-control",
            "vector-1",
            pool,
            staff,
            {
                "allocation": {
                    "kind": "ratios",
                    "tiers": ["A", "B", "C", "D"],
                    "ratios": {"A": 0.05, "B": 0.2, "C": 0.5, "D": 1.0},
                },
                "floor": 0.1,
                "stratify_by": "region",
                "control_fraction": 0.25,
                "exclusions": {"inspected_within_days": 60, "yearly_cap": 1},
                "teams": {"team_size": 2, "load_cap": 6},
            },
            {first[0]: ["INS000000", "INS000002"]},
        )
    )

    pool = pool_frame(
        30,
        seed=12,
        regions=1,
        industries=3,
        tiers=("high", "medium", "low"),
        tier_shares=(0.2, 0.3, 0.5),
    )
    staff = inspectors_frame(5, pool, seed=12, conflict_rate=0.4)
    vectors.append(
        _vector(
            "quota-high-risk-share",
            "vector-2",
            pool,
            staff,
            {
                "allocation": {
                    "kind": "quota",
                    "tiers": ["high", "medium", "low"],
                    "quota": 8,
                    "high_risk_tiers": ["high"],
                    "min_high_risk_share": 0.3,
                },
                "floor": 0.05,
                "stratify_by": "industry",
                "control_fraction": 0.5,
                "filters": {"industries": ["I00", "I01"]},
                "teams": {"team_size": 2},
            },
            {},
        )
    )

    pool = pool_frame(16, seed=13, regions=1, industries=2)
    staff = inspectors_frame(6, pool, seed=13)
    listed = sorted(pool["credit_code"])[::2]
    vectors.append(
        _vector(
            "listed-codes-teams-of-3",
            "vector-3",
            pool,
            staff,
            {
                "allocation": {
                    "kind": "ratios",
                    "tiers": ["A", "B", "C", "D"],
                    "ratios": {"A": 0.0, "B": 0.25, "C": 0.5, "D": 0.75},
                },
                "floor": 0.2,
                "control_fraction": 0.0,
                "filters": {"credit_codes": listed},
                "teams": {"team_size": 3, "load_cap": 5},
            },
            {},
        )
    )
    # Tight load cap and many conflicts: the greedy walk ends short twice and the repair
    # (SPEC §7) fills each short team by moving an inspector from an already-formed team.
    pool = pool_frame(12, seed=386, regions=1, industries=2)
    staff = inspectors_frame(5, pool, seed=386, conflict_rate=0.8)
    vectors.append(
        _vector(
            "repair-moves-inspectors",
            "vector-4",
            pool,
            staff,
            _half_of_each_tier(load_cap=3),
            {},
        )
    )
    # Previous teams as well: one short team's only completion is its previous team, so the
    # repair's first search is stopped by that rule and its step 4 has the target give up a
    # member and fill both places again.
    pool, staff, previous = _tight_with_previous_teams(236)
    vectors.append(
        _vector(
            "repair-avoids-a-previous-team",
            "vector-5",
            pool,
            staff,
            _half_of_each_tier(load_cap=4),
            previous,
        )
    )
    # Steps 1-4 of the repair refused this draw although an assignment exists: the search
    # reached the one free inspector by a path giving a target its previous team first. Step 5
    # (exact) finds the path through a target that swaps one previous member for another.
    pool, staff, previous = _tight_with_previous_teams(156)
    vectors.append(
        _vector(
            "repair-exact-step",
            "vector-6",
            pool,
            staff,
            _half_of_each_tier(load_cap=4),
            previous,
        )
    )
    return {
        "spec": SPEC_VERSION,
        "generated_on": str(date(2026, 11, 23)),
        "primitives": primitives,
        "draws": vectors,
    }


if __name__ == "__main__":
    json.dump(build(), sys.stdout, indent=1, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")
