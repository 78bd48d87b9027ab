"""Public references: how individual businesses appear in a draw, so that "one public" publishes
no natural person's credit code and the draw stays re-runnable from the published files.

Why references and not masks: a published draw must be re-run by anyone (``riskctl draw verify
FOLDER``) and every key is computed from a unit's code, so ``92371000*********W`` cannot stand
in the published pool — nine ``*`` would make many enterprises one. Instead the desk runs the
draw itself on references: before the inputs are built, every individual business's code
(prefix ``92``) — in the pool, in inspectors' declared conflicts, in ``previous_teams`` and in
``filters.credit_codes`` — is replaced by its reference for this draw. A reference is again 18
characters of the GB 32100 alphabet with a valid check character, so the engine, the canonical
snapshots, the keys, the commitment and verification work unchanged, and pools without
individual businesses give exactly the draw they gave before (``serving/draws/SPEC.md`` §10)::

    K_d = first 16 bytes of HMAC-SHA256(key, "draws/v1/public-ref" ‖ 0x00 ‖ draw_id)
    "X" + code[1:8] + nine base-31 digits of SipHash-2-4(K_d, code) + check

``X`` is no registration authority of GB 32100-2015 or its amendments (``1``–``9``, ``A``–``H``,
``N``, ``Y``: :data:`features.credit_code.AUTHORITIES`), so a reference can never equal or be
read as a real code; ``code[1:8]`` keeps category ``2`` and the six-digit region, which masking
shows anyway. References are per draw (each draw has its own SipHash key ``K_d``: nobody can link
two draws' references of one person by the reference) and only the holder of the key — the
authority — can link a reference to a person. Why SipHash under a per-draw key and not one HMAC
per code: SipHash-2-4 is a pseudorandom function made for short inputs and costs ~1/50 of an
HMAC-SHA256 per code here (:mod:`serving.siphash`), which is the difference between a province
draw within its 3-second budget and one over it. On a collision within a draw (two codes of one
region whose nine digits agree, ~n²/2·31⁻⁹) the later code in sorted order takes the next
candidate, ``code ‖ 0x00 ‖ k`` for k = 1, 2, …

The key is configuration, never code and never published: ``RISK_REF_KEY`` (at least 32
characters; its UTF-8 bytes are the key), else ``<workdir>/keys/public_refs.key``, created on
first use with 32 random bytes (hex), mode 0600. The desk keeps every draw's mapping (reference
→ code) privately (:mod:`serving.draw_desk`), so rotating the key changes only later draws'
references.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.credit_code import ALPHABET, AUTHORITIES, WEIGHTS, check_character
from features.credit_code import is_individual_business as is_individual
from serving.draws.keys import FNV_OFFSET, FNV_PRIME
from serving.draws.pool import (
    _VALUE,
    CODE_LENGTH,
    PARALLEL_ROWS,
    PoolTable,
    _code_order,
    _other_columns,
    _scan_codes,
    _strictly_ascending,
    take_rows,
)
from serving.draws.pool import COLUMNS as POOL_COLUMNS
from serving.draws.pool import REQUIRED as POOL_REQUIRED
from serving.siphash import siphash24_rows

REF_AUTHORITY = "X"
KEY_ENV = "RISK_REF_KEY"
DRAW_KEY_PREFIX = b"draws/v1/public-ref\x00"
KEY_FILE = Path("keys") / "public_refs.key"
MAPPING = "public_refs.csv"
MIN_KEY_CHARS = 32
DIGITS = 9
_MODULUS = 31**DIGITS
_V_BITS = 45  # 31⁹ < 2⁴⁵
_WELL_FORMED_92 = re.compile(r"^92[0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}$")
_REF_SHAPE = re.compile(r"^X2[0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}$")

assert REF_AUTHORITY not in AUTHORITIES  # a reference can never be a real code

_ALPHABET_BYTES = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
_ALPHABET_VALUE = np.full(256, -1, dtype=np.int64)
_ALPHABET_VALUE[_ALPHABET_BYTES] = np.arange(31)
_X_VALUE = ALPHABET.index(REF_AUTHORITY)


def reference_key(workdir: Path) -> bytes:
    """The HMAC key of public references: ``RISK_REF_KEY``, else the workspace's key file.

    The file is created on first use (32 random bytes as hex, mode 0600) without ever being
    visible half-written: it is written under a temporary name and hard-linked into place, so
    two workers starting together agree on one key.
    """
    configured = os.environ.get(KEY_ENV)
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise ValueError(
                f"{KEY_ENV} has {len(configured)} characters; use at least {MIN_KEY_CHARS} "
                "(e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return configured.encode("utf-8")
    path = Path(workdir) / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process was first: use its key
            pass
        finally:
            tmp.unlink()
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"{path}: the key has {len(key)} characters; expected {MIN_KEY_CHARS}+")
    return key.encode("ascii")


def draw_key(key: bytes, draw_id: str) -> bytes:
    """The draw's own 16-byte SipHash key: the first 16 bytes of HMAC-SHA256(key, prefix ‖
    draw id), so that one draw's references say nothing about another's."""
    return hmac.digest(key, DRAW_KEY_PREFIX + draw_id.encode("utf-8"), "sha256")[:16]


def _candidate_heads(key: bytes, draw_id: str, codes: list[str]) -> np.ndarray:
    """SipHash of each code (its candidate 0) under the draw's key, compiled, on every core."""
    units = np.frombuffer("".join(codes).encode("ascii"), dtype=np.uint8).reshape(-1, 18)
    return siphash24_rows(draw_key(key, draw_id), units)


def _message(code: str, counter: int) -> bytes:
    return (code if counter == 0 else f"{code}\x00{counter}").encode("utf-8")


def derive(key: bytes, draw_id: str, code: str, counter: int = 0) -> str:
    """The reference candidate ``counter`` of one individual business (SPEC.md §10).

    ``v`` = SipHash-2-4 of the code (and counter) under the draw's key, modulo 31⁹, written as
    nine base-31 digits (most significant first) in the GB 32100 alphabet.
    """
    if not _WELL_FORMED_92.match(code):
        raise ValueError(f"{code!r} is not an individual business's credit code")
    message = np.frombuffer(_message(code, counter), dtype=np.uint8).reshape(1, -1)
    v = int(siphash24_rows(draw_key(key, draw_id), message)[0]) % _MODULUS
    digits = []
    for _ in range(DIGITS):
        v, d = divmod(v, 31)
        digits.append(ALPHABET[d])
    body = REF_AUTHORITY + code[1:8] + "".join(reversed(digits))
    return body + check_character(body)


def _derive_many(key: bytes, draw_id: str, codes: np.ndarray | list[str]) -> np.ndarray:
    """:func:`derive` (candidate 0) of many codes at once, as a numpy array of str."""
    codes = np.asarray(codes, dtype=object)
    if not len(codes):
        return np.array([], dtype=object)
    v = _candidate_heads(key, draw_id, codes.tolist()) % np.uint64(_MODULUS)
    units = np.frombuffer("".join(codes).encode("ascii"), dtype=np.uint8).reshape(-1, 18)
    return _ref_matrix(units, v).view("S18").ravel().astype(str).astype(object)


def _ref_matrix(units: np.ndarray, v: np.ndarray) -> np.ndarray:
    """References as an (n, 18) byte matrix: ``X``, the code's category and region, the nine
    base-31 digits of ``v`` (most significant first), the check character."""
    regions, rank = np.unique(_region_numbers(np.ascontiguousarray(units)), return_inverse=True)
    return _ref_rows(regions, rank, v)[0]


def _ref_rows(
    regions: np.ndarray, rank: np.ndarray, v: np.ndarray, hashed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """References (:func:`_ref_matrix`) of individual businesses (category ``2``) in region
    ``regions[rank]`` with digits ``v``, and when ``hashed`` their FNV-1a-64 hashes (the pool's
    code hash, SPEC.md §2), in one compiled pass on every core.

    The first eight characters (``X2`` and the region) are the same for a whole region: they,
    their part of the check sum and the hash state after them are worked out once per region.
    """
    heads = np.empty((len(regions), 8), dtype=np.uint8)
    heads[:, 0] = ord(REF_AUTHORITY)
    heads[:, 1] = ord("2")
    heads[:, 2:] = 48 + np.asarray(regions)[:, None] // 10 ** np.arange(5, -1, -1) % 10
    weights = np.asarray(WEIGHTS, dtype=np.int64)
    head_sum = _ALPHABET_VALUE[heads] @ weights[:8]
    head_fnv = np.full(len(regions), FNV_OFFSET, dtype=np.uint64)
    for j in range(8):
        head_fnv = (head_fnv ^ heads[:, j].astype(np.uint64)) * np.uint64(FNV_PRIME)
    out = np.empty((len(v), 18), dtype=np.uint8)
    fnv = np.empty(len(v) if hashed else 0, dtype=np.uint64)
    _fill_refs(
        np.ascontiguousarray(rank, dtype=np.intp),
        np.ascontiguousarray(v).astype(np.int64),  # < 31⁹ < 2⁶³
        heads,
        head_sum,
        head_fnv,
        out,
        fnv,
        _ALPHABET_BYTES,
        weights,
    )
    return out, fnv


@numba.njit(cache=True, parallel=True)
def _fill_refs(rank, v, heads, head_sum, head_fnv, out, fnv, alphabet, weights):  # pragma: no cover
    prime = np.uint64(FNV_PRIME)
    for r in numba.prange(len(v)):
        g = rank[r]
        for j in range(8):
            out[r, j] = heads[g, j]
        total = head_sum[g]
        hi, lo = v[r] // 28629151, v[r] % 28629151  # 31⁵: two independent chains of digits
        for j in range(16, 11, -1):
            d = lo % 31
            lo //= 31
            out[r, j] = alphabet[d]
            total += d * weights[j]
        for j in range(11, 7, -1):
            d = hi % 31
            hi //= 31
            out[r, j] = alphabet[d]
            total += d * weights[j]
        out[r, 17] = alphabet[(31 - total % 31) % 31]
        if len(fnv):
            f = head_fnv[g]
            for j in range(8, 18):
                f = (f ^ np.uint64(out[r, j])) * prime
            fnv[r] = f


def _code_matrix(codes: pa.Array) -> np.ndarray | None:
    """The codes as an (n, 18) byte matrix without copying, or None unless every one is 18
    ASCII bytes (the pool's own validation then names what is wrong)."""
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    codes = codes.cast(pa.large_string())
    if codes.null_count or not len(codes):
        return None
    if not pc.all(pc.equal(pc.binary_length(codes), 18)).as_py():
        return None
    offsets = np.frombuffer(codes.buffers()[1], dtype=np.int64)[codes.offset :]
    data = np.frombuffer(codes.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[0] + 18 * len(codes)].reshape(-1, 18)


def _strings(matrix: np.ndarray) -> pa.LargeStringArray:
    """An (n, 18) byte matrix as Arrow strings (one buffer, no per-row objects)."""
    n = len(matrix)
    offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int64)
    data = np.ascontiguousarray(matrix).tobytes()
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _well_formed_rows(units: np.ndarray) -> np.ndarray:
    """Rows of an 18-byte matrix that are ``92``, six digits, ten alphabet characters."""
    return _well_formed(np.ascontiguousarray(units), _ALPHABET_VALUE)


@numba.njit(cache=True, parallel=True)
def _well_formed(units, value):  # pragma: no cover - compiled
    ok = np.empty(len(units), dtype=np.bool_)
    for r in numba.prange(len(units)):
        good = units[r, 0] == 57 and units[r, 1] == 50  # "9", "2"
        for j in range(2, 8):
            good = good and 48 <= units[r, j] <= 57
        for j in range(8, 18):
            good = good and value[units[r, j]] >= 0
        ok[r] = good
    return ok


class _Fast(NamedTuple):
    """Many rows' references, and the rows in the order of their references."""

    refs: np.ndarray  # (n, 18) uint8, row by row
    order: np.ndarray  # the rows in the order of their references
    key: np.ndarray  # region rank · 2⁴⁵ + digits of ``order``'s rows, ascending
    regions: np.ndarray  # the region number of each rank


def _fast_refs(key: bytes, draw_id: str, units: np.ndarray) -> _Fast | None:
    """References of the rows of ``units`` (individual businesses, repeats allowed) and their
    order, or None when two distinct codes share one (then :func:`_assign_arrays` applies the
    exact rule).

    A reference is ``X2``, the region and the digits ``v``, so its byte order is the order of
    (region, ``v``): one uint64 per row (the region's rank above ``v``'s 45 bits) sorts them,
    shows which rows share a reference, and is all :func:`_sorted_refs` needs to write them in
    order. Only the few with an equal neighbour (the same code named twice, or one chance in
    31⁹ per pair) are compared in Python.
    """
    v = siphash24_rows(draw_key(key, draw_id), units) % np.uint64(_MODULUS)
    present = np.zeros(10**6, dtype=bool)
    region = _region_numbers(np.ascontiguousarray(units))
    present[region] = True
    if int(present.sum()) > 1 << (64 - _V_BITS):  # never in practice: no room for the ranks
        return None
    ranks = (np.cumsum(present, dtype=np.uint64) - np.uint64(1))[region]
    sort_key = (ranks << np.uint64(_V_BITS)) | v
    order = _argsort(sort_key)
    ranked = sort_key[order]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])
    if len(tied):
        rows = order[np.union1d(tied, tied + 1)]
        codes_at: dict[int, bytes] = {}
        for k, unit in zip(sort_key[rows].tolist(), units[rows], strict=True):
            code = unit.tobytes()
            if codes_at.setdefault(k, code) != code:
                return None  # two different codes, one reference
    regions = np.flatnonzero(present)
    return _Fast(_ref_rows(regions, ranks, v)[0], order, ranked, regions)


def _sorted_refs(keys: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """References and their hashes from sort keys (:class:`_Fast`), in the keys' order:
    sequential reads, where gathering the references row by row would read at random."""
    rank = keys >> np.uint64(_V_BITS)
    return _ref_rows(regions, rank, keys & np.uint64((1 << _V_BITS) - 1), hashed=True)


def _argsort(key: np.ndarray) -> np.ndarray:
    """``np.argsort`` of uint64 keys (ties in any order), several times faster: one vectorised
    ``np.sort`` of the keys' top bits with the row number packed below them; the rare runs
    whose top bits tie are then ordered on the full keys."""
    n = len(key)
    if n < 2:
        return np.arange(n, dtype=np.intp)
    bits = (n - 1).bit_length()
    drop = np.uint64(max(0, int(key.max()).bit_length() - (64 - bits)))
    packed = ((key >> drop) << np.uint64(bits)) | np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64((1 << bits) - 1)).astype(np.intp)
    top = packed >> np.uint64(bits)
    tied = top[1:] == top[:-1]
    if drop and tied.any():
        at = np.zeros(n, dtype=bool)
        at[1:] |= tied
        at[:-1] |= tied
        positions = np.flatnonzero(at)
        sub = order[positions]
        order[positions] = sub[np.lexsort((key[sub], top[positions]))]
    return order


@numba.njit(cache=True, parallel=True)
def _region_numbers(units):  # pragma: no cover - compiled
    out = np.empty(len(units), dtype=np.int64)
    for r in numba.prange(len(units)):
        x = 0
        for j in range(2, 8):
            x = x * 10 + units[r, j] - 48
        out[r] = x
    return out


def _check_well_formed(codes: np.ndarray) -> None:
    """Refuse, naming the first, any code that starts with 92 but is not a well-formed code."""
    ok = pc.match_substring_regex(pa.array(codes, type=pa.string()), _WELL_FORMED_92.pattern)
    if not pc.all(ok).as_py():
        bad = codes[np.flatnonzero(~ok.to_numpy(zero_copy_only=False))[0]]
        raise ValueError(f"{bad!r} starts with 92 but is not a well-formed credit code")


def _assign_arrays(key: bytes, draw_id: str, codes: np.ndarray) -> np.ndarray:
    """The reference of each of ``codes`` (individual businesses, repeats allowed), row by row.

    The usual case — no two distinct codes share a reference — costs one compiled pass and two
    hash counts; on a collision the exact rule of :func:`assign` (sorted order, next candidate)
    is applied code by code.
    """
    codes = np.asarray(codes, dtype=object)
    if not len(codes):
        return np.array([], dtype=object)
    _check_well_formed(codes)
    refs = _derive_many(key, draw_id, codes)
    if len(pd.unique(refs)) == len(pd.unique(codes)):
        return refs
    distinct = sorted(set(codes.tolist()))
    first = dict(zip(distinct, _derive_many(key, draw_id, distinct).tolist(), strict=True))
    out: dict[str, str] = {}
    taken: set[str] = set()
    for code in distinct:
        ref, k = first[code], 0
        while ref in taken:
            k += 1
            ref = derive(key, draw_id, code, k)
        taken.add(ref)
        out[code] = ref
    return np.array([out[c] for c in codes.tolist()], dtype=object)


def assign(key: bytes, draw_id: str, codes: Iterable[str]) -> dict[str, str]:
    """Code → reference for every distinct individual business in ``codes`` (others ignored).

    Codes are taken in sorted order; each gets its first candidate no earlier code took, so the
    mapping is one-to-one and depends only on the key, the draw id and the set of codes.
    """
    wanted = np.array(sorted({c for c in codes if is_individual(c)}), dtype=object)
    return dict(zip(wanted.tolist(), _assign_arrays(key, draw_id, wanted).tolist(), strict=True))


def is_public_ref(value: str) -> bool:
    """Shaped like a public reference (``X2``, region, nine digits) with a valid check."""
    return bool(_REF_SHAPE.match(value)) and check_character(value[:17]) == value[17]


def _conflict_items(value: object) -> list[str]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        return [v for v in value.split(";") if v]
    try:
        return [v for v in value if isinstance(v, str)]  # type: ignore[union-attr]
    except TypeError:
        return []  # the engine's validation names the bad value


class PublicRefs:
    """One draw's references: each individual business's code and its reference, as parallel
    Arrow arrays (a province has millions; dictionaries are built only when asked for).
    A code may appear more than once (a pool row and a conflict naming it), always with the
    same reference."""

    def __init__(
        self,
        by_code: Mapping[str, str] | None = None,
        *,
        codes: pa.Array | np.ndarray | None = None,
        refs: pa.Array | np.ndarray | None = None,
    ) -> None:
        if by_code is not None:
            codes, refs = list(by_code), list(by_code.values())
        self.codes = pa.array([] if codes is None else codes, pa.large_string())
        self.refs = pa.array([] if refs is None else refs, pa.large_string())

    def __len__(self) -> int:
        return len(self.codes)

    @functools.cached_property
    def by_code(self) -> dict[str, str]:
        return dict(zip(self.codes.to_pylist(), self.refs.to_pylist(), strict=True))

    @functools.cached_property
    def by_ref(self) -> dict[str, str]:
        return dict(zip(self.refs.to_pylist(), self.codes.to_pylist(), strict=True))

    def ref(self, code: str) -> str:
        """The reference of ``code``, or the code itself (not an individual business)."""
        return self.by_code.get(code, code)

    def code(self, ref: str) -> str:
        """The code a reference stands for, or ``ref`` itself when it is not one of ours."""
        return self.by_ref.get(ref, ref)

    def resolve(self, units: Iterable[str]) -> dict[str, str]:
        """Reference → code for those of ``units`` that are references (one hashed probe of
        the arrays: cheaper than building :attr:`by_ref` for a few thousand targets)."""
        wanted = pa.array(list(units), pa.large_string())
        hit = pc.is_in(self.refs, value_set=wanted)
        refs, codes = self.refs.filter(hit), self.codes.filter(hit)
        return dict(zip(refs.to_pylist(), codes.to_pylist(), strict=True))

    def pairs(self) -> pa.Table:
        """Distinct (public_ref, credit_code) pairs sorted by reference."""
        table = pa.table({"public_ref": self.refs, "credit_code": self.codes})
        table = table.take(pc.sort_indices(table, [("public_ref", "ascending")]))
        if len(table) > 1:
            refs = table["public_ref"]
            new = pc.not_equal(refs.slice(1), refs.slice(0, len(table) - 1))
            table = table.filter(pa.concat_arrays([pa.array([True]), *new.chunks]))
        return table.cast(pa.schema([("public_ref", pa.string()), ("credit_code", pa.string())]))


@dataclass(frozen=True)
class Referenced:
    """A draw's inputs with every individual business replaced by its reference.

    ``pool`` is the validated table, exactly what ``PoolTable.from_frame`` gives for the
    referenced frame, built from the code bytes read once here. When that validation would
    refuse the pool (or two codes collided, a case left to the plain path), ``pool`` is the
    referenced DataFrame, so that ``DrawInputs`` refuses it with the message it always gave.
    """

    pool: PoolTable | pd.DataFrame
    inspectors: pd.DataFrame
    previous_teams: dict[str, tuple[str, ...]]
    credit_codes: tuple[str, ...] | None  # ``filters.credit_codes`` (None when not given)
    refs: PublicRefs


def pseudonymise(
    key: bytes,
    draw_id: str,
    pool: pd.DataFrame,
    inspectors: pd.DataFrame,
    previous_teams: Mapping[str, tuple[str, ...]],
    credit_codes: Iterable[str] | None = None,
) -> Referenced:
    """Replace individual businesses' codes by their references wherever a draw's inputs name
    them. Refuses (``ValueError``) any code that already starts with ``X``: references are the
    only such units a pool may hold.

    The pool comes back validated (a ``PoolTable``, see :class:`Referenced`): its codes are read
    once, here, instead of again by ``DrawInputs``.
    """
    conflicts = (
        [_conflict_items(v) for v in inspectors["conflicts"].tolist()]
        if "conflicts" in inspectors.columns
        else []
    )
    listed = list(credit_codes) if credit_codes is not None else None
    others = [c for items in conflicts for c in items] + list(previous_teams) + (listed or [])
    arrow_codes = pa.array(pool["credit_code"])
    matrix = _code_matrix(arrow_codes)
    reserved = [c for c in others if c.startswith(REF_AUTHORITY)]
    if matrix is not None:
        rows = np.flatnonzero(matrix[:, 0] == ord(REF_AUTHORITY))
        reserved = [matrix[r].tobytes().decode("ascii") for r in rows[:1]] + reserved
    else:
        codes = pool["credit_code"].astype(str)
        reserved = codes[codes.str.startswith(REF_AUTHORITY)].tolist()[:1] + reserved
    if reserved:
        raise ValueError(
            f"credit code {reserved[0]!r} starts with {REF_AUTHORITY!r}, which no registration "
            "authority uses and public references reserve"
        )
    extra = np.array([c for c in others if c.startswith("92")], dtype=object)
    table = None
    if matrix is not None and (len(extra) == 0 or all(len(c) == 18 for c in extra)):
        found = np.flatnonzero((matrix[:, 0] == ord("9")) & (matrix[:, 1] == ord("2")))
        units = np.concatenate(
            [
                np.take(matrix, found, axis=0),
                np.frombuffer("".join(extra).encode(), np.uint8).reshape(-1, 18),
            ]
        )
        well_formed = _well_formed_rows(units)
        if not well_formed.all():
            bad = units[~well_formed][0].tobytes().decode("ascii", "replace")
            raise ValueError(f"{bad!r} starts with 92 but is not a well-formed credit code")
        nothing = _Fast(units, np.empty(0, np.intp), *[np.empty(0, np.uint64)] * 2)
        with _OtherColumns(pool, arrow_codes.type) as other_columns:  # on the second core
            fast = _fast_refs(key, draw_id, units) if len(units) else nothing
            if fast is not None and other_columns.usable:
                table = _referenced_table(matrix, found, fast, other_columns)
    else:
        fast = None
    if fast is not None:
        n_pool = len(found)
        refs = PublicRefs(codes=_strings(units), refs=_strings(fast.refs))
        every = fast.refs[n_pool:].view("S18").ravel().astype(str)
    else:  # malformed rows, or a collision: the exact rule on Python strings
        codes = pool["credit_code"].astype(str)
        is_92 = codes.str.startswith("92").to_numpy(dtype=bool)
        n_pool = int(is_92.sum())
        unit_codes = np.concatenate([codes.to_numpy(dtype=object)[is_92], extra])
        assigned = _assign_arrays(key, draw_id, unit_codes)
        refs = PublicRefs(codes=unit_codes, refs=assigned)
        every = assigned[n_pool:]
        if n_pool:
            column = codes.to_numpy(dtype=object, copy=True)
            column[is_92] = assigned[:n_pool]
            pool = pool.copy()
            pool["credit_code"] = column
    if table is None and fast is not None and n_pool:  # refused below by DrawInputs
        replaced = matrix.copy()
        replaced[found] = fast.refs[:n_pool]
        pool = pool.copy()
        pool["credit_code"] = pd.Series(_strings(replaced), index=pool.index, dtype="str")
    if not len(refs):
        return Referenced(
            table if table is not None else pool,
            inspectors,
            dict(previous_teams),
            tuple(listed) if listed else None,
            refs,
        )
    small = dict(zip(extra.tolist(), every.tolist(), strict=True))
    if conflicts:
        inspectors = inspectors.copy()
        original = inspectors["conflicts"].tolist()
        inspectors["conflicts"] = [
            ";".join(small.get(c, c) for c in items)
            if isinstance(v, str)
            else (v if not items else [small.get(c, c) for c in items])
            for v, items in zip(original, conflicts, strict=True)
        ]
    return Referenced(
        pool=table if table is not None else pool,
        inspectors=inspectors,
        previous_teams={small.get(c, c): tuple(t) for c, t in previous_teams.items()},
        credit_codes=tuple(small.get(c, c) for c in listed) if listed else None,
        refs=refs,
    )


class _OtherColumns:
    """The pool's columns but the code, encoded as ``PoolTable.from_frame`` encodes them: in a
    helper thread for a large pool (numpy and Arrow release the GIL) while the codes are
    referenced and sorted. ``usable`` is False for a frame from_frame refuses on its shape
    (columns, no rows, codes that are not text); :meth:`result` is None when the encoding
    refuses a column."""

    def __init__(self, pool: pd.DataFrame, code_type: pa.DataType) -> None:
        if pa.types.is_dictionary(code_type):
            code_type = code_type.value_type
        columns = list(pool.columns)
        self.pool = pool
        self.usable = (
            len(pool) > 0
            and all(c in columns for c in POOL_REQUIRED)
            and all(c in POOL_COLUMNS for c in columns)
            and (pa.types.is_string(code_type) or pa.types.is_large_string(code_type))
        )
        self.helper: ThreadPoolExecutor | None = None
        self.pending: Future | None = None

    def __enter__(self) -> _OtherColumns:
        if self.usable and len(self.pool) >= PARALLEL_ROWS:
            self.helper = ThreadPoolExecutor(max_workers=1)
            self.pending = self.helper.submit(_other_columns, self.pool)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.helper is not None:
            self.helper.shutdown(wait=True)

    def result(self) -> dict | None:
        try:  # a refusal is the engine's to name: DrawInputs validates the frame again
            return self.pending.result() if self.pending else _other_columns(self.pool)
        except Exception:
            return None


def _referenced_table(
    matrix: np.ndarray, found: np.ndarray, fast: _Fast, other_columns: _OtherColumns
) -> PoolTable | None:
    """What ``PoolTable.from_frame`` gives for the pool whose rows ``found`` take the references
    ``fast.refs`` (in that order), or None when it would refuse that pool.

    Why not from_frame: it would parse, check and sort all the codes again. Here only the codes
    that stay are checked and sorted; the references are valid by construction and already in
    order (``fast.order``). No real code starts with ``X`` (refused above) and only ``Y`` sorts
    after it, so the sorted pool is: kept codes before ``Y``, the references, the ``Y`` codes.
    """
    n_pool = len(found)
    stays = np.ones(len(matrix), dtype=bool)
    stays[found] = False
    rest = np.flatnonzero(stays)
    kept = np.take(matrix, rest, axis=0)
    head, tail, fnv, problem = _scan_codes(kept, _VALUE, np.asarray(WEIGHTS, dtype=np.int64))
    if problem.any():
        return None
    if _strictly_ascending(head, tail):
        order = np.arange(len(kept))
    else:
        order, tied = _code_order(head, tail)
        kept = np.take(kept, order, axis=0)
        flat = kept.view(f"S{CODE_LENGTH}").ravel()
        if len(tied) and (flat[tied + 1] == flat[tied]).any():
            return None  # a code named twice
    in_pool = fast.order < n_pool  # not a code only an inspector or a filter names
    keys = fast.key[in_pool]
    if (keys[1:] == keys[:-1]).any():
        return None  # an individual business named twice: one reference twice
    refs, ref_hash = _sorted_refs(keys, fast.regions)
    ranked = fast.order[in_pool]
    before = len(kept) - int(np.count_nonzero(kept[:, 0] == ord("Y")))
    code_bytes = np.concatenate([kept[:before], refs, kept[before:]])
    code_hash = np.concatenate(
        [np.take(fnv, order[:before]), ref_hash, np.take(fnv, order[before:])]
    )
    rows = np.concatenate(
        [np.take(rest, order[:before]), np.take(found, ranked), np.take(rest, order[before:])]
    )
    others = other_columns.result()
    if others is None:
        return None
    if np.any(rows[1:] < rows[:-1]):  # else the pool was given in this order
        others = take_rows(others, rows)
    return PoolTable.from_arrays(code_bytes, code_hash, others)


def write_mapping(path: Path, refs: PublicRefs) -> None:
    """The mapping as CSV (``public_ref,credit_code``, sorted by reference), readable by its
    owner only (0600): it links references to persons."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file existed
    with os.fdopen(fd, "wb") as out:
        pacsv.write_csv(refs.pairs(), out, pacsv.WriteOptions(quoting_style="none"))


def read_mapping(path: Path) -> dict[str, str]:
    """Reference → code, as :func:`write_mapping` wrote it (empty when there is no file)."""
    if not Path(path).is_file():
        return {}
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={"public_ref": pa.string(), "credit_code": pa.string()}
        ),
    )
    return dict(zip(table["public_ref"].to_pylist(), table["credit_code"].to_pylist(), strict=True))


def individual_codes_in(inputs) -> list[str]:
    """Individual businesses' codes a draw's inputs (``DrawInputs``) would publish — in the pool
    (the first few), the inspectors' conflicts, ``previous_teams`` and the filters; empty for a
    draw made on references (the guard before publishing)."""
    pool = inputs.pool
    b = pool.code_bytes
    rows = np.flatnonzero((b[:, 0] == ord("9")) & (b[:, 1] == ord("2"))) if len(pool) else []
    found = pool.code_list(np.asarray(rows[:5], dtype=np.intp)) if len(rows) else []
    found += [c for cs in inputs.inspectors.conflicts for c in cs if is_individual(c)]
    found += [c for c in inputs.previous_teams if is_individual(c)]
    found += [c for c in inputs.policy.filters.credit_codes or () if is_individual(c)]
    return sorted(set(found))
