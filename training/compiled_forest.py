"""Exact, faster batch scoring of a LightGBM binary model (QuickScorer on binned features).

Why: scoring a province with ``Booster.predict`` costs tens of nanoseconds per tree and row,
spent walking each tree node by node with unpredictable branches. QuickScorer (Lucchese et
al., SIGIR 2015) turns the walk inside out: every tree keeps a bitmask of the leaves still
reachable; each split that sends the row *right* ("false node") clears the leaves of its left
subtree with one AND; the exit leaf of the tree is then the lowest bit left. Here that runs
*across rows*, so the CPU does the same operation on many rows at once (SIMD):

* **binned features**: each numeric feature is replaced by the number of the model's own
  thresholds below it (exact in float64; ``bins``), a uint8 per value; categorical features
  use their code. A block of 512 rows is binned once, feature-major (``bins[feature, row]``),
  counting one threshold at a time over the whole block (SIMD; a binary search per value
  only for features with more than 64 thresholds);
* **a split is a range test on the bin**: a row goes right iff ``lo <= bin <= hi`` (``lo`` is
  one past the split's threshold, ``hi`` the last bin, or the NaN bin when missing values go
  right), i.e. one unsigned compare ``uint8(bin - lo) <= hi - lo``; the kernel applies each
  split to all rows of the block with a compare, a select and an AND, no branch, no search,
  which the compiler vectorises over 32 rows at a time;
* **categorical splits** use per (tree, feature) a 64-entry table code → AND-mask;
* **tree by tree within a block**: the block's masks (1 KB) and bins (15 KB) stay in
  L1, and every row's leaf values are added in tree order;
* **blocks in parallel** (numba ``prange``) on at most as many threads as cores.

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
    from llvmlite import ir
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - the fallback is tested by patching ``_numba``
    numba = None

log = logging.getLogger(__name__)

#: Rows per parallel block: bins (features × BLOCK bytes) and masks stay in L1.
BLOCK = 512
#: Numeric features with at most this many thresholds are binned by counting (SIMD across
#: rows) rather than by binary search (``max_bin`` 63 gives at most 62).
LINEAR = 64
#: Bin of a missing (NaN) numeric value; categorical codes outside 0..62 become ``OTHER``.
NAN_BIN = 255
OTHER = 63
_ZERO = 1e-35  # LightGBM's kZeroThreshold


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
    tree_split: np.ndarray  # int64 [trees + 1]: numeric splits of tree t are [t]..[t + 1]
    split_feature: np.ndarray  # int64 per numeric split
    split_lo: np.ndarray  # uint8: first bin that goes right
    split_span: np.ndarray  # uint8: bins lo..lo + span go right (NaN bin included or not)
    split_mask: np.ndarray  # uint16/32/64 (as narrow as the trees allow): leaves kept if right
    tree_cat: np.ndarray  # int64 [trees + 1]: categorical (tree, feature) tables of tree t
    cat_feature: np.ndarray  # int64 per categorical table
    cat_table: np.ndarray  # [tables, 64] code → leaves kept (AND of its splits' masks)
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
            X, self.categorical, flat, starts, lengths, self.tree_split, self.split_feature,
            self.split_lo, self.split_span, self.split_mask, self.tree_cat, self.cat_feature,
            self.cat_table, np.full(1, -1).astype(self.split_mask.dtype), self.leaf_value, out,
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
    """Per tree: its numeric splits as bin ranges, its categorical splits as code tables."""
    categorical = np.zeros(n_features, dtype=bool)
    for s in splits:
        categorical[s.feature] |= s.categorical
    if any(s.categorical != categorical[s.feature] for s in splits):
        raise UnsupportedModel("a feature is split both as a category and as a number")
    thresholds = []
    for f in range(n_features):
        thr = np.unique(np.array([s.threshold for s in splits if s.feature == f], dtype=np.float64))
        if categorical[f]:
            thr = np.empty(0)
        elif len(thr) > NAN_BIN - 1:
            raise UnsupportedModel(f"feature {f} has {len(thr)} thresholds (at most 254)")
        thresholds.append(thr)
    # Masks as narrow as the widest tree allows: less memory streamed per row.
    dtype = next(
        d for d, bits in ((np.uint16, 16), (np.uint32, 32), (np.uint64, 64)) if widest <= bits
    )
    full = int(np.iinfo(dtype).max)
    trees = leaf_value.shape[0]
    numeric: list[list[_Split]] = [[] for _ in range(trees)]
    by_code: list[dict[int, list[int]]] = [{} for _ in range(trees)]
    for s in splits:
        if s.categorical:
            # a row with code c goes right (clears the left subtree) iff c is not a member
            table = by_code[s.tree].setdefault(s.feature, [full] * (OTHER + 1))
            for code in range(OTHER + 1):
                if code not in s.categories:
                    table[code] &= s.mask
        else:
            numeric[s.tree].append(s)
    lo, span, feature, mask, cat_feature, cat_table = [], [], [], [], [], []
    tree_split, tree_cat = [0], [0]
    for t in range(trees):
        for s in numeric[t]:
            # a row in bin b has b thresholds below it: it goes right iff b > the split's
            # threshold index, and for NaN (bin 255) iff the split sends missing values right
            first = int(np.searchsorted(thresholds[s.feature], s.threshold)) + 1
            last = NAN_BIN if s.nan_right else len(thresholds[s.feature])
            lo.append(first)
            span.append(last - first)
            feature.append(s.feature)
            mask.append(s.mask & full)
        tree_split.append(len(lo))
        for f, table in sorted(by_code[t].items()):
            cat_feature.append(f)
            cat_table.append(table)
        tree_cat.append(len(cat_feature))
    return CompiledForest(
        num_features=n_features,
        categorical=categorical,
        thresholds=tuple(thresholds),
        tree_split=np.array(tree_split, dtype=np.int64),
        split_feature=np.array(feature, dtype=np.int64),
        split_lo=np.array(lo, dtype=np.uint8),
        split_span=np.array(span, dtype=np.uint8),
        split_mask=np.array(mask, dtype=dtype),
        tree_cat=np.array(tree_cat, dtype=np.int64),
        cat_feature=np.array(cat_feature, dtype=np.int64),
        cat_table=np.array(cat_table, dtype=dtype).reshape(-1, OTHER + 1),
        leaf_value=leaf_value,
        trees=trees,
    )


if numba is not None:

    @intrinsic
    def _lowest_bit(typingctx, x):
        """Index of the lowest set bit (LLVM ``cttz``: one ``tzcnt`` instruction)."""

        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

        return x(x), codegen

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
    def _score(X, categorical, thr, thr_start, thr_len, tree_split, split_feature, split_lo,
               split_span, split_mask, tree_cat, cat_feature, cat_table, ones, leaf_value,
               out):  # fmt: skip
        n, n_features = X.shape
        trees = leaf_value.shape[0]
        full = ones[0]
        for blk in numba.prange((n + BLOCK - 1) // BLOCK):
            r0 = blk * BLOCK
            rows = min(n, r0 + BLOCK) - r0
            bins = np.empty((n_features, BLOCK), dtype=np.uint8)
            value = np.empty(BLOCK)
            below = np.empty(BLOCK, dtype=np.uint8)
            for f in range(n_features):
                k = thr_len[f]
                if categorical[f] or k > LINEAR:
                    for r in range(rows):
                        bins[f, r] = _bin(X[r0 + r, f], f, categorical, thr, thr_start, thr_len)
                    continue
                # numeric: count the thresholds below each value, one threshold at a time
                # over the whole block (SIMD across rows; no search, no branch)
                for r in range(rows):
                    v = X[r0 + r, f]
                    value[r] = 0.0 if abs(v) <= _ZERO else v
                    below[r] = 0
                for i in range(thr_start[f], thr_start[f] + k):
                    threshold = thr[i]
                    for r in range(rows):
                        below[r] += np.uint8(threshold < value[r])
                for r in range(rows):
                    bins[f, r] = NAN_BIN if np.isnan(value[r]) else below[r]
            alive = np.empty(BLOCK, dtype=ones.dtype)
            acc = np.zeros(BLOCK)
            for t in range(trees):
                alive[:] = full
                # the same split on every row of the block: compare, select, AND (SIMD)
                for j in range(tree_split[t], tree_split[t + 1]):
                    f = split_feature[j]
                    lo = split_lo[j]
                    span = split_span[j]
                    keep = split_mask[j]
                    for r in range(rows):
                        alive[r] &= keep if np.uint8(bins[f, r] - lo) <= span else full
                for j in range(tree_cat[t], tree_cat[t + 1]):
                    f = cat_feature[j]
                    for r in range(rows):
                        alive[r] &= cat_table[j, bins[f, r]]
                # exit leaf = lowest surviving bit; summed in tree order for every row
                for r in range(rows):
                    acc[r] += leaf_value[t, _lowest_bit(alive[r])]
            out[r0 : r0 + rows] = acc[:rows]


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
