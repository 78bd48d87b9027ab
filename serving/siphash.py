"""SipHash-2-4 of many short equal-length messages, compiled and run on every core.

Why: a province's draw gives every individual business (often most of its 2.5 M enterprises) a
keyed public reference (``serving/public_refs.py``, SPEC.md §10), against a 3-second budget for
the whole draw. SipHash-2-4 (Aumasson & Bernstein, 2012) is a pseudorandom function made for
exactly this — short inputs under a 128-bit secret key — and costs about a tenth of the two
SHA-256 compressions an HMAC needs per code. It is specified in a page and published with test
vectors, which ``tests/serving/test_siphash.py`` reproduces.

All arithmetic is numba ``uint64`` (every constant typed, so nothing is promoted to float).
"""

from __future__ import annotations

import numba
import numpy as np

_U = np.uint64
_C0, _C1 = _U(0x736F6D6570736575), _U(0x646F72616E646F6D)
_C2, _C3 = _U(0x6C7967656E657261), _U(0x7465646279746573)


@numba.njit(cache=True, inline="always")
def _rotl(x, b):  # pragma: no cover - compiled
    return (x << _U(b)) | (x >> _U(64 - b))


@numba.njit(cache=True, inline="always")
def _rounds(v0, v1, v2, v3, n):  # pragma: no cover - compiled
    for _ in range(n):
        v0 += v1
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 += v3
        v3 = _rotl(v3, 16) ^ v2
        v0 += v3
        v3 = _rotl(v3, 21) ^ v0
        v2 += v1
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@numba.njit(cache=True, parallel=True)
def _rows(k0, k1, units):  # pragma: no cover - compiled
    n, width = units.shape
    out = np.empty(n, dtype=np.uint64)
    full = width // 8
    for r in numba.prange(n):
        v0, v1, v2, v3 = k0 ^ _C0, k1 ^ _C1, k0 ^ _C2, k1 ^ _C3
        for b in range(full):
            m = _U(0)
            for i in range(8):
                m |= _U(units[r, 8 * b + i]) << _U(8 * i)
            v3 ^= m
            v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 2)
            v0 ^= m
        m = _U(width & 0xFF) << _U(56)
        for i in range(width - 8 * full):
            m |= _U(units[r, 8 * full + i]) << _U(8 * i)
        v3 ^= m
        v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 2)
        v0 ^= m
        v2 ^= _U(0xFF)
        v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 4)
        out[r] = v0 ^ v1 ^ v2 ^ v3
    return out


def siphash24_rows(key: bytes, units: np.ndarray) -> np.ndarray:
    """SipHash-2-4 under the 16-byte ``key`` of each row of ``units`` (an (n, width) uint8
    matrix: equal-length messages), as uint64 — the reference implementation's 8 output bytes
    read little-endian."""
    if len(key) != 16:
        raise ValueError(f"a SipHash key has 16 bytes, got {len(key)}")
    units = np.ascontiguousarray(units, dtype=np.uint8)
    if units.ndim != 2:
        raise ValueError(f"units must be a 2-D byte matrix, got shape {units.shape}")
    k0 = _U(int.from_bytes(key[:8], "little"))
    k1 = _U(int.from_bytes(key[8:], "little"))
    return _rows(k0, k1, units)
