"""Reason codes and sentences: every catalogue feature in both languages, signs, linked dates."""

from __future__ import annotations

import math
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.catalogue import CATALOGUE, FEATURE_NAMES
from training.explain.reasons import check_lang, code_table, format_value, reasons, render

CJK = re.compile(r"[\u4e00-\u9fff]")


def _typical(f) -> object:
    if f.kind == "categorical":
        return {"industry": "C", "region": "330102", "enterprise_type": "limited"}[f.name]
    if f.kind == "flag":
        return 1
    if f.unit_en == "share":
        return 0.4
    return 3.0


@pytest.mark.parametrize("f", CATALOGUE, ids=lambda f: f.name)
def test_every_feature_renders_in_both_languages(f) -> None:
    value = _typical(f)
    zh, en = render(f.name, value, "zh"), render(f.name, value, "en")
    assert CJK.search(zh), zh
    assert not CJK.search(en), en
    shown_zh, shown_en = format_value(f, value, "zh"), format_value(f, value, "en")
    assert shown_zh in zh and shown_en in en
    # a missing value says so instead of printing "nan"
    for lang in ("zh", "en"):
        text = render(f.name, math.nan if f.kind != "categorical" else None, lang)
        assert "nan" not in text.lower().replace("financ", "")
        assert ("无记录" in text) if lang == "zh" else ("no record" in text)


def test_values_read_like_the_domain() -> None:
    assert render("penalty_count_5y", 3, "en") == "3 administrative penalties in the last 5 years"
    assert render("penalty_count_5y", 3, "zh") == "近5年受到行政处罚3次"
    assert render("on_black_list", 1, "zh") == "列入严重失信名单：是"
    assert render("on_black_list", 0, "en") == "on the serious-dishonesty list: no"
    assert "40%" in render("past_problem_rate_5y", 0.4, "en")
    assert "12,500" in render("penalty_amount_5y", 12500.0, "en")
    latest = render("penalty_count_5y", 3, "en", latest=date(2024, 3, 2))
    assert latest == "3 administrative penalties in the last 5 years, the latest on 2024-03-02"
    assert render("penalty_count_5y", 3, "zh", latest=date(2024, 3, 2)).endswith(
        "最近一次为2024-03-02"
    )


def test_codes_are_unique_stable_and_published() -> None:
    codes = [f.code for f in CATALOGUE]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"[A-Z]{3}\d{2}", c) for c in codes)
    table = code_table()
    assert list(table["feature"]) == list(FEATURE_NAMES)
    # codes of the first features must never be renumbered
    assert dict(zip(table["feature"], table["code"], strict=True))["penalty_count_5y"] == "PEN01"
    assert dict(zip(table["feature"], table["code"], strict=True))["on_black_list"] == "LST01"


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="'fr' is not supported"):
        check_lang("fr")
    with pytest.raises(ValueError, match="lang"):
        render("penalty_count_5y", 1, "fr")  # type: ignore[arg-type]


def _row() -> pd.Series:
    return pd.Series({f.name: _typical(f) for f in CATALOGUE})


def test_reasons_agree_in_sign_and_order_with_contributions() -> None:
    rng = np.random.default_rng(3)
    names = list(FEATURE_NAMES)
    for _ in range(20):
        contrib = rng.normal(size=len(names)) * (rng.random(len(names)) > 0.3)
        up, down = reasons(_row(), contrib, names, k=4)
        assert len(up) == min(4, int((contrib > 0).sum()))
        assert len(down) == min(4, int((contrib < 0).sum()))
        assert all(r.contribution > 0 and r.direction == "raises" for r in up)
        assert all(r.contribution < 0 and r.direction == "lowers" for r in down)
        assert [r.contribution for r in up] == sorted((r.contribution for r in up), reverse=True)
        assert [r.contribution for r in down] == sorted(r.contribution for r in down)
        # the largest positive contribution is the first reason raising risk
        if up:
            assert up[0].feature == names[int(np.argmax(contrib))]
        for r in up + down:
            assert r.contribution == contrib[names.index(r.feature)]
            assert r.code == next(f.code for f in CATALOGUE if f.name == r.feature)


def test_reasons_carry_their_records_and_the_latest_date() -> None:
    names = list(FEATURE_NAMES)
    contrib = np.zeros(len(names))
    contrib[names.index("penalty_count_5y")] = 0.8
    contrib[names.index("complaints_1y")] = 0.1
    records = pd.DataFrame(
        {
            "source": ["penalties", "penalties", "complaints"],
            "record_id": ["P1", "P2", "C1"],
            "event_date": [date(2023, 1, 5), date(2024, 3, 2), date(2025, 1, 1)],
            "status": ["counted", "counted", "counted"],
            "features": [("penalty_count_5y",), ("penalty_count_5y",), ("complaints_1y",)],
        }
    )
    up, down = reasons(_row(), contrib, names, k=5, records=records)
    assert [r.feature for r in up] == ["penalty_count_5y", "complaints_1y"]
    assert down == []
    assert [rec["record_id"] for rec in up[0].records] == ["P1", "P2"]
    assert up[0].text_en.endswith("the latest on 2024-03-02")
    assert [rec["record_id"] for rec in up[1].records] == ["C1"]
