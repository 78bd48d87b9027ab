"""GB 32100-2015 check character: published codes pass, every single error is caught."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features import credit_code as cc

# Codes published on business licences / in public registers (enterprise, social organisation,
# foundation, public institution, individual business).
PUBLISHED = [
    "91350100M000100Y43",
    "9144030071526726XG",  # Tencent
    "914403001922038216",  # Huawei
    "91110108551385082Q",  # Xiaomi
    "91370000728611939A",
    "91310115591693856A",
    "91310110666007217T",
    "531000005000160090",  # Red Cross Foundation of China
    "52410000663412719U",
    "92371000MA3MXH0E3W",  # individual business
]


def _complete(first17: str) -> str:
    return first17 + cc.check_character(first17)


# No published codes for these authorities are at hand offline: the codes below are built with
# the standard's own construction for every registration authority the standard lists.
EVERY_AUTHORITY = [_complete(f"{a}1330102MA2B3C4D5") for a in cc.AUTHORITIES]

codes_strategy = st.builds(
    lambda auth, cat, region, body: _complete(auth + cat + region + body),
    st.sampled_from(cc.AUTHORITIES),
    st.sampled_from(cc.ALPHABET),
    st.from_regex(r"[1-8][0-9]{5}", fullmatch=True),
    st.text(alphabet=cc.ALPHABET, min_size=9, max_size=9),
)


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    assert cc.is_valid(code)


@pytest.mark.parametrize("code", EVERY_AUTHORITY)
def test_every_authority_prefix_is_accepted(code: str) -> None:
    assert cc.is_well_formed(code)
    assert cc.is_valid(code)


def test_a_known_bad_check_character_is_rejected() -> None:
    # An early pilot-region code that does not satisfy the standard.
    assert not cc.is_valid("91350211M00013FA1N")
    assert not cc.is_valid("91110108551385082F")


@pytest.mark.parametrize("code", PUBLISHED + EVERY_AUTHORITY)
def test_every_single_character_substitution_is_caught(code: str) -> None:
    for pos in range(18):
        for ch in cc.ALPHABET:
            if ch == code[pos]:
                continue
            wrong = code[:pos] + ch + code[pos + 1 :]
            assert not cc.is_valid(wrong), (code, pos, ch)


@pytest.mark.parametrize("code", PUBLISHED + EVERY_AUTHORITY)
def test_every_adjacent_transposition_is_caught(code: str) -> None:
    for pos in range(17):
        if code[pos] == code[pos + 1]:
            continue
        swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2 :]
        assert not cc.is_valid(swapped), (code, pos)


@given(codes_strategy, st.integers(0, 17), st.sampled_from(cc.ALPHABET))
def test_random_codes_single_errors(code: str, pos: int, ch: str) -> None:
    assert cc.is_valid(code)
    wrong = code[:pos] + ch + code[pos + 1 :]
    assert cc.is_valid(wrong) == (ch == code[pos])


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "91350100M000100Y4",
        "91350100M000100Y433",
        "91350100M000I00Y43",
        "9135010OM000100Y43",
        "Z1350100M000100Y43",
        "91A50100M000100Y43",
    ],
)
def test_malformed_codes_are_not_well_formed(bad: str) -> None:
    assert not cc.is_well_formed(bad)
    assert not cc.is_valid(bad)


def test_sql_check_character_agrees_with_python() -> None:
    codes = PUBLISHED + EVERY_AUTHORITY
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT code, {cc.sql_check_character('code')} FROM unnest(?) AS t(code)", [codes]
    ).fetchall()
    assert {code: check for code, check in rows} == {c: c[17] for c in codes}


def test_individual_business_codes_are_personal_and_masked() -> None:
    ib = "92371000MA3MXH0E3W"
    assert cc.is_individual_business(ib)
    masked = cc.mask(ib)
    assert masked.startswith("92371000") and masked.endswith("W") and "MA3MXH0E3" not in masked
    assert cc.mask("914403001922038216") == "914403001922038216"


def test_the_vector_form_writes_the_check_character_of_every_row() -> None:
    import numpy as np

    from features.credit_code import ALPHABET, check_character, set_check_characters

    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
    codes = alphabet[rng.integers(0, len(ALPHABET), (500, 18))]
    rows = [r.tobytes().decode() for r in set_check_characters(codes)]
    assert all(r[17] == check_character(r[:17]) for r in rows)
