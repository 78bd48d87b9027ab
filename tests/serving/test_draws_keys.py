"""Many keys at once (compiled, both cores) are the keys of SPEC.md §2 one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from serving.draws.keys import COMPILED_FROM, MASK64, mix64, smallest_keys, unit_keys


def _expected(salts: np.ndarray, hashes: np.ndarray) -> list:
    s, h = np.broadcast_arrays(salts, hashes)
    return [mix64(int(a) ^ int(b)) for a, b in zip(s.ravel(), h.ravel(), strict=True)]


@pytest.mark.parametrize("n", [0, 1, 17, COMPILED_FROM - 1, COMPILED_FROM, 3 * COMPILED_FROM])
def test_a_vector_of_units_under_one_salt_or_one_salt_each(n: int) -> None:
    rng = np.random.default_rng(n)
    hashes = rng.integers(0, MASK64, size=n, dtype=np.uint64, endpoint=True)
    salts = rng.integers(0, MASK64, size=n, dtype=np.uint64, endpoint=True)
    one = np.uint64(0xFFFFFFFFFFFFFFFF)
    assert unit_keys(salts, hashes).tolist() == _expected(salts, hashes)
    assert unit_keys(one, hashes).tolist() == _expected(np.asarray(one), hashes)


@pytest.mark.parametrize(("targets", "inspectors"), [(3, 5), (40, 300), (1, 9000)])
def test_a_targets_by_inspectors_matrix(targets: int, inspectors: int) -> None:
    rng = np.random.default_rng(targets)
    salts = rng.integers(0, MASK64, size=targets, dtype=np.uint64, endpoint=True)[:, None]
    hashes = rng.integers(0, MASK64, size=inspectors, dtype=np.uint64, endpoint=True)[None, :]
    got = unit_keys(salts, hashes)
    assert got.shape == (targets, inspectors)
    assert got.ravel().tolist() == _expected(salts, hashes)


@pytest.mark.parametrize(
    ("units", "salts", "width", "tied"),
    [
        (500, 300, 8, False),
        (9, 40, 8, True),
        (12, 50, 12, False),
        (1000, 20, 1, False),
        (7, 3, 0, False),
    ],
)
def test_smallest_keys_are_the_head_of_the_full_ranking(units, salts, width, tied) -> None:
    rng = np.random.default_rng(units)
    hashes = rng.integers(0, MASK64, size=units, dtype=np.uint64, endpoint=True)
    if tied:  # every unit has the same key: the order is by position alone
        hashes[:] = hashes[0]
    salt_keys = rng.integers(0, MASK64, size=salts, dtype=np.uint64, endpoint=True)
    got = smallest_keys(salt_keys, hashes, width)
    assert got.shape == (salts, width)
    for t in range(salts):
        ranking = np.lexsort((np.arange(units), unit_keys(salt_keys[t], hashes)))
        assert got[t].tolist() == ranking[:width].tolist()


def test_smallest_keys_refuse_a_width_beyond_the_units() -> None:
    with pytest.raises(ValueError, match="width 4 is not between 0 and the 3 units"):
        smallest_keys(np.zeros(2, dtype=np.uint64), np.zeros(3, dtype=np.uint64), 4)
