"""The compiled HMAC-SHA256 gives exactly the bytes of Python's :mod:`hmac`."""

from __future__ import annotations

import hmac

import numpy as np
import pytest

from serving.hmac_batch import hmac_sha256_heads


def expected(key: bytes, prefix: bytes, units: np.ndarray) -> np.ndarray:
    return np.array(
        [
            int.from_bytes(hmac.digest(key, prefix + u.tobytes(), "sha256")[:8], "big")
            for u in units
        ],
        dtype=np.uint64,
    )


@pytest.mark.parametrize("key_length", [0, 1, 32, 64, 65, 200])
@pytest.mark.parametrize("prefix_length", [0, 7, 36, 37, 45, 46, 64, 101, 130])
def test_matches_hmac_across_key_and_block_boundaries(key_length: int, prefix_length: int) -> None:
    """Keys shorter and longer than a block (hashed first), messages filling one, two or three
    blocks and those whose padding just spills into the next one."""
    rng = np.random.default_rng(key_length * 1000 + prefix_length)
    key = rng.integers(0, 256, key_length, dtype=np.uint8).tobytes()
    prefix = rng.integers(0, 256, prefix_length, dtype=np.uint8).tobytes()
    units = rng.integers(0, 256, (97, 18), dtype=np.uint8)
    assert (hmac_sha256_heads(key, prefix, units) == expected(key, prefix, units)).all()


def test_other_widths_empty_input_and_bad_shapes() -> None:
    units = np.frombuffer(b"abcdefghij" * 3, dtype=np.uint8).reshape(3, 10)
    assert (hmac_sha256_heads(b"k", b"p", units) == expected(b"k", b"p", units)).all()
    assert hmac_sha256_heads(b"k", b"p", np.empty((0, 18), dtype=np.uint8)).size == 0
    with pytest.raises(ValueError, match="2-D"):
        hmac_sha256_heads(b"k", b"p", np.zeros(18, dtype=np.uint8))
