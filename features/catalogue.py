"""Feature catalogue: names, zh/en descriptions, source, window, unit, reason templates.

One home for what each feature means. Explanations (reason texts), the README and the model
card read it; ``CATALOGUE_VERSION`` is recorded with every snapshot and model so a model always
knows which definitions it was trained on.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Feature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Stable reason code (like credit reporting's adverse-action codes): never reused or
    #: renumbered, so a code in a stored explanation keeps its meaning across versions.
    code: str
    name: str
    dtype: Literal["DOUBLE", "BIGINT", "INTEGER", "VARCHAR"]
    kind: Literal["numeric", "categorical", "flag"]
    source: str
    window: str
    unit_en: str
    unit_zh: str
    description_en: str
    description_zh: str
    reason_en: str
    reason_zh: str
    #: +1: a higher value is expected to mean more risk; -1 less; 0 no prior.
    direction_hint: int


def _f(code, name, dtype, kind, source, window, unit, desc, reason, direction) -> Feature:
    return Feature(
        code=code,
        name=name,
        dtype=dtype,
        kind=kind,
        source=source,
        window=window,
        unit_en=unit[0],
        unit_zh=unit[1],
        description_en=desc[0],
        description_zh=desc[1],
        reason_en=reason[0],
        reason_zh=reason[1],
        direction_hint=direction,
    )


_COUNT = ("records", "条")
CATALOGUE: tuple[Feature, ...] = (
    _f(
        "REG01",
        "age_years",
        "DOUBLE",
        "numeric",
        "registry",
        "snapshot",
        ("years", "年"),
        ("Years since establishment", "成立年限"),
        ("established {value} years ago", "成立{value}年"),
        0,
    ),
    _f(
        "REG02",
        "registered_capital",
        "DOUBLE",
        "numeric",
        "registry",
        "snapshot",
        ("10k CNY", "万元"),
        ("Registered capital", "注册资本"),
        ("registered capital {value} (10k CNY)", "注册资本{value}万元"),
        -1,
    ),
    _f(
        "REG03",
        "industry",
        "VARCHAR",
        "categorical",
        "registry",
        "snapshot",
        ("section", "门类"),
        ("Industry section (GB/T 4754)", "行业门类"),
        ("industry section {value}", "所属行业门类{value}"),
        0,
    ),
    _f(
        "REG04",
        "region",
        "VARCHAR",
        "categorical",
        "registry",
        "snapshot",
        ("division code", "区划代码"),
        ("County of registration", "所属县区"),
        ("registered in county {value}", "登记于县区{value}"),
        0,
    ),
    _f(
        "REG05",
        "enterprise_type",
        "VARCHAR",
        "categorical",
        "registry",
        "snapshot",
        ("type", "类型"),
        ("Legal form", "市场主体类型"),
        ("legal form {value}", "市场主体类型为{value}"),
        0,
    ),
    _f(
        "REG06",
        "is_individual_business",
        "INTEGER",
        "flag",
        "registry",
        "snapshot",
        ("yes/no", "是/否"),
        ("Individual business (code starts with 92)", "是否个体工商户"),
        ("individual business: {value}", "个体工商户：{value}"),
        0,
    ),
    _f(
        "PEN01",
        "penalty_count_5y",
        "BIGINT",
        "numeric",
        "penalties",
        "5y",
        _COUNT,
        ("Administrative penalties in the last 5 years", "近5年行政处罚次数"),
        ("{value} administrative penalties in the last 5 years", "近5年受到行政处罚{value}次"),
        1,
    ),
    _f(
        "PEN02",
        "penalty_count_1y",
        "BIGINT",
        "numeric",
        "penalties",
        "1y",
        _COUNT,
        ("Administrative penalties in the last year", "近1年行政处罚次数"),
        ("{value} administrative penalties in the last year", "近1年受到行政处罚{value}次"),
        1,
    ),
    _f(
        "PEN03",
        "serious_penalty_count_5y",
        "BIGINT",
        "numeric",
        "penalties",
        "5y",
        _COUNT,
        (
            "Confiscations, suspensions and revocations in the last 5 years",
            "近5年没收、停产停业、吊销类处罚次数",
        ),
        (
            "{value} serious penalties (confiscation, suspension, revocation) in the last 5 years",
            "近5年受到没收、停产停业或吊销类处罚{value}次",
        ),
        1,
    ),
    _f(
        "PEN04",
        "penalty_max_severity_5y",
        "INTEGER",
        "numeric",
        "penalties",
        "5y",
        ("1 warning … 5 revocation", "1警告…5吊销"),
        ("Most severe penalty kind in the last 5 years", "近5年最重处罚种类"),
        (
            "most severe penalty in the last 5 years at level {value} of 5",
            "近5年最重处罚等级为{value}（共5级）",
        ),
        1,
    ),
    _f(
        "PEN05",
        "penalty_amount_5y",
        "DOUBLE",
        "numeric",
        "penalties",
        "5y",
        ("CNY", "元"),
        ("Fines and confiscations in the last 5 years", "近5年罚没金额"),
        ("{value} CNY fined or confiscated in the last 5 years", "近5年罚没金额{value}元"),
        1,
    ),
    _f(
        "PEN06",
        "days_since_last_penalty",
        "INTEGER",
        "numeric",
        "penalties",
        "5y",
        ("days", "天"),
        ("Days since the latest penalty (within 5 years)", "距最近一次处罚天数"),
        ("the latest penalty was {value} days ago", "最近一次处罚距今{value}天"),
        -1,
    ),
    _f(
        "LST01",
        "on_black_list",
        "INTEGER",
        "flag",
        "list_entries",
        "at as-of",
        ("yes/no", "是/否"),
        ("On the serious-dishonesty (black) list", "是否列入严重失信名单"),
        ("on the serious-dishonesty list: {value}", "列入严重失信名单：{value}"),
        1,
    ),
    _f(
        "LST02",
        "on_abnormal_list",
        "INTEGER",
        "flag",
        "list_entries",
        "at as-of",
        ("yes/no", "是/否"),
        ("On the abnormal-operation list", "是否列入经营异常名录"),
        ("on the abnormal-operation list: {value}", "列入经营异常名录：{value}"),
        1,
    ),
    _f(
        "LST03",
        "on_red_list",
        "INTEGER",
        "flag",
        "list_entries",
        "at as-of",
        ("yes/no", "是/否"),
        ("On the red (trustworthy) list", "是否列入守信红名单"),
        ("on the red list: {value}", "列入守信红名单：{value}"),
        -1,
    ),
    _f(
        "LST04",
        "black_list_entries_5y",
        "BIGINT",
        "numeric",
        "list_entries",
        "5y",
        _COUNT,
        ("Black-list entries in the last 5 years", "近5年列入严重失信名单次数"),
        (
            "listed as seriously dishonest {value} times in the last 5 years",
            "近5年列入严重失信名单{value}次",
        ),
        1,
    ),
    _f(
        "LST05",
        "abnormal_entries_1y",
        "BIGINT",
        "numeric",
        "list_entries",
        "1y",
        _COUNT,
        ("Abnormal-operation listings in the last year", "近1年列入经营异常名录次数"),
        (
            "listed for abnormal operation {value} times in the last year",
            "近1年列入经营异常名录{value}次",
        ),
        1,
    ),
    _f(
        "CRE01",
        "credit_score_latest",
        "DOUBLE",
        "numeric",
        "credit_evaluations",
        "latest",
        ("points of 1000", "分（千分制）"),
        ("Latest public credit score", "最新公共信用评分"),
        ("latest public credit score {value}", "最新公共信用评分{value}分"),
        -1,
    ),
    _f(
        "CRE02",
        "credit_grade_latest",
        "INTEGER",
        "numeric",
        "credit_evaluations",
        "latest",
        ("1=A … 5=E", "1=A…5=E"),
        ("Latest public credit grade", "最新公共信用等级"),
        ("latest credit grade rank {value} (1=A … 5=E)", "最新信用等级序号{value}（1=A…5=E）"),
        1,
    ),
    _f(
        "CRE03",
        "credit_score_change",
        "DOUBLE",
        "numeric",
        "credit_evaluations",
        "latest",
        ("points", "分"),
        ("Change of the credit score since the previous evaluation", "信用评分较上期变化"),
        (
            "credit score changed by {value} points since the previous evaluation",
            "信用评分较上期变化{value}分",
        ),
        -1,
    ),
    _f(
        "CRE04",
        "days_since_evaluation",
        "INTEGER",
        "numeric",
        "credit_evaluations",
        "latest",
        ("days", "天"),
        ("Days since the latest credit evaluation", "距最近一次信用评价天数"),
        ("last evaluated {value} days ago", "最近一次信用评价距今{value}天"),
        0,
    ),
    _f(
        "INS01",
        "inspections_5y",
        "BIGINT",
        "numeric",
        "inspections",
        "5y",
        _COUNT,
        ("Inspections in the last 5 years", "近5年被检查次数"),
        ("inspected {value} times in the last 5 years", "近5年被检查{value}次"),
        0,
    ),
    _f(
        "INS02",
        "problems_found_5y",
        "BIGINT",
        "numeric",
        "inspections",
        "5y",
        _COUNT,
        ("Inspections that found a problem in the last 5 years", "近5年检查发现问题次数"),
        ("{value} inspections found problems in the last 5 years", "近5年检查发现问题{value}次"),
        1,
    ),
    _f(
        "INS03",
        "past_problem_rate_5y",
        "DOUBLE",
        "numeric",
        "inspections",
        "5y",
        ("share", "比例"),
        ("Share of inspections in the last 5 years that found a problem", "近5年检查问题发现率"),
        (
            "{value} of inspections in the last 5 years found problems",
            "近5年检查问题发现率为{value}",
        ),
        1,
    ),
    _f(
        "INS04",
        "problems_found_1y",
        "BIGINT",
        "numeric",
        "inspections",
        "1y",
        _COUNT,
        ("Inspections that found a problem in the last year", "近1年检查发现问题次数"),
        ("{value} inspections found problems in the last year", "近1年检查发现问题{value}次"),
        1,
    ),
    _f(
        "INS05",
        "days_since_last_inspection",
        "INTEGER",
        "numeric",
        "inspections",
        "5y",
        ("days", "天"),
        ("Days since the latest inspection (within 5 years)", "距最近一次检查天数"),
        ("last inspected {value} days ago", "最近一次检查距今{value}天"),
        0,
    ),
    _f(
        "CMP01",
        "complaints_1y",
        "BIGINT",
        "numeric",
        "complaints",
        "1y",
        _COUNT,
        ("Complaints and reports in the last year", "近1年投诉举报次数"),
        ("{value} complaints in the last year", "近1年被投诉举报{value}次"),
        1,
    ),
    _f(
        "CMP02",
        "substantiated_complaints_1y",
        "BIGINT",
        "numeric",
        "complaints",
        "1y",
        _COUNT,
        ("Substantiated complaints in the last year", "近1年属实投诉举报次数"),
        ("{value} substantiated complaints in the last year", "近1年属实投诉举报{value}次"),
        1,
    ),
    _f(
        "CMP03",
        "complaints_90d",
        "BIGINT",
        "numeric",
        "complaints",
        "90d",
        _COUNT,
        ("Complaints and reports in the last 90 days", "近90天投诉举报次数"),
        ("{value} complaints in the last 90 days", "近90天被投诉举报{value}次"),
        1,
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in CATALOGUE)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in CATALOGUE if f.kind == "categorical")
CATALOGUE_VERSION: str = hashlib.sha256(
    "".join(f.model_dump_json() for f in CATALOGUE).encode()
).hexdigest()[:12]


assert len({f.code for f in CATALOGUE}) == len(CATALOGUE), "reason codes must be unique"


def feature(name: str) -> Feature:
    for f in CATALOGUE:
        if f.name == name:
            return f
    raise KeyError(f"no feature named {name!r}")
