"""Expert trigger rules: force or floor a tier whatever the model says (专家触发规则).

Why: the provinces combine "machine learning plus expert trigger rules" — a serious-dishonesty
listing, for instance, puts an enterprise straight into the worst class. Rules are data, not
code (no ``eval``): a condition is a leaf ``{feature, op, value}`` comparing one catalogue
feature with a number, or ``{all: [...]}`` / ``{any: [...]}`` of conditions, nested freely. A
missing (NaN) feature value never satisfies a leaf, so an ``any`` ignores it and an ``all``
fails (even for ``!=``: "unknown" is not "different").

Semantics of ``apply_rules`` (per row, per scheme):

1. **force** rules that match decide the tier outright: the final tier is the most severe
   (highest-risk) tier among the matching force rules — a force may lower the model's tier as
   well as raise it — and floors are then ignored.
2. Otherwise **floor** rules raise the tier to the highest matching floor, and only when that
   floor is above the model's tier; a floor never lowers a tier.
3. ``rule`` names the rule that decided the final tier: among the matching force rules (or the
   effective floors) with the deciding tier, the first in file order. It is missing (NA, a
   ``str`` column) when the model's tier stands, including when a floor matched at or below it.
   ``rules_fired`` lists every matching rule id in file order, ';'-joined ("" if none).

A rule must name a tier in every scheme of the policy it is used with
(``RuleSet.check_against``), so the same file serves every scheme.
"""

from __future__ import annotations

import difflib
import operator
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from features.catalogue import CATALOGUE, FEATURE_NAMES
from training.tiers import PolicyError, TierPolicy, YamlDocument, _validate

Op = Literal[">", ">=", "<", "<=", "==", "!="]
_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_NON_NUMERIC = frozenset(f.name for f in CATALOGUE if f.kind == "categorical")
_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Condition(BaseModel):
    """A leaf ``{feature, op, value}`` or a combination ``{all: [...]}`` / ``{any: [...]}``."""

    model_config = _CONFIG

    feature: str | None = None
    op: Op | None = None
    value: Annotated[float, Strict()] | None = None
    all: tuple[Condition, ...] | None = None
    any: tuple[Condition, ...] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        leaf = [k for k in ("feature", "op", "value") if getattr(self, k) is not None]
        combos = [k for k in ("all", "any") if getattr(self, k) is not None]
        if (combos and leaf) or len(combos) > 1:
            raise ValueError(
                "a condition is either {feature, op, value} or {all: [...]} or {any: [...]}, "
                f"not several (got {', '.join(leaf + combos)})"
            )
        if combos:
            if not getattr(self, combos[0]):
                raise ValueError(f"{combos[0]}: needs at least one condition")
        elif len(leaf) != 3:
            missing = [k for k in ("feature", "op", "value") if getattr(self, k) is None]
            raise ValueError(f"leaf condition is missing {', '.join(missing)}")
        return self

    @property
    def is_leaf(self) -> bool:
        return self.feature is not None

    def leaves(self) -> Iterator[Condition]:
        """Every leaf condition, depth first."""
        if self.is_leaf:
            yield self
        else:
            for c in self.all or self.any or ():
                yield from c.leaves()

    def features(self) -> tuple[str, ...]:
        """Feature names the condition reads, without repeats, in order of appearance."""
        return tuple(dict.fromkeys(c.feature for c in self.leaves()))

    def describe(self) -> str:
        """Readable text for explanations, e.g. ``(a >= 1 and b >= 1)``."""
        if self.is_leaf:
            return f"{self.feature} {self.op} {self.value:g}"
        joiner = " and " if self.all else " or "
        return "(" + joiner.join(c.describe() for c in self.all or self.any or ()) + ")"

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean array, one entry per row; NaN never satisfies a leaf."""
        if self.is_leaf:
            x = _numeric(frame, self.feature)
            with np.errstate(invalid="ignore"):
                return ~np.isnan(x) & _OPS[self.op](x, self.value)
        parts = [c.mask(frame) for c in self.all or self.any or ()]
        return np.logical_and.reduce(parts) if self.all else np.logical_or.reduce(parts)


def _numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        raise ValueError(f"trigger rules need feature {name!r}, missing from the frame")
    s = frame[name]
    if not pd.api.types.is_numeric_dtype(s.dtype):
        try:
            s = pd.to_numeric(s, errors="raise")
        except (TypeError, ValueError):
            raise ValueError(
                f"trigger rules compare numbers; column {name!r} is not numeric"
            ) from None
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


class TriggerRule(BaseModel):
    """One rule: when the condition holds, force or floor the tier named per scheme."""

    model_config = _CONFIG

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    description_en: str
    description_zh: str
    when: Condition
    action: Literal["force", "floor"]
    #: Scheme name → tier name in that scheme.
    tiers: dict[str, str] = Field(min_length=1)


class RuleSet(YamlDocument):
    """An ordered list of trigger rules (file order breaks ties) and a version."""

    _expected: ClassVar[str] = "a mapping with version and rules"

    version: str = Field(min_length=1)
    rules: tuple[TriggerRule, ...] = ()

    @classmethod
    def from_yaml_text(cls, text: str, source: str | None = None) -> RuleSet:
        """Parse and check the structure; ``check_against`` checks names against a policy."""
        where = source or "trigger rules"
        data = cls._load_mapping(text, where)
        return _validate(cls, data, where, _describe_rule_loc, lambda _: [])

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rules)

    def check_against(self, policy: TierPolicy) -> None:
        """Raise ``PolicyError`` listing every unknown feature, scheme or tier and duplicate id."""
        problems = [f"duplicate rule id {i!r}" for i, n in Counter(self.ids).items() if n > 1]
        for r in self.rules:
            for name in r.when.features():
                if name in _NON_NUMERIC:
                    problems.append(f"rule {r.id!r}: feature {name!r} is categorical, not a number")
                elif name not in FEATURE_NAMES:
                    close = difflib.get_close_matches(name, FEATURE_NAMES, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problems.append(f"rule {r.id!r}: unknown feature {name!r}{hint}")
            for scheme, tier in r.tiers.items():
                if scheme not in policy.schemes:
                    problems.append(f"rule {r.id!r}: unknown scheme {scheme!r}")
                elif tier not in policy.tier_names(scheme):
                    names = ", ".join(policy.tier_names(scheme))
                    problems.append(
                        f"rule {r.id!r}: scheme {scheme!r} has no tier {tier!r} (tiers: {names})"
                    )
            for scheme in policy.schemes:
                if scheme not in r.tiers:
                    problems.append(f"rule {r.id!r}: no tier given for scheme {scheme!r}")
        if problems:
            raise PolicyError(
                problems,
                f"trigger rules (version {self.version}) against tier policy "
                f"(version {policy.version})",
            )

    def evaluate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Which rules match which rows: booleans, rows × rule ids in file order."""
        data = {r.id: r.when.mask(frame) for r in self.rules}
        return pd.DataFrame(data, index=frame.index, columns=list(self.ids), dtype=bool)


def load_rules(path: Path) -> RuleSet:
    """Read and check a rule file's structure; call ``check_against(policy)`` before use."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("no such trigger rule file", str(path)) from None
    return RuleSet.from_yaml_text(text, source=str(path))


def apply_rules(
    model_tiers: np.ndarray,
    frame: pd.DataFrame,
    rules: RuleSet,
    policy: TierPolicy,
    scheme: str,
) -> pd.DataFrame:
    """Final tier per row after the trigger rules (semantics in the module docstring).

    Columns: ``tier`` (final), ``model_tier`` (before rules), ``rule`` (deciding rule id, NA
    when the model's tier stands), ``rules_fired`` (all matching ids, ';'-joined, "" if none).
    """
    rules.check_against(policy)
    names = np.asarray(policy.tier_names(scheme), dtype=object)
    model = np.asarray(model_tiers, dtype=object)
    if model.ndim != 1 or model.size != len(frame):
        raise ValueError(f"model_tiers has shape {model.shape}, the frame {len(frame)} rows")
    rank_of = {n: i for i, n in enumerate(names)}
    model_rank = pd.Series(model).map(rank_of)
    if model_rank.isna().any():
        bad = sorted({str(t) for t in model[model_rank.isna().to_numpy()]})
        raise ValueError(f"model_tiers has tiers not in scheme {scheme!r}: {', '.join(bad)}")
    model_rank = model_rank.to_numpy(dtype=np.int64)

    fired = rules.evaluate(frame).to_numpy(dtype=bool)
    ids = np.asarray(rules.ids, dtype=object)
    target = np.array([rank_of[r.tiers[scheme]] for r in rules.rules], dtype=np.int64)
    is_force = np.array([r.action == "force" for r in rules.rules], dtype=bool)

    force_rank, force_rule = _strongest(fired & is_force, target)
    floor_rank, floor_rule = _strongest(fired & ~is_force, target)
    forced = force_rank >= 0
    floored = ~forced & (floor_rank > model_rank)
    final = np.where(forced, force_rank, np.where(floored, floor_rank, model_rank))
    decider = np.where(forced, force_rule, np.where(floored, floor_rule, -1))

    rule = np.full(len(frame), None, dtype=object)
    rule[decider >= 0] = ids[decider[decider >= 0]]
    return pd.DataFrame(
        {
            "tier": names[final],
            "model_tier": model,
            "rule": rule,
            "rules_fired": _joined(fired, ids),
        },
        index=frame.index,
    )


def _strongest(matched: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: highest target rank among matched rules (-1 if none) and the first such rule."""
    n = matched.shape[0]
    if matched.shape[1] == 0:
        return np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    ranks = np.where(matched, target[None, :], -1)
    best = ranks.max(axis=1)
    first = np.argmax(matched & (ranks == best[:, None]), axis=1)
    return best, np.where(best >= 0, first, -1)


def _joined(fired: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """';'-joined ids of the matching rules per row, built column by column (no row loop)."""
    out = np.full(fired.shape[0], "", dtype=object)
    for j, rule_id in enumerate(ids):
        col = fired[:, j]
        sep = np.where(out[col] == "", "", ";")
        out[col] = out[col] + sep + rule_id
    return out


def _describe_rule_loc(loc: tuple, data: dict) -> str:
    """('rules', 2, 'when', 'all', 0, 'op') → "rule 'R03_X', when.all[0]"."""
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int):
        return ""
    try:
        rid = data["rules"][loc[1]].get("id")
    except (KeyError, IndexError, TypeError, AttributeError):
        rid = None
    head = f"rule {rid!r}" if isinstance(rid, str) else f"rule #{loc[1] + 1}"
    path = ""
    for part in loc[2:]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"{head}, {path}" if path else head
