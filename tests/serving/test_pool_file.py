"""Reading a published pool.csv: the strict canonical reader gives exactly the table the general
reader gives, accepts nothing that is not canonical (what it accepts re-serialises to the same
bytes, so the file's SHA-256 is the snapshot hash), and hands everything else to the general
reader (SPEC.md §3.1)."""

from __future__ import annotations

import hashlib
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.draws.pool import PoolTable, day_number
from serving.draws.pool_file import (
    BAD_DATE,
    _day,
    _intern,
    read_canonical,
    read_general,
    read_pool_file,
)
from serving.draws.synthetic import pool_frame

LABELS = st.sampled_from(["A", "B", "杭州市西湖区", "x" * 100, "Ω-1", "330101", "a b"])


def assert_same_table(a: PoolTable, b: PoolTable) -> None:
    assert a.codes.equals(b.codes)
    for name in ("code_bytes", "code_hash", "last_inspected", "draws_this_year"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for name in ("tier", "region", "industry", "department"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.names == y.names and x.idx.dtype == y.idx.dtype, name
        assert np.array_equal(x.idx, y.idx), name


def general(data: bytes) -> PoolTable:
    return PoolTable.from_frame(read_general(data))


@st.composite
def pools(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 40))
    frame = pool_frame(n, seed=draw(st.integers(0, 10_000)), regions=3, industries=4)
    rng = np.random.default_rng(draw(st.integers(0, 10_000)))
    labels = [draw(LABELS) for _ in range(4)]
    frame["tier"] = np.where(rng.random(n) < 0.5, frame["tier"], labels[0])
    frame["region"] = np.where(rng.random(n) < 0.5, frame["region"], labels[1])
    frame["department"] = np.where(rng.random(n) < 0.5, None, labels[2])
    dates = [date(1, 1, 1), date(2024, 2, 29), date(9999, 12, 31), date(1970, 1, 1)]
    pick = rng.integers(0, len(dates), n)
    frame["last_inspected_on"] = [
        None if rng.random() < 0.3 else dates[k] if rng.random() < 0.5 else d
        for k, d in zip(pick, frame["last_inspected_on"].dt.date, strict=True)
    ]
    frame["draws_this_year"] = pd.array(
        [None if rng.random() < 0.3 else int(v) for v in rng.integers(0, 10**12, n)],
        dtype="Int64",
    )
    return frame.sample(frac=1, random_state=int(rng.integers(0, 1000)))


@settings(max_examples=80, deadline=None)
@given(pools())
def test_a_canonical_file_reads_back_to_the_table_that_wrote_it(frame) -> None:
    table = PoolTable.from_frame(frame)
    data = table.canonical_csv()
    strict = read_canonical(data)
    assert strict is not None
    assert_same_table(strict, table)
    assert_same_table(strict, general(data))
    assert strict.canonical_csv() == data


EDITS = st.sampled_from(["replace", "insert", "delete"])


@settings(max_examples=300, deadline=None)
@given(pools(), st.lists(st.tuples(EDITS, st.integers(0, 10**6), st.binary(min_size=1, max_size=1)), min_size=1, max_size=3))  # fmt: skip
def test_whatever_the_strict_reader_accepts_re_serialises_to_the_same_bytes(frame, edits) -> None:
    """Random byte edits of a canonical file: accepted only if still canonical, and then read
    exactly as the general reader reads it (so hashing the file is hashing the snapshot)."""
    data = bytearray(PoolTable.from_frame(frame).canonical_csv())
    for kind, at, byte in edits:
        at %= len(data)
        if kind == "replace":
            data[at : at + 1] = byte
        elif kind == "insert":
            data[at:at] = byte
        elif len(data) > 1:
            del data[at]
    data = bytes(data)
    strict = read_canonical(data)
    if strict is None:
        return
    assert strict.canonical_csv() == data
    assert_same_table(strict, general(data))


@pytest.fixture(scope="module")
def canonical() -> bytes:
    frame = pool_frame(300, seed=4)
    frame["department"] = np.where(np.arange(300) % 3 == 0, "environment", None)
    return PoolTable.from_frame(frame).canonical_csv()


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


NOT_CANONICAL = {
    "CRLF line ends": lambda d: d.replace(b"\n", b"\r\n"),
    "no LF after the last line": lambda d: d[:-1],
    "a byte-order mark": lambda d: b"\xef\xbb\xbf" + d,
    "quoted fields": lambda d: d.replace(b",environment,", b',"environment",'),
    "rows out of order": lambda d: (
        b"\n".join([_lines(d)[0], _lines(d)[2], _lines(d)[1], *_lines(d)[3:]]) + b"\n"
    ),
    "a count with a leading zero": lambda d: d.replace(b",1\n", b",01\n"),
    "a count with a sign": lambda d: d.replace(b",0\n", b",+0\n"),
}


@pytest.mark.parametrize("change", sorted(NOT_CANONICAL))
def test_other_spellings_of_the_same_pool_go_to_the_general_reader(
    change, canonical, tmp_path
) -> None:
    data = NOT_CANONICAL[change](canonical)
    assert data != canonical
    assert read_canonical(data) is None
    path = tmp_path / "pool.csv"
    path.write_bytes(data)
    try:
        expected = general(data)
    except ValueError as exc:  # the general reader refuses it: reading the file says the same
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            read_pool_file(path)
        return
    table = read_pool_file(path)
    assert table.canonical_source is None
    assert_same_table(table, expected)
    assert table.sha256(cached=False) == hashlib.sha256(expected.canonical_csv()).hexdigest()


def test_a_canonical_file_is_hashed_as_it_is_read(canonical, tmp_path) -> None:
    path = tmp_path / "pool.csv"
    path.write_bytes(canonical)
    table = read_pool_file(path)
    assert table.canonical_source is not None
    assert table.sha256(cached=False) == hashlib.sha256(canonical).hexdigest()
    assert table.canonical_csv() == canonical


@pytest.mark.parametrize(
    "text",
    ["2026-02-29", "2025-13-01", "0000-01-01", "2025-00-10", "2025-04-31", "2025-1-01", "20250101",
     "2025/01/01", "2025-01-1x"],
)  # fmt: skip
def test_a_date_that_is_not_a_canonical_calendar_date_is_refused(text) -> None:
    body = np.frombuffer(text.encode(), dtype=np.uint8)
    assert _day(body, 0, len(body)) == BAD_DATE


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_dates_are_counted_from_1970_as_python_counts_them(day) -> None:
    body = np.frombuffer(day.isoformat().encode(), dtype=np.uint8)
    assert _day(body, 0, len(body)) == day_number(day)


def _spans(*texts: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    body = np.frombuffer(b"".join(texts), dtype=np.uint8)
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return body, starts, lengths


def test_interning_numbers_spans_in_order_of_first_appearance() -> None:
    body, starts, lengths = _spans(b"A,r,i,", b"B,r,i,", b"A,r,i,", b"B,r,i,d")
    hashes = np.array([1, 2, 1, 3], dtype=np.uint64)
    ok, combo, first = _intern(body, starts, lengths, hashes, 4)
    assert ok and combo.tolist() == [0, 1, 0, 2] and first.tolist() == [0, 1, 3]


def test_a_hash_collision_between_different_spans_is_detected() -> None:
    body, starts, lengths = _spans(b"A,r,i,", b"B,r,i,", b"A,r,j,")
    same = np.zeros(3, dtype=np.uint64)
    assert not _intern(body, starts, lengths, same, 4)[0]
    body2, starts2, lengths2 = _spans(b"A,r,i,", b"A,r,ii,")
    assert not _intern(body2, starts2, lengths2, same[:2], 4)[0]


def test_a_full_interning_table_gives_way_to_the_general_reader() -> None:
    body, starts, lengths = _spans(b"a", b"b", b"c")
    assert not _intern(body, starts, lengths, np.arange(3, dtype=np.uint64), 2)[0]
    assert _intern(body, starts, lengths, np.arange(3, dtype=np.uint64), 3)[0]
