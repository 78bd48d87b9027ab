"""Tier policy: how a calibrated probability becomes a risk tier (风险分类分级策略).

A policy holds several *schemes* (``risk3`` low/medium/high, ``national4`` A–D, ``grade5`` A–E,
…). Each scheme lists its tiers from the LOWEST risk to the HIGHEST and is set either by
probability cut-offs (``basis: probability``; each tier's ``up_to`` is the inclusive upper bound
of the calibrated probability) or by target population shares (``basis: share``).

Why shares are *resolved* once: a share-based scheme ("the riskiest 10 % are high") would move
every enterprise's tier whenever the scored batch changes. ``TierPolicy.resolve`` turns the
shares into fixed probability cut-offs on the reference population (the scores at training
time) and records where they came from, so the tiers are stable from batch to batch and the
model records exactly which cut-offs it used (``fingerprint``).

Why validation collects every problem: a regulator edits ``policies/tiers.yaml`` by hand; one
error message listing everything wrong (with the scheme and tier named) saves round trips.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

#: Shares of a share-based scheme must sum to 1 within this tolerance.
SHARE_TOLERANCE = 1e-9

Number = Annotated[float, Strict()]
"""A float that also accepts an int but never a bool or a numeric string."""

_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PolicyError(ValueError):
    """A tier policy or rule set that cannot be used; the message lists every problem found."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            text = f"{where}{self.problems[0]}"
        else:
            items = "\n".join(f"  - {p}" for p in self.problems)
            text = f"{where}{len(self.problems)} problems:\n{items}"
        super().__init__(text)


class Tier(BaseModel):
    """One tier. Exactly one of ``up_to`` / ``share`` is set, matching the scheme's basis."""

    model_config = _CONFIG

    name: str = Field(min_length=1)
    label_en: str
    label_zh: str
    #: Inclusive upper bound of the calibrated probability (basis: probability).
    up_to: Number | None = None
    #: Target share of the reference population (basis: share).
    share: Number | None = None
    #: Share of this tier a credit-linked draw should inspect (used by the draw engine).
    sampling_ratio: Number | None = None


class ResolvedFrom(BaseModel):
    """Provenance of cut-offs computed from target shares on a reference population."""

    model_config = _CONFIG

    basis: Literal["share"] = "share"
    shares: tuple[Number, ...]
    population: int = Field(ge=1)


class TierScheme(BaseModel):
    """Tiers from lowest to highest risk, by probability cut-offs or by population shares."""

    model_config = _CONFIG

    basis: Literal["probability", "share"]
    description_en: str | None = None
    description_zh: str | None = None
    tiers: tuple[Tier, ...]
    resolved_from: ResolvedFrom | None = None

    @model_validator(mode="after")
    def _check(self) -> TierScheme:
        problems = _scheme_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    @property
    def cutoffs(self) -> np.ndarray:
        """The ``up_to`` of every tier (probability basis only)."""
        return np.array([t.up_to for t in self.tiers], dtype=np.float64)


def _scheme_problems(s: TierScheme) -> list[str]:
    """Everything wrong with one scheme (messages name the tier; the caller names the scheme)."""
    out: list[str] = []
    tiers = s.tiers
    if len(tiers) < 2:
        out.append(f"needs at least 2 tiers, has {len(tiers)}")
    seen: set[str] = set()
    for t in tiers:
        if t.name in seen:
            out.append(f"duplicate tier name {t.name!r}")
        seen.add(t.name)

    wanted, other = ("up_to", "share") if s.basis == "probability" else ("share", "up_to")
    for t in tiers:
        if getattr(t, other) is not None:
            out.append(
                f"tier {t.name!r}: mixed basis: has {other!r} but the scheme's basis is "
                f"{s.basis} (use {wanted!r})"
            )
        if getattr(t, wanted) is None:
            out.append(f"tier {t.name!r}: missing {wanted!r} (basis: {s.basis})")

    if s.basis == "probability":
        out += _cutoff_problems(tiers)
    else:
        out += _share_problems(tiers)
    out += _ratio_problems(tiers)

    if s.resolved_from is not None:
        r = s.resolved_from
        if s.basis != "probability":
            out.append("resolved_from is only allowed on a probability-based scheme")
        if len(r.shares) != len(tiers):
            out.append(f"resolved_from has {len(r.shares)} shares for {len(tiers)} tiers")
        if abs(sum(r.shares) - 1.0) > SHARE_TOLERANCE or any(x <= 0 for x in r.shares):
            out.append("resolved_from.shares must be positive and sum to 1")
    return out


def _cutoff_problems(tiers: tuple[Tier, ...]) -> list[str]:
    out: list[str] = []
    cut = [(t.name, t.up_to) for t in tiers if t.up_to is not None]
    for name, u in cut:
        if not 0.0 <= u <= 1.0:
            out.append(f"tier {name!r}: up_to {u} is outside [0, 1]")
    if cut and cut[0][1] <= 0.0:
        out.append(f"tier {cut[0][0]!r}: the first cut-off must be > 0 (got {cut[0][1]})")
    for (lo_name, lo), (hi_name, hi) in itertools.pairwise(cut):
        if hi <= lo:
            out.append(
                f"tier {hi_name!r}: cut-offs not ordered: up_to {hi} must be greater than "
                f"{lo} of the lower-risk tier {lo_name!r}"
            )
    if len(cut) == len(tiers) and tiers and tiers[-1].up_to != 1.0:
        out.append(
            f"tier {tiers[-1].name!r}: not covering: the last tier's up_to must be 1.0 "
            f"(got {tiers[-1].up_to}), or probabilities above it have no tier"
        )
    return out


def _share_problems(tiers: tuple[Tier, ...]) -> list[str]:
    out: list[str] = []
    shares = [(t.name, t.share) for t in tiers if t.share is not None]
    for name, x in shares:
        if not 0.0 < x <= 1.0:
            out.append(f"tier {name!r}: share {x} must be in (0, 1]")
    if len(shares) == len(tiers):
        total = sum(x for _, x in shares)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            out.append(f"shares sum to {total:.12g}, must be 1 (no gaps, no overlap)")
    return out


def _ratio_problems(tiers: tuple[Tier, ...]) -> list[str]:
    out: list[str] = []
    given = [t for t in tiers if t.sampling_ratio is not None]
    for t in given:
        if not 0.0 <= t.sampling_ratio <= 1.0:
            out.append(f"tier {t.name!r}: sampling_ratio {t.sampling_ratio} is outside [0, 1]")
    if given and len(given) != len(tiers):
        missing = [t.name for t in tiers if t.sampling_ratio is None]
        out.append(f"sampling_ratio given for some tiers but not for {missing} (all or none)")
    for lo, hi in itertools.pairwise(given):
        if hi.sampling_ratio < lo.sampling_ratio:
            out.append(
                f"tier {hi.name!r}: sampling_ratio {hi.sampling_ratio} is lower than "
                f"{lo.sampling_ratio} of the lower-risk tier {lo.name!r} "
                "(a riskier tier must not be sampled less)"
            )
    return out


class YamlDocument(BaseModel):
    """A versioned YAML file people edit: parsed with every problem reported at once,
    written back as plain YAML, and fingerprinted so a model records exactly which it used."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True
    )

    #: What the top level of the file must hold (said when it does not).
    _expected: ClassVar[str] = "a mapping"

    @classmethod
    def _load_mapping(cls, text: str, where: str) -> dict:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"not valid YAML ({exc})", where) from None
        if not isinstance(data, dict):
            raise PolicyError(f"expected {cls._expected}", where)
        return data

    def to_yaml(self) -> str:
        """Plain YAML that ``from_yaml_text`` reads back to an equal document."""
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True
        )

    def fingerprint(self) -> str:
        """First 12 hex of the sha256 of the canonical JSON: which version a model used."""
        return _fingerprint(self)


class TierPolicy(YamlDocument):
    """All tier schemes, the one the service uses by default (``active``) and a version."""

    _expected: ClassVar[str] = "a mapping with version, active and schemes"

    version: str = Field(min_length=1)
    active: str
    schemes: dict[str, TierScheme]

    @model_validator(mode="after")
    def _check(self) -> TierPolicy:
        problems = _policy_problems(self.active, self.schemes)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # ---------------------------------------------------------------- loading and saving

    @classmethod
    def from_yaml_text(cls, text: str, source: str | None = None) -> TierPolicy:
        """Parse and validate; every problem is reported in one ``PolicyError``."""
        where = source or "tier policy"
        data = cls._load_mapping(text, where)
        return _validate(cls, data, where, _describe_policy_loc, _raw_policy_problems)

    # ---------------------------------------------------------------- lookups

    @property
    def scheme_names(self) -> tuple[str, ...]:
        return tuple(self.schemes)

    def scheme(self, name: str | None = None) -> TierScheme:
        """The named scheme (the active one by default)."""
        name = self.active if name is None else name
        if name not in self.schemes:
            raise PolicyError(f"no tier scheme {name!r} (schemes: {', '.join(self.schemes)})")
        return self.schemes[name]

    def tier_names(self, scheme: str | None = None) -> tuple[str, ...]:
        """Tier names from lowest to highest risk."""
        return self.scheme(scheme).names

    def rank(self, scheme: str | None, tier_name: str) -> int:
        """0 for the lowest-risk tier, len - 1 for the highest."""
        names = self.tier_names(scheme)
        if tier_name not in names:
            raise PolicyError(
                f"scheme {scheme or self.active!r} has no tier {tier_name!r} "
                f"(tiers: {', '.join(names)})"
            )
        return names.index(tier_name)

    def sampling_ratios(self, scheme: str | None = None) -> dict[str, float]:
        """Tier name → sampling ratio, lowest risk first."""
        s = self.scheme(scheme)
        if any(t.sampling_ratio is None for t in s.tiers):
            raise PolicyError(f"scheme {scheme or self.active!r} has no sampling ratios")
        return {t.name: float(t.sampling_ratio) for t in s.tiers}

    def is_resolved(self, scheme: str | None = None) -> bool:
        """True when the scheme has probability cut-offs (``assign`` can use it)."""
        return self.scheme(scheme).basis == "probability"

    # ---------------------------------------------------------------- resolution and assignment

    def resolve(self, probabilities: np.ndarray) -> TierPolicy:
        """Copy with every share-based scheme turned into cut-offs on this reference population.

        For cumulative target share ``S`` the cut-off is the ``m``-th smallest probability with
        ``m = round(S * n)``: the ``m`` lowest scores fall in the lower tiers, and so does any
        score tied with the cut-off (``p <= up_to``), so ties always go to the lower tier. Without
        ties the realised cumulative shares are within ``1/(2n)`` of the targets (each tier's
        share within ``1/n``); ties add at most the tied mass. When
        two cut-offs coincide (heavy ties, tiny populations) the later one is nudged up with
        ``np.nextafter`` so the cut-offs stay strictly increasing; the nudged tier is then empty
        on the reference population but still well defined. The first cut-off is kept above 0
        and the last is 1.0. Deterministic: the result only depends on the sorted scores.
        """
        p = _probabilities(probabilities, "reference population")
        if p.size == 0:
            raise ValueError("cannot resolve tier shares on an empty reference population")
        if all(s.basis == "probability" for s in self.schemes.values()):
            return self
        ordered = np.sort(p)
        schemes = {
            name: _resolve_scheme(s, ordered) if s.basis == "share" else s
            for name, s in self.schemes.items()
        }
        return TierPolicy(version=self.version, active=self.active, schemes=schemes)

    def assign(self, probabilities: np.ndarray, scheme: str | None = None) -> np.ndarray:
        """Tier name for each probability: the first tier with ``p <= up_to`` (object array)."""
        s = self.scheme(scheme)
        if s.basis != "probability":
            raise PolicyError(
                f"scheme {scheme or self.active!r} is share-based: resolve() it on a reference "
                "population before assigning tiers"
            )
        p = _probabilities(probabilities, "probabilities")
        idx = np.searchsorted(s.cutoffs, p, side="left")
        return np.asarray(s.names, dtype=object)[idx]


def _policy_problems(active: Any, scheme_names: Any) -> list[str]:
    out: list[str] = []
    if not scheme_names:
        out.append("schemes: at least one tier scheme is needed")
    elif active not in scheme_names:
        out.append(f"active: {active!r} is not a scheme (schemes: {', '.join(scheme_names)})")
    return out


def _raw_policy_problems(data: dict) -> list[str]:
    """Policy-level checks on the raw mapping, for when a scheme failed and the model did not."""
    schemes = data.get("schemes")
    if not isinstance(schemes, dict) or "active" not in data:
        return []
    return _policy_problems(data["active"], list(schemes))


def _resolve_scheme(s: TierScheme, ordered: np.ndarray) -> TierScheme:
    shares = [float(t.share) for t in s.tiers]
    n = ordered.size
    cum = np.cumsum(shares)[:-1]
    m = np.clip(np.rint(cum * n).astype(np.int64), 0, n)
    tiny = np.nextafter(0.0, 1.0)
    cut: list[float] = []
    for k in m:
        c = float(ordered[k - 1]) if k > 0 else float(np.nextafter(ordered[0], 0.0))
        floor = tiny if not cut else float(np.nextafter(cut[-1], 2.0))
        cut.append(max(c, floor))
    cut.append(1.0)
    # Backward pass: keep every cut-off below the next one (a score of exactly 1.0 can push
    # a cut-off onto the last one).
    for i in range(len(cut) - 2, -1, -1):
        cut[i] = min(cut[i], float(np.nextafter(cut[i + 1], 0.0)))
    tiers = tuple(
        Tier(
            name=t.name,
            label_en=t.label_en,
            label_zh=t.label_zh,
            up_to=c,
            sampling_ratio=t.sampling_ratio,
        )
        for t, c in zip(s.tiers, cut, strict=True)
    )
    return TierScheme(
        basis="probability",
        tiers=tiers,
        description_en=s.description_en,
        description_zh=s.description_zh,
        resolved_from=ResolvedFrom(shares=tuple(shares), population=n),
    )


def _probabilities(values: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {p.shape}")
    bad = ~((p >= 0.0) & (p <= 1.0))  # also catches NaN
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: {int(bad.sum())} value(s) are NaN or outside [0, 1] "
            f"(first at position {first}: {p[first]})"
        )
    return p


def load_policy(path: Path) -> TierPolicy:
    """Read and validate a tier policy file; errors name the file, scheme, tier and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("no such tier policy file", str(path)) from None
    return TierPolicy.from_yaml_text(text, source=str(path))


# -------------------------------------------------------------------- shared with training.rules


def _fingerprint(model: BaseModel) -> str:
    canonical = json.dumps(
        model.model_dump(mode="json", exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _validate(cls, data: dict, where: str, describe, raw_problems) -> Any:
    """``cls.model_validate(data)`` with all pydantic and semantic problems in one PolicyError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            place = describe(_trim(err), data)
            for line in _message(err).splitlines():
                problems.append(f"{place}: {line}" if place else line)
        problems += raw_problems(data)
        raise PolicyError(list(dict.fromkeys(problems)), where) from None


def _trim(err: dict) -> tuple:
    """The location of the object at fault (a field name at the end goes into the message)."""
    loc = tuple(err["loc"])
    if err["type"] != "value_error" and loc and isinstance(loc[-1], str):
        return loc[:-1]
    return loc


def _message(err: dict) -> str:
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc[-1]!r}"
    if err["type"] == "missing":
        return f"missing key {loc[-1]!r}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] != "value_error" and loc and isinstance(loc[-1], str):
        return f"{loc[-1]}: {msg}"
    return msg


def _describe_policy_loc(loc: tuple, data: dict) -> str:
    """('schemes', 'risk3', 'tiers', 1, 'up_to') → "scheme 'risk3', tier 'medium'"."""
    if len(loc) < 2 or loc[0] != "schemes":
        return ""
    parts = [f"scheme {loc[1]!r}"]
    if len(loc) >= 4 and loc[2] == "tiers" and isinstance(loc[3], int):
        try:
            name = data["schemes"][loc[1]]["tiers"][loc[3]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = None
        parts.append(f"tier {name!r}" if isinstance(name, str) else f"tier #{loc[3] + 1}")
        rest = loc[4:]
    else:
        rest = loc[2:]
    if rest:
        parts.append(".".join(str(x) for x in rest))
    return ", ".join(parts)
