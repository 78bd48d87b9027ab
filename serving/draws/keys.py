"""Selection keys: the only source of randomness in a draw.

Why hash-based keys and not a PRNG stream: a key depends only on (seed, salt, credit code), never
on row order, pool size or library version, so a third party can recompute any enterprise's key
from the published seed with a few lines of code in any language (SPEC.md §2). Sorting a cell by
key and taking the ``n`` smallest is a uniform sample without replacement (SRSWOR) of size ``n``.

Everything is unsigned 64-bit arithmetic modulo 2**64. Vectorised paths use numpy ``uint64``
(wrap-around multiplication is exact); the scalar paths use Python ints masked to 64 bits and
are the reference the vectorised ones are tested against.
"""

from __future__ import annotations

import hashlib

import numba
import numpy as np

MASK64 = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

SEED_KEY_PREFIX = b"draws/v1/seed-key\x00"
SEED_HASH_PREFIX = b"draws/v1/seed-commitment\x00"

_U = np.uint64


def seed_hash(seed: str) -> str:
    """Hex SHA-256 that commits to the seed (published before the draw; the seed after).

    Domain-separated from :func:`seed_key`, so publishing this hash reveals nothing of the keys.
    """
    return hashlib.sha256(SEED_HASH_PREFIX + seed.encode("utf-8")).hexdigest()


def seed_key(seed: str) -> int:
    """64-bit seed key: the first 8 bytes (big-endian) of SHA-256(prefix + UTF-8 seed)."""
    return int.from_bytes(
        hashlib.sha256(SEED_KEY_PREFIX + seed.encode("utf-8")).digest()[:8], "big"
    )


def fnv1a64(data: bytes, start: int = FNV_OFFSET) -> int:
    """FNV-1a, 64-bit, over bytes (``start`` continues a hash of a prefix)."""
    h = start
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK64
    return h


def mix64(x: int) -> int:
    """SplitMix64 output function (Steele, Lea & Flood 2014) on one Python int."""
    z = (x + GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def salt_key(skey: int, salt: str) -> int:
    """Per-salt key: mix64(seed_key XOR FNV-1a-64(UTF-8 salt))."""
    return mix64(skey ^ fnv1a64(salt.encode("utf-8")))


def unit_key(skey: int, salt: str, unit: str) -> int:
    """Key of one unit (credit code or inspector id) under a salt: the scalar reference."""
    return mix64(salt_key(skey, salt) ^ fnv1a64(unit.encode("utf-8")))


def fnv1a64_rows(matrix: np.ndarray, start: np.ndarray | int = FNV_OFFSET) -> np.ndarray:
    """FNV-1a-64 of each row of a ``(n, width)`` uint8 matrix (fixed-width byte strings)."""
    h = np.empty(matrix.shape[0], dtype=_U)
    h[...] = start
    prime = _U(FNV_PRIME)
    for j in range(matrix.shape[1]):
        h ^= matrix[:, j]
        h *= prime
    return h


def fnv1a64_strings(values: list[str] | tuple[str, ...]) -> np.ndarray:
    """FNV-1a-64 of each string's UTF-8 bytes (variable length; small arrays only)."""
    return np.fromiter((fnv1a64(v.encode("utf-8")) for v in values), dtype=_U, count=len(values))


def mix64_array(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64 output function, vectorised over a uint64 array (into ``out`` if given)."""
    z = np.add(x, _U(GOLDEN), out=out)
    z ^= z >> _U(30)
    z *= _U(MIX1)
    z ^= z >> _U(27)
    z *= _U(MIX2)
    z ^= z >> _U(31)
    return z


COMPILED_FROM = 4096  # below this, numpy is as fast and needs no thread start


def unit_keys(salt_keys: np.ndarray | int, unit_hashes: np.ndarray) -> np.ndarray:
    """Keys of many units: mix64(salt key XOR FNV-1a-64(unit)), salt keys broadcast.

    Compiled over both cores for the shapes a draw uses (a vector of units; targets ×
    inspectors), one pass without temporaries; other shapes take :func:`mix64_array`.
    """
    salts = np.asarray(salt_keys, dtype=_U)
    hashes = np.asarray(unit_hashes, dtype=_U)
    shape = np.broadcast_shapes(salts.shape, hashes.shape)
    salts, hashes = np.broadcast_to(salts, shape), np.broadcast_to(hashes, shape)  # read-only views
    if salts.ndim in (1, 2) and salts.size >= COMPILED_FROM:
        out = np.empty(salts.shape, dtype=_U)
        if salts.ndim == 1:
            _unit_keys_1d(salts, hashes, out)
        else:
            _unit_keys_2d(salts, hashes, out)
        return out
    with np.errstate(over="ignore"):
        z = np.bitwise_xor(salts, hashes)
        return mix64_array(z, out=z)


@numba.njit(cache=True, inline="always")
def _mix(x):  # pragma: no cover - compiled
    z = x + _U(GOLDEN)
    z = (z ^ (z >> _U(30))) * _U(MIX1)
    z = (z ^ (z >> _U(27))) * _U(MIX2)
    return z ^ (z >> _U(31))


@numba.njit(cache=True, parallel=True)
def _unit_keys_1d(salts, hashes, out):  # pragma: no cover - compiled
    for i in numba.prange(len(out)):
        out[i] = _mix(salts[i] ^ hashes[i])


@numba.njit(cache=True, parallel=True)
def _unit_keys_2d(salts, hashes, out):  # pragma: no cover - compiled
    for i in numba.prange(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = _mix(salts[i, j] ^ hashes[i, j])


def smallest_keys(salt_keys: np.ndarray, unit_hashes: np.ndarray, width: int) -> np.ndarray:
    """For each salt key, the positions of the ``width`` units with the smallest keys
    (:func:`unit_keys`), in (key, position) order: row ``t`` is the first ``width`` of
    ``np.lexsort((positions, unit_keys(salt_keys[t], unit_hashes)))``.

    Why compiled: team assignment ranks a group's inspectors for every target (27,000 targets ×
    hundreds of inspectors in a province); keeping each target's few smallest keys in order
    while they are computed, on both cores, avoids a targets × inspectors key matrix.
    """
    salts = np.ascontiguousarray(salt_keys, dtype=_U)
    hashes = np.ascontiguousarray(unit_hashes, dtype=_U)
    if salts.ndim != 1 or hashes.ndim != 1:
        raise ValueError("salt keys and unit hashes must be vectors")
    if not 0 <= width <= len(hashes):
        raise ValueError(f"width {width} is not between 0 and the {len(hashes)} units")
    return _smallest_keys(salts, hashes, width)


@numba.njit(cache=True, parallel=True)
def _smallest_keys(salts, hashes, width):  # pragma: no cover - compiled
    out = np.empty((len(salts), width), dtype=np.int64)
    for t in numba.prange(len(salts)):
        best_k = np.empty(width, dtype=np.uint64)
        best_i = np.empty(width, dtype=np.int64)
        filled = 0
        for j in range(len(hashes)):
            k = _mix(salts[t] ^ hashes[j])
            if filled == width and (width == 0 or k >= best_k[width - 1]):
                continue  # on equal keys the earlier position stays ahead
            p = filled if filled < width else width - 1
            while p > 0 and best_k[p - 1] > k:
                best_k[p] = best_k[p - 1]
                best_i[p] = best_i[p - 1]
                p -= 1
            best_k[p] = k
            best_i[p] = j
            if filled < width:
                filled += 1
        out[t, :] = best_i
    return out
