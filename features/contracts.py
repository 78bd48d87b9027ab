"""Source contracts: the one home for every raw table a regulator hands us.

Each source is a CSV or Parquet file named ``<source>.csv`` / ``<source>.parquet`` in a data
folder. Every column is declared here once (type, meaning in English and Chinese, allowed
values, whether it may be empty); validation, the synthetic province, the feature SQL and the
README's contract tables are all derived from these declarations.

Every event record carries two dates: when the fact happened (``event_date``) and when it
reached the platform (``recorded_at``). Point-in-time features use a record only once both
are before the as-of date, which is what makes them leak-free.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DType(StrEnum):
    STRING = "string"
    DATE = "date"
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"


#: SQL type each contract type is cast to (DuckDB and Spark spell these the same way).
SQL_TYPES: dict[DType, str] = {
    DType.STRING: "VARCHAR",
    DType.DATE: "DATE",
    DType.FLOAT: "DOUBLE",
    DType.INT: "BIGINT",
    DType.BOOL: "BOOLEAN",
}


class Column(BaseModel):
    """One column of a source file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dtype: DType
    en: str
    zh: str
    required: bool = True
    #: Required only when another column has a value: ``"removed_on"`` or ``"selection=random"``.
    required_if: str | None = None
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    #: Exclusive lower bound (e.g. a selection probability must be > 0).
    min_exclusive: bool = False
    credit_code: bool = False
    #: Identifies a natural person for individual businesses (codes starting with 92):
    #: masked in logs and reports for roles that do not need it.
    personal_data: bool = False


class DateOrder(BaseModel):
    """``earlier`` must not be after ``later`` (when both are present)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    earlier: str
    later: str


class Consistency(BaseModel):
    """A rule across columns; ``sql`` is true when the row is consistent (typed columns)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    sql: str
    en: str


class Source(BaseModel):
    """A raw source table and the rules its rows must satisfy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    en: str
    zh: str
    key: str
    columns: tuple[Column, ...]
    event_date: str
    recorded_date: str
    date_orders: tuple[DateOrder, ...] = ()
    consistency: tuple[Consistency, ...] = ()
    #: Rows must reference an enterprise present in the validated registry.
    references_registry: bool = True
    #: Objections and repairs point at a record of another source.
    targets_records: bool = False
    #: Rule that shapes features: how long a record counts from its event date.
    validity_years: int | None = None

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _code(en: str = "Unified social credit code of the enterprise (GB 32100-2015)") -> Column:
    return Column(
        name="credit_code",
        dtype=DType.STRING,
        en=en,
        zh="统一社会信用代码",
        credit_code=True,
        personal_data=True,
    )


def _record_id(en: str, zh: str) -> Column:
    return Column(name="record_id", dtype=DType.STRING, en=en, zh=zh)


def _recorded_at(en: str = "Date the record reached the credit platform") -> Column:
    return Column(name="recorded_at", dtype=DType.DATE, en=en, zh="归集入库日期")


def _department(required: bool = True) -> Column:
    return Column(
        name="department",
        dtype=DType.STRING,
        en="Issuing or recording department",
        zh="来源部门",
        required=required,
    )


INDUSTRIES: dict[str, str] = {
    # GB/T 4754-2017 sections (国民经济行业分类门类) that regulators inspect most.
    "A": "agriculture, forestry, animal husbandry and fishery",
    "C": "manufacturing",
    "D": "electricity, heat, gas and water",
    "E": "construction",
    "F": "wholesale and retail",
    "G": "transport, storage and post",
    "H": "accommodation and catering",
    "I": "information technology services",
    "K": "real estate",
    "L": "leasing and business services",
    "M": "scientific research and technical services",
    "O": "resident and repair services",
    "P": "education",
    "Q": "health and social work",
    "R": "culture, sports and entertainment",
}
ENTERPRISE_TYPES: dict[str, str] = {
    "limited_company": "limited liability company (有限责任公司)",
    "joint_stock": "joint-stock company (股份有限公司)",
    "partnership": "partnership (合伙企业)",
    "sole_proprietorship": "sole proprietorship (个人独资企业)",
    "individual_business": "individual business (个体工商户)",
    "foreign_invested": "foreign-invested enterprise (外商投资企业)",
    "state_owned": "state-owned enterprise (国有企业)",
    "cooperative": "farmers' cooperative (农民专业合作社)",
}
STATUSES = ("active", "deregistered", "revoked")
LIST_TYPES = ("red", "black", "abnormal")
GRADES = ("A", "B", "C", "D", "E")
#: Ordered from mildest to most severe; the index + 1 is the severity used by features.
PENALTY_KINDS = ("warning", "fine", "confiscation", "suspension", "revocation")
PROCEDURES = ("simple", "general")
SELECTIONS = ("random", "targeted")
COMPLAINT_CHANNELS = ("hotline_12315", "online", "letter", "referral")
OBJECTION_OUTCOMES = ("pending", "upheld", "rejected")
#: Sources whose records an enterprise may dispute or repair.
TARGETABLE_SOURCES = ("penalties", "list_entries", "inspections", "complaints")

REGISTRY = Source(
    name="registry",
    en="Enterprise registry: one row per enterprise",
    zh="市场主体登记基础信息",
    key="credit_code",
    event_date="founded_on",
    recorded_date="recorded_at",
    references_registry=False,
    columns=(
        _code(),
        Column(
            name="name",
            dtype=DType.STRING,
            en="Registered name (an individual business's name identifies a person)",
            zh="名称",
            personal_data=True,
        ),
        Column(name="founded_on", dtype=DType.DATE, en="Date of establishment", zh="成立日期"),
        Column(
            name="industry",
            dtype=DType.STRING,
            en="Industry section, GB/T 4754-2017",
            zh="行业门类",
            allowed=tuple(INDUSTRIES),
        ),
        Column(
            name="region",
            dtype=DType.STRING,
            en="County-level administrative division code (6 digits, GB/T 2260)",
            zh="所属县级行政区划代码",
            pattern=r"^[1-8][0-9]{5}$",
        ),
        Column(
            name="registered_capital",
            dtype=DType.FLOAT,
            en="Registered capital in 10,000 CNY (empty for individual businesses)",
            zh="注册资本（万元）",
            required=False,
            min_value=0,
        ),
        Column(
            name="enterprise_type",
            dtype=DType.STRING,
            en="Legal form",
            zh="市场主体类型",
            allowed=tuple(ENTERPRISE_TYPES),
        ),
        Column(
            name="status",
            dtype=DType.STRING,
            en="Registration status",
            zh="登记状态",
            allowed=STATUSES,
        ),
        Column(
            name="closed_on",
            dtype=DType.DATE,
            en="Date of deregistration or revocation (empty while active)",
            zh="注销/吊销日期",
            required=False,
        ),
        _recorded_at(),
    ),
    date_orders=(
        DateOrder(earlier="founded_on", later="closed_on"),
        DateOrder(earlier="founded_on", later="recorded_at"),
    ),
    consistency=(
        Consistency(
            column="closed_on",
            sql="(status = 'active') = (closed_on IS NULL)",
            en="an active enterprise has no closing date; a closed one has one",
        ),
    ),
)

CREDIT_EVALUATIONS = Source(
    name="credit_evaluations",
    en="Public credit evaluations: a periodic score and grade per enterprise",
    zh="公共信用评价",
    key="record_id",
    event_date="evaluated_on",
    recorded_date="recorded_at",
    columns=(
        _record_id("Evaluation record id", "评价记录编号"),
        _code(),
        Column(name="evaluated_on", dtype=DType.DATE, en="Evaluation date", zh="评价日期"),
        Column(
            name="score",
            dtype=DType.FLOAT,
            en="Public credit score on the 1000-point scale (higher is better)",
            zh="公共信用评分",
            min_value=0,
            max_value=1000,
        ),
        Column(
            name="grade",
            dtype=DType.STRING,
            en="Credit grade A (excellent) to E (bad)",
            zh="信用等级",
            allowed=GRADES,
        ),
        _department(),
        _recorded_at(),
    ),
    date_orders=(DateOrder(earlier="evaluated_on", later="recorded_at"),),
)

LIST_ENTRIES = Source(
    name="list_entries",
    en="Red list (rewards), black list (serious dishonesty), abnormal-operation list",
    zh="红黑名单及经营异常名录",
    key="record_id",
    event_date="entered_on",
    recorded_date="recorded_at",
    validity_years=5,
    columns=(
        _record_id("List entry id", "名单记录编号"),
        _code(),
        Column(
            name="list_type",
            dtype=DType.STRING,
            en="Which list",
            zh="名单类型",
            allowed=LIST_TYPES,
        ),
        Column(name="entered_on", dtype=DType.DATE, en="Date listed", zh="列入日期"),
        Column(
            name="removed_on",
            dtype=DType.DATE,
            en="Date removed from the list (empty while listed)",
            zh="移出日期",
            required=False,
        ),
        Column(
            name="reason",
            dtype=DType.STRING,
            en="Reason for listing as published",
            zh="列入事由",
            required=False,
        ),
        _department(),
        _recorded_at(),
        Column(
            name="removal_recorded_at",
            dtype=DType.DATE,
            en="Date the removal reached the platform",
            zh="移出信息归集日期",
            required=False,
            required_if="removed_on",
        ),
    ),
    date_orders=(
        DateOrder(earlier="entered_on", later="removed_on"),
        DateOrder(earlier="entered_on", later="recorded_at"),
        DateOrder(earlier="removed_on", later="removal_recorded_at"),
    ),
)

PENALTIES = Source(
    name="penalties",
    en="Administrative penalties ('double publicity')",
    zh="行政处罚（双公示）",
    key="record_id",
    event_date="decided_on",
    recorded_date="recorded_at",
    validity_years=5,
    columns=(
        _record_id("Penalty decision document number", "处罚决定书文号"),
        _code(),
        Column(name="decided_on", dtype=DType.DATE, en="Decision date", zh="处罚决定日期"),
        Column(
            name="kind",
            dtype=DType.STRING,
            en="Penalty kind, mildest to most severe",
            zh="处罚种类",
            allowed=PENALTY_KINDS,
        ),
        Column(
            name="procedure",
            dtype=DType.STRING,
            en="Simple (on-the-spot) or general procedure",
            zh="处罚程序（简易/一般）",
            allowed=PROCEDURES,
        ),
        Column(
            name="amount",
            dtype=DType.FLOAT,
            en="Fine or confiscated amount in CNY (empty when none)",
            zh="罚没金额（元）",
            required=False,
            min_value=0,
        ),
        Column(
            name="legal_basis",
            dtype=DType.STRING,
            en="Legal basis cited",
            zh="处罚依据",
            required=False,
        ),
        _department(required=False),
        _recorded_at(),
    ),
    date_orders=(DateOrder(earlier="decided_on", later="recorded_at"),),
)

INSPECTIONS = Source(
    name="inspections",
    en="Inspection results, with how the target was selected",
    zh="检查结果",
    key="record_id",
    event_date="inspected_on",
    recorded_date="recorded_at",
    validity_years=1,
    columns=(
        _record_id("Inspection record id", "检查记录编号"),
        _code(),
        Column(
            name="task_id",
            dtype=DType.STRING,
            en="Inspection task (a draw or a targeted campaign)",
            zh="检查任务编号",
            required=False,
        ),
        Column(name="inspected_on", dtype=DType.DATE, en="Inspection date", zh="检查日期"),
        _department(),
        Column(
            name="inspector_ids",
            dtype=DType.STRING,
            en="Inspectors on the team, separated by ';'",
            zh="检查人员编号",
        ),
        Column(
            name="selection",
            dtype=DType.STRING,
            en="'random' if the target came from a random draw, else 'targeted'",
            zh="抽取方式（双随机/定向）",
            allowed=SELECTIONS,
        ),
        Column(
            name="selection_probability",
            dtype=DType.FLOAT,
            en="Inclusion probability of this target in its draw (required for random draws)",
            zh="入选概率",
            required=False,
            required_if="selection=random",
            min_value=0,
            max_value=1,
            min_exclusive=True,
        ),
        Column(
            name="problem_found",
            dtype=DType.BOOL,
            en="Whether the inspection found a problem",
            zh="是否发现问题",
        ),
        _recorded_at(),
    ),
    date_orders=(DateOrder(earlier="inspected_on", later="recorded_at"),),
)

COMPLAINTS = Source(
    name="complaints",
    en="Complaints and reports (投诉举报) about the enterprise",
    zh="投诉举报",
    key="record_id",
    event_date="received_on",
    recorded_date="recorded_at",
    validity_years=1,
    columns=(
        _record_id("Complaint id", "投诉举报编号"),
        _code(),
        Column(name="received_on", dtype=DType.DATE, en="Date received", zh="受理日期"),
        Column(
            name="channel",
            dtype=DType.STRING,
            en="How it arrived",
            zh="投诉渠道",
            allowed=COMPLAINT_CHANNELS,
        ),
        Column(
            name="substantiated",
            dtype=DType.BOOL,
            en="Whether the complaint was found to be true (empty while open)",
            zh="是否属实",
            required=False,
        ),
        _department(required=False),
        _recorded_at(),
    ),
    date_orders=(DateOrder(earlier="received_on", later="recorded_at"),),
)

OBJECTIONS = Source(
    name="objections",
    en="Objections (disputes) an enterprise filed against one of its records",
    zh="信用信息异议",
    key="record_id",
    event_date="filed_on",
    recorded_date="recorded_at",
    targets_records=True,
    columns=(
        _record_id("Objection id", "异议编号"),
        _code(),
        Column(
            name="target_source",
            dtype=DType.STRING,
            en="Source of the disputed record",
            zh="异议信息类别",
            allowed=TARGETABLE_SOURCES,
        ),
        Column(
            name="target_record_id", dtype=DType.STRING, en="Disputed record", zh="异议信息编号"
        ),
        Column(name="filed_on", dtype=DType.DATE, en="Date filed", zh="异议申请日期"),
        _recorded_at(),
        Column(
            name="resolved_on",
            dtype=DType.DATE,
            en="Date the objection was decided (empty while pending)",
            zh="异议处理日期",
            required=False,
        ),
        Column(
            name="outcome",
            dtype=DType.STRING,
            en="pending; upheld (record corrected or withheld for good); rejected (record stands)",
            zh="处理结果",
            allowed=OBJECTION_OUTCOMES,
        ),
    ),
    date_orders=(
        DateOrder(earlier="filed_on", later="recorded_at"),
        DateOrder(earlier="filed_on", later="resolved_on"),
    ),
    consistency=(
        Consistency(
            column="outcome",
            sql="(outcome = 'pending') = (resolved_on IS NULL)",
            en="a pending objection has no decision date; a decided one has one",
        ),
    ),
)

CREDIT_REPAIRS = Source(
    name="credit_repairs",
    en="Approved credit repairs: the record stops counting from the repair date",
    zh="信用修复",
    key="record_id",
    event_date="repaired_on",
    recorded_date="recorded_at",
    targets_records=True,
    columns=(
        _record_id("Repair decision id", "信用修复编号"),
        _code(),
        Column(
            name="target_source",
            dtype=DType.STRING,
            en="Source of the repaired record",
            zh="修复信息类别",
            allowed=TARGETABLE_SOURCES,
        ),
        Column(
            name="target_record_id", dtype=DType.STRING, en="Repaired record", zh="修复信息编号"
        ),
        Column(
            name="applied_on",
            dtype=DType.DATE,
            en="Date the enterprise applied",
            zh="申请日期",
            required=False,
        ),
        Column(name="repaired_on", dtype=DType.DATE, en="Date repair was approved", zh="修复日期"),
        _recorded_at(),
    ),
    date_orders=(
        DateOrder(earlier="applied_on", later="repaired_on"),
        DateOrder(earlier="repaired_on", later="recorded_at"),
    ),
)

#: In validation order: the registry first (others reference it), repairs/objections last.
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        REGISTRY,
        CREDIT_EVALUATIONS,
        LIST_ENTRIES,
        PENALTIES,
        INSPECTIONS,
        COMPLAINTS,
        OBJECTIONS,
        CREDIT_REPAIRS,
    )
}

FileFormat = Literal["csv", "parquet"]


class Reason(StrEnum):
    """Quarantine reason codes. A row may fail several checks; all are kept."""

    MISSING_VALUE = "missing_value"
    UNPARSEABLE_VALUE = "unparseable_value"
    MALFORMED_CREDIT_CODE = "malformed_credit_code"
    BAD_CHECK_CHARACTER = "bad_check_character"
    UNKNOWN_VALUE = "unknown_value"
    PATTERN_MISMATCH = "pattern_mismatch"
    OUT_OF_RANGE = "out_of_range"
    DATE_OUT_OF_RANGE = "date_out_of_range"
    DATES_OUT_OF_ORDER = "dates_out_of_order"
    INCONSISTENT_VALUES = "inconsistent_values"
    DUPLICATE_RECORD = "duplicate_record"
    UNKNOWN_ENTERPRISE = "unknown_enterprise"
    UNKNOWN_TARGET_RECORD = "unknown_target_record"


REASON_TEXT: dict[Reason, str] = {
    Reason.MISSING_VALUE: "a required value is empty",
    Reason.UNPARSEABLE_VALUE: "the value cannot be read as the declared type",
    Reason.MALFORMED_CREDIT_CODE: "not 18 characters of the GB 32100 alphabet",
    Reason.BAD_CHECK_CHARACTER: "the GB 32100 check character does not match",
    Reason.UNKNOWN_VALUE: "not one of the allowed values",
    Reason.PATTERN_MISMATCH: "does not match the required pattern",
    Reason.OUT_OF_RANGE: "number outside its allowed range",
    Reason.DATE_OUT_OF_RANGE: "date before the earliest plausible date or after extraction",
    Reason.DATES_OUT_OF_ORDER: "a date is before the date it must follow",
    Reason.INCONSISTENT_VALUES: "values contradict each other",
    Reason.DUPLICATE_RECORD: "the record id was already seen earlier in the file",
    Reason.UNKNOWN_ENTERPRISE: "the credit code is not in the validated registry",
    Reason.UNKNOWN_TARGET_RECORD: "the disputed or repaired record does not exist for this code",
}


class ValidationWindow(BaseModel):
    """Dates outside [earliest, extracted_on] are implausible."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    extracted_on: date = Field(description="Date the sources were extracted; later is future")
    earliest_founding: date = date(1949, 10, 1)
    earliest_event: date = date(1990, 1, 1)
