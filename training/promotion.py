"""The promotion gate: a challenger replaces the champion only if it is not worse.

Why a gate: regulators act on tiers; a retrained model that ranks worse on the latest period,
or that is much weaker in one region than overall, must not silently take over. Both models are
scored on the same, latest out-of-time inspections (the random-draw view), and the challenger
may be worse by at most the configured tolerances; its largest per-slice AUC gap must stay
inside the fairness bound. The decision and its figures are stored on the model version.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow import MlflowClient

from training import registry
from training.config import Gate, TrainingConfig


@dataclass(frozen=True)
class GateCheck:
    name: str
    challenger: float
    champion: float | None
    limit: str
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[GateCheck, ...]

    def summary(self) -> str:
        return json.dumps(
            {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}, default=str
        )

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.challenger:.4f} vs {c.limit}" for c in self.checks if not c.passed]


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, gate: Gate
) -> GateDecision:
    """Compare gate metrics (``roc_auc``, ``detection_rate``, ``fairness_gap``)."""
    checks = []
    if champion is not None:
        floor = champion["roc_auc"] - gate.auc_tolerance
        checks.append(
            GateCheck(
                "roc_auc",
                challenger["roc_auc"],
                champion["roc_auc"],
                f">= champion {champion['roc_auc']:.4f} - {gate.auc_tolerance}",
                challenger["roc_auc"] >= floor,
            )
        )
        floor = champion["detection_rate"] - gate.detection_tolerance_pp / 100
        checks.append(
            GateCheck(
                "detection_rate",
                challenger["detection_rate"],
                champion["detection_rate"],
                f">= champion {champion['detection_rate']:.4f} - {gate.detection_tolerance_pp} pp",
                challenger["detection_rate"] >= floor,
            )
        )
    gap = challenger["fairness_gap"]
    # NaN: no slice holds enough inspections to measure an AUC; the check cannot judge and
    # says so instead of blocking a small province for ever.
    measurable = not math.isnan(gap)
    checks.append(
        GateCheck(
            "fairness_gap",
            gap,
            None if champion is None else champion.get("fairness_gap"),
            f"<= {gate.max_fairness_gap}" if measurable else "not measurable: slices too small",
            gap <= gate.max_fairness_gap if measurable else True,
        )
    )
    return GateDecision(passed=all(c.passed for c in checks), checks=tuple(checks))


def promote(
    validated_dir: Path,
    config: TrainingConfig,
    *,
    version: str | None = None,
    mlruns: Path | None = None,
) -> tuple[str, GateDecision]:
    """Gate ``version`` (default: the newest) against the champion on the latest period."""
    from training.train import gate_metrics_on_latest

    registry.configure(mlruns)
    name = config.registered_model
    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise LookupError(f"model {name!r} has no registered versions; run `riskctl train`")
    if version is None:
        version = str(max(int(v.version) for v in versions))
    challenger, _ = registry.load(name, version)
    current = registry.champion(name)
    if current is not None and str(current.version) == str(version):
        raise ValueError(f"version {version} is already the champion")
    champion_model = registry.load(name, current.version)[0] if current is not None else None
    figures = gate_metrics_on_latest(
        validated_dir, config, [challenger] + ([champion_model] if champion_model else [])
    )
    decision = decide(figures[0], figures[1] if champion_model else None, config.gate)
    client.set_model_version_tag(name, version, "gate", decision.summary())
    if decision.passed:
        registry.set_champion(name, version)
    return version, decision
