"""The pool's compiled code scan agrees with the plain definitions it replaces: GB 32100 check
characters, byte order of the codes, FNV-1a-64 of each code (SPEC.md §2–§3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.credit_code import ALPHABET, check_character, set_check_characters
from serving.draws.keys import fnv1a64, fnv1a64_rows
from serving.draws.pool import NO_DATE, PoolTable
from serving.draws.synthetic import example_inputs, inspectors_frame, pool_frame

BODY = st.text(alphabet=ALPHABET, min_size=17, max_size=17)


def _frame(codes: list[str]) -> pd.DataFrame:
    n = len(codes)
    return pd.DataFrame(
        {"credit_code": codes, "tier": ["A"] * n, "region": ["r"] * n, "industry": ["i"] * n}
    )


def _valid(bodies: list[str]) -> list[str]:
    return [b + check_character(b) for b in bodies]


@settings(max_examples=60, deadline=None)
@given(st.lists(BODY, min_size=1, max_size=40, unique=True), st.randoms(use_true_random=False))
def test_codes_are_sorted_bytewise_and_hashed_as_fnv(bodies, rnd) -> None:
    codes = _valid(bodies)
    rnd.shuffle(codes)
    table = PoolTable.from_frame(_frame(codes))
    assert table.codes.to_pylist() == sorted(codes)
    assert table.code_hash.tolist() == [fnv1a64(c.encode()) for c in sorted(codes)]
    assert np.array_equal(table.code_hash, fnv1a64_rows(table.code_bytes))
    # every other column moved with its code
    frame = _frame(codes).assign(tier=[c[-1] for c in codes])
    moved = PoolTable.from_frame(frame)
    assert list(moved.tier.values()) == [c[-1] for c in sorted(codes)]


def test_codes_that_differ_only_in_their_last_characters_still_sort_exactly() -> None:
    """Such codes share the one-word sort key; the tie-break on the full code orders them."""
    rng = np.random.default_rng(3)
    stems = ["91110000MA01ABCDE", "92371000MA3MXH0E3", "12100000400011235"]
    bodies = sorted({s[:12] + "".join(rng.choice(list(ALPHABET), 5)) for s in stems * 80})
    codes = _valid(bodies)
    shuffled = [codes[i] for i in rng.permutation(len(codes))]
    assert PoolTable.from_frame(_frame(shuffled)).codes.to_pylist() == codes


def test_a_duplicate_hidden_among_tied_sort_keys_is_found() -> None:
    codes = _valid(["91110000MA01ABCD" + c for c in "0123456789"])
    with pytest.raises(ValueError, match=f"{codes[7]!r} appears more than once"):
        PoolTable.from_frame(_frame([*codes, codes[7]]))


@pytest.mark.parametrize("position", [0, 5, 9, 16])
def test_a_wrong_check_character_names_the_row_and_the_expected_character(position) -> None:
    pool = pool_frame(50, seed=4, regions=1)
    matrix = np.frombuffer("".join(pool["credit_code"]).encode(), np.uint8).reshape(-1, 18).copy()
    # change one character of row 31 and leave its check character as it was
    old = chr(matrix[31, position])
    matrix[31, position] = ord(ALPHABET[(ALPHABET.index(old) + 1) % 31])
    pool["credit_code"] = matrix.view("S18").ravel().astype(str)
    bad = pool.loc[31, "credit_code"]
    expected = set_check_characters(matrix.copy())[31, 17]
    with pytest.raises(
        ValidationError,
        match=f"'{bad}' at row 31 fails the GB 32100 check character \\(expected '{chr(expected)}'\\)",
    ):
        example_inputs("s", pool=pool, inspectors=inspectors_frame(6, pool))


def test_a_character_outside_the_alphabet_is_named_before_its_check() -> None:
    codes = _valid(["91110000MA01ABCD" + c for c in "0123"])
    codes[2] = codes[2][:10] + "O" + codes[2][11:]
    with pytest.raises(ValueError, match=f"{codes[2]!r} at row 2 has a character outside"):
        PoolTable.from_frame(_frame(codes))


def test_a_pool_held_in_arrow_memory_validates_to_the_same_table() -> None:
    """A published pool.csv is read into Arrow-backed columns; validating them in place must
    give the table the plain frame gives (same snapshot hash, same columns)."""
    pool = pool_frame(400, seed=6, regions=3, industries=4)
    pool["last_inspected_on"] = pool["last_inspected_on"].where(pool.index % 7 != 0)
    pool["draws_this_year"] = pd.array(
        [None if i % 5 == 0 else i % 4 for i in range(len(pool))], dtype="Int64"
    )
    plain = PoolTable.from_frame(pool)
    arrow = PoolTable.from_frame(
        pa.Table.from_pandas(plain.frame(), preserve_index=False).to_pandas(
            types_mapper=pd.ArrowDtype
        )
    )
    assert arrow.sha256() == plain.sha256()
    assert np.array_equal(arrow.last_inspected, plain.last_inspected)
    assert np.array_equal(arrow.draws_this_year, plain.draws_this_year)
    assert (plain.draws_this_year == -1).sum() == 80 and (plain.last_inspected == NO_DATE).any()


def test_arrow_columns_with_bad_values_are_refused_like_any_other() -> None:
    counts = pd.array([0, 1, None, -2, 0, 1, 2, 0, 1, 2], dtype="Int64")
    frame = pool_frame(10, seed=6, regions=1).assign(draws_this_year=counts)
    arrow = pa.Table.from_pandas(frame, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype)
    with pytest.raises(ValueError, match="draws_this_year: -2 at row 3 is not a count ≥ 0"):
        PoolTable.from_frame(arrow)
