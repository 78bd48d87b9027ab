"""Exact, faster batch scoring of a LightGBM binary model (QuickScorer on binned features).

Why: scoring a province with ``Booster.predict`` costs tens of nanoseconds per tree and row,
spent walking each tree node by node with unpredictable branches. QuickScorer (Lucchese et
al., SIGIR 2015) turns the walk inside out: every tree keeps a bitmask of the leaves still
reachable; for each feature of a row, each split that sends the row *right* ("false node")
clears the leaves of its left subtree with one AND; the exit leaf of every tree is then the
lowest bit left. No branches depend on the data, and the work is a few thousand independent
ANDs per row. Two more steps make it cheap here:

* **binned features**: each numeric feature is replaced by the number of the model's own
  thresholds below it (``np.searchsorted``, exact in float64), so a row is a few dozen bytes
  and "which splits send it right" is a prefix of that feature's splits sorted by threshold;
  categorical features use their code, with a precomputed list of right-sending splits per code;
* **blocks of rows in parallel** (numba ``prange``) on at most as many threads as cores.

Why it is exact: decisions replicate LightGBM 4.x (``NumericalDecision``: NaN is 0.0 unless the
split's missing type is NaN, then the default direction; ``value <= threshold`` goes left;
``CategoricalDecision``: the code is truncated to an integer, NaN and negatives go right,
members of the split's bitset go left), thresholds come from ``dump_model`` at full precision,
values with |x| <= 1e-35 count as 0 as in LightGBM's dense input, and leaf values are summed
in tree order from 0.0 in float64, as ``PredictRaw`` does — the tests compare bit for bit.
Models it does not cover (multiclass, linear trees, more than 64 leaves per tree, zero-as-missing
splits, more than 254 thresholds on one feature, category codes above 62) raise
``UnsupportedModel``, and ``raw_scores`` falls back to LightGBM's own ``predict``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - the fallback is tested by patching ``_numba``
    numba = None

log = logging.getLogger(__name__)

#: Rows per parallel block.
BLOCK = 1024
#: Rows whose exit leaves are summed side by side (independent float-add chains).
GROUP = 8
#: Bin of a missing (NaN) numeric value; categorical codes outside 0..62 become ``OTHER``.
NAN_BIN = 255
OTHER = 63
_ZERO = 1e-35  # LightGBM's kZeroThreshold
# De Bruijn sequence: index of the lowest set bit of a uint64 with one multiply and a lookup.
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _DEBRUIJN_INDEX[int(((1 << _i) * int(_DEBRUIJN)) % 2**64) >> 58] = _i


class UnsupportedModel(ValueError):
    """The model uses something the compiled path does not replicate; use stock LightGBM."""


def cores() -> int:
    return max(1, os.cpu_count() or 1)


def _numba():
    """numba, or None when it cannot be imported (then scoring falls back to LightGBM)."""
    return numba


@dataclass
class _Split:
    tree: int
    feature: int
    threshold: float  # numeric splits
    categories: frozenset[int]  # categorical splits (goes left when the code is a member)
    categorical: bool
    nan_right: bool
    mask: int  # leaves kept when the row goes right (left subtree's leaves cleared)


@dataclass(frozen=True)
class CompiledForest:
    """The forest as QuickScorer tables; ``raw_score`` gives LightGBM's raw scores exactly."""

    num_features: int
    categorical: np.ndarray  # bool per feature
    thresholds: tuple[np.ndarray, ...]  # sorted distinct thresholds per numeric feature
    entry_tree: np.ndarray  # int32: tree of each right-sending split entry
    entry_mask: np.ndarray  # uint16/32/64 (as narrow as the trees allow): leaves that survive it
    start: np.ndarray  # int64 [feature, bin]: first entry for that bin
    count: np.ndarray  # int64 [feature, bin]: number of entries for that bin
    leaf_value: np.ndarray  # float64 [tree, 64]
    trees: int

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> CompiledForest:
        """Compile the trees ``booster.predict`` would use (its best iteration, if set)."""
        dump = booster.dump_model(num_iteration=booster.best_iteration or None)
        if dump.get("num_class", 1) != 1 or dump.get("num_tree_per_iteration", 1) != 1:
            raise UnsupportedModel("only binary (single-output) models are compiled")
        objective = str(dump.get("objective", ""))
        if not objective.startswith(("binary", "cross_entropy")):
            raise UnsupportedModel(f"objective {objective!r} is not binary")
        n_features = booster.num_feature()
        splits: list[_Split] = []
        leaf_value = np.zeros((len(dump["tree_info"]), 64), dtype=np.float64)
        widest = 1
        for t, tree in enumerate(dump["tree_info"]):
            if tree.get("is_linear"):
                raise UnsupportedModel(f"tree {t} is a linear tree")
            leaves: list[float] = []
            _walk(tree["tree_structure"], t, splits, leaves)
            if len(leaves) > 64:
                raise UnsupportedModel(f"tree {t} has {len(leaves)} leaves (at most 64)")
            leaf_value[t, : len(leaves)] = leaves
            widest = max(widest, len(leaves))
        return _tables(splits, leaf_value, n_features, widest)

    def bins(self, X: np.ndarray) -> np.ndarray:
        """Each row as uint8 bins: numeric → thresholds below it; categorical → its code."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.num_features:
            raise ValueError(f"expected a (rows, {self.num_features}) matrix, got {X.shape}")
        out = np.empty(X.shape, dtype=np.uint8)
        for f in range(self.num_features):
            v = X[:, f]
            nan = np.isnan(v)
            v = np.where(np.abs(v) <= _ZERO, 0.0, v)
            if self.categorical[f]:
                code = np.trunc(np.where(nan, -1.0, v))  # C++ int cast truncates toward 0
                ok = ~nan & (code >= 0) & (code < OTHER)
                out[:, f] = np.where(ok, code, OTHER).astype(np.uint8)
            else:
                b = np.searchsorted(self.thresholds[f], v, side="left")
                out[:, f] = np.where(nan, NAN_BIN, b).astype(np.uint8)
        return out

    def raw_score(self, X: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Sum of leaf values per row, in tree order, in float64 — LightGBM's raw score."""
        if _numba() is None:
            raise UnsupportedModel("numba is not available")
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.num_features:
            raise ValueError(f"expected a (rows, {self.num_features}) matrix, got {X.shape}")
        numba.set_num_threads(min(threads or cores(), cores(), numba.config.NUMBA_NUM_THREADS))
        out = np.empty(X.shape[0], dtype=np.float64)
        lengths = np.array([len(t) for t in self.thresholds], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        flat = np.concatenate([*self.thresholds, np.empty(1)]).astype(np.float64)
        _score(
            X, self.categorical, flat, starts, lengths, self.start, self.count,
            self.entry_tree, self.entry_mask, np.full(1, -1).astype(self.entry_mask.dtype),
            self.leaf_value, _DEBRUIJN_INDEX, out,
        )  # fmt: skip
        return out


def _walk(node: dict, tree: int, splits: list[_Split], leaves: list[float]) -> list[int]:
    """Collect splits and leaves (left to right); return the leaf numbers under ``node``."""
    if "split_index" not in node:
        # dump_model marks linear trees on their leaves only (no tree-level flag)
        if "leaf_coeff" in node or "leaf_const" in node:
            raise UnsupportedModel(f"tree {tree} is a linear tree")
        leaves.append(float(node.get("leaf_value", 0.0)))
        return [len(leaves) - 1]
    missing = node.get("missing_type", "None")
    if node["decision_type"] == "==":
        cats = frozenset(int(c) for c in str(node["threshold"]).split("||"))
        if max(cats) >= OTHER or min(cats) < 0:
            raise UnsupportedModel(f"tree {tree}: category code outside 0..{OTHER - 1}")
        split = _Split(tree, int(node["split_feature"]), 0.0, cats, True, True, 0)
    elif node["decision_type"] == "<=":
        if missing == "Zero":
            raise UnsupportedModel(f"tree {tree}: zero-as-missing split")
        threshold = float(node["threshold"])
        nan_right = (not node["default_left"]) if missing == "NaN" else (threshold < 0.0)
        split = _Split(
            tree, int(node["split_feature"]), threshold, frozenset(), False, nan_right, 0
        )
    else:
        raise UnsupportedModel(f"tree {tree}: decision type {node['decision_type']!r}")
    splits.append(split)
    left = _walk(node["left_child"], tree, splits, leaves)
    right = _walk(node["right_child"], tree, splits, leaves)
    split.mask = (2**64 - 1) & ~sum(1 << leaf for leaf in left)
    return left + right


def _tables(
    splits: list[_Split], leaf_value: np.ndarray, n_features: int, widest: int
) -> CompiledForest:
    """For every feature and bin, the list of splits that send such a row right."""
    categorical = np.zeros(n_features, dtype=bool)
    for s in splits:
        categorical[s.feature] |= s.categorical
    if any(s.categorical != categorical[s.feature] for s in splits):
        raise UnsupportedModel("a feature is split both as a category and as a number")
    thresholds, entries = [], []
    start = np.zeros((n_features, 256), dtype=np.int64)
    count = np.zeros((n_features, 256), dtype=np.int64)

    def emit(f: int, b: int, chosen: list[_Split]) -> None:
        start[f, b] = len(entries)
        count[f, b] = len(chosen)
        entries.extend(chosen)

    for f in range(n_features):
        mine = [s for s in splits if s.feature == f]
        if categorical[f]:
            thresholds.append(np.empty(0))
            for code in range(OTHER + 1):
                emit(f, code, [s for s in mine if code not in s.categories])
            continue
        thr = np.unique(np.array([s.threshold for s in mine], dtype=np.float64))
        if len(thr) > NAN_BIN - 1:
            raise UnsupportedModel(f"feature {f} has {len(thr)} thresholds (at most 254)")
        thresholds.append(thr)
        # a row in bin b has exactly b thresholds below it: the splits with index < b send
        # it right; sorted by threshold, they are a prefix shared by all bins
        ordered = sorted(mine, key=lambda s: s.threshold)
        first = len(entries)
        entries.extend(ordered)
        index = np.searchsorted(thr, [s.threshold for s in ordered])
        for b in range(len(thr) + 1):
            start[f, b] = first
            count[f, b] = int(np.sum(index < b))
        emit(f, NAN_BIN, [s for s in mine if s.nan_right])
    # Masks as narrow as the widest tree allows: less memory streamed per row.
    dtype = next(
        d for d, bits in ((np.uint16, 16), (np.uint32, 32), (np.uint64, 64)) if widest <= bits
    )
    full = int(np.iinfo(dtype).max)
    return CompiledForest(
        num_features=n_features,
        categorical=categorical,
        thresholds=tuple(thresholds),
        entry_tree=np.array([s.tree for s in entries], dtype=np.int32),
        entry_mask=np.array([s.mask & full for s in entries], dtype=dtype),
        start=start,
        count=count,
        leaf_value=leaf_value,
        trees=leaf_value.shape[0],
    )


if numba is not None:

    @numba.njit(inline="always")
    def _bin(v, f, categorical, thr, thr_start, thr_len):
        """The bin of value ``v`` of feature ``f`` (same rule as ``CompiledForest.bins``)."""
        if np.isnan(v):
            return OTHER if categorical[f] else NAN_BIN
        if abs(v) <= _ZERO:
            v = 0.0
        if categorical[f]:
            code = np.trunc(v)
            return np.int64(code) if 0.0 <= code < OTHER else OTHER
        # thresholds strictly below v (np.searchsorted, side="left"), as a branch-free binary
        # search: the loop count depends only on the number of thresholds, never on v
        first = thr_start[f]
        b = first
        m = thr_len[f]
        while m > 1:
            half = m >> 1
            b += half * np.int64(thr[b + half - 1] < v)
            m -= half
        if m == 1:
            b += np.int64(thr[b] < v)
        return b - first

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _score(X, categorical, thr, thr_start, thr_len, start, count, entry_tree, entry_mask,
               ones, leaf_value, debruijn, out):  # fmt: skip
        n, n_features = X.shape
        trees = leaf_value.shape[0]
        blocks = (n + BLOCK - 1) // BLOCK
        for blk in numba.prange(blocks):
            alive = np.empty((GROUP, trees), dtype=entry_mask.dtype)
            acc = np.zeros(GROUP)
            for g in range(blk * BLOCK, min(n, (blk + 1) * BLOCK), GROUP):
                rows = min(GROUP, n - g)
                for k in range(rows):
                    alive[k, :] = ones[0]
                    for f in range(n_features):
                        b = _bin(X[g + k, f], f, categorical, thr, thr_start, thr_len)
                        s = start[f, b]
                        for j in range(s, s + count[f, b]):
                            alive[k, entry_tree[j]] &= entry_mask[j]
                    acc[k] = 0.0
                # exit leaves, summed in tree order per row; the rows' sums are independent
                for t in range(trees):
                    for k in range(rows):
                        a = np.uint64(alive[k, t])
                        lowest = a & (~a + np.uint64(1))
                        acc[k] += leaf_value[t, debruijn[(lowest * _DEBRUIJN) >> np.uint64(58)]]
                for k in range(rows):
                    out[g + k] = acc[k]


def sigmoid(raw: np.ndarray) -> np.ndarray:
    """LightGBM's binary transform: 1 / (1 + exp(-raw)) (sigmoid parameter 1)."""
    return 1.0 / (1.0 + np.exp(-raw))


def raw_scores(
    booster: lgb.Booster, X: np.ndarray, *, accelerated: bool = True, threads: int | None = None
) -> tuple[np.ndarray, str]:
    """Raw scores and the path that produced them: ``"compiled"`` or ``"lightgbm"``.

    Falls back to ``booster.predict(..., raw_score=True)`` (same thread cap) when
    ``accelerated`` is false, numba is missing or the model is unsupported — with the reason
    logged, so a slow run is never a silent one.
    """
    threads = min(threads or cores(), cores())
    if accelerated:
        try:
            return _forest(booster).raw_score(X, threads=threads), "compiled"
        except UnsupportedModel as exc:
            log.warning("compiled scoring unavailable (%s); using LightGBM's predict", exc)
    return booster.predict(X, raw_score=True, num_threads=threads), "lightgbm"


def _forest(booster: lgb.Booster) -> CompiledForest:
    """The booster's compiled forest, built once per booster object."""
    cached = getattr(booster, "_compiled_forest", None)
    if cached is None:
        if _numba() is None:
            raise UnsupportedModel("numba is not available")
        cached = CompiledForest.from_booster(booster)
        booster._compiled_forest = cached
    return cached
