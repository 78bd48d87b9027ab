"""The deployable model: trees + category vocabularies + calibration + tier policy + rules.

Why one object: a probability is only meaningful with its calibration, a tier only with its
policy and trigger rules, and a category code only with its vocabulary. They are saved together
(plain files: LightGBM text model, JSON, YAML), registered together in MLflow, and loaded
together by the service, so a tier can always be reproduced from the model version alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.encode import Encoder
from training.calibrate import Calibrator
from training.compiled_forest import raw_scores
from training.rules import RuleSet, apply_rules
from training.tiers import TierPolicy

MODEL_FILE = "model.lgb.txt"
ENCODER_FILE = "encoder.json"
META_FILE = "model.json"
POLICY_FILE = "tiers.yaml"
RULES_FILE = "trigger_rules.yaml"


@dataclass
class RiskModel:
    booster: lgb.Booster
    encoder: Encoder
    calibrator: Calibrator
    policy: TierPolicy
    rules: RuleSet
    meta: dict = field(default_factory=dict)
    #: Which path scored the last batch: "compiled" or "lightgbm" (the stock fallback).
    last_path: str = ""

    def raw_score(self, frame: pd.DataFrame, *, accelerated: bool = True) -> np.ndarray:
        """Log-odds from the trees (exactly LightGBM's, whichever path computes them)."""
        scores, self.last_path = raw_scores(
            self.booster, self.encoder.matrix(frame), accelerated=accelerated
        )
        return scores

    def probability(self, frame: pd.DataFrame, *, accelerated: bool = True) -> np.ndarray:
        """Calibrated probability that an inspection drawn at random finds a problem."""
        return self.calibrator(self.raw_score(frame, accelerated=accelerated))

    def tiers(
        self,
        frame: pd.DataFrame,
        probability: np.ndarray,
        schemes: list[str] | None = None,
    ) -> pd.DataFrame:
        """Tier per scheme after the trigger rules, with the model's own tier and the rule."""
        out = {}
        for scheme in schemes or self.scheme_names:
            applied = apply_rules(
                self.policy.assign(probability, scheme), frame, self.rules, self.policy, scheme
            )
            out[f"tier_{scheme}"] = applied["tier"].to_numpy()
            out[f"model_tier_{scheme}"] = applied["model_tier"].to_numpy()
            out[f"rule_{scheme}"] = applied["rule"].fillna("").to_numpy()
            out["rules_fired"] = applied["rules_fired"].fillna("").to_numpy()
        return pd.DataFrame(out, index=frame.index)

    def predict(self, frame: pd.DataFrame, *, accelerated: bool = True) -> pd.DataFrame:
        """Probability, raw score and tiers under every scheme of the stored policy."""
        raw = self.raw_score(frame, accelerated=accelerated)
        prob = self.calibrator(raw)
        head = pd.DataFrame({"probability": prob, "raw_score": raw}, index=frame.index)
        return pd.concat([head, self.tiers(frame, prob)], axis=1)

    @property
    def scheme_names(self) -> list[str]:
        return list(self.policy.scheme_names)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.booster.model_to_string())
        (folder / ENCODER_FILE).write_text(self.encoder.to_json())
        (folder / POLICY_FILE).write_text(self.policy.to_yaml(), encoding="utf-8")
        (folder / RULES_FILE).write_text(self.rules.to_yaml(), encoding="utf-8")
        meta = {**self.meta, "calibrator": self.calibrator.to_dict()}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> RiskModel:
        missing = [
            f
            for f in (MODEL_FILE, ENCODER_FILE, META_FILE, POLICY_FILE, RULES_FILE)
            if not (folder / f).is_file()
        ]
        if missing:
            raise FileNotFoundError(f"{folder}: not a saved risk model (missing {missing})")
        meta = json.loads((folder / META_FILE).read_text())
        return cls(
            booster=lgb.Booster(model_str=(folder / MODEL_FILE).read_text()),
            encoder=Encoder.from_json((folder / ENCODER_FILE).read_text()),
            calibrator=Calibrator.from_dict(meta.pop("calibrator")),
            policy=TierPolicy.from_yaml_text((folder / POLICY_FILE).read_text(encoding="utf-8")),
            rules=RuleSet.from_yaml_text((folder / RULES_FILE).read_text(encoding="utf-8")),
            meta=meta,
        )
