"""Reading a published ``pool.csv`` back into a :class:`PoolTable`, fast when it is canonical.

Why two paths: a published pool is the canonical CSV of SPEC.md §3.1, byte for byte. A strict
reader that accepts *only* canonical bytes (every field spelt exactly as the canonical writer
spells it, rows strictly ascending by code) reads 2.5 M rows in one compiled pass, and since
what it accepts re-serialises to the very same bytes, the SHA-256 of the file *is* the pool's
snapshot hash — computed on the second core while the rest of the record is read. Anything
else (other line ends, quoting, leading zeros, unsorted rows, an invalid value) goes through the
general reader (Arrow's CSV parser and :meth:`PoolTable.from_frame`), which accepts what a person
may have edited and names what is wrong; its hash is then taken over the re-built canonical CSV.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from features.credit_code import WEIGHTS
from serving.draws.keys import FNV_OFFSET, FNV_PRIME
from serving.draws.pool import (
    _VALUE,
    CODE_LENGTH,
    HEADER,
    NO_DATE,
    CanonicalBytes,
    Labels,
    PoolTable,
    _labels,
    _scan_codes,
    _strictly_ascending,
)

LABEL_COLUMNS = ("tier", "region", "industry", "department")
BAD_DATE = np.iinfo(np.int64).max  # what _day returns for a field that is not a canonical date
_TABLE_BITS = 18  # distinct label combinations interned by the strict reader: at most 2^17


def read_pool_file(path: Path) -> PoolTable:
    """The pool of a published ``pool.csv``; see the module docstring for the two paths."""
    data = Path(path).read_bytes()
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-sha256")
    try:
        digest = hasher.submit(_sha256, data)  # hashlib drops the GIL: the other core
        table = read_canonical(data, digest)
    finally:
        hasher.shutdown(wait=False)
    if table is not None:
        return table
    return PoolTable.from_frame(read_general(data))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_general(data: bytes) -> pd.DataFrame:
    """Any pool CSV with the canonical columns into a frame (Arrow's multi-threaded reader),
    its columns left in Arrow memory: the pool validation reads them from there as is."""
    text = {c: pa.string() for c in ("credit_code", *LABEL_COLUMNS)}
    options = pacsv.ConvertOptions(
        column_types={**text, "last_inspected_on": pa.date32(), "draws_this_year": pa.int64()},
        null_values=[""],
        strings_can_be_null=False,
    )
    table = pacsv.read_csv(pa.BufferReader(data), convert_options=options)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def read_canonical(data: bytes, digest: Future | None = None) -> PoolTable | None:
    """The pool whose canonical CSV is exactly ``data``, or None when ``data`` is not canonical.

    With ``digest``, the SHA-256 of ``data`` being computed elsewhere, the table keeps ``data``
    as its canonical CSV and ``digest`` as its snapshot hash (sound because re-serialising the
    table gives ``data`` again, a property the tests check on random and on corrupted files).
    """
    if not data.startswith(HEADER) or len(data) == len(HEADER) or data[-1:] != b"\n":
        return None
    body = np.frombuffer(data, dtype=np.uint8, offset=len(HEADER))
    canonical, (matrix, label_start, label_len, label_hash, days, counts) = _parse_lines(body, 64)
    if not canonical:
        return None
    head, tail, code_hash, problem = _scan_codes(matrix, _VALUE, np.asarray(WEIGHTS, np.int64))
    if problem.any() or not _strictly_ascending(head, tail):
        return None
    interned, combo, first_row = _intern(body, label_start, label_len, label_hash, _TABLE_BITS)
    if not interned:
        return None
    labels = _labels_of_combinations(body, label_start[first_row], label_len[first_row], combo)
    if labels is None:
        return None
    return PoolTable.from_arrays(
        matrix,
        code_hash,
        {**labels, "last_inspected": days, "draws_this_year": counts},
        canonical_source=None if digest is None else CanonicalBytes(data, digest),
    )


def _labels_of_combinations(
    body: np.ndarray, start: np.ndarray, length: np.ndarray, combo: np.ndarray
) -> dict[str, Labels] | None:
    """Each label column from the distinct ``tier,region,industry,department`` spans: one per
    combination, decoded here and encoded and checked by the pool's own label rule (a pool has
    few combinations); None when a label breaks it (the general reader then names it)."""
    parts = []
    for s, k in zip(start.tolist(), length.tolist(), strict=True):
        try:
            values = body[s : s + k].tobytes().decode("utf-8").split(",")
        except UnicodeDecodeError:
            return None
        if len(values) != 4:
            return None
        parts.append(values)
    out = {}
    for j, name in enumerate(LABEL_COLUMNS):
        column = pd.Series([p[j] for p in parts], dtype=object)
        try:
            of_combo = _labels(column, name, allow_null=name == "department")
        except ValueError:
            return None
        out[name] = Labels(of_combo.idx[combo], of_combo.names)
    return out


@numba.njit(cache=True, parallel=True, nogil=True)
def _parse_lines(body, chunks):  # pragma: no cover - compiled
    """Each line checked against the canonical spelling (SPEC.md §3.1) by :func:`_parse_line`,
    the body cut into ``chunks`` pieces spread over the cores: a piece first counts the lines
    that start in it, then parses them. Returns whether every line passed, then per line its
    code's bytes, its label span (start, length, FNV-1a-64), days since 1970-01-01 (NO_DATE
    when empty) and its count (-1 when empty). ``body`` ends with LF."""
    n_bytes = len(body)
    size = (n_bytes + chunks - 1) // chunks
    found = np.zeros(chunks + 1, dtype=np.int64)
    for c in numba.prange(chunks):  # a line starts at 0 and after every LF but the last
        lo = c * size
        hi = min(n_bytes, lo + size)
        k = 1 if lo == 0 and hi > 0 else 0
        for p in range(max(lo - 1, 0), min(hi - 1, n_bytes - 1)):
            if body[p] == 10:
                k += 1
        found[c + 1] = k
    at = np.cumsum(found)
    n = at[-1]
    matrix = np.empty((n, CODE_LENGTH), dtype=np.uint8)
    label = np.empty((n, 2), dtype=np.int64)
    label_hash = np.empty(n, dtype=np.uint64)
    days = np.empty(n, dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    bad = np.zeros(chunks, dtype=np.bool_)
    for c in numba.prange(chunks):
        lo = c * size
        hi = min(n_bytes, lo + size)
        p = lo
        while p > 0 and p < hi and body[p - 1] != 10:
            p += 1
        r = at[c]
        while p < hi:
            stop = p
            while body[stop] != 10:
                stop += 1
            if not _parse_line(body, p, stop, r, matrix, label, label_hash, days, counts):
                bad[c] = True
            r += 1
            p = stop + 1
    return not bad.any(), (matrix, label[:, 0], label[:, 1], label_hash, days, counts)


@numba.njit(cache=True, inline="always")
def _parse_line(body, start, stop, r, matrix, label, label_hash, days, counts):  # pragma: no cover
    """Line ``r`` (body[start:stop]): an 18-byte code, the four label fields (no CR, quote,
    ``;`` or ``|``; the first three non-empty), an empty or ``YYYY-MM-DD`` calendar date, an
    empty or decimal count without sign or leading zero. False if it is not so spelt."""
    first = start + CODE_LENGTH + 1
    if stop - start < CODE_LENGTH + 9 or body[first - 1] != 44:
        return False
    for j in range(CODE_LENGTH):
        matrix[r, j] = body[start + j]
    # The five commas after the code's: c3 ends the label span, c4 the date.
    c0 = c1 = c2 = c3 = c4 = np.int64(-1)
    found = 0
    h = np.uint64(FNV_OFFSET)
    for p in range(first, stop):
        c = body[p]
        if c == 13 or c == 34 or c == 59 or c == 124:
            return False
        if c == 44:
            if found == 0:
                c0 = p
            elif found == 1:
                c1 = p
            elif found == 2:
                c2 = p
            elif found == 3:
                c3 = p
            elif found == 4:
                c4 = p
            else:
                return False
            found += 1
        if found < 4:  # the span tier,region,industry,department
            h = (h ^ np.uint64(c)) * np.uint64(FNV_PRIME)
    if found != 5 or c0 == first or c1 == c0 + 1 or c2 == c1 + 1:
        return False  # not six fields after the code, or an empty tier, region or industry
    label[r, 0] = first
    label[r, 1] = c3 - first
    label_hash[r] = h
    d = _day(body, c3 + 1, c4)
    k = _count(body, c4 + 1, stop)
    days[r] = d
    counts[r] = k
    return d != BAD_DATE and k != -2


@numba.njit(cache=True, inline="always")
def _day(body, a, b):  # pragma: no cover - compiled
    """Days since 1970-01-01 of ``YYYY-MM-DD`` in body[a:b]; NO_DATE if empty; BAD_DATE if
    not a canonical calendar date (year 0001-9999)."""
    if a == b:
        return NO_DATE
    if b - a != 10 or body[a + 4] != 45 or body[a + 7] != 45:
        return BAD_DATE
    y = m = d = 0
    for p in range(a, b):
        if p == a + 4 or p == a + 7:
            continue
        c = body[p]
        if c < 48 or c > 57:
            return BAD_DATE
        if p < a + 4:
            y = y * 10 + (c - 48)
        elif p < a + 7:
            m = m * 10 + (c - 48)
        else:
            d = d * 10 + (c - 48)
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    if m == 2:
        month_days = 29 if leap else 28
    elif m == 4 or m == 6 or m == 9 or m == 11:
        month_days = 30
    else:
        month_days = 31
    if y < 1 or m < 1 or m > 12 or d < 1 or d > month_days:
        return BAD_DATE
    y -= 1 if m <= 2 else 0  # days from civil (H. Hinnant), proleptic Gregorian
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@numba.njit(cache=True, inline="always")
def _count(body, a, b):  # pragma: no cover - compiled
    """The decimal count in body[a:b]; -1 if empty; -2 if not canonical (sign, leading zero,
    a non-digit, more than 18 digits)."""
    if a == b:
        return -1
    if b - a > 18 or (body[a] == 48 and b - a > 1):
        return -2
    value = 0
    for p in range(a, b):
        c = body[p]
        if c < 48 or c > 57:
            return -2
        value = value * 10 + (c - 48)
    return value


@numba.njit(cache=True, nogil=True)
def _intern(body, start, length, hashes, bits):  # pragma: no cover - compiled
    """Number the distinct label spans in order of first appearance: whether that succeeded,
    each row's number, and the first row of each number. A row whose hash is already in the
    table is compared byte for byte with that number's first span, so a hash collision is
    detected (the general reader then takes over), as is the table filling up."""
    size = 1 << bits
    mask = np.uint64(size - 1)
    slot_hash = np.empty(size, dtype=np.uint64)
    slot_id = np.full(size, -1, dtype=np.int64)
    first_row = np.empty(size // 2, dtype=np.int64)
    combo = np.empty(len(start), dtype=np.int64)
    distinct = 0
    for r in range(len(start)):
        h = hashes[r]
        s = h & mask
        while True:
            k = slot_id[s]
            if k == -1:
                if distinct == size // 2:
                    return False, combo, first_row[:0]
                slot_hash[s] = h
                slot_id[s] = distinct
                first_row[distinct] = r
                combo[r] = distinct
                distinct += 1
                break
            if slot_hash[s] == h:
                q = first_row[k]
                if length[q] != length[r]:
                    return False, combo, first_row[:0]
                a, b = start[q], start[r]
                for j in range(length[r]):
                    if body[a + j] != body[b + j]:
                        return False, combo, first_row[:0]
                combo[r] = k
                break
            s = (s + np.uint64(1)) & mask
    return True, combo, first_row[:distinct]
