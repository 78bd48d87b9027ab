"""HMAC-SHA256 of many short messages that share a prefix, compiled and run on every core.

Why: a province's draw gives every individual business (often most of its 2.5 M enterprises) a
keyed public reference (``serving/public_refs.py``). Through :mod:`hmac` that is a few
microseconds of Python per code — several seconds per draw, against a 3-second budget for the
whole draw. Here the padded-key states (RFC 2104's ``K ⊕ ipad`` and ``K ⊕ opad`` blocks) are
hashed once, the prefix and the SHA-256 padding are laid out once, and each message costs two or
three SHA-256 compressions (FIPS 180-4) in numba, rows spread over threads. The result is the
same bytes as :func:`hmac.digest` (tested against it); only the first 8 bytes of each MAC are
returned, as that is all a reference uses.

Arithmetic is on int64 holding 32-bit words: a sum of five words or a word shifted left by at
most 31 bits stays below 2⁶³, so no unsigned types (which numba would mix into floats) are needed.
"""

from __future__ import annotations

import hashlib

import numba
import numpy as np

_K = np.array(
    [
        0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4,
        0xAB1C5ED5, 0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE,
        0x9BDC06A7, 0xC19BF174, 0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F,
        0x4A7484AA, 0x5CB0A9DC, 0x76F988DA, 0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7,
        0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967, 0x27B70A85, 0x2E1B2138, 0x4D2C6DFC,
        0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85, 0xA2BFE8A1, 0xA81A664B,
        0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070, 0x19A4C116,
        0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
        0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7,
        0xC67178F2,
    ],
    dtype=np.int64,
)  # fmt: skip
_IV = np.array(
    [
        0x6A09E667,
        0xBB67AE85,
        0x3C6EF372,
        0xA54FF53A,
        0x510E527F,
        0x9B05688C,
        0x1F83D9AB,
        0x5BE0CD19,
    ],
    dtype=np.int64,
)
_M = 0xFFFFFFFF


@numba.njit(cache=True, inline="always")
def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M


@numba.njit(cache=True)
def _compress(state: np.ndarray, block: np.ndarray, w: np.ndarray, k: np.ndarray) -> None:
    """One SHA-256 compression of the 64-byte ``block`` into ``state`` (8 words), in place."""
    for t in range(16):
        w[t] = (
            (np.int64(block[4 * t]) << 24)
            | (np.int64(block[4 * t + 1]) << 16)
            | (np.int64(block[4 * t + 2]) << 8)
            | np.int64(block[4 * t + 3])
        )
    for t in range(16, 64):
        x, y = w[t - 15], w[t - 2]
        s0 = _rotr(x, 7) ^ _rotr(x, 18) ^ (x >> 3)
        s1 = _rotr(y, 17) ^ _rotr(y, 19) ^ (y >> 10)
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & _M
    a, b, c, d = state[0], state[1], state[2], state[3]
    e, f, g, h = state[4], state[5], state[6], state[7]
    for t in range(64):
        t1 = (h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & _M & g))) & _M
        t1 = (t1 + k[t] + w[t]) & _M
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & _M
        h, g, f, e = g, f, e, (d + t1) & _M
        d, c, b, a = c, b, a, (t1 + t2) & _M
    state[0] = (state[0] + a) & _M
    state[1] = (state[1] + b) & _M
    state[2] = (state[2] + c) & _M
    state[3] = (state[3] + d) & _M
    state[4] = (state[4] + e) & _M
    state[5] = (state[5] + f) & _M
    state[6] = (state[6] + g) & _M
    state[7] = (state[7] + h) & _M


@numba.njit(cache=True)
def _midstate(block: np.ndarray, iv: np.ndarray, k: np.ndarray) -> np.ndarray:
    state = iv.copy()
    _compress(state, block, np.empty(64, dtype=np.int64), k)
    return state


@numba.njit(cache=True, parallel=True)
def _heads(
    inner: np.ndarray,
    outer: np.ndarray,
    template: np.ndarray,
    at: int,
    units: np.ndarray,
    k: np.ndarray,
    chunks: int,
) -> tuple[np.ndarray, np.ndarray]:
    """First two words of the MAC of each row: ``template`` (prefix, slot, padding, length) with
    the row of ``units`` written at byte ``at``, hashed on from ``inner``; then the outer hash."""
    n, width = units.shape
    hi = np.empty(n, dtype=np.int64)
    lo = np.empty(n, dtype=np.int64)
    step = (n + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        message = template.copy()
        last = np.zeros(64, dtype=np.uint8)
        last[32] = 0x80
        last[62] = 0x03  # outer message: 64 + 32 bytes = 768 bits
        w = np.empty(64, dtype=np.int64)
        state = np.empty(8, dtype=np.int64)
        for r in range(chunk * step, min(n, (chunk + 1) * step)):
            for j in range(width):
                message[at + j] = units[r, j]
            state[:] = inner
            for b in range(0, len(message), 64):
                _compress(state, message[b : b + 64], w, k)
            for j in range(8):
                last[4 * j] = (state[j] >> 24) & 0xFF
                last[4 * j + 1] = (state[j] >> 16) & 0xFF
                last[4 * j + 2] = (state[j] >> 8) & 0xFF
                last[4 * j + 3] = state[j] & 0xFF
            state[:] = outer
            _compress(state, last, w, k)
            hi[r] = state[0]
            lo[r] = state[1]
    return hi, lo


def hmac_sha256_heads(key: bytes, prefix: bytes, units: np.ndarray) -> np.ndarray:
    """The first 8 bytes, as big-endian uint64, of ``HMAC-SHA256(key, prefix ‖ unit)`` for each
    row of ``units`` (an (n, width) uint8 matrix: equal-length units, e.g. credit codes)."""
    units = np.ascontiguousarray(units, dtype=np.uint8)
    if units.ndim != 2:
        raise ValueError(f"units must be a 2-D byte matrix, got shape {units.shape}")
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    block = np.frombuffer(key.ljust(64, b"\0"), dtype=np.uint8)
    inner = _midstate(block ^ np.uint8(0x36), _IV, _K)
    outer = _midstate(block ^ np.uint8(0x5C), _IV, _K)
    length = len(prefix) + units.shape[1]
    padded = -(-(length + 9) // 64) * 64
    template = np.zeros(padded, dtype=np.uint8)
    template[: len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    template[length] = 0x80
    template[-8:] = np.frombuffer(((64 + length) * 8).to_bytes(8, "big"), dtype=np.uint8)
    if not len(units):
        return np.empty(0, dtype=np.uint64)
    chunks = max(1, min(len(units), numba.get_num_threads() * 8))
    hi, lo = _heads(inner, outer, template, len(prefix), units, _K, chunks)
    return (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
