"""Many keys at once (compiled, both cores) are the keys of SPEC.md §2 one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from serving.draws.keys import COMPILED_FROM, MASK64, mix64, unit_keys


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
