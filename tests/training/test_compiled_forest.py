"""The compiled scorer gives LightGBM's raw scores bit for bit, and falls back when it cannot."""

from __future__ import annotations

import logging
import os

import lightgbm as lgb
import numpy as np
import pytest

from training import compiled_forest as cf

N_FEATURES = 8
CATEGORICAL = [5, 6, 7]


def training_data(n: int = 3_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.poisson(0.6, (n, N_FEATURES)).astype(float)
    X[:, 0] = rng.normal(size=n)
    X[:, 1] = np.where(rng.random(n) < 0.25, np.nan, rng.gamma(2.0, 50.0, n))
    X[:, 2] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(700, 60, n))
    X[:, 5] = rng.integers(0, 15, n)
    X[:, 6] = rng.integers(0, 40, n)
    X[:, 7] = rng.integers(0, 8, n)
    logit = X[:, 0] + (X[:, 5] % 3 == 0) - 0.01 * np.nan_to_num(X[:, 2] - 700) + 0.5 * X[:, 3] - 1
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def fresh_rows(booster: lgb.Booster, n: int = 4_000, seed: int = 1) -> np.ndarray:
    """New rows with NaN, unseen, negative and fractional categories, and values on thresholds."""
    X, _ = training_data(n, seed)
    rng = np.random.default_rng(seed)
    X[:, 5] = rng.integers(-3, 25, n).astype(float)  # negative and unseen codes
    X[rng.random(n) < 0.05, 6] = np.nan
    X[:50, 6] = [-0.5, 2.7, 1e9, -1.0, 62.0] * 10  # truncation toward 0, huge, boundary
    X[50:60, 0] = [1e-40, -1e-40, 0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 5e-36]
    # values exactly equal to split thresholds (go left) and the next double (go right)
    dump = booster.dump_model()
    on = []

    def collect(node):
        if "split_index" in node:
            if node["decision_type"] == "<=":
                on.append((node["split_feature"], float(node["threshold"])))
            collect(node["left_child"])
            collect(node["right_child"])

    for tree in dump["tree_info"]:
        collect(tree["tree_structure"])
    for i, (f, t) in enumerate(on[: (n - 100) // 2]):
        X[100 + 2 * i, f] = t
        X[101 + 2 * i, f] = np.nextafter(t, np.inf)
    return X


MODELS = {
    "default": {},
    "leafwise_deep": {"num_leaves": 63, "max_depth": -1, "min_data_in_leaf": 5},
    "no_missing_handling": {"use_missing": False},
    "depth_limited_small_bins": {"num_leaves": 15, "max_depth": 4, "max_bin": 15},
    "onehot_categories": {"max_cat_to_onehot": 64},
    "from_average_off": {"boost_from_average": False},
}


def train(params: dict, rounds: int = 60, **kwargs) -> lgb.Booster:
    X, y = training_data()
    base = {"objective": "binary", "verbosity": -1, "seed": 3, "num_threads": 1}
    return lgb.train(
        {**base, **params}, lgb.Dataset(X, y, categorical_feature=CATEGORICAL), rounds, **kwargs
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiled_scores_equal_lightgbm_bit_for_bit(name: str) -> None:
    booster = train(MODELS[name])
    X = fresh_rows(booster)
    forest = cf.CompiledForest.from_booster(booster)
    ours = forest.raw_score(X)
    stock = booster.predict(X, raw_score=True)
    assert np.array_equal(ours, stock), np.abs(ours - stock).max()
    # probabilities: LightGBM's C++ exp may differ from numpy's in the last bit
    assert np.abs(cf.sigmoid(ours) - booster.predict(X)).max() <= 1e-15


def test_the_models_cover_every_split_encoding() -> None:
    """The bit-for-bit tests above exercise every branch of the range test and mask width."""
    seen, binned_by_search = {}, []
    for name in ("default", "leafwise_deep", "depth_limited_small_bins"):
        forest = cf.CompiledForest.from_booster(train(MODELS[name]))
        hi = forest.split_lo.astype(int) + forest.split_span
        seen[forest.split_mask.dtype] = name
        assert (hi == cf.NAN_BIN).any() and (hi < cf.NAN_BIN).any()  # NaN right and left
        # lo = 1 with NaN right: the widest range (span 254), where wrap-around must stay left
        assert ((forest.split_lo == 1) & (hi == cf.NAN_BIN)).any()
        assert len(forest.cat_feature) > 0
        sizes = [len(t) for f, t in enumerate(forest.thresholds) if not forest.categorical[f]]
        binned_by_search.append(max(sizes) > cf.LINEAR)  # else counted over the block
    assert any(binned_by_search) and not all(binned_by_search)
    assert set(seen) == {np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64)}


@pytest.mark.parametrize("n", [0, 1, cf.BLOCK - 1, cf.BLOCK, cf.BLOCK + 1, 5 * cf.BLOCK + 7])
def test_partial_blocks(n: int) -> None:
    booster = train({})
    rows = fresh_rows(booster, 4_000)[-n:] if n else np.empty((0, N_FEATURES))
    forest = cf.CompiledForest.from_booster(booster)
    for threads in (1, 2):
        ours = forest.raw_score(rows, threads=threads)
        assert ours.shape == (n,)
        if n:
            assert np.array_equal(ours, booster.predict(rows, raw_score=True))


def test_single_leaf_trees_and_best_iteration() -> None:
    X, y = training_data()
    valid = lgb.Dataset(*training_data(1_000, seed=9), categorical_feature=CATEGORICAL)
    booster = lgb.train(
        {
            "objective": "binary",
            "verbosity": -1,
            "seed": 1,
            "learning_rate": 0.5,
            "num_leaves": 63,
        },
        lgb.Dataset(X, y, categorical_feature=CATEGORICAL),
        200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,  # keeps the trees after the best iteration
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    rows = fresh_rows(booster)
    forest = cf.CompiledForest.from_booster(booster)
    assert forest.trees == booster.best_iteration
    assert np.array_equal(forest.raw_score(rows), booster.predict(rows, raw_score=True))
    stump = train({"min_gain_to_split": 1e9}, rounds=3)  # every tree a single leaf
    assert np.array_equal(
        cf.CompiledForest.from_booster(stump).raw_score(rows), stump.predict(rows, raw_score=True)
    )


def test_bins_mirror_the_kernel() -> None:
    booster = train({})
    forest = cf.CompiledForest.from_booster(booster)
    rows = fresh_rows(booster, 300)
    bins = forest.bins(rows)
    numeric = [f for f in range(N_FEATURES) if not forest.categorical[f]]
    for f in numeric:
        thr = forest.thresholds[f]
        ok = ~np.isnan(rows[:, f])
        assert (
            bins[ok, f]
            == np.searchsorted(thr, np.where(np.abs(rows[ok, f]) <= 1e-35, 0, rows[ok, f]))
        ).all()
        assert (bins[~ok, f] == cf.NAN_BIN).all()


def test_unsupported_models_and_missing_numba_fall_back_to_lightgbm(monkeypatch, caplog) -> None:
    X, _ = training_data()
    rows = fresh_rows(train({}), 500)
    multiclass = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(X, (X[:, 3] % 3).astype(int)),
        5,
    )
    with pytest.raises(cf.UnsupportedModel, match="binary"):
        cf.CompiledForest.from_booster(multiclass)
    big = train({"num_leaves": 100, "max_depth": -1, "min_data_in_leaf": 2}, rounds=5)
    with pytest.raises(cf.UnsupportedModel, match="leaves"):
        cf.CompiledForest.from_booster(big)
    zero = train({"zero_as_missing": True}, rounds=5)
    linear = train({"linear_tree": True}, rounds=5)
    with pytest.raises(cf.UnsupportedModel, match="linear"):
        cf.CompiledForest.from_booster(linear)
    with caplog.at_level(logging.WARNING):
        for model in (big, zero, linear):
            scores, path = cf.raw_scores(model, rows)
            assert path == "lightgbm"
            # linear leaves sum in a thread-dependent order inside LightGBM: last-bit noise
            np.testing.assert_allclose(scores, model.predict(rows, raw_score=True), atol=1e-12)
    assert "compiled scoring unavailable" in caplog.text
    ok = train({})
    assert cf.raw_scores(ok, rows)[1] == "compiled"
    assert cf.raw_scores(ok, rows, accelerated=False)[1] == "lightgbm"
    monkeypatch.setattr(cf, "_numba", lambda: None)
    fresh = train({})  # no cached compiled forest on this booster
    scores, path = cf.raw_scores(fresh, rows)
    assert path == "lightgbm"
    assert np.array_equal(scores, fresh.predict(rows, raw_score=True))


def test_never_more_threads_than_cores(monkeypatch) -> None:
    seen = []
    real = cf.numba.set_num_threads
    monkeypatch.setattr(cf.numba, "set_num_threads", lambda n: (seen.append(n), real(n)))
    booster = train({})
    rows = fresh_rows(booster, 200)
    cf.raw_scores(booster, rows, threads=64)
    assert seen and max(seen) <= (os.cpu_count() or 1)


def test_a_matrix_of_the_wrong_shape_is_refused() -> None:
    forest = cf.CompiledForest.from_booster(train({}))
    with pytest.raises(ValueError, match="expected a"):
        forest.raw_score(np.zeros((3, N_FEATURES + 1)))
