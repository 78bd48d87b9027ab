"""Baselines the model must beat: the regulator's expert rules and the plain random draw.

Why the expert baseline is a rule file: it is exactly what a regulator would write without a
model, and it runs through the same trigger-rule engine the service uses, so the comparison is
with rules as they are actually applied — every enterprise starts in the lowest tier and the
matching rules force it up. Its score is the tier's rank scaled to [0, 1], so it ranks with
ties, which the detection metrics split fairly. The random draw needs no code: a constant score
gives AUC 0.5 and the base rate at every inspection budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.rules import apply_rules, load_rules
from training.tiers import TierPolicy

BASELINE_SCHEME = "risk3"


def expert_rule_tiers(
    frame: pd.DataFrame, rules_path: Path, policy: TierPolicy, scheme: str = BASELINE_SCHEME
) -> pd.DataFrame:
    """The rule-only tier of each row (and which rule put it there)."""
    rules = load_rules(rules_path)
    rules.check_against(policy)
    lowest = policy.tier_names(scheme)[0]
    start = np.full(len(frame), lowest, dtype=object)
    return apply_rules(start, frame, rules, policy, scheme)


def expert_rule_scores(
    frame: pd.DataFrame, rules_path: Path, policy: TierPolicy, scheme: str = BASELINE_SCHEME
) -> np.ndarray:
    """Rank of the rule-only tier scaled to [0, 1]: 0 = lowest risk, 1 = highest."""
    tiers = expert_rule_tiers(frame, rules_path, policy, scheme)["tier"]
    names = policy.tier_names(scheme)
    ranks = {name: i / (len(names) - 1) for i, name in enumerate(names)}
    return tiers.map(ranks).to_numpy(dtype=np.float64)
