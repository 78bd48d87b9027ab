"""The pool of inspectable enterprises: validation, canonical snapshot, scope and exclusions.

Why a columnar table sorted by credit code: every later step (keys, cells, ties, the snapshot
hash) is defined in credit-code order, so sorting once at the boundary makes row order itself
canonical — the row index *is* the tie-break. Columns stay numpy/Arrow arrays (no per-row
Python objects) so that a province of 2.5 M enterprises is validated, hashed and drawn in
seconds.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic_core import core_schema

from features.credit_code import ALPHABET, WEIGHTS
from serving.draws.keys import FNV_OFFSET, FNV_PRIME

CODE_LENGTH = 18
REQUIRED = ("credit_code", "tier", "region", "industry")
OPTIONAL = ("department", "last_inspected_on", "draws_this_year")
COLUMNS = REQUIRED + OPTIONAL
NO_DATE = np.iinfo(np.int64).min
PARALLEL_ROWS = 100_000
FORBIDDEN_IN_LABELS = ',"\r\n;|'

_VALUE = np.full(256, 255, dtype=np.uint8)
_VALUE[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(len(ALPHABET), dtype=np.uint8)
_LARGE = pa.large_string()


@dataclass(frozen=True, eq=False)
class Labels:
    """A text column as integer codes into ``names`` (sorted ascending, so codes sort as names)."""

    idx: np.ndarray
    names: tuple[str, ...]

    def values(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The labels of ``rows`` as a numpy object array."""
        return np.asarray(self.names, dtype=object)[self.idx[rows]]

    def position(self, name: str) -> int:
        """Code of ``name``, or -1 when the column never takes that value."""
        try:
            return self.names.index(name)
        except ValueError:
            return -1


@dataclass(frozen=True, eq=False)
class CanonicalBytes:
    """Bytes proved to be a pool's canonical CSV, and their SHA-256 (maybe still being computed
    on another thread): the table answers with these instead of re-building them."""

    data: bytes
    sha256: Future


@dataclass(frozen=True, eq=False)
class PoolTable:
    """A validated pool, sorted by credit code (see module docstring)."""

    codes: pa.LargeStringArray
    code_bytes: np.ndarray  # (n, 18) uint8, row-major
    code_hash: np.ndarray  # FNV-1a-64 of each code
    tier: Labels
    region: Labels
    industry: Labels
    department: Labels  # "" where the pool gives none (the draw's department applies)
    last_inspected: np.ndarray  # int64 days since 1970-01-01, NO_DATE when unknown
    draws_this_year: np.ndarray  # int64, -1 when unknown
    # The bytes this table was read from, when they are its canonical CSV (and their SHA-256):
    # serving.draws.pool_file.read_canonical. None for a table validated from a frame.
    canonical_source: CanonicalBytes | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.code_hash)

    def code_list(self, rows: np.ndarray) -> list[str]:
        """Credit codes of ``rows`` as Python strings."""
        return [bytes(r).decode("ascii") for r in self.code_bytes[rows]]

    def canonical_csv(self) -> bytes:
        """The snapshot as canonical CSV bytes (SPEC.md §3): what the pool hash is taken over."""
        if self.canonical_source is not None:
            return self.canonical_source.data
        return HEADER + _csv_body(self).tobytes()

    def sha256(self, cached: bool = True) -> str:
        """SHA-256 of :meth:`canonical_csv`, computed once unless ``cached=False`` (verify).

        Thread-safe, and hashlib drops the GIL, so the draw hashes in a background thread. A
        table read from its canonical CSV answers with the hash of the bytes it was read from
        (the same bytes, hashed by the reader itself), cached or not.
        """
        if self.canonical_source is not None:
            return self.canonical_source.sha256.result()
        with self._lock:
            if not cached or "sha256" not in self._cache:
                digest = hashlib.sha256(HEADER)
                digest.update(_csv_body(self))
                self._cache["sha256"] = digest.hexdigest()
            return self._cache["sha256"]

    def frame(self) -> pd.DataFrame:
        """Back to a pandas DataFrame (canonical columns and order)."""
        days = self.last_inspected
        dates = pd.Series(days, dtype="int64").where(days != NO_DATE)
        return pd.DataFrame(
            {
                "credit_code": pd.Series(self.codes.to_pandas(), dtype="str"),
                "tier": self.tier.values(),
                "region": self.region.values(),
                "industry": self.industry.values(),
                "department": self.department.values(),
                "last_inspected_on": pd.to_datetime(dates, unit="D").dt.date.where(dates.notna()),
                "draws_this_year": pd.Series(self.draws_this_year, dtype="Int64").mask(
                    self.draws_this_year < 0
                ),
            }
        ).astype({c: "str" for c in ("tier", "region", "industry", "department")})

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: object) -> object:
        """Pydantic: accept a DataFrame (validated by :meth:`from_frame`) or a table."""
        return core_schema.no_info_plain_validator_function(cls.from_frame)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame | PoolTable) -> PoolTable:
        """Validate a pool DataFrame (errors name the column and the first bad row)."""
        if isinstance(frame, PoolTable):
            return frame
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise ValueError(f"missing column(s) {missing}; required: {list(REQUIRED)}")
        unknown = [c for c in frame.columns if c not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; allowed: {list(COLUMNS)}")
        if len(frame) == 0:
            raise ValueError("the pool is empty (0 rows)")
        n = len(frame)
        if n >= PARALLEL_ROWS:
            # The other columns are encoded on the second core while the codes are checked
            # and sorted (numpy and Arrow release the GIL).
            with ThreadPoolExecutor(max_workers=1) as helper:
                pending = helper.submit(_other_columns, frame)
                matrix, code_hash, order = _codes(frame)
                others = pending.result()
        else:
            matrix, code_hash, order = _codes(frame)
            others = _other_columns(frame)
        if order is not None:
            others = take_rows(others, order)
        return cls.from_arrays(matrix, code_hash, others)

    @classmethod
    def from_arrays(
        cls,
        code_bytes: np.ndarray,
        code_hash: np.ndarray,
        others: dict,
        canonical_source: CanonicalBytes | None = None,
    ) -> PoolTable:
        """A table from checked, sorted parts: the (n, 18) code bytes, their hashes, and the
        other columns as :func:`_other_columns` encodes them (the codes column is a view of the
        code bytes, not a copy)."""
        n = len(code_bytes)
        offsets = np.arange(0, CODE_LENGTH * (n + 1), CODE_LENGTH, dtype=np.int64)
        codes = pa.LargeStringArray.from_buffers(
            n, pa.py_buffer(offsets), pa.py_buffer(code_bytes.reshape(-1))
        )
        return cls(
            codes=codes,
            code_bytes=code_bytes,
            code_hash=code_hash,
            **others,
            canonical_source=canonical_source,
        )


def take_rows(columns: dict, rows: np.ndarray) -> dict:
    """Encoded columns (:func:`_other_columns`) with their rows taken in the order ``rows``."""
    return {
        name: Labels(np.take(x.idx, rows), x.names) if isinstance(x, Labels) else np.take(x, rows)
        for name, x in columns.items()
    }


def _codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked codes as a sorted (n, 18) byte matrix, their FNV-1a-64 hashes, and the order."""
    codes = _text(frame["credit_code"], "credit_code")
    matrix, (head, tail, code_hash) = _code_matrix(codes, frame.index)
    if _strictly_ascending(head, tail):  # sorted and unique already (a stored snapshot)
        return np.ascontiguousarray(matrix), code_hash, None
    order, tied = _code_order(head, tail)
    matrix = np.take(matrix, order, axis=0)  # 2-3x faster than matrix[order] for rows
    if len(tied):  # equal codes have equal sort keys, so a repeat can only be among these
        flat = matrix.view(f"S{CODE_LENGTH}").ravel()
        dup = tied[flat[tied + 1] == flat[tied]]
        if len(dup):
            code = matrix[dup[0]].tobytes().decode()
            raise ValueError(f"credit_code: {code!r} appears more than once")
    return np.ascontiguousarray(matrix), code_hash[order], order


def _strictly_ascending(head: np.ndarray, tail: np.ndarray) -> bool:
    return bool(np.all((head[1:] > head[:-1]) | ((head[1:] == head[:-1]) & (tail[1:] > tail[:-1]))))


def _other_columns(frame: pd.DataFrame) -> dict:
    """Every column but the code, encoded in the frame's row order."""
    n = len(frame)
    has = frame.columns
    return {
        "tier": _labels(frame["tier"], "tier"),
        "region": _labels(frame["region"], "region"),
        "industry": _labels(frame["industry"], "industry"),
        "department": (
            _labels(frame["department"], "department", allow_null=True)
            if "department" in has
            else Labels(np.zeros(n, dtype=np.uint8), ("",))
        ),
        "last_inspected": (
            _days(frame["last_inspected_on"])
            if "last_inspected_on" in has
            else np.full(n, NO_DATE, dtype=np.int64)
        ),
        "draws_this_year": (
            _counts(frame["draws_this_year"])
            if "draws_this_year" in has
            else np.full(n, -1, dtype=np.int64)
        ),
    }


HEADER = (",".join(COLUMNS) + "\n").encode("ascii")


def _text(series: pd.Series, name: str) -> pa.LargeStringArray:
    try:
        arr = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise ValueError(f"{name}: must be text") from None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise ValueError(f"{name}: must be text, got {arr.type}")
    if arr.null_count:
        first = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{name}: missing value at row {series.index[first]!r}")
    return arr.cast(_LARGE)


def _code_matrix(
    codes: pa.LargeStringArray, index: pd.Index
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The codes as an (n, 18) byte matrix (a view of the Arrow buffer) with their sort keys and
    FNV-1a-64 hashes (:func:`_scan_codes`), or a ValueError naming the first invalid code."""
    n = len(codes)
    offsets = np.frombuffer(codes.buffers()[1], dtype=np.int64)[codes.offset : codes.offset + n + 1]
    lengths = np.diff(offsets)
    bad = np.flatnonzero(lengths != CODE_LENGTH)
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"credit_code: {codes[i].as_py()!r} at row {index[i]!r} has {len(codes[i].as_py())} "
            f"characters; a unified social credit code has {CODE_LENGTH}"
        )
    data = np.frombuffer(codes.buffers()[2], dtype=np.uint8)
    matrix = data[offsets[0] : offsets[-1]].reshape(n, CODE_LENGTH)
    head, tail, fnv, problem = _scan_codes(matrix, _VALUE, np.asarray(WEIGHTS, dtype=np.int64))
    rows = np.flatnonzero(problem)
    if len(rows):
        i = int(rows[0])
        if problem[i] == 1:
            raise ValueError(
                f"credit_code: {codes[i].as_py()!r} at row {index[i]!r} has a character outside "
                f"the GB 32100 alphabet {ALPHABET}"
            )
        expected = ALPHABET[problem[i] - 2]
        raise ValueError(
            f"credit_code: {codes[i].as_py()!r} at row {index[i]!r} fails the GB 32100 check "
            f"character (expected {expected!r})"
        )
    return matrix, (head, tail, fnv)


@numba.njit(cache=True, parallel=True, nogil=True)
def _scan_codes(matrix, value, weights):  # pragma: no cover - compiled
    """One pass over the codes, rows spread over the cores: each code's alphabet positions
    checked, its check character verified, its sort keys ``head`` / ``tail`` (the first and
    last nine characters as base-31 numbers, each < 31^9 < 2^45) and its FNV-1a-64 hash
    (SPEC.md §2; :func:`serving.draws.keys.fnv1a64_rows` is the numpy form it is tested against).

    ``problem`` is 0 for a valid code, 1 for a character outside the alphabet, and 2 + the
    expected check character's position for a wrong check character.
    """
    n = matrix.shape[0]
    head = np.empty(n, dtype=np.int64)
    tail = np.empty(n, dtype=np.int64)
    fnv = np.empty(n, dtype=np.uint64)
    problem = np.zeros(n, dtype=np.int64)
    offset = np.uint64(FNV_OFFSET)
    prime = np.uint64(FNV_PRIME)
    for r in numba.prange(n):
        f, h, t, total, seen = offset, np.int64(0), np.int64(0), np.int64(0), np.int64(0)
        for j in range(18):
            c = matrix[r, j]
            f = (f ^ np.uint64(c)) * prime
            v = np.int64(value[c])
            seen |= v  # valid values are < 32; only a character outside the alphabet is more
            if j < 9:
                h = h * 31 + v
            else:
                t = t * 31 + v
            if j < 17:
                total += v * weights[j]
        head[r], tail[r], fnv[r] = h, t, f
        check = (31 - total % 31) % 31
        if seen > 31:
            problem[r] = 1
        elif check != np.int64(value[matrix[r, 17]]):
            problem[r] = 2 + check
    return head, tail, fnv, problem


def _code_order(head: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order that sorts the codes, from their base-31 halves (:func:`_scan_codes`), and the
    sorted positions ``i`` whose code has the same sort key as the next one (``i + 1``).

    Codes are digits and capitals, whose byte order equals their GB 32100 alphabet order, so a
    code is the base-31 number (``head``, ``tail``). One uint64 sort on head·2^19 + (tail >> 26)
    orders almost everything; the runs of equal sort keys are re-sorted on the full (head, tail).
    """
    key = (head.view(np.uint64) << np.uint64(19)) | (tail.view(np.uint64) >> np.uint64(26))
    order = np.argsort(key)
    ranked = key[order]
    tied = ranked[1:] == ranked[:-1]
    if not tied.any():
        return order, np.empty(0, dtype=np.intp)
    at = np.zeros(len(order), dtype=bool)
    at[1:] |= tied
    at[:-1] |= tied
    positions = np.flatnonzero(at)
    sub = order[positions]
    order[positions] = sub[np.lexsort((tail[sub], head[sub]))]
    return order, np.flatnonzero(tied)


def _labels(series: pd.Series, name: str, allow_null: bool = False) -> Labels:
    if allow_null and series.isna().any():
        series = series.astype(object).where(series.notna(), "")
    arr = _text(series, name)
    encoded = pc.dictionary_encode(arr)
    names = encoded.dictionary.to_pylist()
    for label in names:
        if label == "" and not allow_null:
            raise ValueError(f"{name}: empty label")
        bad = [ch for ch in FORBIDDEN_IN_LABELS if ch in label]
        if bad or len(label) > 100:
            raise ValueError(
                f"{name}: label {label!r} is longer than 100 characters or contains one of "
                f"{FORBIDDEN_IN_LABELS!r}"
            )
    order = sorted(range(len(names)), key=lambda i: names[i].encode("utf-8"))
    # The narrowest codes: a permutation gathers a 2.5 MB uint8 column from cache, not 10 MB.
    width = np.uint8 if len(names) <= 255 else np.uint16 if len(names) <= 65535 else np.int32
    remap = np.empty(len(names), dtype=width)
    remap[order] = np.arange(len(names), dtype=width)
    idx = remap[encoded.indices.to_numpy(zero_copy_only=False)]
    return Labels(idx, tuple(names[i] for i in order))


def _days(series: pd.Series) -> np.ndarray:
    name = "last_inspected_on"
    if isinstance(series.dtype, pd.ArrowDtype):
        if pa.types.is_date32(series.dtype.pyarrow_dtype):  # a published pool.csv read by Arrow
            days = pa.array(series)
            if isinstance(days, pa.ChunkedArray):
                days = days.combine_chunks()
            return days.cast(pa.int32()).cast(pa.int64()).fill_null(NO_DATE).to_numpy().copy()
        series = series.astype(object)  # other Arrow types: read as any other column
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series
    else:
        try:
            values = pd.to_datetime(series, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: not a date ({exc})") from None
    if getattr(values.dt, "tz", None) is not None:
        raise ValueError(f"{name}: give calendar dates, not time-zone-aware timestamps")
    as_day = values.to_numpy(dtype="datetime64[D]", na_value=np.datetime64("NaT"))
    out = as_day.view(np.int64).copy()
    out[np.isnat(as_day)] = NO_DATE
    return out


def _counts(series: pd.Series) -> np.ndarray:
    name = "draws_this_year"
    if isinstance(series.dtype, pd.ArrowDtype) and pa.types.is_integer(series.dtype.pyarrow_dtype):
        values = pa.array(series)  # a published pool.csv read by Arrow
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        values = values.cast(pa.int64())
        i = pc.index(pc.less(values, 0), True).as_py()  # nulls are unknown counts, not errors
        if i >= 0:
            raise ValueError(f"{name}: {values[i]} at row {series.index[i]!r} is not a count ≥ 0")
        return values.fill_null(-1).to_numpy().copy()
    if pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_extension_array_dtype(
        series.dtype
    ):
        arr = series.to_numpy(dtype=np.int64)
        if (arr < 0).any():
            i = int(np.flatnonzero(arr < 0)[0])
            raise ValueError(f"{name}: {arr[i]} at row {series.index[i]!r} is not a count ≥ 0")
        return arr
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        raise ValueError(
            f"{name}: {series[bad].iloc[0]!r} at row {series.index[bad][0]!r} is not a count"
        )
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    known = ~np.isnan(arr)
    if np.any(known & ((arr < 0) | (arr != np.floor(arr)))):
        i = int(np.flatnonzero(known & ((arr < 0) | (arr != np.floor(arr))))[0])
        raise ValueError(f"{name}: {arr[i]} at row {series.index[i]!r} is not a count ≥ 0")
    return np.where(known, arr, -1).astype(np.int64)


def _fused(parts: list[tuple[np.ndarray, list[str]]], suffix: str) -> tuple[np.ndarray, tuple]:
    """Several small-domain columns as one text field ``a,b,…`` + suffix, via a lookup table:
    each row's index into the table, and the table packed for :func:`_write_rows`.

    Why: pools have few distinct (tier, region, industry, department) and (date, count)
    combinations, so each distinct combination is formatted once and rows just index into it.
    """
    code = np.zeros(len(parts[0][0]), dtype=np.int64)
    space = 1
    for idx, names in parts:
        code = code * len(names) + idx
        space *= len(names)
    if space <= 1 << 24:
        present = np.zeros(space, dtype=bool)
        present[code] = True
        ids = np.flatnonzero(present)
        compact = (np.cumsum(present) - 1)[code]
    else:
        ids, compact = np.unique(code, return_inverse=True)
    table = []
    for combo in ids.tolist():
        fields = []
        for _, names in reversed(parts):
            combo, k = divmod(combo, len(names))
            fields.append(names[k])
        table.append((",".join(reversed(fields)) + suffix).encode("utf-8"))
    offsets = np.zeros(len(table) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in table])
    return compact, (np.frombuffer(b"".join(table), dtype=np.uint8), offsets)


def _csv_body(pool: PoolTable) -> np.ndarray:
    """The canonical CSV's rows (no header) as bytes: code, labels, (date, count) per row."""
    epoch = date(1970, 1, 1).toordinal()
    date_idx, date_names = _as_names(
        pool.last_inspected, NO_DATE, lambda d: str(date.fromordinal(epoch + d))
    )
    count_idx, count_names = _as_names(pool.draws_this_year, -1, str)
    labels = [(lab.idx, list(lab.names)) for lab in (pool.tier, pool.region, pool.industry)]
    labels.append((pool.department.idx, list(pool.department.names)))
    label_row, label_table = _fused(labels, "")
    last_row, last_table = _fused([(date_idx, date_names), (count_idx, count_names)], "\n")
    return _write_rows(pool.code_bytes, label_row, *label_table, last_row, *last_table)


def _as_names(values: np.ndarray, unknown: int, spell) -> tuple[np.ndarray, list[str]]:
    """Integer values as indices into their spellings, ``unknown`` spelt "" (the last name).

    Values span a short range in practice (dates of one year or two, counts below ten), so
    every value of the range is spelt; a wide range spells only the values present.
    """
    known = values != unknown
    if not known.any():
        return np.zeros(len(values), dtype=np.int64), [""]
    lo, hi = int(values[known].min()), int(values[known].max())
    if hi - lo < 1 << 16:
        present, idx = np.arange(lo, hi + 1), values - lo
    else:
        present = np.unique(values[known])
        idx = np.searchsorted(present, values)  # unknown rows are replaced just below
    idx = np.where(known, idx, len(present))
    return idx, [spell(int(v)) for v in present] + [""]


@numba.njit(cache=True, nogil=True)
def _write_rows(codes, a_row, a_bytes, a_off, b_row, b_bytes, b_off):  # pragma: no cover
    """Rows ``code,a,b`` (``b`` ends the line) written into one byte array, in row order:
    compiled, one thread (it runs beside the draw, on the second core)."""
    n = codes.shape[0]
    total = 0
    for r in range(n):
        a, b = a_row[r], b_row[r]
        total += CODE_LENGTH + 2 + a_off[a + 1] - a_off[a] + b_off[b + 1] - b_off[b]
    out = np.empty(total, dtype=np.uint8)
    p = 0
    for r in range(n):
        for j in range(CODE_LENGTH):
            out[p + j] = codes[r, j]
        out[p + CODE_LENGTH] = 44  # ","
        p += CODE_LENGTH + 1
        a = a_row[r]
        for k in range(a_off[a], a_off[a + 1]):
            out[p] = a_bytes[k]
            p += 1
        out[p] = 44
        p += 1
        b = b_row[r]
        for k in range(b_off[b], b_off[b + 1]):
            out[p] = b_bytes[k]
            p += 1
    return out


def day_number(d: date) -> int:
    """Days since 1970-01-01 (the pool's internal date unit)."""
    return d.toordinal() - date(1970, 1, 1).toordinal()
