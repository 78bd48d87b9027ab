"""One enterprise's explanation: score, tiers, reasons, the records behind them, objections,
and what-if for credit repair.

Why everything re-runs the real path: an enterprise contesting its tier must get the tier the
service would give, so features come from the same SQL (``features.scenario``), contributions
from the same trees, and tiers from the same policy and trigger rules as batch scoring; a
what-if edits the *records* and runs that path again rather than nudging a feature value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.lineage import linked_records
from features.scenario import Edit, features_for, with_and_without_objections
from training.explain.contributions import contributions
from training.explain.reasons import SPACE, Lang, Reason, reasons
from training.risk_model import RiskModel


@dataclass(frozen=True)
class Scored:
    """Probability and tiers of one feature row (after the trigger rules)."""

    probability: float
    raw_score: float
    tiers: dict[str, str]
    model_tiers: dict[str, str]
    rules: dict[str, str]
    rules_fired: str

    @classmethod
    def of(cls, model: RiskModel, feats: pd.DataFrame) -> Scored:
        pred = model.predict(feats).iloc[0]
        schemes = model.scheme_names
        return cls(
            probability=float(pred["probability"]),
            raw_score=float(pred["raw_score"]),
            tiers={s: str(pred[f"tier_{s}"]) for s in schemes},
            model_tiers={s: str(pred[f"model_tier_{s}"]) for s in schemes},
            rules={s: str(pred[f"rule_{s}"]) for s in schemes},
            rules_fired=str(pred["rules_fired"]),
        )

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EnterpriseExplanation:
    credit_code: str
    as_of: date
    model_version: str
    score: Scored
    base_value: float
    #: Every feature's value and contribution (log-odds, see ``space``), model order.
    features: pd.DataFrame
    up: list[Reason]
    down: list[Reason]
    records: pd.DataFrame
    #: As if the pending objections had not been filed (their records counted); None if none.
    with_objected_records: Scored | None = None
    objected_records: list[str] = field(default_factory=list)

    def space(self, lang: Lang) -> str:
        return SPACE[lang]

    def to_dict(self, lang: Lang = "zh") -> dict:
        """JSON-ready: what the service returns and the enterprise report shows."""
        return {
            "credit_code": self.credit_code,
            "as_of": self.as_of.isoformat(),
            "model_version": self.model_version,
            **self.score.to_dict(),
            "base_value": self.base_value,
            "contribution_space": SPACE[lang],
            "reasons_raising_risk": [_reason(r, lang) for r in self.up],
            "reasons_lowering_risk": [_reason(r, lang) for r in self.down],
            "contributions": {row.feature: row.contribution for row in self.features.itertuples()},
            "objected_records": self.objected_records,
            "with_objected_records": (
                self.with_objected_records.to_dict() if self.with_objected_records else None
            ),
            "records": _json_records(self.records),
        }


def _reason(r: Reason, lang: Lang) -> dict:
    d = r.to_dict()
    d["text"] = r.text(lang)
    return d


def _json_records(records: pd.DataFrame) -> list[dict]:
    out = []
    for r in records.to_dict("records"):
        row = {}
        for k, v in r.items():
            if isinstance(v, (pd.Timestamp, date)):
                v = v.isoformat()[:10]
            elif isinstance(v, np.generic):
                v = v.item()
            elif isinstance(v, (tuple, np.ndarray)):
                v = list(v)
            elif v is pd.NaT or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
                v = None
            row[k] = v
        out.append(row)
    return out


def explain_enterprise(
    model: RiskModel,
    validated_dir: Path,
    credit_code: str,
    as_of: date,
    *,
    k: int = 5,
) -> EnterpriseExplanation:
    """Score, reasons and linked records for one enterprise as of a date."""
    feats = _features(validated_dir, credit_code, as_of)
    contrib = contributions(model.booster, model.encoder.matrix(feats))
    records = linked_records(validated_dir, credit_code, as_of)
    up, down = reasons(
        feats.iloc[0], contrib.values[0], model.encoder.feature_names, k=k, records=records
    )
    table = pd.DataFrame(
        {
            "feature": list(model.encoder.feature_names),
            "value": [feats[n].iat[0] for n in model.encoder.feature_names],
            "contribution": contrib.values[0],
        }
    )
    explanation = EnterpriseExplanation(
        credit_code=credit_code,
        as_of=as_of,
        model_version=str(model.meta.get("model_version", "")),
        score=Scored.of(model, feats),
        base_value=contrib.base_value,
        features=table,
        up=up,
        down=down,
        records=records,
    )
    if (records["status"] == "under_objection").any():
        _, as_if, ids = with_and_without_objections(validated_dir, credit_code, as_of)
        explanation.with_objected_records = Scored.of(model, as_if)
        explanation.objected_records = list(ids)
    return explanation


def _features(validated_dir: Path, credit_code: str, as_of: date, edits=()) -> pd.DataFrame:
    feats = features_for(validated_dir, credit_code, as_of, edits)
    if feats.empty or feats["enterprise_type"].isna().all():
        raise LookupError(f"{credit_code}: no such enterprise in the registry as of {as_of}")
    return feats


@dataclass(frozen=True)
class WhatIf:
    """The tier now and after the edits (or at a later date), with the features that moved."""

    before: Scored
    after: Scored
    as_of: date
    after_as_of: date
    edits: tuple[Edit, ...]
    changed: pd.DataFrame

    def to_dict(self) -> dict:
        return {
            "as_of": self.as_of.isoformat(),
            "after_as_of": self.after_as_of.isoformat(),
            "edits": [e.model_dump(mode="json") for e in self.edits],
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "changed_features": _json_records(self.changed),
        }


def what_if(
    model: RiskModel,
    validated_dir: Path,
    credit_code: str,
    as_of: date,
    edits: tuple[Edit, ...] | list[Edit] = (),
    *,
    later: date | None = None,
) -> WhatIf:
    """Re-run features, trees, calibration, policy and rules with records repaired, expired
    or withdrawn, and/or as of a later date when windows lapse."""
    after_as_of = later or as_of
    if after_as_of < as_of:
        raise ValueError(f"later: {after_as_of} is before the as-of date {as_of}")
    if not edits and later is None:
        raise ValueError("what-if needs at least one edit or a later date")
    now = _features(validated_dir, credit_code, as_of)
    then = _features(validated_dir, credit_code, after_as_of, tuple(edits))
    names = list(model.encoder.feature_names)
    moved = [
        n
        for n in names
        if not (pd.isna(now[n].iat[0]) and pd.isna(then[n].iat[0]))
        and (pd.isna(now[n].iat[0]) or pd.isna(then[n].iat[0]) or now[n].iat[0] != then[n].iat[0])
    ]
    changed = pd.DataFrame(
        {
            "feature": moved,
            "before": [now[n].iat[0] for n in moved],
            "after": [then[n].iat[0] for n in moved],
        }
    )
    return WhatIf(
        before=Scored.of(model, now),
        after=Scored.of(model, then),
        as_of=as_of,
        after_as_of=after_as_of,
        edits=tuple(edits),
        changed=changed,
    )


def sample_enterprise(validated_dir: Path, snapshot: Path, model: RiskModel) -> str:
    """An enterprise worth showing: one with a pending objection if any (the report then shows
    its tier with and without the record), else the highest-risk one of the snapshot."""
    import duckdb

    frame = pd.read_parquet(snapshot)
    as_of = pd.Timestamp(frame["as_of"].iloc[0]).date()
    pending = duckdb.sql(
        f"SELECT DISTINCT credit_code FROM read_parquet('{validated_dir / 'objections.parquet'}') "
        f"WHERE filed_on < DATE '{as_of}' AND recorded_at < DATE '{as_of}' "
        f"AND (resolved_on IS NULL OR resolved_on >= DATE '{as_of}') ORDER BY credit_code"
    ).df()["credit_code"]
    candidates = frame[frame["credit_code"].isin(set(pending))]
    if candidates.empty:
        candidates = frame
    prob = model.probability(candidates)
    return str(candidates["credit_code"].iloc[int(np.argmax(prob))])
