"""Request bodies of the service: every field typed, bounded and named in its error message.

Why pydantic models with ``extra="forbid"``: an inspection platform that misspells a field must
get a 400 naming it, not a silently ignored option; BentoML turns these models into the
OpenAPI document, so the published contract and the validation are one thing.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from features.catalogue import CATALOGUE
from features.credit_code import CODE_PATTERN, is_well_formed

#: Largest batch one request may carry (tiers, scoring, ingestion).
MAX_BATCH = 1_000

Lang = Literal["zh", "en"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


#: Comma-terminated well-formed codes, many at once. When the joined batch matches and is 19
#: characters per code, the commas are exactly the separators (a code holding a comma would
#: add a segment), so every code is one ``is_well_formed`` accepts; otherwise the batch is
#: checked code by code, which names the first bad one.
_ALL_CODES = re.compile(f"(?:{CODE_PATTERN.pattern.removeprefix('^').removesuffix('$')},)*")


def check_code(value: str, where: str = "credit_code") -> str:
    if not is_well_formed(value):
        raise ValueError(
            f"{where}: {value!r} is not an 18-character unified social credit code (GB 32100)"
        )
    return value


class TiersRequest(BaseModel):
    """Tiers for a batch of enterprises from the loaded snapshot."""

    model_config = _STRICT

    codes: Annotated[list[str], Field(min_length=1, max_length=MAX_BATCH)]
    #: Tier scheme to answer in (default: the policy's active scheme).
    scheme: str | None = None
    #: Reasons each way (0: tiers only).
    reasons: Annotated[int, Field(ge=0, le=10)] = 0
    lang: Lang = "zh"

    @field_validator("codes")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        joined = ",".join(codes) + ","
        if len(joined) == 19 * len(codes) and _ALL_CODES.fullmatch(joined):  # one regex pass
            return codes
        for i, c in enumerate(codes):  # some code is bad (or unusual): name the first one
            check_code(c, f"codes[{i}]")
        return codes


def _feature_field(f) -> tuple[object, object]:
    if f.kind == "categorical":
        return (str | None, None)
    if f.kind == "flag":
        return (Literal[0, 1] | None, None)
    if f.dtype in ("BIGINT", "INTEGER"):
        low = None if f.name.endswith("_change") else 0
        return (Annotated[int | None, Field(ge=low)], None)
    return (float | None, None)


#: One enterprise's features, as a platform holding its own data supplies them (missing: null).
FeatureRow = create_model(
    "FeatureRow",
    __config__=_STRICT,
    **{f.name: _feature_field(f) for f in CATALOGUE},
)


class ScoreRequest(BaseModel):
    """Score supplied feature rows (for platforms that hold their own data)."""

    model_config = _STRICT

    rows: Annotated[list[FeatureRow], Field(min_length=1, max_length=MAX_BATCH)]  # type: ignore[valid-type]
    scheme: str | None = None
    reasons: Annotated[int, Field(ge=0, le=10)] = 0
    lang: Lang = "zh"


class ExplainRequest(BaseModel):
    """Full explanation of one enterprise: contributions, reasons, linked records."""

    model_config = _STRICT

    credit_code: str
    reasons: Annotated[int, Field(ge=1, le=29)] = 5
    lang: Lang = "zh"

    @field_validator("credit_code")
    @classmethod
    def _code(cls, v: str) -> str:
        return check_code(v)


class InspectionResult(BaseModel):
    """The outcome of one drawn inspection."""

    model_config = _STRICT

    draw_id: Annotated[str, Field(min_length=1, max_length=100)]
    #: The enterprise's code, or its public reference in that draw (``serving.public_refs``).
    credit_code: str
    inspected_on: date
    problem_found: bool
    inspector_ids: list[str] = []

    @field_validator("credit_code")
    @classmethod
    def _code(cls, v: str) -> str:
        from serving.public_refs import is_public_ref

        return v if is_public_ref(v) else check_code(v)


class IngestRequest(BaseModel):
    model_config = _STRICT

    results: Annotated[list[InspectionResult], Field(min_length=1, max_length=MAX_BATCH)]


class DrawCreate(BaseModel):
    """Create a draw: commit to it and draw targets and teams (published later)."""

    model_config = _STRICT

    draw_id: Annotated[str, Field(min_length=1, max_length=100, pattern=r'^[^,"\r\n;|/\\.]+$')]
    draw_date: date
    #: The inspecting department's kind (e.g. ``MR``); enterprises' departments are
    #: ``<region>-<department>``, as in the inspections source.
    department: Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9_-]+$")]
    #: A ``serving.draws.DrawPolicy`` document (allocation, floor, control arm, teams...).
    policy: dict
    scheme: str | None = None
    #: Inspector roster rows (``inspector_id``, ``department``, ``region``, ``conflicts``,
    #: ``load``); default: the workspace's ``roster/inspectors.csv``.
    inspectors: Annotated[list[dict], Field(max_length=100_000)] | None = None
    #: A secret seed (default: 256 random bits); revealed only on publication.
    seed: Annotated[str, Field(min_length=16, max_length=200)] | None = None


class DrawRef(BaseModel):
    model_config = _STRICT

    draw_id: Annotated[str, Field(min_length=1, max_length=100)]
