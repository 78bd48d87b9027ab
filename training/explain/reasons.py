"""Reason codes and sentences, in Chinese and English, from the catalogue and actual values.

Why here and not in the model: a reason must read the same for the auditor and for the
enterprise, and must be checkable against the records. So the sentence is built only from the
feature catalogue (``features/catalogue.py``: code, templates, unit) and the enterprise's own
feature value, optionally with the date of the latest record behind it; the model only decides
*which* features are the reasons and in which direction (the sign of their contribution).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from features.catalogue import CATALOGUE, Feature, feature

Lang = Literal["zh", "en"]
LANGS: tuple[str, ...] = ("zh", "en")

#: What the contributions are measured in: said on every explanation and report.
SPACE = {
    "en": "log-odds of the model's raw score (the calibrated probability is an increasing "
    "function of it: with Platt calibration, calibrated log-odds = slope × raw + intercept, so "
    "each contribution moves the calibrated log-odds by slope × contribution)",
    "zh": "模型原始得分的对数几率（校准概率随其单调递增；Platt 校准下，校准后对数几率 = 斜率 × "
    "原始得分 + 截距，每项贡献使校准后对数几率变化 斜率 × 贡献）",
}

_YES_NO = {"en": ("no", "yes"), "zh": ("否", "是")}
_NO_RECORD = {"en": "{description}: no record", "zh": "{description}：无记录"}
_LATEST = {"en": "{text}, the latest on {date}", "zh": "{text}，最近一次为{date}"}
_DIRECTION = {"en": ("raises risk", "lowers risk"), "zh": ("提高风险", "降低风险")}


def check_lang(lang: str) -> Lang:
    if lang not in LANGS:
        raise ValueError(f"lang: {lang!r} is not supported; use one of {', '.join(LANGS)}")
    return lang  # type: ignore[return-value]


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def format_value(f: Feature, value: object, lang: Lang) -> str | None:
    """The value as a reader expects it (yes/no, %, thousands); None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if f.kind == "categorical":
        return str(value)
    v = float(value)
    if f.kind == "flag":
        return _YES_NO[lang][int(v != 0)]
    if f.unit_en == "share":
        return f"{v:.0%}"
    if f.unit_en in {"CNY", "10k CNY"}:
        return f"{v:,.0f}" if f.unit_en == "CNY" else f"{v:,.1f}"
    if f.unit_en == "points":
        return f"{v:+.1f}"
    return _number(v)


def render(name: str, value: object, lang: Lang, latest: date | None = None) -> str:
    """One sentence for one feature value, e.g. "3 administrative penalties in the last 5 years,
    the latest on 2024-03-02"."""
    f = feature(name)
    shown = format_value(f, value, check_lang(lang))
    if shown is None:
        description = f.description_en if lang == "en" else f.description_zh
        return _NO_RECORD[lang].format(description=description)
    text = (f.reason_en if lang == "en" else f.reason_zh).format(value=shown)
    if latest is not None:
        text = _LATEST[lang].format(text=text, date=latest.isoformat())
    return text


@dataclass(frozen=True)
class Reason:
    """One reason: a catalogue feature, its value, and how much it moved this score."""

    code: str
    feature: str
    value: object
    contribution: float
    direction: Literal["raises", "lowers"]
    text_zh: str
    text_en: str
    #: Source records behind the value (record ids, dates, departments, status).
    records: list[dict] = field(default_factory=list)

    def text(self, lang: Lang) -> str:
        return self.text_zh if lang == "zh" else self.text_en

    def to_dict(self) -> dict:
        d = asdict(self)
        d["value"] = _plain(self.value)
        return d


def _plain(value: object) -> object:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def reasons(
    values: pd.Series,
    contributions: np.ndarray,
    names: list[str] | tuple[str, ...],
    *,
    k: int = 5,
    records: pd.DataFrame | None = None,
) -> tuple[list[Reason], list[Reason]]:
    """Top ``k`` reasons raising risk (largest positive contribution first) and lowering it.

    ``values`` are the enterprise's feature values (not the encoded ones); ``records`` the
    linked source records (``features.lineage``) whose ``features`` column says which features
    each counted record feeds — they are attached to the reason and give its latest date.
    """
    order = np.argsort(-contributions, kind="stable")
    up = [i for i in order if contributions[i] > 0][:k]
    down = [i for i in order[::-1] if contributions[i] < 0][:k]
    out: tuple[list[Reason], list[Reason]] = ([], [])
    for bucket, picked, direction in ((out[0], up, "raises"), (out[1], down, "lowers")):
        for i in picked:
            name = names[i]
            linked = _linked(records, name)
            # "224 days since the last penalty" already dates it; others get the latest date.
            dated = not name.startswith("days_since")
            latest = max((r["event_date"] for r in linked), default=None) if dated else None
            value = values[name]
            bucket.append(
                Reason(
                    code=feature(name).code,
                    feature=name,
                    value=_plain(value),
                    contribution=float(contributions[i]),
                    direction=direction,
                    text_zh=render(name, value, "zh", latest),
                    text_en=render(name, value, "en", latest),
                    records=linked,
                )
            )
    return out


def _linked(records: pd.DataFrame | None, name: str) -> list[dict]:
    if records is None or records.empty:
        return []
    feeds = records["features"].map(lambda fs: name in tuple(fs))
    picked = records[feeds]
    rows = []
    for r in picked.to_dict("records"):
        rows.append({k: _plain(_as_date(v)) for k, v in r.items() if k != "features"})
    return rows


def _as_date(v: object) -> object:
    if isinstance(v, pd.Timestamp):
        return v.date()
    return v


def direction_word(direction: str, lang: Lang) -> str:
    return _DIRECTION[lang][0 if direction == "raises" else 1]


def code_table() -> pd.DataFrame:
    """Every reason code with its feature and both descriptions (published with the model)."""
    return pd.DataFrame(
        [
            {
                "code": f.code,
                "feature": f.name,
                "description_en": f.description_en,
                "description_zh": f.description_zh,
            }
            for f in CATALOGUE
        ]
    )
