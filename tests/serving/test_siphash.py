"""The compiled SipHash-2-4 reproduces the published test vectors of its authors (key 00..0f,
message i = bytes 00..i-1; SipHash reference implementation, ``vectors.h``) at every length a
block boundary can matter for, and a plain-Python reading of the algorithm on random rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.siphash import siphash24_rows

KEY = bytes(range(16))
# message length → the 8 output bytes, as published
PUBLISHED = {
    0: "310e0edd47db6f72",
    1: "fd67dc93c539f874",
    7: "37d1018bf50002ab",
    8: "6224939a79f5f593",
    15: "e545be4961ca29a1",
    16: "db9bc2577fcc2a3f",
    17: "9447be2cf5e99a69",
    18: "9cd38d96f0b3c14b",
    19: "bd6179a71dc96dbb",
    23: "c8ce5ccd8c030ca8",
    24: "94af49f6c650adb8",
    63: "724506eb4c328a95",
}
MASK = (1 << 64) - 1


def plain_siphash24(key: bytes, message: bytes) -> int:
    """SipHash-2-4 as the paper writes it, on Python ints."""

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & MASK

    def rounds(v: list[int], n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & MASK
            v[1] = rotl(v[1], 13) ^ v[0]
            v[0] = rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & MASK
            v[3] = rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & MASK
            v[3] = rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & MASK
            v[1] = rotl(v[1], 17) ^ v[2]
            v[2] = rotl(v[2], 32)

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D]
    v += [k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    tail = len(message) % 8
    words = [message[i : i + 8] for i in range(0, len(message) - tail, 8)]
    words.append(message[len(message) - tail :] + b"\0" * (7 - tail) + bytes([len(message) % 256]))
    for word in words:
        m = int.from_bytes(word, "little")
        v[3] ^= m
        rounds(v, 2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(v, 4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


@pytest.mark.parametrize(("length", "expected"), sorted(PUBLISHED.items()))
def test_the_published_vectors(length: int, expected: str) -> None:
    row = np.arange(length, dtype=np.uint8).reshape(1, length)
    assert int(siphash24_rows(KEY, row)[0]).to_bytes(8, "little").hex() == expected
    assert plain_siphash24(KEY, bytes(range(length))).to_bytes(8, "little").hex() == expected


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(1, 40), st.integers(0, 30), st.randoms())
def test_many_rows_at_once_agree_with_one_at_a_time(key, rows, width, rnd) -> None:
    units = np.array(
        [[rnd.randrange(256) for _ in range(width)] for _ in range(rows)], dtype=np.uint8
    ).reshape(rows, width)
    got = siphash24_rows(key, units)
    assert got.tolist() == [plain_siphash24(key, bytes(u)) for u in units]


def test_bad_keys_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes, got 15"):
        siphash24_rows(bytes(15), np.zeros((1, 18), dtype=np.uint8))
    with pytest.raises(ValueError, match="2-D byte matrix"):
        siphash24_rows(KEY, np.zeros(18, dtype=np.uint8))
    assert siphash24_rows(KEY, np.empty((0, 18), dtype=np.uint8)).size == 0
