"""Fast SHAP contributions equal LightGBM's ``pred_contrib`` (≤ 1e-9) or fall back to it.

Models are trained here with ``lightgbm.train`` on synthetic matrices (NaNs, categorical
codes), so the tests depend on nothing but LightGBM and the module under test.
"""

from __future__ import annotations

import logging
import re

import lightgbm as lgb
import numpy as np
import pytest

from training.explain import contributions as C
from training.explain.contributions import contributions, stock_contributions, top_k

TOL = 1e-9


def _data(n: int, seed: int = 0, features: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Numeric features with NaNs (missing more often when the label is 1 in feature 1 and when
    it is 0 in feature 2, so trees send NaN both ways) and two categorical code columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    X[:, -1] = rng.integers(0, 20, n)  # categorical
    X[:, -2] = rng.integers(0, 6, n)  # categorical
    logit = X[:, 0] + 0.8 * np.sin(3 * X[:, 3]) + (X[:, -1] % 4 == 1) - 0.7 * (X[:, -2] == 2)
    y = (logit + rng.logistic(size=n) > 0.3).astype(int)
    X[rng.random(n) < np.where(y == 1, 0.35, 0.05), 1] = np.nan
    X[rng.random(n) < np.where(y == 0, 0.35, 0.05), 2] = np.nan
    sprinkled = X[:, 3:-2]  # a view: NaNs here too, none in feature 0 (missing type None)
    sprinkled[rng.random(sprinkled.shape) < 0.03] = np.nan
    return X, y


def _train(X: np.ndarray, y: np.ndarray, rounds: int, **params: object) -> lgb.Booster:
    cats = [X.shape[1] - 2, X.shape[1] - 1]
    base = {"objective": "binary", "verbose": -1, "num_threads": 2, "min_data_in_leaf": 10}
    data = lgb.Dataset(X, y, categorical_feature=cats, params={"max_cat_to_onehot": 4})
    return lgb.train({**base, **params}, data, num_boost_round=rounds)


def _query(n: int, seed: int = 1) -> np.ndarray:
    """Rows to explain: fresh data plus the awkward values (NaN everywhere, unseen, negative and
    fractional category codes, NaN in a feature that had none, exact zeros)."""
    X, _ = _data(n, seed)
    X[0] = np.nan
    X[1, -1], X[1, -2] = 57.0, -3.0
    X[2, -1], X[2, -2] = 1.7, np.nan
    X[3, 0] = np.nan
    X[4, :-2] = 0.0
    return X


def _assert_equal_to_stock(booster: lgb.Booster, X: np.ndarray) -> C.Contributions:
    fast = contributions(booster, X)
    stock = stock_contributions(booster, X)
    assert fast.path == "fast"
    assert fast.values.shape == (len(X), booster.num_feature())
    assert np.abs(fast.values - stock.values).max() <= TOL
    assert abs(fast.base_value - stock.base_value) <= TOL
    raw = booster.predict(X, raw_score=True)
    assert np.abs(fast.base_value + fast.values.sum(axis=1) - raw).max() <= TOL
    return fast


@pytest.fixture(scope="module")
def model() -> lgb.Booster:
    X, y = _data(4000)
    return _train(X, y, 80, num_leaves=31)


def _node_stats(booster: lgb.Booster) -> dict[str, set]:
    seen: dict[str, set] = {"default_left": set(), "decision_type": set(), "missing": set()}

    def walk(node: dict) -> None:
        if "split_index" in node:
            seen["decision_type"].add(node["decision_type"])
            seen["missing"].add(node["missing_type"])
            if node["missing_type"] == "NaN":
                seen["default_left"].add(node["default_left"])
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return seen


def test_fast_equals_pred_contrib_with_nans_and_categories(model: lgb.Booster) -> None:
    stats = _node_stats(model)
    assert stats["decision_type"] == {"<=", "=="}  # numeric and categorical splits
    assert stats["default_left"] == {True, False}  # NaN sent both ways
    assert "None" in stats["missing"]  # and splits that treat NaN as 0.0
    _assert_equal_to_stock(model, _query(3000))


def test_many_blocks_and_growing_hash_tables(model: lgb.Booster, monkeypatch) -> None:
    X = _query(2500, seed=2)
    whole = contributions(model, X).values
    monkeypatch.setattr(C, "BLOCK", 97)  # many blocks, the last one short
    assert np.abs(contributions(model, X).values - whole).max() <= TOL
    # one block of all rows: > 512 distinct patterns per tree, so the hash table grows
    monkeypatch.setattr(C, "BLOCK", 10**6)
    assert np.abs(contributions(model, X, threads=1).values - whole).max() <= TOL
    assert np.abs(stock_contributions(model, X).values - whole).max() <= TOL


def test_deep_trees_and_500_trees() -> None:
    X, y = _data(3000, seed=3, features=14)
    deep = _train(X, y, 30, num_leaves=63, min_data_in_leaf=3)
    tables = C.build_tables(deep)
    assert np.diff(tables.slot_start).max() >= 8  # paths with many distinct features
    _assert_equal_to_stock(deep, _data(1500, seed=4, features=14)[0])
    X, y = _data(2000, seed=5)
    many = _train(X, y, 500, num_leaves=15, learning_rate=0.1)
    assert many.num_trees() == 500
    _assert_equal_to_stock(many, _query(600))


def test_stumps() -> None:
    X, y = _data(2000, seed=6)
    stumps = _train(X, y, 60, max_depth=1, num_leaves=2)
    assert {t["num_leaves"] for t in stumps.dump_model()["tree_info"]} == {2}
    _assert_equal_to_stock(stumps, _query(500))


def test_single_leaf_trees() -> None:
    X, y = _data(1000, seed=7)
    flat = _train(X, y, 3, min_gain_to_split=1e12)
    assert [t["num_leaves"] for t in flat.dump_model()["tree_info"]] == [1]
    fast = _assert_equal_to_stock(flat, _query(50))
    assert not fast.values.any()
    # single-leaf trees between ordinary ones (spliced in the model text)
    split = _train(X, y, 3, num_leaves=6).model_to_string()
    leaf = flat.model_to_string()

    def trees(text: str) -> list[str]:
        return re.findall(r"Tree=\d+\n.*?\n\n", text.split("end of trees")[0], flags=re.S)

    mixed = [trees(split)[0], trees(leaf)[0], trees(split)[1], trees(leaf)[0], trees(split)[2]]
    mixed = [re.sub(r"^Tree=\d+", f"Tree={i}", t) for i, t in enumerate(mixed)]
    head = re.sub(r"tree_sizes=.*\n", "", split.split("Tree=0")[0])
    tail = "end of trees" + split.split("end of trees")[1]
    spliced = lgb.Booster(model_str=head + "".join(mixed) + "\n" + tail)
    assert [t["num_leaves"] for t in spliced.dump_model()["tree_info"]] == [6, 1, 6, 1, 6]
    _assert_equal_to_stock(spliced, _query(300))


def test_best_iteration_is_used() -> None:
    X, y = _data(2000, seed=8)
    booster = _train(X, y, 40, num_leaves=15)
    booster.best_iteration = 17  # what early stopping sets; predict then uses 17 trees
    fast = _assert_equal_to_stock(booster, _query(300))
    booster.best_iteration = 0
    assert np.abs(contributions(booster, _query(300)).values - fast.values).max() > 1e-6


def test_threads_are_capped_and_do_not_change_values(model: lgb.Booster) -> None:
    X = _query(400)
    one = contributions(model, X, threads=1)
    many = contributions(model, X, threads=64)
    assert np.array_equal(one.values, many.values)


def _assert_fallback(booster: lgb.Booster, X: np.ndarray, caplog, reason: str) -> None:
    with caplog.at_level(logging.WARNING, logger=C.log.name):
        got = contributions(booster, X)
    assert got.path == "lightgbm"
    assert any(reason in r.getMessage() for r in caplog.records), caplog.text
    stock = stock_contributions(booster, X)
    assert np.array_equal(got.values, stock.values)
    assert got.base_value == stock.base_value


def test_zero_as_missing_and_wide_categories_fall_back_equal(caplog) -> None:
    X, y = _data(1500, seed=10)
    zero = _train(np.nan_to_num(X), y, 10, zero_as_missing=True)
    assert "Zero" in _node_stats(zero)["missing"]
    _assert_fallback(zero, _query(100), caplog, "zero-as-missing")
    X[:, -1] = (X[:, -1] * 7) % 120  # category codes up to 119
    wide = _train(X, y, 10, max_cat_threshold=64, cat_smooth=1, min_data_per_group=5)
    Q = _query(100)
    Q[:, -1] = (Q[:, -1] * 7) % 120
    _assert_fallback(wide, Q, caplog, "category code")


def test_multiclass_and_linear_trees_are_refused(caplog) -> None:
    X, y = _data(1500, seed=11)
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 2},
        lgb.Dataset(X, y + (X[:, 0] > 1)),
        num_boost_round=5,
    )
    with caplog.at_level(logging.WARNING, logger=C.log.name):
        assert contributions(multi, X[:50]).path == "lightgbm"
    assert "single-output" in caplog.text
    caplog.clear()
    linear = lgb.train(
        {"objective": "binary", "verbose": -1, "linear_tree": True, "num_threads": 2},
        lgb.Dataset(np.nan_to_num(X), y),
        num_boost_round=5,
    )
    # the fast path refuses (dump_model marks linear trees only on their leaves), and so does
    # LightGBM's own pred_contrib: its error surfaces rather than wrong values
    with (
        caplog.at_level(logging.WARNING, logger=C.log.name),
        pytest.raises(lgb.basic.LightGBMError, match="linear trees"),
    ):
        contributions(linear, np.nan_to_num(X[:50]))
    assert "linear tree" in caplog.text


def test_too_many_path_features_and_no_numba_fall_back(
    model: lgb.Booster, caplog, monkeypatch
) -> None:
    X = _query(200)
    fresh = lgb.Booster(model_str=model.model_to_string())
    monkeypatch.setattr(C, "MAX_PATH_FEATURES", 2)
    _assert_fallback(fresh, X, caplog, "distinct features")
    monkeypatch.undo()
    fresh = lgb.Booster(model_str=model.model_to_string())
    monkeypatch.setattr(C, "_numba", lambda: None)
    _assert_fallback(fresh, X, caplog, "numba")


def test_not_accelerated_is_stock(model: lgb.Booster) -> None:
    X = _query(100)
    got = contributions(model, X, accelerated=False)
    assert got.path == "lightgbm"
    assert np.array_equal(got.values, stock_contributions(model, X).values)


def test_empty_matrix(model: lgb.Booster) -> None:
    empty = np.empty((0, model.num_feature()))
    fast = contributions(model, empty)
    stock = contributions(model, empty, accelerated=False)
    assert fast.values.shape == stock.values.shape == (0, model.num_feature())
    assert (fast.path, stock.path) == ("fast", "lightgbm")
    assert abs(fast.base_value - stock.base_value) <= TOL


def test_wrong_width_is_an_error(model: lgb.Booster) -> None:
    with pytest.raises(ValueError, match="matrix"):
        contributions(model, np.zeros((3, model.num_feature() + 1)))


def test_top_k_orders_and_pads() -> None:
    values = np.array(
        [
            [0.5, -0.2, 0.0, 1.5, -3.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.1, 0.1, -0.1, 0.0, 0.2],
        ]
    )
    up, down = top_k(values, 3)
    assert up.tolist() == [[3, 0, -1], [-1, -1, -1], [4, 0, 1]]  # ties: lower column first
    assert down.tolist() == [[4, 1, -1], [-1, -1, -1], [2, -1, -1]]
    up, down = top_k(values, 7)  # more than there are columns
    assert up.shape == down.shape == (3, 7)
    assert (up[:, 5:] == -1).all()
    up, down = top_k(np.empty((0, 5)), 2)
    assert up.shape == down.shape == (0, 2)
