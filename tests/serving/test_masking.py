"""Masking: individual businesses' codes hidden for platform and auditor, shown to admin;
other codes untouched; found in nested structures, DataFrames, free text and log records."""

from __future__ import annotations

import logging
from collections import namedtuple

import pandas as pd
import pytest

from features.credit_code import mask
from serving.auth import Role
from serving.masking import MaskingFilter, install, mask_codes, mask_personal, mask_text

PERSON = "92371000MA3MXH0E3W"  # published individual business
PERSON_MASKED = "92371000*********W"
OTHER_PERSON = "92330102MA2B3C4D5X"
COMPANY = "9144030071526726XG"  # Tencent: not personal data
FOUNDATION = "531000005000160090"


def test_single_codes() -> None:
    assert mask_text(PERSON) == PERSON_MASKED == mask(PERSON)
    assert mask_text(COMPANY) == COMPANY
    assert mask_text(FOUNDATION) == FOUNDATION
    assert mask_text(PERSON_MASKED) == PERSON_MASKED  # idempotent


@pytest.mark.parametrize("role", [Role.PLATFORM, Role.AUDITOR, "platform", "auditor", None, "x"])
def test_masked_for_roles_without_the_permission(role) -> None:
    assert mask_codes({"code": PERSON}, role) == {"code": PERSON_MASKED}


@pytest.mark.parametrize("role", [Role.ADMIN, "admin"])
def test_admin_sees_codes(role) -> None:
    obj = {"code": PERSON, "rows": [PERSON]}
    assert mask_codes(obj, role) == {"code": PERSON, "rows": [PERSON]}


def test_nested_structures_and_the_input_is_left_alone() -> None:
    Pair = namedtuple("Pair", "code tier")
    obj = {
        "results": [
            {"credit_code": PERSON, "tier": "C", "probability": 0.31, "flags": None},
            {"credit_code": COMPANY, "tier": "A", "probability": 0.02, "flags": True},
        ],
        "by_code": {PERSON: 3, COMPANY: 1},
        "pair": Pair(PERSON, "C"),
        "set": {PERSON, COMPANY},
        "deep": [[{"x": (PERSON, 1)}]],
    }
    out = mask_codes(obj, "platform")
    assert out["results"][0] == {
        "credit_code": PERSON_MASKED,
        "tier": "C",
        "probability": 0.31,
        "flags": None,
    }
    assert out["results"][1]["credit_code"] == COMPANY
    assert out["by_code"] == {PERSON_MASKED: 3, COMPANY: 1}
    assert out["pair"] == Pair(PERSON_MASKED, "C") and isinstance(out["pair"], Pair)
    assert out["set"] == {PERSON_MASKED, COMPANY}
    assert out["deep"] == [[{"x": (PERSON_MASKED, 1)}]]
    assert obj["results"][0]["credit_code"] == PERSON  # not modified in place
    assert PERSON in obj["by_code"]


def test_keys_that_mask_alike_do_not_collide() -> None:
    twin = PERSON[:8] + "NA1234567" + PERSON[17]  # same region and check character
    assert mask(twin) == PERSON_MASKED
    out = mask_codes({PERSON: 1, twin: 2}, "auditor")
    assert out == {PERSON_MASKED: 1, PERSON_MASKED + "#2": 2}


def test_free_text() -> None:
    text = (
        f"企业{PERSON}有2条记录; see {COMPANY} and enterprise_{OTHER_PERSON}.html, "
        f"lower {PERSON.lower()}, id 1{PERSON} and {PERSON}9 are longer runs"
    )
    out = mask_codes(text, "platform")
    assert f"企业{PERSON_MASKED}有2条记录" in out
    assert COMPANY in out
    assert f"enterprise_{mask(OTHER_PERSON)}.html" in out
    assert f"lower {mask(PERSON.lower())}" in out
    assert f"1{PERSON}" in out and f"{PERSON}9" in out  # not a code on its own: left alone
    assert mask_codes(text, "admin") == text


def test_dataframe_columns_index_and_series() -> None:
    df = pd.DataFrame(
        {
            "credit_code": [PERSON, COMPANY, None],
            "note": [f"owner of {PERSON}", "—", "x"],
            "tier": pd.Categorical(["C", "A", "B"]),
            "cat_code": pd.Categorical([PERSON, COMPANY, OTHER_PERSON]),
            "p": [0.3, 0.1, 0.2],
        },
        index=[PERSON, COMPANY, "z"],
    )
    df[OTHER_PERSON] = 1
    out = mask_codes(df, Role.AUDITOR)
    assert out["credit_code"].tolist()[:2] == [PERSON_MASKED, COMPANY]
    assert pd.isna(out["credit_code"].iloc[2])
    assert out["note"].tolist() == [f"owner of {PERSON_MASKED}", "—", "x"]
    assert out["cat_code"].tolist() == [PERSON_MASKED, COMPANY, mask(OTHER_PERSON)]
    assert isinstance(out["cat_code"].dtype, pd.CategoricalDtype)
    assert out["tier"].tolist() == ["C", "A", "B"]
    assert out["p"].tolist() == [0.3, 0.1, 0.2]
    assert out.index.tolist() == [PERSON_MASKED, COMPANY, "z"]
    assert mask(OTHER_PERSON) in out.columns and OTHER_PERSON not in out.columns
    assert df["credit_code"].iloc[0] == PERSON and df.index[0] == PERSON  # input unchanged
    assert mask_codes(df, "admin") is df
    s = mask_codes(pd.Series([PERSON, COMPANY], name="code"), "platform")
    assert s.tolist() == [PERSON_MASKED, COMPANY]


def test_mask_personal_ignores_roles_and_leaves_other_types() -> None:
    assert mask_personal({"c": PERSON, "n": 3, "b": b"92"}) == {
        "c": PERSON_MASKED,
        "n": 3,
        "b": b"92",
    }


# -- logs ------------------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logger():
    log = logging.getLogger("test_masking")
    log.propagate = False
    handler = Collect()
    handler.addFilter(MaskingFilter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield log, handler
    log.removeHandler(handler)


class Explained:
    def __str__(self) -> str:
        return f"<explanation of {PERSON}>"


def test_log_filter_masks_message_arguments_and_objects(logger) -> None:
    log, handler = logger
    log.info("scored %s and %s", PERSON, COMPANY)
    log.info(f"explained {PERSON}")
    log.info("batch %s", [PERSON, COMPANY])
    log.info("%(code)s asked", {"code": PERSON})
    log.info("object %s", Explained())
    assert handler.lines == [
        f"scored {PERSON_MASKED} and {COMPANY}",
        f"explained {PERSON_MASKED}",
        f"batch ['{PERSON_MASKED}', '{COMPANY}']",
        f"{PERSON_MASKED} asked",
        f"object <explanation of {PERSON_MASKED}>",
    ]


def test_log_filter_masks_tracebacks(logger) -> None:
    log, handler = logger
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        raise KeyError(f"{PERSON} is not in the snapshot")
    except KeyError:
        log.exception("explain failed")
    assert "explain failed" in handler.lines[0]
    assert "KeyError" in handler.lines[0]
    assert PERSON not in handler.lines[0] and PERSON_MASKED in handler.lines[0]


def test_install_adds_the_filter_to_handlers_of_a_logger() -> None:
    log = logging.getLogger("test_masking_install")
    log.propagate = False
    handler = Collect()
    log.addHandler(handler)
    try:
        install(log)
        install(log)  # twice: still one filter
        assert sum(isinstance(f, MaskingFilter) for f in handler.filters) == 1
        logging.getLogger("test_masking_install.child").warning("code %s", PERSON)
        assert handler.lines == [f"code {PERSON_MASKED}"]
    finally:
        log.removeHandler(handler)
