"""The draw policy: which enterprises are in scope, how many are drawn from each cell, teams.

Why typed and frozen: the policy is published with every draw and hashed into its commitment,
so it must be exactly what was validated, and a typo (``"ratio"`` for ``"ratios"``, a tier the
scheme does not know, a ratio of 1.5) must be refused before anything is drawn, with a message
naming the field. Read it from YAML/JSON with :meth:`DrawPolicy.model_validate`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Label = Annotated[str, Field(min_length=1, max_length=100, pattern=r'^[^,"\r\n;|]+$')]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolFilter(_Frozen):
    """Scope of the draw: rows outside it are not part of the population at all."""

    regions: tuple[Label, ...] | None = None
    industries: tuple[Label, ...] | None = None
    departments: tuple[Label, ...] | None = None
    credit_codes: tuple[str, ...] | None = None

    @field_validator("regions", "industries", "departments", "credit_codes")
    @classmethod
    def _non_empty(cls, v: tuple[str, ...] | None, info) -> tuple[str, ...] | None:
        if v is not None and len(v) == 0:
            raise ValueError(f"{info.field_name}: an empty list would select nothing; omit it")
        return v


class Exclusions(_Frozen):
    """Enterprises kept in the result with π = 0 and a reason (not silently dropped)."""

    inspected_within_days: int | None = Field(default=None, ge=1)
    yearly_cap: int | None = Field(default=None, ge=1)


class RatioAllocation(_Frozen):
    """Per-tier sampling ratios, e.g. a county's A ≤ 5 %, B 5–20 %, C 21–60 %, D 61–100 %."""

    kind: Literal["ratios"] = "ratios"
    tiers: tuple[Label, ...] = Field(min_length=1)
    ratios: dict[str, float]

    @model_validator(mode="after")
    def _check(self) -> RatioAllocation:
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"tiers: duplicate tier labels in {list(self.tiers)}")
        for tier, ratio in self.ratios.items():
            if tier not in self.tiers:
                raise ValueError(
                    f"ratios.{tier}: unknown tier {tier!r}; the scheme's tiers are {list(self.tiers)}"
                )
            if not 0.0 <= ratio <= 1.0 or ratio != ratio:
                raise ValueError(f"ratios.{tier}: ratio {ratio} is outside [0, 1]")
        missing = [t for t in self.tiers if t not in self.ratios]
        if missing:
            raise ValueError(f"ratios: no ratio for tier(s) {missing}; every tier needs one")
        return self


class QuotaAllocation(_Frozen):
    """A total quota for the risk arm, with a guaranteed minimum share of high-risk targets."""

    kind: Literal["quota"] = "quota"
    tiers: tuple[Label, ...] = Field(min_length=1)
    quota: int = Field(ge=1)
    high_risk_tiers: tuple[Label, ...] = Field(min_length=1)
    min_high_risk_share: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> QuotaAllocation:
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"tiers: duplicate tier labels in {list(self.tiers)}")
        unknown = [t for t in self.high_risk_tiers if t not in self.tiers]
        if unknown:
            raise ValueError(
                f"high_risk_tiers: unknown tier(s) {unknown}; the scheme's tiers are {list(self.tiers)}"
            )
        return self


class TeamRules(_Frozen):
    """Inspector teams: size, and the most inspections one inspector may carry."""

    team_size: int = Field(default=2, ge=2, le=20)
    load_cap: int | None = Field(default=None, ge=1)


class DrawPolicy(_Frozen):
    """Everything that decides a draw apart from the data and the seed."""

    allocation: Annotated[RatioAllocation | QuotaAllocation, Field(discriminator="kind")]
    floor: float = Field(default=0.005, gt=0.0, le=1.0)
    stratify_by: Literal["region", "industry"] | None = None
    control_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    filters: PoolFilter = PoolFilter()
    exclusions: Exclusions = Exclusions()
    teams: TeamRules = TeamRules()

    @property
    def tiers(self) -> tuple[str, ...]:
        """The active tier scheme's labels."""
        return self.allocation.tiers

    def canonical(self) -> dict:
        """JSON-ready form with every default spelt out (what the commitment hashes)."""
        return self.model_dump(mode="json")
