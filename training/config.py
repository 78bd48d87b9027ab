"""Typed, frozen training configuration read from YAML; the CLI only picks the file.

Everything that changes a model lives here (splits, weighting, search space, calibration,
policy files, gate tolerances), so a run is described by one file plus the data fingerprint
and the seed — and MLflow records all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.catalogue import FEATURE_NAMES

POLICY_DIR = Path(__file__).parent / "policies"
DEFAULT_CONFIG = POLICY_DIR / "training.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Splits(_Frozen):
    """Out-of-time periods, counted back from ``end`` (default: the latest inspection)."""

    test_months: int = Field(12, ge=1, le=60)
    valid_months: int = Field(12, ge=1, le=60)
    #: Inspections before this are not used (their features would lack history).
    train_start: str | None = None
    end: str | None = None


class LightGBMConfig(_Frozen):
    params: dict[str, Any]
    num_boost_round: int = Field(1000, ge=1, le=20_000)
    early_stopping_rounds: int = Field(50, ge=1)
    #: Bounded search: each entry overrides ``params``; the best on the validation period wins.
    search: list[dict[str, Any]] = Field(default_factory=lambda: [{}], max_length=12)


class Evaluation(_Frozen):
    detection_share: float = Field(0.10, gt=0, lt=1)
    slices: tuple[str, ...] = ("region", "industry", "size_band")
    min_slice_examples: int = Field(30, ge=1)


class Gate(_Frozen):
    """How much worse than the champion a challenger may be, on the same latest period."""

    auc_tolerance: float = Field(0.01, ge=0, le=0.5)
    detection_tolerance_pp: float = Field(2.0, ge=0, le=100)
    max_fairness_gap: float = Field(0.15, gt=0, le=1)


class TrainingConfig(_Frozen):
    seed: int = Field(42, ge=0)
    experiment: str = "enterprise-risk"
    registered_model: str = "enterprise-risk"
    splits: Splits = Splits()
    weighting: Literal["none", "ipw"] = "ipw"
    #: Inverse-probability weights above this are capped (a 1 % draw would otherwise weigh 100).
    max_weight: float = Field(50.0, ge=1)
    lightgbm: LightGBMConfig
    calibration: Literal["platt", "isotonic"] = "platt"
    #: Catalogue features the models leave out (every model: LightGBM and the scorecard).
    exclude_features: tuple[str, ...] = ()
    tiers: Path = POLICY_DIR / "tiers.yaml"
    rules: Path = POLICY_DIR / "trigger_rules.yaml"
    expert_baseline: Path = POLICY_DIR / "expert_baseline.yaml"
    evaluation: Evaluation = Evaluation()
    gate: Gate = Gate()

    @model_validator(mode="after")
    def _known_features(self) -> TrainingConfig:
        unknown = sorted(set(self.exclude_features) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(f"exclude_features: not catalogue features: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _policy_files_exist(self) -> TrainingConfig:
        for name in ("tiers", "rules", "expert_baseline"):
            path = getattr(self, name)
            if not Path(path).is_file():
                raise ValueError(f"{name}: file {path} does not exist")
        return self


class ConfigError(ValueError):
    """A training configuration that cannot be used, with the file and the field named."""


def load_config(path: Path = DEFAULT_CONFIG, **overrides: Any) -> TrainingConfig:
    """Read and validate a config; relative policy paths are relative to the config file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.update(overrides)
    for name in ("tiers", "rules", "expert_baseline"):
        if name in data and not Path(data[name]).is_absolute():
            data[name] = (Path(path).parent / data[name]).resolve()
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
