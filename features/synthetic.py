"""The synthetic province: seeded raw sources with a hidden risk process and injected defects.

Why it exists: the service needs data with the shape, the flaws and the *signal* of a real
province's credit records, at province scale, without touching personal data. Every source in
``features.contracts`` is written with every column, in contract order, with allowed values.

The hidden risk process (documented so that models can be judged against it):

* each enterprise has a static effect (U-shaped in age, a small-capital threshold, industry,
  county, enterprise type, and industry x county interactions such as catering in 330102,
  330302 and 330681) plus a latent propensity = a stable part + an AR(1) part that drifts
  year to year (``_Hidden``);
* the propensity drives spontaneous penalties, complaints (strongly in catering and health,
  not at all in IT), abnormal/black/red listings, closures and the quarterly credit score
  (a noisy signal of the propensity half a year earlier);
* inspections come from yearly "double random" draws per county and department (Poisson
  sampling with a known inclusion probability of 3-8 %, credit-linked from 2020: x0.5 for a
  latest grade A, x3 for D/E) and from targeted checks triggered by complaints, penalties and
  abnormal listings;
* ``problem_found`` ~ Bernoulli(sigmoid(hidden logit at the inspection date)), the logit adding
  to the propensity recent penalties (last year weigh far more than older ones), recent
  complaints weighted by industry, the team's hidden strictness and the department.

Data coverage is uneven on purpose (``THIN_COVERAGE``): some departments pushed only a fraction
of their penalties. Publication lags (``recorded_at``) are mostly days with a tail up to a year;
30 % of penalties decided before 2018-10-01 were back-filled in Q4 2018. Records whose
``recorded_at`` would fall after ``extracted_on`` have not reached the platform and are absent.

Data-quality defects are injected at the rates of ``DEFECT_RATES`` (exactly one defect per
defective row, never in the registry, never in objections or repairs) and listed in
``<out>/_truth/defects.csv``; ``_truth/enterprise_risk.parquet`` holds the hidden propensity per
enterprise and year, ``_truth/inspectors.csv`` each inspector's strictness and
``_truth/draws.csv`` the draws (date and base probability of every random-draw task).

Scale: enterprises are generated chunk by chunk with vectorised numpy and streamed to one
writer per source, so memory stays flat. Determinism: every random stream comes from
``SeedSequence(seed, spawn_key=(chunk, purpose))``; the same parameters give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict
from tqdm import tqdm

from features import credit_code as cc
from features.contracts import (
    COMPLAINT_CHANNELS,
    ENTERPRISE_TYPES,
    GRADES,
    INDUSTRIES,
    LIST_TYPES,
    OBJECTION_OUTCOMES,
    PENALTY_KINDS,
    PROCEDURES,
    SOURCES,
    TARGETABLE_SOURCES,
    DType,
    Reason,
)

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0"
HISTORY_START = date(2016, 1, 1)
FOUNDING_START = date(1995, 1, 1)
EVALUATIONS_START = date(2017, 1, 1)
#: "Before Oct 2018 many records lack the credit code, penalty kind, legal basis..." (DOMAIN.md)
QUALITY_CUTOFF = date(2018, 10, 1)
#: Credit-linked draws start in this year.
CREDIT_LINKED_FROM = 2020
CREDIT_CENTRE = "330000-CC"
TRUTH_DIR = "_truth"

# ----------------------------------------------------------------------------- the province


class _Region(NamedTuple):
    code: str
    city: str
    county: str
    size: float
    risk: float  # main effect on the hidden logit


#: Real county-level divisions of Zhejiang (GB/T 2260) with relative sizes and a regional effect.
REGIONS: tuple[_Region, ...] = (
    _Region("330102", "杭州", "上城区", 8, 0.00),
    _Region("330105", "杭州", "拱墅区", 7, 0.05),
    _Region("330106", "杭州", "西湖区", 8, -0.10),
    _Region("330108", "杭州", "滨江区", 5, -0.20),
    _Region("330109", "杭州", "萧山区", 10, 0.10),
    _Region("330110", "杭州", "余杭区", 10, 0.00),
    _Region("330122", "杭州", "桐庐县", 2, 0.15),
    _Region("330127", "杭州", "淳安县", 2, 0.20),
    _Region("330182", "杭州", "建德市", 2, 0.15),
    _Region("330203", "宁波", "海曙区", 5, -0.05),
    _Region("330205", "宁波", "江北区", 3, 0.00),
    _Region("330206", "宁波", "北仑区", 5, 0.05),
    _Region("330212", "宁波", "鄞州区", 8, -0.10),
    _Region("330281", "宁波", "余姚市", 5, 0.05),
    _Region("330302", "温州", "鹿城区", 6, 0.15),
    _Region("330303", "温州", "龙湾区", 3, 0.20),
    _Region("330304", "温州", "瓯海区", 4, 0.20),
    _Region("330381", "温州", "瑞安市", 6, 0.25),
    _Region("330402", "嘉兴", "南湖区", 3, -0.05),
    _Region("330421", "嘉兴", "嘉善县", 3, 0.10),
    _Region("330502", "湖州", "吴兴区", 3, 0.00),
    _Region("330522", "湖州", "长兴县", 3, 0.10),
    _Region("330602", "绍兴", "越城区", 4, 0.00),
    _Region("330681", "绍兴", "诸暨市", 5, 0.15),
    _Region("330702", "金华", "婺城区", 4, 0.10),
)
_REGION_INDEX = {r.code: i for i, r in enumerate(REGIONS)}


class _Industry(NamedTuple):
    individual: float  # share among individual businesses
    company: float  # share among companies
    cooperative: float  # share among farmers' cooperatives
    risk: float  # main effect on the hidden logit
    penalties: float  # multiplier of the spontaneous penalty rate
    complaints: float  # complaints per enterprise-year at the centre of the risk scale
    complaint_signal: float  # how strongly complaints follow the latent risk (0 = pure noise)
    complaint_weight: float  # weight of each complaint of the last year in the hidden logit


INDUSTRY_PROFILES: dict[str, _Industry] = {
    #              indiv  comp  coop   risk  pen  compl sig  weight
    "A": _Industry(0.03, 0.01, 0.90, 0.10, 0.8, 0.10, 0.3, 0.05),
    "C": _Industry(0.05, 0.22, 0.00, 0.10, 1.2, 0.16, 0.4, 0.05),
    "D": _Industry(0.00, 0.01, 0.00, -0.20, 0.8, 0.12, 0.3, 0.05),
    "E": _Industry(0.02, 0.07, 0.00, 0.30, 1.3, 0.16, 0.4, 0.05),
    "F": _Industry(0.38, 0.24, 0.05, 0.20, 1.0, 0.48, 0.6, 0.15),
    "G": _Industry(0.05, 0.05, 0.00, 0.10, 1.0, 0.20, 0.4, 0.05),
    "H": _Industry(0.22, 0.04, 0.00, 0.40, 1.6, 0.90, 1.0, 0.35),
    "I": _Industry(0.01, 0.09, 0.00, -0.40, 0.4, 0.24, 0.0, 0.00),
    "K": _Industry(0.00, 0.04, 0.00, 0.00, 0.8, 0.40, 0.5, 0.10),
    "L": _Industry(0.02, 0.10, 0.00, 0.00, 0.7, 0.16, 0.4, 0.05),
    "M": _Industry(0.00, 0.06, 0.00, -0.30, 0.5, 0.10, 0.1, 0.00),
    "O": _Industry(0.18, 0.02, 0.05, 0.20, 1.0, 0.45, 0.6, 0.15),
    "P": _Industry(0.01, 0.02, 0.00, 0.10, 0.8, 0.45, 0.7, 0.20),
    "Q": _Industry(0.01, 0.02, 0.00, 0.30, 1.4, 0.50, 1.0, 0.35),
    "R": _Industry(0.02, 0.03, 0.00, 0.20, 1.0, 0.35, 0.5, 0.15),
}  # fmt: skip

#: Name words per industry: (for companies, for individual businesses).
INDUSTRY_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "A": (("农业开发", "生态农业"), ("种植场", "养殖场")),
    "C": (("机械制造", "电子科技", "五金制品"), ("加工厂", "五金店")),
    "D": (("能源", "燃气"), ("燃气站",)),
    "E": (("建设工程", "建筑工程"), ("装修队",)),
    "F": (("商贸", "贸易", "百货"), ("便利店", "商行", "超市")),
    "G": (("物流", "运输"), ("货运部",)),
    "H": (("餐饮管理", "酒店管理"), ("小吃店", "面馆", "饭店")),
    "I": (("网络科技", "信息技术", "软件"), ("电脑店",)),
    "K": (("房地产开发", "置业"), ("房产中介",)),
    "L": (("企业管理", "商务咨询"), ("广告部",)),
    "M": (("检测技术", "工程技术"), ("技术服务部",)),
    "O": (("家政服务", "维修服务"), ("理发店", "维修部", "洗衣店")),
    "P": (("教育科技", "培训"), ("培训部",)),
    "Q": (("医疗", "健康管理"), ("诊所",)),
    "R": (("文化传媒", "娱乐"), ("棋牌室", "网吧")),
}

#: County tilts of the industry mix (multipliers before normalising).
REGION_INDUSTRY_TILT: dict[str, dict[str, float]] = {
    "330102": {"H": 1.4, "L": 1.5, "C": 0.4},
    "330106": {"I": 1.8, "M": 1.5, "P": 1.5},
    "330108": {"I": 4.0, "M": 2.0, "C": 0.6},
    "330122": {"A": 2.5},
    "330127": {"A": 3.0, "H": 1.5},
    "330182": {"A": 2.0},
    "330206": {"C": 1.5, "G": 1.8},
    "330302": {"H": 1.3, "F": 1.2},
    "330381": {"C": 1.6},
    "330681": {"C": 1.5},
    "330702": {"F": 1.3},
}

#: Industry x county effects on the hidden logit: what a model without interactions misses.
INTERACTIONS: dict[tuple[str, str], float] = {
    ("H", "330102"): 0.9,
    ("H", "330302"): 0.9,
    ("H", "330681"): 0.8,
    ("C", "330381"): 0.6,
    ("C", "330304"): 0.6,
    ("E", "330522"): 0.5,
    ("E", "330110"): 0.5,
    ("Q", "330212"): 0.6,
    ("I", "330108"): -0.4,
}


class _EnterpriseType(NamedTuple):
    share: float
    category: int  # second character of the credit code (9x)
    capital_median: float | None  # 10,000 CNY; None = no registered capital
    capital_sigma: float
    risk: float
    suffix: str
    founding_trend: float  # yearly growth of foundings: more recent more common


ENTERPRISE_TYPE_PROFILES: dict[str, _EnterpriseType] = {
    "limited_company": _EnterpriseType(0.49, 1, 100, 1.3, 0.0, "有限公司", 0.03),
    "joint_stock": _EnterpriseType(0.03, 1, 5000, 1.0, -0.3, "股份有限公司", 0.02),
    "partnership": _EnterpriseType(0.03, 1, 500, 1.2, 0.1, "合伙企业", 0.04),
    "sole_proprietorship": _EnterpriseType(0.05, 1, 10, 1.0, 0.2, "商行", 0.03),
    "individual_business": _EnterpriseType(0.34, 2, None, 0.0, 0.3, "", 0.05),
    "foreign_invested": _EnterpriseType(0.02, 1, 1000, 1.2, -0.2, "有限公司", 0.01),
    "state_owned": _EnterpriseType(0.01, 1, 5000, 1.2, -0.4, "集团有限公司", 0.0),
    "cooperative": _EnterpriseType(0.03, 3, 50, 1.0, 0.1, "专业合作社", 0.03),
}


class _Department(NamedTuple):
    zh: str
    industries: tuple[str, ...] | None  # None = every industry
    effect: float  # on the hidden logit of its inspections
    pool: float  # inspectors per unit of county size
    legal_bases: tuple[str, ...]


DEPARTMENTS: dict[str, _Department] = {
    "MR": _Department("市场监督管理局", None, 0.0, 3.0, (
        "《中华人民共和国食品安全法》第一百二十二条", "《中华人民共和国产品质量法》第四十九条",
        "《中华人民共和国广告法》第五十五条", "《中华人民共和国价格法》第四十条",
        "《中华人民共和国反不正当竞争法》第二十条", "《市场主体登记管理条例》第四十六条")),
    "EE": _Department("生态环境局", ("C", "D", "E"), 0.2, 0.6, (
        "《中华人民共和国大气污染防治法》第九十九条", "《中华人民共和国水污染防治法》第八十三条",
        "《中华人民共和国固体废物污染环境防治法》第一百零二条")),
    "EM": _Department("应急管理局", ("C", "E", "G"), 0.1, 0.6, (
        "《中华人民共和国安全生产法》第九十七条", "《中华人民共和国安全生产法》第一百零一条")),
    "HC": _Department("卫生健康局", ("H", "Q"), 0.1, 0.5, (
        "《医疗机构管理条例》第四十七条", "《公共场所卫生管理条例》第十四条")),
    "CT": _Department("文化广电旅游局", ("R",), -0.1, 0.3, (
        "《娱乐场所管理条例》第四十八条", "《旅行社条例》第四十六条")),
    "TR": _Department("交通运输局", ("G",), 0.0, 0.4, (
        "《中华人民共和国道路运输条例》第六十三条", "《道路货物运输及站场管理规定》第五十八条")),
    "HB": _Department("住房和城乡建设局", ("E", "K"), 0.2, 0.4, (
        "《建设工程质量管理条例》第六十四条", "《建筑工程施工许可管理办法》第十二条")),
    "ED": _Department("教育局", ("P",), -0.2, 0.3, (
        "《中华人民共和国民办教育促进法》第六十二条",)),
}  # fmt: skip

#: Departments that pushed only a fraction of their penalties to the platform: (county,
#: department) -> share of penalties that reached it. The rest happened (they shape the hidden
#: process and trigger inspections) but are absent from ``penalties``: penalty features
#: under-count there, which is what regional fairness checks should surface.
THIN_COVERAGE: dict[tuple[str, str], float] = {
    ("330421", "MR"): 0.25,
    ("330702", "MR"): 0.40,
}

TRADE_WORDS = (
    "鑫达", "恒通", "华盛", "宏远", "永泰", "金诚", "瑞丰", "嘉禾", "东升", "明辉", "天成", "新源",
    "博远", "顺发", "德信", "汇丰", "富源", "兴旺", "安康", "和美", "佳福", "隆昌", "盛世", "腾飞",
    "万家", "祥和", "益民", "裕丰", "志诚", "中联", "众鑫", "卓越", "创新", "宏达", "海纳", "旭日",
    "星辰", "远航", "正泰", "致远", "百合", "春晖", "丰泽", "国顺", "浩然", "锦程", "凯旋", "蓝天",
)  # fmt: skip
COOPERATIVE_WORDS = ("茶叶", "水果", "蔬菜", "养殖", "粮油")

LIST_REASONS: dict[str, tuple[str, ...]] = {
    "abnormal": (
        "未按规定期限公示年度报告",
        "通过登记的住所或者经营场所无法联系",
        "公示企业信息隐瞒真实情况、弄虚作假",
        "未在责令期限内公示有关企业信息",
    ),
    "black": (
        "列入经营异常名录届满3年仍未履行相关义务",
        "提交虚假材料或者采取其他欺诈手段隐瞒重要事实取得登记",
        "因严重违法失信行为受到较重行政处罚",
    ),
    "red": ("守合同重信用企业", "纳税信用A级纳税人", "诚信示范经营单位"),
}


class _Hidden:
    """Coefficients of the hidden risk process (what a good model should rediscover)."""

    SIGMA_U = 0.6  # stable latent propensity
    SIGMA_Z = 0.7  # drifting part, AR(1) from year to year
    RHO_Z = 0.75
    CENTER = 0.75  # typical risk index: event rates are quoted at this point
    INTERCEPT = -2.6  # of the inspection logit: ~20 % problems on random draws
    # Penalties in the logit are the spontaneous ones (daily supervision), counted by decision
    # date whether or not they were published; follow-up penalties of a problem found come
    # after the outcome they follow, so they do not feed back into it.
    PENALTY_1Y = 0.55  # per spontaneous penalty decided in the year before (at most 3)
    PENALTY_OLD = 0.08  # per penalty 1-5 years before (at most 3): old ones barely matter
    TARGETED = 0.35  # targeted checks look where the trigger points
    STRICTNESS_SD = 0.5  # of an inspector's hidden strictness (team effect = mean)
    PENALTY_RATE = 0.10  # spontaneous penalties per enterprise-year at the centre
    PENALTY_SLOPE = 0.9
    ABNORMAL_RATE = 0.06
    BLACK_RATE = 0.002
    RED_RATE = 0.004
    FOLLOW_UP_PENALTY = 0.35  # P(penalty | problem found)


# ----------------------------------------------------------------------------- defects


class DefectSpec(NamedTuple):
    """One kind of injected defect and what validation must say about it."""

    sources: tuple[str, ...]
    rate_before: float  # per eligible row whose event date is before 2018-10-01
    rate_after: float  # per eligible row from 2018-10-01 on
    reason: Reason
    column: str
    what: str


_EVENT_SOURCES = ("credit_evaluations", "list_entries", "penalties", "inspections", "complaints")

DEFECT_RATES: dict[str, DefectSpec] = {
    "missing_credit_code": DefectSpec(
        ("penalties",), 0.15, 0.0, Reason.MISSING_VALUE, "credit_code",
        "credit code left empty (old penalty records)"),
    "missing_kind": DefectSpec(
        ("penalties",), 0.05, 0.01, Reason.MISSING_VALUE, "kind", "penalty kind left empty"),
    "missing_procedure": DefectSpec(
        ("penalties",), 0.08, 0.08, Reason.MISSING_VALUE, "procedure",
        "simple/general procedure not stated"),
    "duplicate_row": DefectSpec(
        ("penalties", "inspections", "complaints"), 0.01, 0.01, Reason.DUPLICATE_RECORD,
        "record_id", "the row is pushed twice (exact copy later in the file)"),
    "bad_check_character": DefectSpec(
        _EVENT_SOURCES, 0.005, 0.005, Reason.BAD_CHECK_CHARACTER, "credit_code",
        "last character of the credit code mistyped"),
    "unknown_enterprise": DefectSpec(
        _EVENT_SOURCES, 0.002, 0.002, Reason.UNKNOWN_ENTERPRISE, "credit_code",
        "a valid code of an enterprise that is not in the registry"),
    "recorded_before_event": DefectSpec(
        _EVENT_SOURCES, 0.002, 0.002, Reason.DATES_OUT_OF_ORDER, "recorded_at",
        "recorded_at 1-60 days before the event date"),
}  # fmt: skip
"""Injected data-quality defects, as probabilities per eligible row (one categorical draw per
row, so each defective row has exactly one defect and each rate is exact in expectation):

| defect | sources | before 2018-10-01 | from 2018-10-01 | expected reason | column |
|---|---|---:|---:|---|---|
| missing_credit_code | penalties | 15 % | 0 % | missing_value | credit_code |
| missing_kind | penalties | 5 % | 1 % | missing_value | kind |
| missing_procedure | penalties | 8 % | 8 % | missing_value | procedure |
| duplicate_row | penalties, inspections, complaints | 1 % | 1 % | duplicate_record | record_id |
| bad_check_character | event sources (*) | 0.5 % | 0.5 % | bad_check_character | credit_code |
| unknown_enterprise | event sources (*) | 0.2 % | 0.2 % | unknown_enterprise | credit_code |
| recorded_before_event | event sources (*) | 0.2 % | 0.2 % | dates_out_of_order | recorded_at |

(*) credit_evaluations, list_entries, penalties, inspections, complaints. "Before 2018-10-01"
refers to the row's event date. A duplicate is an exact copy of a clean row
appended later in the same file; the copy is the defective row. The registry, objections and
credit repairs get no defects, and objections/repairs only target clean, non-duplicated rows.
"""


def defect_rates_markdown() -> str:
    """The defect table as Markdown, from ``DEFECT_RATES`` (for the README)."""
    lines = [
        "| defect | sources | before 2018-10-01 | from 2018-10-01 | reason | column |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, d in DEFECT_RATES.items():
        lines.append(
            f"| {name} | {', '.join(d.sources)} | {d.rate_before:.1%} | {d.rate_after:.1%} "
            f"| {d.reason.value} | {d.column} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- public models


class SyntheticParams(BaseModel):
    """The parameters that fully determine a generated province."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enterprises: int
    seed: int
    fmt: Literal["csv", "parquet"]
    chunk_size: int
    extracted_on: date
    generator_version: str = GENERATOR_VERSION


class SyntheticSummary(BaseModel):
    """What a generation wrote: rows per source, defects per (source, defect), files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    params: SyntheticParams
    rows: dict[str, int]
    defects: dict[str, dict[str, int]]
    files: list[str]


# ----------------------------------------------------------------------------- small helpers

_EPOCH = date(1970, 1, 1)
_NA = np.int64(-(2**40))  # "no date" in day arrays
_ALPHA = np.frombuffer(cc.ALPHABET.encode(), dtype=np.uint8)
_ALPHA_VALUE = np.full(256, -1, dtype=np.int64)
_ALPHA_VALUE[_ALPHA] = np.arange(31)
_WEIGHTS = np.array(cc.WEIGHTS, dtype=np.int64)
_ORG_SPACE = 31**9
#: Enterprise indices from here on are never registered (codes of "unknown enterprises").
_GHOST_START = 2**30
MAX_ENTERPRISES = 100_000_000
_RECORD_PREFIX = {
    "credit_evaluations": b"EV",
    "list_entries": b"LE",
    "penalties": b"PN",
    "inspections": b"IN",
    "complaints": b"CP",
    "objections": b"OB",
    "credit_repairs": b"CR",
}
_PA_TYPES = {
    DType.STRING: pa.string(),
    DType.DATE: pa.date32(),
    DType.FLOAT: pa.float64(),
    DType.INT: pa.int64(),
    DType.BOOL: pa.bool_(),
}
_PURPOSES = (
    "province", "registry", "latent", "complaints", "lists", "penalties", "evaluations",
    "draws", "targeted", "outcomes", "follow_ups", "attributes", "defects", "objections",
    "repairs",
)  # fmt: skip


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _rng(seed: int, chunk: int, purpose: str) -> np.random.Generator:
    """An independent stream per (seed, chunk, purpose): stages never shift each other."""
    ss = np.random.SeedSequence(seed, spawn_key=(chunk + 1, _PURPOSES.index(purpose)))
    return np.random.default_rng(ss)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _years_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _pick(rng: np.random.Generator, cum_rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row; ``cum_rows`` holds each row's cumulative probabilities."""
    u = rng.random(cum_rows.shape[0]) * cum_rows[:, -1]
    return np.minimum((u[:, None] >= cum_rows).sum(axis=1), cum_rows.shape[1] - 1)


def _uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A day in [lo, hi) (hi > lo)."""
    return lo + (rng.random(lo.shape[0]) * (hi - lo)).astype(np.int64)


def _lag(
    rng: np.random.Generator,
    n: int,
    main_max: int,
    tail_share: float,
    tail_scale: float,
    cap: int = 365,
) -> np.ndarray:
    """Publication lag in days: mostly 0..main_max, a tail up to ``cap`` (about a year)."""
    u = rng.random(n)
    tail = np.flatnonzero(u < tail_share)
    lag = ((u - tail_share) / (1.0 - tail_share) * (main_max + 1)).astype(np.int64)
    extra = np.minimum(rng.exponential(tail_scale, tail.size), cap - main_max - 1)
    lag[tail] = main_max + 1 + extra.astype(np.int64)
    return lag


def _strings(mat: np.ndarray) -> pa.Array:
    """Fixed-width ASCII rows of a uint8 matrix as an Arrow string array (zero Python loops)."""
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    n, width = mat.shape
    offsets = (np.arange(n + 1, dtype=np.int64) * width).astype(np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(mat.tobytes())]
    )


def _digit_table(width: int) -> np.ndarray:
    """ASCII digits of 0 .. 10**width - 1, one row each."""
    values = np.arange(10**width)
    powers = 10 ** np.arange(width - 1, -1, -1)
    return ((values[:, None] // powers[None, :]) % 10 + 48).astype(np.uint8)


_DIGITS4 = np.ascontiguousarray(_digit_table(4)).view(np.uint32).ravel()
_DIGITS2 = _digit_table(2)


def _id_matrix(prefix_index: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Record ids as ASCII rows: a 2-letter prefix + a 10-digit counter.

    Built from digit lookup tables on 4-byte words: ids are most of the bytes written, and this
    is ~10x faster than formatting digits one by one.
    """
    prefixes = np.array([list(v) for v in _RECORD_PREFIX.values()], dtype=np.uint8)
    head = np.concatenate(
        [np.repeat(prefixes, 100, axis=0), np.tile(_DIGITS2, (len(prefixes), 1))], axis=1
    )
    head_words = np.ascontiguousarray(head).view(np.uint32).ravel()  # [prefix * 100 + hi]
    out = np.empty((counters.size, 3), dtype=np.uint32)
    out[:, 0] = head_words[prefix_index * 100 + counters // 10**8]
    out[:, 1] = _DIGITS4[(counters // 10**4) % 10**4]
    out[:, 2] = _DIGITS4[counters % 10**4]
    return out.view(np.uint8).reshape(counters.size, 12)


def _record_ids(source: str, counters: np.ndarray) -> pa.Array:
    prefix = np.full(counters.size, list(_RECORD_PREFIX).index(source))
    return _strings(_id_matrix(prefix, counters))


def _take(vocab: pa.Array, index: np.ndarray) -> pa.Array:
    """Strings from a small vocabulary; index -1 means empty (null)."""
    idx = pa.array(index.astype(np.int32), mask=index < 0)
    return vocab.take(idx)


def _dates(days: np.ndarray) -> pa.Array:
    missing = days == _NA
    return pa.array(np.where(missing, 0, days).astype(np.int32), type=pa.date32(), mask=missing)


def _floats(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def _code_matrix(
    index: np.ndarray, category: np.ndarray, region: np.ndarray, key: np.ndarray
) -> np.ndarray:
    """GB 32100 codes (ASCII rows): 9, category, county code, organisation code, check.

    The organisation code is a seeded bijection of the enterprise index onto 9 base-31 digits
    (an affine map modulo 31^9, then rounds that add to each digit a multiple of its
    neighbour, each step invertible), so codes are unique and look scattered, and an index
    outside the registry gives a valid code of nobody.
    """
    n = index.size
    org = (key[0] * index.astype(np.int64) + key[1]) % _ORG_SPACE
    digits = []  # base-31 digits, most significant first (contiguous vectors: fast)
    for _ in range(9):
        digits.append(org % 31)
        org //= 31
    digits.reverse()
    mult, add = key[2:20].reshape(2, 9), key[20:38].reshape(2, 9)
    for rnd in range(2):
        for pos in range(9):
            neighbour = digits[(pos + 1) % 9]
            digits[pos] = (digits[pos] + mult[rnd, pos] * neighbour + add[rnd, pos]) % 31
    region_digits = np.array([[int(ch) for ch in r.code] for r in REGIONS], dtype=np.int64)
    vals = np.empty((n, 18), dtype=np.int64)
    vals[:, 0] = 9
    vals[:, 1] = category
    vals[:, 2:8] = region_digits[region]
    vals[:, 8:17] = np.stack(digits, axis=1)
    total = np.zeros(n, dtype=np.int64)
    for pos in range(17):
        total += vals[:, pos] * int(_WEIGHTS[pos])
    vals[:, 17] = (31 - total % 31) % 31
    return _ALPHA[vals]


# ----------------------------------------------------------------------------- province tables

_IND_CODES = tuple(INDUSTRIES)
_TYPE_CODES = tuple(ENTERPRISE_TYPES)
_DEPT_CODES = tuple(DEPARTMENTS)
_N_REG, _N_IND, _N_DEPT = len(REGIONS), len(_IND_CODES), len(_DEPT_CODES)
_N_CAMPAIGNS = 4


def _industry_array(field: str) -> np.ndarray:
    return np.array([getattr(INDUSTRY_PROFILES[i], field) for i in _IND_CODES], dtype=np.float64)


def _type_array(field: str) -> np.ndarray:
    return np.array(
        [getattr(ENTERPRISE_TYPE_PROFILES[t], field) or 0 for t in _TYPE_CODES], dtype=np.float64
    )


@dataclass(frozen=True)
class _Province:
    """Everything shared by all chunks: calendar, draws, inspectors, vocabularies."""

    seed: int
    extracted: int
    years: np.ndarray  # calendar years of the history
    year_start: np.ndarray  # day of 1 January, one more than years
    quarter_ends: np.ndarray  # evaluation dates
    code_key: np.ndarray  # the seeded organisation-code bijection (see _code_matrix)
    industry_cum: np.ndarray  # [group, region, industry] cumulative shares
    interaction: np.ndarray  # [region, industry]
    eligible: np.ndarray  # [dept, industry] bool
    dept_industry_cum: np.ndarray  # [industry, dept] cumulative: who issues penalties
    draw_base: np.ndarray  # [region, dept, year]
    draw_day: np.ndarray  # [region, dept, year]; _NA = no draw
    pool_size: np.ndarray  # [region, dept]
    pool_offset: np.ndarray  # [region, dept]
    strictness: np.ndarray  # [inspector]
    coverage: np.ndarray  # [region, dept] share of penalties pushed
    inspector_ids: pa.Array
    departments: pa.Array  # [region * dept] + credit centre
    tasks: pa.Array  # random draws [r, d, y] then campaigns [r, d, y, k]
    basis_offset: np.ndarray  # [dept] into legal_bases
    basis_count: np.ndarray
    legal_bases: pa.Array
    list_reasons: pa.Array
    list_reason_offset: np.ndarray
    list_reason_count: np.ndarray

    @property
    def n_years(self) -> int:
        return int(self.years.size)


def _build_province(seed: int, extracted_on: date) -> _Province:
    rng = _rng(seed, -1, "province")
    extracted = _day(extracted_on)
    years = np.arange(HISTORY_START.year, extracted_on.year + 1)
    year_start = np.array([_day(date(int(y), 1, 1)) for y in [*years, years[-1] + 1]])
    quarter_ends = np.array(
        [
            _day(date(int(y), m, d))
            for y in years
            for m, d in ((3, 31), (6, 30), (9, 30), (12, 31))
            if date(int(y), m, d) >= EVALUATIONS_START and date(int(y), m, d) <= extracted_on
        ],
        dtype=np.int64,
    )
    code_a = int(rng.integers(2**20, 2**31))
    code_a += code_a % 31 == 0  # coprime with 31: a bijection modulo 31^9
    code_key = np.concatenate(
        [[code_a, rng.integers(0, _ORG_SPACE)], rng.integers(1, 31, 18), rng.integers(0, 31, 18)]
    ).astype(np.int64)

    shares = np.stack([_industry_array(g) for g in ("individual", "company", "cooperative")])
    tilt = np.ones((_N_REG, _N_IND))
    for region, mults in REGION_INDUSTRY_TILT.items():
        for ind, m in mults.items():
            tilt[_REGION_INDEX[region], _IND_CODES.index(ind)] = m
    mix = shares[:, None, :] * tilt[None, :, :]
    industry_cum = np.cumsum(mix / mix.sum(axis=2, keepdims=True), axis=2)
    interaction = np.zeros((_N_REG, _N_IND))
    for (ind, region), effect in INTERACTIONS.items():
        interaction[_REGION_INDEX[region], _IND_CODES.index(ind)] = effect

    eligible = np.zeros((_N_DEPT, _N_IND), dtype=bool)
    for d, dept in enumerate(DEPARTMENTS.values()):
        for i, ind in enumerate(_IND_CODES):
            eligible[d, i] = dept.industries is None or ind in dept.industries
    # Penalties: market regulation issues 70 %, the industry's other departments the rest.
    issuer = np.zeros((_N_IND, _N_DEPT))
    for i in range(_N_IND):
        others = [d for d in range(1, _N_DEPT) if eligible[d, i]]
        issuer[i, 0] = 0.7 if others else 1.0
        for d in others:
            issuer[i, d] = 0.3 / len(others)
    dept_industry_cum = np.cumsum(issuer, axis=1)

    n_years = years.size
    draw_base = np.round(rng.uniform(0.03, 0.08, (_N_REG, _N_DEPT, n_years)), 3)
    jan1 = year_start[:-1]
    draw_day = jan1[None, None, :] + 59 + rng.integers(0, 275, (_N_REG, _N_DEPT, n_years))
    draw_day = np.where(draw_day <= extracted - 10, draw_day, _NA)

    sizes = np.array([r.size for r in REGIONS])
    per_unit = np.array([d.pool for d in DEPARTMENTS.values()])
    pool_size = np.maximum(4, np.round(sizes[:, None] * per_unit[None, :] + 2)).astype(np.int64)
    pool_offset = np.concatenate([[0], np.cumsum(pool_size.ravel())[:-1]]).reshape(pool_size.shape)
    strictness = rng.normal(0.0, _Hidden.STRICTNESS_SD, int(pool_size.sum()))
    inspector_ids = pa.array(
        [
            f"INSP-{r.code}-{d}-{k + 1:04d}"
            for ri, r in enumerate(REGIONS)
            for di, d in enumerate(_DEPT_CODES)
            for k in range(pool_size[ri, di])
        ]
    )
    departments = pa.array(
        [f"{r.code}-{d}" for r in REGIONS for d in _DEPT_CODES] + [CREDIT_CENTRE]
    )
    random_tasks = [f"SJ-{y}-{r.code}-{d}" for r in REGIONS for d in _DEPT_CODES for y in years]
    campaigns = [
        f"ZX-{y}-{r.code}-{d}-{k + 1:02d}"
        for r in REGIONS
        for d in _DEPT_CODES
        for y in years
        for k in range(_N_CAMPAIGNS)
    ]
    coverage = np.ones((_N_REG, _N_DEPT))
    for (region, dept), share in THIN_COVERAGE.items():
        coverage[_REGION_INDEX[region], _DEPT_CODES.index(dept)] = share

    bases = [list(d.legal_bases) for d in DEPARTMENTS.values()]
    basis_count = np.array([len(b) for b in bases])
    reasons = [list(LIST_REASONS[t]) for t in LIST_TYPES]
    reason_count = np.array([len(r) for r in reasons])
    return _Province(
        seed=seed,
        extracted=extracted,
        years=years,
        year_start=year_start,
        quarter_ends=quarter_ends,
        code_key=code_key,
        industry_cum=industry_cum,
        interaction=interaction,
        eligible=eligible,
        dept_industry_cum=dept_industry_cum,
        draw_base=draw_base,
        draw_day=draw_day,
        pool_size=pool_size,
        pool_offset=pool_offset,
        strictness=strictness,
        coverage=coverage,
        inspector_ids=inspector_ids,
        departments=departments,
        tasks=pa.array(random_tasks + campaigns),
        basis_offset=np.concatenate([[0], np.cumsum(basis_count)[:-1]]),
        basis_count=basis_count,
        legal_bases=pa.array([b for group in bases for b in group]),
        list_reasons=pa.array([r for group in reasons for r in group]),
        list_reason_offset=np.concatenate([[0], np.cumsum(reason_count)[:-1]]),
        list_reason_count=reason_count,
    )


# ----------------------------------------------------------------------------- one chunk

Frame = dict[str, np.ndarray]


def _age_effect(age_years: np.ndarray) -> np.ndarray:
    """U-shaped: the very young and the very old are riskier than the middle-aged."""
    age = np.maximum(age_years, 0.0)
    return 0.9 * np.exp(-age / 1.5) + 0.6 / (1.0 + np.exp(-(age - 20.0) / 2.5)) - 0.1


def _capital_effect(capital: np.ndarray) -> np.ndarray:
    """Small registered capital is riskier, with thresholds (no capital: no effect here)."""
    eff = np.zeros_like(capital)
    eff = np.where(capital < 50, 0.4, eff)
    eff = np.where(capital < 10, 0.7, eff)
    eff = np.where(capital > 1000, -0.25, eff)
    return np.where(np.isnan(capital), 0.0, eff)


class _Chunk:
    """All sources for enterprises [start, start + n): truth first, then the written rows."""

    def __init__(self, prov: _Province, chunk: int, start: int, n: int) -> None:
        self.p = prov
        self.chunk = chunk
        self.start = start
        self.n = n
        self.E = prov.extracted

    def rng(self, purpose: str) -> np.random.Generator:
        return _rng(self.p.seed, self.chunk, purpose)

    def run(self, counters: dict[str, int]) -> dict[str, pa.Table]:
        """The whole chunk, in causal order; ``counters`` numbers records across chunks."""
        self.registry()
        self.complaints()
        self.lists()
        self.spontaneous_penalties()
        self.evaluations()
        self.inspections()
        self.penalties()
        self.finish(counters)
        self.targets()
        self.number_targets(counters)
        return self.tables()

    # ---------------------------------------------------------------- registry and latent
    def registry(self) -> None:
        p, n, rng = self.p, self.n, self.rng("registry")
        sizes = np.array([r.size for r in REGIONS])
        self.region = np.searchsorted(np.cumsum(sizes / sizes.sum()), rng.random(n), "right")
        self.region = np.minimum(self.region, _N_REG - 1)
        type_share = _type_array("share")
        self.etype = np.minimum(
            np.searchsorted(np.cumsum(type_share / type_share.sum()), rng.random(n), "right"),
            len(_TYPE_CODES) - 1,
        )
        category = _type_array("category").astype(np.int64)[self.etype]
        group = np.where(category == 2, 0, np.where(category == 3, 2, 1))
        self.individual = category == 2
        self.industry = _pick(rng, p.industry_cum[group, self.region])

        trend = np.maximum(_type_array("founding_trend")[self.etype], 1e-3)
        span_years = (self.E - _day(FOUNDING_START)) / 365.25
        u = rng.random(n)
        offset = np.log1p(u * np.expm1(trend * span_years)) / trend
        self.founded = np.minimum(_day(FOUNDING_START) + (offset * 365.25).astype(np.int64), self.E)

        median = _type_array("capital_median")[self.etype]
        sigma = _type_array("capital_sigma")[self.etype]
        capital = np.maximum(median, 1.0) * np.exp(sigma * rng.standard_normal(n))
        snaps = np.array([1, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000.0])
        nearest = snaps[
            np.abs(np.log(np.maximum(capital, 0.1))[:, None] - np.log(snaps)[None, :]).argmin(
                axis=1
            )
        ]
        capital = np.where(rng.random(n) < 0.4, nearest, np.round(np.maximum(capital, 0.1), 1))
        self.capital = np.where(median > 0, capital, np.nan)

        self.base = (
            _capital_effect(self.capital)
            + _industry_array("risk")[self.industry]
            + np.array([r.risk for r in REGIONS])[self.region]
            + p.interaction[self.region, self.industry]
            + _type_array("risk")[self.etype]
        )
        lat = self.rng("latent")
        self.u = _Hidden.SIGMA_U * lat.standard_normal(n)
        z = np.empty((n, p.n_years))
        z[:, 0] = _Hidden.SIGMA_Z * lat.standard_normal(n)
        innovation = _Hidden.SIGMA_Z * np.sqrt(1 - _Hidden.RHO_Z**2)
        for y in range(1, p.n_years):
            z[:, y] = _Hidden.RHO_Z * z[:, y - 1] + innovation * lat.standard_normal(n)
        self.z = z

        # Closures: hazard rises with the stable propensity; individual businesses close more.
        hazard = (0.012 + 0.02 * self.individual) * np.exp(0.5 * (self.base + self.u))
        life = (rng.exponential(1.0, n) / hazard * 365.25).astype(np.int64)
        closed = self.founded + np.maximum(life, 30)
        self.closed = np.where(closed <= self.E, closed, _NA)
        revoked = rng.random(n) < _sigmoid(-1.6 + 0.8 * (self.u + self.base))
        self.status = np.where(self.closed == _NA, 0, np.where(revoked, 2, 1))
        self.reg_recorded = np.minimum(self.founded + _lag(rng, n, 3, 0.05, 10), self.E)
        self.end = np.where(self.closed == _NA, self.E + 1, self.closed)  # first inactive day

        index = self.start + np.arange(n, dtype=np.int64)
        self.codes = _code_matrix(index, category, self.region, p.code_key)
        self.category = category
        self.name_parts = (rng.integers(0, len(TRADE_WORDS), n), rng.random(n))

        # Risk index (hidden logit without intercept) in the middle of each year.
        mid = p.year_start[:-1] + 182
        age = (mid[None, :] - self.founded[:, None]) / 365.25
        self.rho_year = (self.base + self.u)[:, None] + _age_effect(age) + self.z
        lo = np.maximum(p.year_start[None, :-1], self.founded[:, None] + 1)
        hi = np.minimum(p.year_start[None, 1:], self.end[:, None])
        self.win_lo, self.win_hi = lo, np.maximum(hi, lo)

    def rho(self, ent: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Risk index of enterprise ``ent`` on ``day`` (age effect at that day)."""
        yi = np.clip(np.searchsorted(self.p.year_start, day, "right") - 1, 0, self.p.n_years - 1)
        age = (day - self.founded[ent]) / 365.25
        return self.base[ent] + self.u[ent] + _age_effect(age) + self.z[ent, yi]

    def yearly_events(
        self, rng: np.random.Generator, rate: np.ndarray, at_most_one: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Poisson events per enterprise-year at ``rate`` per active year: (ent, day)."""
        span = (self.win_hi - self.win_lo).astype(np.float64)
        counts = rng.poisson(rate * span / 365.25)
        if at_most_one:
            counts = np.minimum(counts, 1)
        cell = np.repeat(np.arange(counts.size), counts.ravel())
        ent = cell // self.p.n_years
        lo, hi = self.win_lo.ravel()[cell], self.win_hi.ravel()[cell]
        return ent, _uniform_days(rng, lo, hi)

    def keys(self, ent: np.ndarray, day: np.ndarray) -> np.ndarray:
        return ent.astype(np.int64) * 1_000_000 + (day - _day(FOUNDING_START))

    def count_before(self, sorted_keys: np.ndarray, ent: np.ndarray, day: np.ndarray, lo_days: int,
                     hi_days: int = 0) -> np.ndarray:  # fmt: skip
        """Events of ``ent`` with day in [day - lo_days, day - hi_days)."""
        upper = np.searchsorted(sorted_keys, self.keys(ent, day - hi_days), "left")
        lower = np.searchsorted(sorted_keys, self.keys(ent, day - lo_days), "left")
        return upper - lower

    # ---------------------------------------------------------------- hidden events
    def complaints(self) -> None:
        rng = self.rng("complaints")
        base = _industry_array("complaints")[self.industry]
        signal = _industry_array("complaint_signal")[self.industry]
        rate = base[:, None] * np.exp(signal[:, None] * (self.rho_year - _Hidden.CENTER))
        rate *= np.where(self.individual, 0.8, 1.0)[:, None]
        ent, day = self.yearly_events(rng, rate)
        m = ent.size
        rho = self.rho(ent, day)
        subst = rng.random(m) < _sigmoid(-0.4 + signal[ent] * (rho - _Hidden.CENTER))
        still_open = (rng.random(m) * 60 > (self.E - day)) | (rng.random(m) < 0.03)
        channel = np.searchsorted(np.cumsum([0.5, 0.35, 0.05, 0.10]), rng.random(m) * 0.9999)
        dept = np.where(rng.random(m) < 0.06, -1, self.region[ent] * _N_DEPT)  # MR or empty
        rec = day + _lag(rng, m, 15, 0.10, 40)
        self.cmp = {
            "ent": ent, "day": day, "channel": channel,
            "subst": np.where(still_open, -1, subst.astype(np.int64)),
            "dept": dept, "rec": rec,
        }  # fmt: skip
        order = np.argsort(self.keys(ent, day), kind="stable")
        self.cmp_keys = self.keys(ent, day)[order]

    def lists(self) -> None:
        p, rng = self.p, self.rng("lists")
        centred = self.rho_year - _Hidden.CENTER
        parts = []
        # Abnormal operation: mostly annual reports not filed by 30 June -> listed in July-Aug.
        rate = (
            _Hidden.ABNORMAL_RATE
            * np.exp(0.8 * centred)
            * np.where(self.individual, 1.3, 1)[:, None]
        )
        ent, day = self.yearly_events(rng, rate, at_most_one=True)
        yi = np.clip(np.searchsorted(p.year_start, day, "right") - 1, 0, p.n_years - 1)
        july = p.year_start[yi] + 181 + rng.integers(0, 61, ent.size)
        annual = (rng.random(ent.size) < 0.75) & (july > self.founded[ent]) & (july < self.end[ent])
        day = np.where(annual, july, day)
        reason = np.where(annual, 0, 1 + rng.integers(0, 3, ent.size))
        removed = np.where(
            rng.random(ent.size) < 0.6, day + 20 + rng.exponential(200, ent.size).astype(int), _NA
        )
        parts.append((ent, day, np.full(ent.size, 2), reason, removed))
        self.abnormal_truth = (ent, day)
        # Three years on the abnormal list without removal -> black list (a quarter of them).
        stuck = ((removed == _NA) | (removed > day + 1095)) & (rng.random(ent.size) < 0.25)
        b_day = day[stuck] + 1095 + rng.integers(0, 61, int(stuck.sum()))
        b_ent = ent[stuck]
        b_removed = np.where(
            rng.random(b_ent.size) < 0.15, b_day + 1095 + rng.integers(0, 700, b_ent.size), _NA
        )
        parts.append((b_ent, b_day, np.full(b_ent.size, 1), np.zeros(b_ent.size, int), b_removed))
        # Serious dishonesty.
        ent, day = self.yearly_events(
            rng, _Hidden.BLACK_RATE * np.exp(1.5 * centred), at_most_one=True
        )
        removed = np.where(
            rng.random(ent.size) < 0.15, day + 1095 + rng.integers(0, 700, ent.size), _NA
        )
        parts.append((ent, day, np.full(ent.size, 1), 1 + rng.integers(0, 2, ent.size), removed))
        # Red list: companies with low risk; entries expire after two years.
        company = (~self.individual)[:, None].astype(float)
        ent, day = self.yearly_events(
            rng, company * _Hidden.RED_RATE * np.exp(-1.2 * centred), at_most_one=True
        )
        removed = np.where(rng.random(ent.size) < 0.8, day + 730, _NA)
        parts.append((ent, day, np.zeros(ent.size, int), rng.integers(0, 3, ent.size), removed))

        ent, day, ltype, reason, removed = (np.concatenate(x) for x in zip(*parts, strict=True))
        keep = day < self.end[ent]
        ent, day, ltype, reason, removed = (
            ent[keep],
            day[keep],
            ltype[keep],
            reason[keep],
            removed[keep],
        )
        m = ent.size
        rec = day + _lag(rng, m, 10, 0.15, 50)
        removal_rec = np.where(removed == _NA, _NA, removed + _lag(rng, m, 10, 0.1, 30))
        gone = (removal_rec != _NA) & ((removal_rec > self.E) | (removed >= self.end[ent]))
        removed = np.where(gone, _NA, removed)
        removal_rec = np.where(gone, _NA, removal_rec)
        reason_idx = p.list_reason_offset[ltype] + np.minimum(
            reason, p.list_reason_count[ltype] - 1
        )
        reason_idx = np.where(rng.random(m) < 0.05, -1, reason_idx)
        self.lst = {
            "ent": ent, "day": day, "ltype": ltype, "removed": removed,
            "reason": reason_idx, "dept": self.region[ent] * _N_DEPT, "rec": rec,
            "removal_rec": removal_rec,
        }  # fmt: skip

    def spontaneous_penalties(self) -> None:
        rng = self.rng("penalties")
        rate = (
            _Hidden.PENALTY_RATE
            * _industry_array("penalties")[self.industry][:, None]
            * np.exp(_Hidden.PENALTY_SLOPE * (self.rho_year - _Hidden.CENTER))
        )
        ent, day = self.yearly_events(rng, rate)
        dept = _pick(rng, self.p.dept_industry_cum[self.industry[ent]])
        order = np.lexsort((day, ent))
        self.pen_ent, self.pen_day, self.pen_dept = ent[order], day[order], dept[order]
        self.pen_keys = self.keys(self.pen_ent, self.pen_day)  # sorted

    def evaluations(self) -> None:
        """Quarterly score and grade: a noisy view of the propensity half a year earlier.

        Only real evaluations are computed (from the first quarter end after founding to the
        last before closing), as flat arrays in (enterprise, quarter) order; ``ev_start`` finds
        an enterprise's first one.
        """
        p, rng = self.p, self.rng("evaluations")
        qd = p.quarter_ends
        nq = qd.size
        self.q_first = np.searchsorted(qd, self.founded, "right")  # first quarter end > founded
        self.q_end = np.maximum(np.searchsorted(qd, self.end, "left"), self.q_first)
        counts = self.q_end - self.q_first
        self.ev_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        ent = np.repeat(np.arange(self.n), counts)
        q = self.q_first[ent] + np.arange(ent.size) - self.ev_start[ent]
        day = qd[q]
        lagged = qd - 182
        lag_year = np.clip(np.searchsorted(p.year_start, lagged, "right") - 1, 0, p.n_years - 1)
        age = (lagged[q] - self.founded[ent]) / 365.25
        rho = (self.base + self.u)[ent] + _age_effect(age) + self.z[ent, lag_year[q]]
        # Penalties decided in the year before each quarter end: a difference array over
        # quarters (each penalty counts for the quarter ends in (day, day + 365]).
        diff = np.zeros((self.n, nq + 1), dtype=np.int32)
        np.add.at(diff, (self.pen_ent, np.searchsorted(qd, self.pen_day, "right")), 1)
        np.add.at(diff, (self.pen_ent, np.searchsorted(qd, self.pen_day + 365, "right")), -1)
        recent = np.cumsum(diff, axis=1).ravel()[ent * (nq + 1) + q]
        score = (
            760.0
            - 85.0 * (rho - _Hidden.CENTER)
            - 35.0 * np.minimum(recent, 3)
            + rng.normal(0, 20, self.n)[ent]
            + rng.normal(0, 30, ent.size)
        )
        score = np.round(np.clip(score, 0, 1000), 1)
        grade = 4 - np.searchsorted(np.array([560.0, 660.0, 760.0, 860.0]), score, "right")
        rec = day + _lag(rng, ent.size, 10, 0.03, 15, cap=60)
        self.ev_grade, self.ev_rec = grade, rec
        keep = rec <= self.E
        self.ev = {
            "ent": ent[keep], "day": day[keep], "score": score[keep], "grade": grade[keep],
            "dept": np.full(int(keep.sum()), -2), "rec": rec[keep],
        }  # fmt: skip

    def latest_grade(self, ent: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Grade index (0 = A) of the latest evaluation of ``ent`` known on ``day``; -1 none.

        Evaluation lags are capped below a quarter, so the latest known one is the last
        quarter end before ``day`` or the one before it.
        """
        if self.ev_rec.size == 0:
            return np.full(ent.size, -1)
        first = self.q_first[ent]
        q = np.minimum(np.searchsorted(self.p.quarter_ends, day, "left") - 1, self.q_end[ent] - 1)
        flat = self.ev_start[ent] + q - first  # meaningful only where q >= first
        top = self.ev_rec.size - 1
        ok = (q >= first) & (self.ev_rec[np.clip(flat, 0, top)] < day)
        ok_prev = ~ok & (q - 1 >= first) & (self.ev_rec[np.clip(flat - 1, 0, top)] < day)
        grade = self.ev_grade[np.clip(np.where(ok, flat, flat - 1), 0, top)]
        return np.where(ok | ok_prev, grade, -1)

    def inspections(self) -> None:
        p = self.p
        rng = self.rng("draws")
        parts: list[dict[str, np.ndarray]] = []
        multiplier = np.array([0.5, 1.0, 1.0, 3.0, 3.0, 1.0])  # A..E, then "no grade"
        for yi, year in enumerate(p.years):
            for d in range(_N_DEPT):
                draw = p.draw_day[self.region, d, yi]
                ent = np.flatnonzero(
                    (draw != _NA)
                    & p.eligible[d, self.industry]
                    & (self.founded < draw)
                    & (self.reg_recorded < draw)
                    & (self.end > draw)
                )
                draw = draw[ent]
                prob = p.draw_base[self.region[ent], d, yi]
                if year >= CREDIT_LINKED_FROM:
                    prob = prob * multiplier[self.latest_grade(ent, draw)]
                prob = np.round(np.minimum(prob, 1.0), 4)
                hit = rng.random(ent.size) < prob
                ent, draw, prob = ent[hit], draw[hit], prob[hit]
                parts.append({
                    "ent": ent,
                    "day": draw + rng.integers(7, 76, ent.size),
                    "dept": self.region[ent] * _N_DEPT + d,
                    "prob": prob,
                    "task": (self.region[ent] * _N_DEPT + d) * p.n_years + yi,
                })  # fmt: skip
        rnd = {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}

        # Targeted checks: after complaints, spontaneous penalties and abnormal listings.
        rng = self.rng("targeted")
        c = self.cmp
        c_hit = rng.random(c["ent"].size) < np.where(c["subst"] == 1, 0.22, 0.10)
        c_dept = np.where(c["dept"] < 0, self.region[c["ent"]] * _N_DEPT, c["dept"])
        p_hit = rng.random(self.pen_ent.size) < 0.12
        a_ent, a_day = self.abnormal_truth
        a_hit = rng.random(a_ent.size) < 0.08
        t_ent = np.concatenate([c["ent"][c_hit], self.pen_ent[p_hit], a_ent[a_hit]])
        t_day = np.concatenate([
            c["day"][c_hit] + rng.integers(3, 31, int(c_hit.sum())),
            self.pen_day[p_hit] + rng.integers(30, 181, int(p_hit.sum())),
            a_day[a_hit] + rng.integers(10, 91, int(a_hit.sum())),
        ])  # fmt: skip
        t_dept = np.concatenate([
            c_dept[c_hit],
            self.region[self.pen_ent[p_hit]] * _N_DEPT + self.pen_dept[p_hit],
            self.region[a_ent[a_hit]] * _N_DEPT,
        ])  # fmt: skip
        t_year = np.clip(_years_of(t_day) - p.years[0], 0, p.n_years - 1)
        campaign = rng.integers(0, _N_CAMPAIGNS, t_ent.size)
        random_tasks = _N_REG * _N_DEPT * p.n_years
        t_task = np.where(
            rng.random(t_ent.size) < 0.5,
            -1,
            random_tasks + (t_dept * p.n_years + t_year) * _N_CAMPAIGNS + campaign,
        )
        ent = np.concatenate([rnd["ent"], t_ent])
        day = np.concatenate([rnd["day"], t_day])
        dept = np.concatenate([rnd["dept"], t_dept])
        prob = np.concatenate([rnd["prob"], np.full(t_ent.size, np.nan)])
        task = np.concatenate([rnd["task"], t_task])
        keep = (day < self.end[ent]) & (day <= self.E)
        ent, day, dept, prob, task = ent[keep], day[keep], dept[keep], prob[keep], task[keep]
        m = ent.size

        # Teams of 2 (sometimes 3) distinct inspectors from the county department's pool.
        rng = self.rng("outcomes")
        size = p.pool_size.ravel()[dept]
        k1 = (rng.random(m) * size).astype(np.int64)
        k2 = (k1 + 1 + (rng.random(m) * (size - 1)).astype(np.int64)) % size
        lo, hi = np.minimum(k1, k2), np.maximum(k1, k2)
        k3 = (rng.random(m) * (size - 2)).astype(np.int64)
        k3 += k3 >= lo
        k3 += k3 >= hi
        three = rng.random(m) < 0.2
        offset = p.pool_offset.ravel()[dept]
        team = np.stack([offset + k1, offset + k2, np.where(three, offset + k3, -1)], axis=1)
        strict = p.strictness[np.maximum(team, 0)]
        strict[:, 2] = np.where(three, strict[:, 2], 0.0)
        team_effect = strict.sum(axis=1) / np.where(three, 3.0, 2.0)

        ind = self.industry[ent]
        pen_1y = self.count_before(self.pen_keys, ent, day, 365)
        pen_old = self.count_before(self.pen_keys, ent, day, 1826, 365)
        cmp_1y = self.count_before(self.cmp_keys, ent, day, 365)
        dept_effect = np.array([d.effect for d in DEPARTMENTS.values()])[dept % _N_DEPT]
        logit = (
            _Hidden.INTERCEPT
            + self.rho(ent, day)
            + _Hidden.PENALTY_1Y * np.minimum(pen_1y, 3)
            + _Hidden.PENALTY_OLD * np.minimum(pen_old, 3)
            + _industry_array("complaint_weight")[ind] * np.minimum(cmp_1y, 4)
            + team_effect
            + dept_effect
            + _Hidden.TARGETED * np.isnan(prob)
        )
        problem = rng.random(m) < _sigmoid(logit)
        rec = day + _lag(rng, m, 30, 0.2, 60)
        self.ins = {
            "ent": ent, "day": day, "dept": dept, "prob": prob, "task": task,
            "k1": team[:, 0], "k2": team[:, 1], "k3": team[:, 2],
            "problem": problem, "rec": rec, "logit": logit,
        }  # fmt: skip

    def penalties(self) -> None:
        """Spontaneous penalties plus follow-ups of problems found; then their attributes."""
        p = self.p
        rng = self.rng("follow_ups")
        ins = self.ins
        follow = ins["problem"] & (rng.random(ins["ent"].size) < _Hidden.FOLLOW_UP_PENALTY)
        f_ent = ins["ent"][follow]
        f_day = ins["day"][follow] + rng.integers(7, 61, f_ent.size)
        f_dept = ins["dept"][follow] % _N_DEPT
        ent = np.concatenate([self.pen_ent, f_ent])
        day = np.concatenate([self.pen_day, f_day])
        dept = np.concatenate([self.pen_dept, f_dept])
        keep = day < self.end[ent]
        ent, day, dept = ent[keep], day[keep], dept[keep]
        m = ent.size

        rng = self.rng("attributes")
        rho = self.rho(ent, day) - _Hidden.CENTER
        severity = (
            np.log(np.array([0.30, 0.52, 0.09, 0.06, 0.03]))[None, :]
            + 0.3 * rho[:, None] * np.arange(5)[None, :]
        )
        weights = np.exp(severity)
        kind = _pick(rng, np.cumsum(weights, axis=1))
        person = self.individual[ent]
        fine_median = np.where(person, 500.0, 5000.0)
        amount = np.select(
            [kind == 1, kind == 2, kind == 3, kind == 4],
            [
                fine_median * np.exp(1.2 * rng.standard_normal(m)),
                20000.0 * np.exp(1.3 * rng.standard_normal(m)),
                np.where(rng.random(m) < 0.5, 30000.0 * np.exp(rng.standard_normal(m)), np.nan),
                np.where(rng.random(m) < 0.4, 50000.0 * np.exp(rng.standard_normal(m)), np.nan),
            ],
            default=np.nan,
        )
        amount = np.where(
            amount >= 1000, np.round(amount, -2), np.maximum(np.round(amount, -1), 50)
        )
        small = np.where(person, 200.0, 3000.0)
        simple = ((kind == 0) & (rng.random(m) < 0.65)) | (
            (kind == 1) & (amount <= small) & (rng.random(m) < 0.8)
        )
        early = day < _day(QUALITY_CUTOFF)
        basis = p.basis_offset[dept] + (rng.random(m) * p.basis_count[dept]).astype(np.int64)
        basis = np.where(rng.random(m) < np.where(early, 0.30, 0.03), -1, basis)
        dept_idx = np.where(
            rng.random(m) < np.where(early, 0.20, 0.02), -1, self.region[ent] * _N_DEPT + dept
        )
        rec = day + _lag(rng, m, 20, 0.15, 60)
        backfill = early & (rng.random(m) < 0.3)
        rec = np.where(
            backfill, np.maximum(rec, _day(QUALITY_CUTOFF) + rng.integers(0, 92, m)), rec
        )
        pushed = rng.random(m) < p.coverage[self.region[ent], dept]
        keep = pushed & (rec <= self.E)
        self.pen = {
            "ent": ent, "day": day, "kind": kind, "proc": np.where(simple, 0, 1),
            "amount": amount, "basis": basis, "dept": dept_idx, "rec": rec,
        }  # fmt: skip
        self.pen = {k: v[keep] for k, v in self.pen.items()}

    # ---------------------------------------------------------------- written rows
    def finish(self, counters: dict[str, int]) -> None:
        """Sort, number, keep only recorded rows, inject defects."""
        self.cmp = {k: v[self.cmp["rec"] <= self.E] for k, v in self.cmp.items()}
        self.lst = {k: v[self.lst["rec"] <= self.E] for k, v in self.lst.items()}
        ins = {k: v for k, v in self.ins.items() if k != "logit"}
        self.ins = {k: v[ins["rec"] <= self.E] for k, v in ins.items()}
        self.frames: dict[str, Frame] = {
            "credit_evaluations": self.ev,
            "list_entries": self.lst,
            "penalties": self.pen,
            "inspections": self.ins,
            "complaints": self.cmp,
        }
        rng = self.rng("defects")
        self.defects: dict[str, np.ndarray] = {}
        for source, frame in self.frames.items():
            keys = self.keys(frame["ent"], frame["day"])
            if keys.size and np.any(keys[1:] < keys[:-1]):
                order = np.argsort(keys, kind="stable")
                frame = {k: v[order] for k, v in frame.items()}
            m = frame["ent"].size
            frame["counter"] = counters[source] + 1 + np.arange(m, dtype=np.int64)
            counters[source] += m
            frame["code"] = self.codes[frame["ent"]]
            frame["code_null"] = np.zeros(m, dtype=bool)
            self.frames[source], self.defects[source] = self._inject(rng, source, frame)

    def _inject(self, rng: np.random.Generator, source: str, f: Frame) -> tuple[Frame, np.ndarray]:
        names = [k for k, d in DEFECT_RATES.items() if source in d.sources]
        m = f["ent"].size
        early = f["day"] < _day(QUALITY_CUTOFF)
        u = rng.random(m)
        cum_before = np.cumsum([DEFECT_RATES[k].rate_before for k in names])
        cum_after = np.cumsum([DEFECT_RATES[k].rate_after for k in names])
        chosen = np.where(
            early, np.searchsorted(cum_before, u, "right"), np.searchsorted(cum_after, u, "right")
        )
        global_index = np.array([_DEFECT_NAMES.index(k) for k in names] + [-1])
        kind = global_index[chosen]
        code = f["code"]

        def rows(name: str) -> np.ndarray:
            return np.flatnonzero(kind == _DEFECT_NAMES.index(name))

        f["code_null"][rows("missing_credit_code")] = True
        if "kind" in f:
            f["kind"][rows("missing_kind")] = -1
            f["proc"][rows("missing_procedure")] = -1
        r = rows("bad_check_character")
        shift = rng.integers(1, 31, r.size)
        code[r, 17] = _ALPHA[(_ALPHA_VALUE[code[r, 17]] + shift) % 31]
        r = rows("unknown_enterprise")
        # Any index >= the population size belongs to nobody (the code map is a bijection).
        ghost = _GHOST_START + rng.integers(0, _GHOST_START // 2, r.size)
        code[r] = _code_matrix(
            ghost, self.category[f["ent"][r]], self.region[f["ent"][r]], self.p.code_key
        )
        r = rows("recorded_before_event")
        f["rec"][r] = f["day"][r] - rng.integers(1, 61, r.size)
        dup = rows("duplicate_row")
        f["duplicated"] = np.zeros(m, dtype=bool)
        f["duplicated"][dup] = True
        kind = np.where(kind == _DEFECT_NAMES.index("duplicate_row"), -1, kind)
        if dup.size:
            f = {k: np.concatenate([v, v[dup]]) for k, v in f.items()}
            kind = np.concatenate([kind, np.full(dup.size, _DEFECT_NAMES.index("duplicate_row"))])
        return f, kind

    def targets(self) -> None:
        """Objections and credit repairs, pointing only at clean, non-duplicated rows."""
        rng = self.rng("objections")
        shares = {
            "penalties": 0.03,
            "list_entries": 0.025,
            "inspections": 0.01,
            "complaints": 0.005,
        }
        parts = []
        for s, share in shares.items():
            f, bad = self.frames[s], self.defects[s]
            clean = (bad < 0) & ~f["duplicated"]
            if s == "inspections":
                clean &= f["problem"]
            pick = np.flatnonzero(clean & (rng.random(bad.size) < share))
            parts.append((np.full(pick.size, TARGETABLE_SOURCES.index(s)), f["counter"][pick],
                          f["ent"][pick], f["rec"][pick]))  # fmt: skip
        src, target, ent, target_rec = (np.concatenate(x) for x in zip(*parts, strict=True))
        m = ent.size
        filed = target_rec + rng.integers(1, 91, m)
        rec = filed + rng.integers(0, 4, m)
        slow = rng.random(m) < 0.1
        resolved = filed + np.where(slow, rng.integers(30, 241, m), rng.integers(2, 21, m))
        resolved = np.where(resolved <= self.E, resolved, _NA)
        outcome = np.where(resolved == _NA, 0, np.where(rng.random(m) < 0.35, 1, 2))
        keep = (rec <= self.E) & (filed < self.end[ent])
        obj = {"ent": ent, "src": src, "target": target, "day": filed, "rec": rec,
               "resolved": resolved, "outcome": outcome}  # fmt: skip
        self.obj = {k: v[keep] for k, v in obj.items()}

        rng = self.rng("repairs")
        f, bad = self.frames["penalties"], self.defects["penalties"]
        minor = (bad < 0) & ~f["duplicated"] & (f["kind"] <= 1) & (rng.random(bad.size) < 0.12)
        applied_p = np.maximum(
            f["day"][minor] + 90 + rng.exponential(240, int(minor.sum())).astype(np.int64),
            f["rec"][minor] + 1,
        )
        g, bad = self.frames["list_entries"], self.defects["list_entries"]
        removed_ab = (
            (bad < 0) & (g["ltype"] == 2) & (g["removed"] != _NA) & (rng.random(bad.size) < 0.12)
        )
        applied_l = np.maximum(g["removed"][removed_ab], g["rec"][removed_ab]) + rng.integers(
            0, 61, int(removed_ab.sum())
        )
        src = np.concatenate([
            np.full(int(minor.sum()), TARGETABLE_SOURCES.index("penalties")),
            np.full(int(removed_ab.sum()), TARGETABLE_SOURCES.index("list_entries")),
        ])  # fmt: skip
        target = np.concatenate([f["counter"][minor], g["counter"][removed_ab]])
        ent = np.concatenate([f["ent"][minor], g["ent"][removed_ab]])
        applied = np.concatenate([applied_p, applied_l])
        m = ent.size
        repaired = applied + rng.integers(3, 31, m)
        rec = repaired + rng.integers(0, 8, m)
        applied = np.where(rng.random(m) < 0.08, _NA, applied)
        keep = (rec <= self.E) & (repaired < self.end[ent])
        rep = {"ent": ent, "src": src, "target": target, "applied": applied, "day": repaired,
               "rec": rec}  # fmt: skip
        self.rep = {k: v[keep] for k, v in rep.items()}

    def number_targets(self, counters: dict[str, int]) -> None:
        for source, frame in (("objections", self.obj), ("credit_repairs", self.rep)):
            order = np.lexsort((frame["day"], frame["ent"]))
            frame = {k: v[order] for k, v in frame.items()}
            frame["counter"] = counters[source] + 1 + np.arange(order.size, dtype=np.int64)
            counters[source] += order.size
            if source == "objections":
                self.obj = frame
            else:
                self.rep = frame

    # ---------------------------------------------------------------- arrow tables
    def tables(self) -> dict[str, pa.Table]:
        p = self.p
        out: dict[str, pa.Table] = {}
        trade, pick = self.name_parts
        company_prefix = pa.array([r.city for r in REGIONS]).take(pa.array(self.region))
        county_prefix = pa.array([r.county for r in REGIONS]).take(pa.array(self.region))
        words, shop = [], []
        w_off, s_off = [], []
        for ind in _IND_CODES:
            company_words, shop_words = INDUSTRY_WORDS[ind]
            w_off.append(len(words))
            s_off.append(len(shop))
            words += company_words
            shop += shop_words
        w_cnt = np.array([len(INDUSTRY_WORDS[i][0]) for i in _IND_CODES])
        s_cnt = np.array([len(INDUSTRY_WORDS[i][1]) for i in _IND_CODES])
        coop = self.category == 3
        word_idx = np.where(
            self.individual,
            len(words) + np.array(s_off)[self.industry] + (pick * s_cnt[self.industry]).astype(int),
            np.where(
                coop,
                len(words) + len(shop) + (pick * len(COOPERATIVE_WORDS)).astype(int),
                np.array(w_off)[self.industry] + (pick * w_cnt[self.industry]).astype(int),
            ),
        )
        vocab = pa.array(words + shop + list(COOPERATIVE_WORDS))
        suffix = pa.array([ENTERPRISE_TYPE_PROFILES[t].suffix for t in _TYPE_CODES])
        prefix = pc.if_else(pa.array(self.individual | coop), county_prefix, company_prefix)
        name = pc.binary_join_element_wise(
            prefix,
            pa.array(TRADE_WORDS).take(pa.array(trade)),
            vocab.take(pa.array(word_idx)),
            suffix.take(pa.array(self.etype)),
            "",
        )
        out["registry"] = _table("registry", {
            "credit_code": _strings(self.codes),
            "name": name,
            "founded_on": _dates(self.founded),
            "industry": pa.array(_IND_CODES).take(pa.array(self.industry)),
            "region": pa.array([r.code for r in REGIONS]).take(pa.array(self.region)),
            "registered_capital": _floats(self.capital),
            "enterprise_type": pa.array(_TYPE_CODES).take(pa.array(self.etype)),
            "status": pa.array(["active", "deregistered", "revoked"]).take(pa.array(self.status)),
            "closed_on": _dates(self.closed),
            "recorded_at": _dates(self.reg_recorded),
        })  # fmt: skip

        def code(f: Frame) -> pa.Array:
            arr = _strings(f["code"])
            if f["code_null"].any():
                arr = pc.if_else(pa.array(f["code_null"]), pa.scalar(None, pa.string()), arr)
            return arr

        def dept(f: Frame) -> pa.Array:
            idx = np.where(f["dept"] == -2, _N_REG * _N_DEPT, f["dept"])
            return _take(p.departments, idx)

        f = self.frames["credit_evaluations"]
        out["credit_evaluations"] = _table("credit_evaluations", {
            "record_id": _record_ids("credit_evaluations", f["counter"]),
            "credit_code": code(f),
            "evaluated_on": _dates(f["day"]),
            "score": _floats(f["score"]),
            "grade": _take(pa.array(GRADES), f["grade"]),
            "department": dept(f),
            "recorded_at": _dates(f["rec"]),
        })  # fmt: skip
        f = self.frames["list_entries"]
        out["list_entries"] = _table("list_entries", {
            "record_id": _record_ids("list_entries", f["counter"]),
            "credit_code": code(f),
            "list_type": _take(pa.array(LIST_TYPES), f["ltype"]),
            "entered_on": _dates(f["day"]),
            "removed_on": _dates(f["removed"]),
            "reason": _take(p.list_reasons, f["reason"]),
            "department": dept(f),
            "recorded_at": _dates(f["rec"]),
            "removal_recorded_at": _dates(f["removal_rec"]),
        })  # fmt: skip
        f = self.frames["penalties"]
        out["penalties"] = _table("penalties", {
            "record_id": _record_ids("penalties", f["counter"]),
            "credit_code": code(f),
            "decided_on": _dates(f["day"]),
            "kind": _take(pa.array(PENALTY_KINDS), f["kind"]),
            "procedure": _take(pa.array(PROCEDURES), f["proc"]),
            "amount": _floats(f["amount"]),
            "legal_basis": _take(p.legal_bases, f["basis"]),
            "department": dept(f),
            "recorded_at": _dates(f["rec"]),
        })  # fmt: skip
        f = self.frames["inspections"]
        third = _take(p.inspector_ids, f["k3"])
        team = pc.binary_join_element_wise(
            _take(p.inspector_ids, f["k1"]), _take(p.inspector_ids, f["k2"]), third, ";",
            null_handling="skip",
        )  # fmt: skip
        out["inspections"] = _table("inspections", {
            "record_id": _record_ids("inspections", f["counter"]),
            "credit_code": code(f),
            "task_id": _take(p.tasks, f["task"]),
            "inspected_on": _dates(f["day"]),
            "department": dept(f),
            "inspector_ids": team,
            "selection": _take(pa.array(["random", "targeted"]), np.isnan(f["prob"]).astype(int)),
            "selection_probability": _floats(f["prob"]),
            "problem_found": pa.array(f["problem"]),
            "recorded_at": _dates(f["rec"]),
        })  # fmt: skip
        f = self.frames["complaints"]
        out["complaints"] = _table("complaints", {
            "record_id": _record_ids("complaints", f["counter"]),
            "credit_code": code(f),
            "received_on": _dates(f["day"]),
            "channel": _take(pa.array(COMPLAINT_CHANNELS), f["channel"]),
            "substantiated": pa.array(f["subst"] == 1, mask=f["subst"] < 0),
            "department": dept(f),
            "recorded_at": _dates(f["rec"]),
        })  # fmt: skip

        def target_ids(f: Frame) -> pa.Array:
            prefix = np.array([list(_RECORD_PREFIX).index(s) for s in TARGETABLE_SOURCES])
            return _strings(_id_matrix(prefix[f["src"]], f["target"]))

        f = self.obj
        out["objections"] = _table("objections", {
            "record_id": _record_ids("objections", f["counter"]),
            "credit_code": _strings(self.codes[f["ent"]]),
            "target_source": _take(pa.array(TARGETABLE_SOURCES), f["src"]),
            "target_record_id": target_ids(f),
            "filed_on": _dates(f["day"]),
            "recorded_at": _dates(f["rec"]),
            "resolved_on": _dates(f["resolved"]),
            "outcome": _take(pa.array(OBJECTION_OUTCOMES), f["outcome"]),
        })  # fmt: skip
        f = self.rep
        out["credit_repairs"] = _table("credit_repairs", {
            "record_id": _record_ids("credit_repairs", f["counter"]),
            "credit_code": _strings(self.codes[f["ent"]]),
            "target_source": _take(pa.array(TARGETABLE_SOURCES), f["src"]),
            "target_record_id": target_ids(f),
            "applied_on": _dates(f["applied"]),
            "repaired_on": _dates(f["day"]),
            "recorded_at": _dates(f["rec"]),
        })  # fmt: skip
        return out

    def manifest(self, tables: dict[str, pa.Table], offsets: dict[str, int]) -> pa.Table:
        """Defect manifest rows: where each defective row sits in the written file."""
        parts = []
        for source, kind in self.defects.items():
            rows = np.flatnonzero(kind >= 0)
            if rows.size == 0:
                continue
            names = pa.array(_DEFECT_NAMES).take(pa.array(kind[rows]))
            spec_reason = pa.array([DEFECT_RATES[k].reason.value for k in _DEFECT_NAMES])
            spec_column = pa.array([DEFECT_RATES[k].column for k in _DEFECT_NAMES])
            parts.append(pa.table({
                "source": pa.array([source] * rows.size),
                "record_id": tables[source]["record_id"].take(pa.array(rows)),
                "source_row": pa.array(offsets[source] + rows + 1, type=pa.int64()),
                "defect": names,
                "expected_reason": spec_reason.take(pa.array(kind[rows])),
                "expected_column": spec_column.take(pa.array(kind[rows])),
            }))  # fmt: skip
        if not parts:
            return _MANIFEST_SCHEMA.empty_table()
        return pa.concat_tables(parts).cast(_MANIFEST_SCHEMA)

    def risk_truth(self) -> pa.Table:
        """Hidden propensity and logit per enterprise and year (for analysis only)."""
        years = self.p.years
        n, ny = self.n, years.size
        ent = np.repeat(np.arange(n), ny)
        code = pa.DictionaryArray.from_arrays(pa.array(ent.astype(np.int32)), _strings(self.codes))
        propensity = (self.u[:, None] + self.z).ravel()
        static = (self.rho_year - (self.u[:, None] + self.z)).ravel()
        return pa.table({
            "credit_code": code,
            "year": pa.array(np.tile(years, n).astype(np.int16)),
            "propensity": pa.array(propensity.astype(np.float32)),
            "static_effect": pa.array(static.astype(np.float32)),
            "inspection_logit": pa.array(
                (_Hidden.INTERCEPT + self.rho_year.ravel()).astype(np.float32)
            ),
        })  # fmt: skip


_DEFECT_NAMES = tuple(DEFECT_RATES)
_MANIFEST_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("record_id", pa.string()),
        ("source_row", pa.int64()),
        ("defect", pa.string()),
        ("expected_reason", pa.string()),
        ("expected_column", pa.string()),
    ]
)


def source_schema(source: str) -> pa.Schema:
    """The Arrow schema of a raw source as generated: contract columns, order and types."""
    return pa.schema([(c.name, _PA_TYPES[c.dtype]) for c in SOURCES[source].columns])


def _table(source: str, columns: dict[str, pa.Array]) -> pa.Table:
    names = SOURCES[source].column_names
    if list(columns) != names:
        raise AssertionError(f"{source}: columns {list(columns)} != contract {names}")
    schema = source_schema(source)
    return pa.Table.from_arrays(
        [columns[c].cast(schema.field(c).type) for c in names], schema=schema
    )


# ----------------------------------------------------------------------------- writing


class _Writers:
    """One streaming writer per output file."""

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder = folder
        self.fmt = fmt
        self._w: dict[str, pacsv.CSVWriter | pq.ParquetWriter] = {}
        for source in SOURCES:
            self._w[source] = self._open(folder / f"{source}.{fmt}", source_schema(source), fmt)
        truth = folder / TRUTH_DIR
        truth.mkdir()
        self._w["_defects"] = self._open(truth / "defects.csv", _MANIFEST_SCHEMA, "csv")

    @staticmethod
    def _open(path: Path, schema: pa.Schema, fmt: str) -> pacsv.CSVWriter | pq.ParquetWriter:
        if fmt == "csv":
            return pacsv.CSVWriter(
                str(path), schema, write_options=pacsv.WriteOptions(quoting_style="none")
            )
        return pq.ParquetWriter(str(path), schema, compression="zstd")

    def write_all(self, tables: dict[str, pa.Table]) -> None:
        """Append one chunk's tables, in a fixed order."""
        for name, table in tables.items():
            if name == "_risk" and name not in self._w:
                path = self.folder / TRUTH_DIR / "enterprise_risk.parquet"
                self._w[name] = pq.ParquetWriter(str(path), table.schema, compression="zstd")
            if table.num_rows:
                self._w[name].write_table(table)

    def close(self) -> None:
        for w in self._w.values():
            w.close()


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    if not out_dir.exists():
        return
    clashes = sorted(
        p.name
        for p in out_dir.iterdir()
        if p.name == TRUTH_DIR or (p.suffix in (".csv", ".parquet") and p.stem in SOURCES)
    )
    if clashes:
        raise FileExistsError(
            f"{out_dir}: already holds source files ({', '.join(clashes)}); "
            "generate into an empty or new folder"
        )


def generate(
    out_dir: Path,
    *,
    enterprises: int = 20_000,
    seed: int = 7,
    fmt: Literal["csv", "parquet"] = "csv",
    chunk_size: int = 50_000,
    extracted_on: date = date(2026, 6, 30),
    progress: bool = False,
) -> SyntheticSummary:
    """Write a synthetic province's raw sources (one file per source) into ``out_dir``.

    Files appear only when complete: everything is written to a sibling temporary folder and
    moved in at the end, so a failed run leaves ``out_dir`` as it was. Refuses a folder that
    already holds source files. The same parameters give byte-identical files.
    """
    out_dir = Path(out_dir)
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt: {fmt!r} is not one of csv, parquet")
    if enterprises < 1:
        raise ValueError(f"enterprises: {enterprises} must be at least 1")
    if enterprises > MAX_ENTERPRISES:
        raise ValueError(f"enterprises: {enterprises} is more than {MAX_ENTERPRISES:,}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: {chunk_size} must be at least 1")
    if seed < 0:
        raise ValueError(f"seed: {seed} must be >= 0")
    if extracted_on < date(HISTORY_START.year + 1, 1, 1):
        raise ValueError(f"extracted_on: {extracted_on} is before {HISTORY_START.year + 1}-01-01")
    _check_out_dir(out_dir)
    params = SyntheticParams(
        enterprises=enterprises,
        seed=seed,
        fmt=fmt,
        chunk_size=chunk_size,
        extracted_on=extracted_on,
    )
    started = time.perf_counter()
    prov = _build_province(seed, extracted_on)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.generating-", dir=out_dir.parent))
    try:
        summary = _generate_into(work, prov, params, progress)
        out_dir.mkdir(exist_ok=True)
        _check_out_dir(out_dir)  # nobody wrote there meanwhile
        for item in sorted(work.iterdir()):
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    total = sum(summary.rows.values())
    log.info(
        "generated %d source rows for %d enterprises in %.1f s (%.0f rows/s) into %s",
        total, enterprises, seconds, total / max(seconds, 1e-9), out_dir,
    )  # fmt: skip
    return summary


def _generate_into(
    work: Path, prov: _Province, params: SyntheticParams, progress: bool
) -> SyntheticSummary:
    writers = _Writers(work, params.fmt)
    counters = {s: 0 for s in SOURCES}
    rows = {s: 0 for s in SOURCES}
    defects: dict[str, dict[str, int]] = {}
    n_chunks = -(-params.enterprises // params.chunk_size)
    # Writing runs in one background thread (Arrow releases the GIL) while the next chunk is
    # generated; at most one chunk waits, so memory stays at about two chunks.
    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthetic-writer") as pool:
        try:
            for chunk in tqdm(
                range(n_chunks), disable=not progress, desc="generating", unit="chunk"
            ):
                start = chunk * params.chunk_size
                ch = _Chunk(prov, chunk, start, min(params.chunk_size, params.enterprises - start))
                tables = ch.run(counters)
                offsets = dict(rows)
                for source in SOURCES:
                    rows[source] += tables[source].num_rows
                tables["_defects"] = ch.manifest(tables, offsets)
                tables["_risk"] = ch.risk_truth()
                for source, kind in ch.defects.items():
                    counts = np.bincount(kind[kind >= 0], minlength=len(_DEFECT_NAMES))
                    for k in np.flatnonzero(counts):
                        per_source = defects.setdefault(source, {})
                        name = _DEFECT_NAMES[k]
                        per_source[name] = per_source.get(name, 0) + int(counts[k])
                if pending is not None:
                    pending.result()
                pending = pool.submit(writers.write_all, tables)
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                pending.exception()  # wait for the writer before closing the files
            writers.close()
    _write_inspectors(work / TRUTH_DIR / "inspectors.csv", prov)
    _write_draws(work / TRUTH_DIR / "draws.csv", prov)
    files = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    files.append(f"{TRUTH_DIR}/generation.json")
    summary = SyntheticSummary(
        params=params,
        rows=rows,
        defects={s: dict(sorted(d.items())) for s, d in sorted(defects.items())},
        files=sorted(files),
    )
    doc = {
        **summary.model_dump(mode="json"),
        "defect_rates": {
            k: {
                "sources": list(d.sources),
                "rate_before_2018_10_01": d.rate_before,
                "rate_from_2018_10_01": d.rate_after,
                "expected_reason": d.reason.value,
                "expected_column": d.column,
                "what": d.what,
            }
            for k, d in DEFECT_RATES.items()
        },
        "thin_coverage": {f"{r}-{d}": share for (r, d), share in THIN_COVERAGE.items()},
    }
    (work / TRUTH_DIR / "generation.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
    return summary


def _write_inspectors(path: Path, prov: _Province) -> None:
    dept = np.repeat(np.arange(_N_REG * _N_DEPT), prov.pool_size.ravel())
    table = pa.table({
        "inspector_id": prov.inspector_ids,
        "department": prov.departments.take(pa.array(dept)),
        "strictness": pa.array(np.round(prov.strictness, 4)),
    })  # fmt: skip
    pacsv.write_csv(table, str(path), write_options=pacsv.WriteOptions(quoting_style="none"))


def _write_draws(path: Path, prov: _Province) -> None:
    """The published draws ("one public"): task, county, department, date, base probability.

    A random-draw inspection's ``selection_probability`` is this base probability, times the
    grade multiplier from ``credit_linked_from`` on (latest evaluation known on the draw date).
    """
    r, d, y = np.meshgrid(
        np.arange(_N_REG), np.arange(_N_DEPT), np.arange(prov.n_years), indexing="ij"
    )
    r, d, y = r.ravel(), d.ravel(), y.ravel()
    day = prov.draw_day.ravel()
    held = day != _NA
    r, d, y, day = r[held], d[held], y[held], day[held]
    table = pa.table({
        "task_id": prov.tasks.take(pa.array((r * _N_DEPT + d) * prov.n_years + y)),
        "region": pa.array([x.code for x in REGIONS]).take(pa.array(r)),
        "department": prov.departments.take(pa.array(r * _N_DEPT + d)),
        "draw_date": _dates(day),
        "base_probability": pa.array(prov.draw_base.ravel()[held]),
        "credit_linked": pa.array(prov.years[y] >= CREDIT_LINKED_FROM),
    })  # fmt: skip
    pacsv.write_csv(table, str(path), write_options=pacsv.WriteOptions(quoting_style="none"))
