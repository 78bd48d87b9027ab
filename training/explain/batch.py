"""Batch explanations: a whole population's top reasons to Parquet.

Why codes and contributions rather than sentences by default: a province has millions of
enterprises and sentences are cheap to render from a code and a value when someone reads them
(``reasons.render``); ``lang`` adds the sentences for platforms that want them in the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalogue import feature
from training.explain.contributions import contributions, top_k
from training.explain.reasons import Lang, check_lang, render
from training.risk_model import RiskModel
from training.scoring import load_snapshot, stamp, write_atomically


@dataclass(frozen=True)
class ExplainRun:
    path: Path
    rows: int
    model_version: str
    snapshot: str
    contributions_path: str


def top_reasons(
    model: RiskModel,
    frame: pd.DataFrame,
    *,
    k: int = 5,
    lang: Lang | None = None,
    accelerated: bool = True,
) -> pd.DataFrame:
    """Probability, active tier and the top ``k`` reasons up and down for every row.

    Columns ``up_<i>_code`` / ``up_<i>_feature`` / ``up_<i>_contribution`` (i = 1..k, largest
    first) and the same for ``down_``; empty code and NaN contribution where an enterprise has
    fewer than ``k`` reasons in that direction. ``base_value`` plus every feature's
    contribution is the raw score (``raw_score``), whose calibrated value is ``probability``.
    """
    if k < 1:
        raise ValueError(f"k: {k} reasons requested; ask for at least 1")
    if lang is not None:
        check_lang(lang)
    X = model.encoder.matrix(frame)
    contrib = contributions(model.booster, X, accelerated=accelerated)
    raw = contrib.values.sum(axis=1) + contrib.base_value
    prob = model.calibrator(raw)
    active = model.policy.active
    tiers = model.tiers(frame, prob, [active])
    out = {
        "probability": prob,
        "raw_score": raw,
        "base_value": np.full(len(frame), contrib.base_value),
        f"tier_{active}": tiers[f"tier_{active}"].to_numpy(),
        f"rule_{active}": tiers[f"rule_{active}"].to_numpy(),
    }
    names = np.array(model.encoder.feature_names, dtype=object)
    codes = np.array([feature(n).code for n in names], dtype=object)
    up, down = top_k(contrib.values, k)
    rows = np.arange(len(frame))
    for side, idx in (("up", up), ("down", down)):
        for i in range(k):
            j = idx[:, i]
            has = j >= 0
            safe = np.where(has, j, 0)
            out[f"{side}_{i + 1}_code"] = np.where(has, codes[safe], "")
            out[f"{side}_{i + 1}_feature"] = np.where(has, names[safe], "")
            out[f"{side}_{i + 1}_contribution"] = np.where(has, contrib.values[rows, safe], np.nan)
            if lang is not None:
                out[f"{side}_{i + 1}_text_{lang}"] = [
                    render(n, frame[n].iat[r], lang) if n else ""
                    for r, n in enumerate(out[f"{side}_{i + 1}_feature"])
                ]
    result = pd.DataFrame(out, index=frame.index)
    result.attrs["contributions_path"] = contrib.path
    return result


def explain_snapshot(
    model: RiskModel,
    snapshot: Path,
    out_path: Path,
    *,
    k: int = 5,
    lang: Lang | None = None,
    accelerated: bool = True,
) -> ExplainRun:
    """Top reasons for every enterprise of ``snapshot``, stamped with model and snapshot."""
    frame, version = load_snapshot(model, snapshot)
    reasons = top_reasons(model, frame, k=k, lang=lang, accelerated=accelerated)
    out = stamp(pd.concat([frame[["credit_code", "as_of"]], reasons], axis=1), model, version)
    write_atomically(out, out_path)
    return ExplainRun(
        path=out_path,
        rows=len(out),
        model_version=str(model.meta.get("model_version", "")),
        snapshot=snapshot.name,
        contributions_path=reasons.attrs["contributions_path"],
    )
