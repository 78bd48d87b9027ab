"""SHAP contributions of the LightGBM model, in log-odds (the trees' raw score).

Why log-odds: TreeSHAP is exact and additive in the space the trees add up in; the calibrated
probability is a monotone map of that raw score, so a reason that raises the raw score raises
the probability shown. ``base_value`` plus a row's contributions equals its raw score.

Why a second implementation: LightGBM's ``pred_contrib`` runs Lundberg's recursive TreeSHAP,
O(leaves · depth²) per tree and row with a path copy at every node — a few hundred rows/s on
our model, too slow for a province's batch reasons. The fast path computes the *same* values
(path-dependent TreeSHAP, covers = the trees' data counts) another way:

* **per-leaf tables** (the idea of Fast TreeSHAP v2, Yang 2021): for one leaf, the SHAP value is
  the Shapley value of the product game ``v · Π_{j∈S} o_j · Π_{j∉S} z_j`` over the distinct
  features ``F`` on its path, with ``z_j`` the product of cover ratios along the path on feature
  ``j`` and ``o_j ∈ {0, 1}`` whether the row follows the path at every node on ``j``. Only the
  set ``M`` of followed features depends on the row, and with ``Z(M) = Π_{j∉M} z_j`` and
  ``H(M) = v · Σ_{S⊆M} |S|!(d-|S|-1)!/d! · Π_{j∈M∖S} z_j`` a feature outside ``M`` gets
  ``-Z(M)·H(M)`` and a feature ``i`` in ``M`` gets ``(1-z_i)·Z(M)·H(M∖{i})``. ``Z`` and ``H``
  are tabulated once per leaf for all ``2^d`` subsets, so a row costs O(leaves · d) per tree
  with no recursion.
* **shared work across rows**: a tree's contributions to a row depend only on the row's
  decision at every internal node of that tree (not only on its leaf), a bitmask. Rows are
  taken in blocks; per tree, each distinct bitmask in the block is explained once (hash table)
  and its few nonzero values are added to every row that has it.
* node decisions reuse ``training.compiled_forest``: its parser (``_walk``: thresholds, NaN
  direction, category sets, what it refuses) and its binning of rows, so a numeric decision
  is one integer comparison against the split's threshold index and a categorical one a bit
  test — the same rules its scoring reproduces bit for bit.

Values equal ``pred_contrib`` to rounding (the tests hold them to 1e-9; summation order differs).
Models outside that (see ``UnsupportedModel`` in ``compiled_forest`` plus paths with more than
``MAX_PATH_FEATURES`` distinct features or empty nodes) fall back to ``pred_contrib`` with the
reason logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import lightgbm as lgb
import numpy as np

from training.compiled_forest import NAN_BIN, UnsupportedModel, _forest, _Split, _walk, cores

try:
    import numba
except ImportError:  # pragma: no cover - exercised by patching ``_numba``
    numba = None

log = logging.getLogger(__name__)

Path = Literal["fast", "lightgbm"]

#: Distinct features on one root-to-leaf path beyond which the 2^d tables are not built.
MAX_PATH_FEATURES = 16
#: Rows per parallel block; each block shares per-tree explanations between its rows.
BLOCK = 4096


@dataclass(frozen=True)
class Contributions:
    #: One row per enterprise, one column per model feature (log-odds).
    values: np.ndarray
    #: The model's expected raw score; the same for every row.
    base_value: float
    #: Which implementation computed them ("lightgbm" is the stock ``pred_contrib``).
    path: Path


def stock_contributions(
    booster: lgb.Booster, X: np.ndarray, *, threads: int | None = None
) -> Contributions:
    """LightGBM's own TreeSHAP (``pred_contrib``): the reference every faster path must equal."""
    params = {} if threads is None else {"num_threads": threads}
    out = np.asarray(booster.predict(X, pred_contrib=True, **params), dtype=np.float64)
    out = out.reshape(len(X), -1)
    base = float(out[0, -1]) if len(out) else _base_value(booster, X)
    return Contributions(values=np.ascontiguousarray(out[:, :-1]), base_value=base, path="lightgbm")


def _base_value(booster: lgb.Booster, X: np.ndarray) -> float:
    probe = np.full((1, booster.num_feature()), np.nan)
    return float(booster.predict(probe, pred_contrib=True)[0, -1])


def contributions(
    booster: lgb.Booster,
    X: np.ndarray,
    *,
    accelerated: bool = True,
    threads: int | None = None,
) -> Contributions:
    """Exact SHAP contributions of every row of ``X`` (the encoded feature matrix).

    ``accelerated`` uses the fast path when the model allows it and otherwise LightGBM's
    ``pred_contrib`` (logged, never raised); ``threads`` is capped at the machine's cores.
    """
    threads = min(threads or cores(), cores())
    if accelerated:
        try:
            tables = _tables(booster)
            return tables.contributions(X, threads=threads)
        except UnsupportedModel as exc:
            log.warning(
                "fast SHAP contributions unavailable (%s); using LightGBM's pred_contrib", exc
            )
    return stock_contributions(booster, X, threads=threads)


def top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the ``k`` largest positive and ``k`` most negative contributions per
    row, strongest first; ``-1`` pads rows with fewer than ``k`` in a direction."""
    n, m = values.shape
    k_eff = min(k, m)
    up = np.full((n, k), -1, dtype=np.int64)
    down = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or k_eff == 0:
        return up, down
    # Stable order: ties broken by column index so the same row always gives the same codes.
    order_up = np.argsort(-values, axis=1, kind="stable")[:, :k_eff]
    order_down = np.argsort(values, axis=1, kind="stable")[:, :k_eff]
    rows = np.arange(n)[:, None]
    up[:, :k_eff] = np.where(values[rows, order_up] > 0, order_up, -1)
    down[:, :k_eff] = np.where(values[rows, order_down] < 0, order_down, -1)
    return up, down


# --------------------------------------------------------------------------------------------
# The fast path: per-leaf subset tables, built once per booster.


@dataclass(frozen=True)
class ShapTables:
    """A forest's trees as node decisions plus per-leaf ``Z``/``H`` subset tables."""

    forest: object  # training.compiled_forest.CompiledForest (binning of rows)
    num_features: int
    base_value: float
    # internal nodes, trees concatenated, pre-order within a tree
    node_start: np.ndarray  # int64 [trees + 1]
    node_feature: np.ndarray  # int64
    node_cut: np.ndarray  # int64: numeric → bins <= cut go left; categorical → -1
    node_nan_left: np.ndarray  # bool: numeric NaN goes left
    node_cats: np.ndarray  # uint64: categorical → codes that go left
    # leaves, trees concatenated
    leaf_start: np.ndarray  # int64 [trees + 1]
    slot_start: np.ndarray  # int64 [leaves + 1]: the leaf's distinct path features
    table_start: np.ndarray  # int64 [leaves]: offset of its 2^d tables
    # distinct features of each leaf's path ("slots")
    slot_feature: np.ndarray  # int64
    slot_one_minus_z: np.ndarray  # float64: 1 - z_j
    slot_nodes: np.ndarray  # uint64: the path's nodes on this feature (tree-local bits)
    slot_left: np.ndarray  # uint64: of those, the ones the path leaves to the left
    table_z: np.ndarray  # float64: Z(M) = Π_{j∉M} z_j
    table_h: np.ndarray  # float64: H(M) = v · Σ_{S⊆M} w_d(|S|) Π_{j∈M∖S} z_j
    # distinct features of each tree (where a tree's values are scattered)
    feat_start: np.ndarray  # int64 [trees + 1]
    tree_feature: np.ndarray  # int64
    slot_local: np.ndarray  # int64: index of slot_feature within its tree's features

    def contributions(self, X: np.ndarray, *, threads: int) -> Contributions:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.num_features:
            raise ValueError(f"expected a (rows, {self.num_features}) matrix, got {X.shape}")
        out = np.zeros(X.shape, dtype=np.float64)
        if len(X):
            bins = self.forest.bins(X)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            _explain(
                bins, self.node_start, self.node_feature, self.node_cut, self.node_nan_left,
                self.node_cats, self.leaf_start, self.slot_start, self.table_start,
                self.slot_feature, self.slot_one_minus_z, self.slot_nodes, self.slot_left,
                self.table_z, self.table_h, self.feat_start, self.tree_feature,
                self.slot_local, out,
            )  # fmt: skip
        return Contributions(values=out, base_value=self.base_value, path="fast")


def _numba():
    """numba, or None when it cannot be imported (then contributions fall back to LightGBM)."""
    return numba


def _tables(booster: lgb.Booster) -> ShapTables:
    """The booster's SHAP tables, built once per booster object."""
    cached = getattr(booster, "_shap_tables", None)
    if cached is None:
        if _numba() is None:
            raise UnsupportedModel("numba is not available")
        cached = build_tables(booster)
        booster._shap_tables = cached
    return cached


def build_tables(booster: lgb.Booster) -> ShapTables:
    """Parse the trees ``booster.predict`` would use into ``ShapTables``.

    Raises ``UnsupportedModel`` for whatever ``CompiledForest`` refuses and for trees the
    tables cannot hold (paths with too many distinct features, nodes with no data).
    """
    forest = _forest(booster)  # refuses multiclass, linear trees, zero-as-missing, ...
    dump = booster.dump_model(num_iteration=booster.best_iteration or None)
    b = _Builder(forest)
    for t, tree in enumerate(dump["tree_info"]):
        b.add_tree(t, tree["tree_structure"])
    return b.finish(booster.num_feature())


class _Builder:
    def __init__(self, forest: object) -> None:
        self.forest = forest
        self.node_feature: list[int] = []
        self.node_cut: list[int] = []
        self.node_nan_left: list[bool] = []
        self.node_cats: list[int] = []
        self.node_start = [0]
        self.leaf_start = [0]
        self.slot_start = [0]
        self.table_start: list[int] = []
        self.slot_feature: list[int] = []
        self.slot_z: list[float] = []
        self.slot_nodes: list[int] = []
        self.slot_left: list[int] = []
        self.slot_local: list[int] = []
        self.tables_z: list[np.ndarray] = []
        self.tables_h: list[np.ndarray] = []
        self.table_size = 0
        self.feat_start = [0]
        self.tree_feature: list[int] = []
        self.base_value = 0.0

    def add_tree(self, t: int, root: dict) -> None:
        splits: list[_Split] = []
        _walk(root, t, splits, [])  # pre-order splits: the same order as _nodes below
        nodes: list[dict] = []
        leaves: list[tuple[dict, list[tuple[int, bool]]]] = []  # leaf, path (node, went left)
        _nodes(root, nodes, leaves, [])
        assert len(nodes) == len(splits)
        for node, split in zip(nodes, splits, strict=True):
            self.node_feature.append(split.feature)
            if split.categorical:
                self.node_cut.append(-1)
                self.node_nan_left.append(False)
                self.node_cats.append(sum(1 << c for c in split.categories))
            else:
                thr = self.forest.thresholds[split.feature]
                self.node_cut.append(int(np.searchsorted(thr, split.threshold)))
                self.node_nan_left.append(not split.nan_right)
                self.node_cats.append(0)
            if _count(node) <= 0:
                raise UnsupportedModel(f"tree {t}: a node with no data (cover 0)")
        self.node_start.append(len(self.node_feature))
        # expected value, leaves in LightGBM's leaf-index order as in Tree::ExpectedValue
        if not nodes:
            self.base_value += float(root.get("leaf_value", 0.0))
        else:
            total = _count(root)
            by_index = sorted(leaves, key=lambda lp: int(lp[0].get("leaf_index", 0)))
            self.base_value += sum(
                _count(lf) / total * float(lf["leaf_value"]) for lf, _ in by_index
            )
        tree_feats: list[int] = []
        for leaf, path in leaves:
            slots: dict[int, int] = {}
            z: list[float] = []
            on: list[int] = []
            left: list[int] = []
            parent = root
            for node_i, went_left in path:
                f = self.node_feature[self.node_start[-2] + node_i]
                if f not in slots:
                    slots[f] = len(slots)
                    z.append(1.0)
                    on.append(0)
                    left.append(0)
                    if f not in tree_feats:
                        tree_feats.append(f)
                s = slots[f]
                parent = nodes[node_i]
                child = parent["left_child"] if went_left else parent["right_child"]
                z[s] *= _count(child) / _count(parent)
                on[s] |= 1 << node_i
                left[s] |= (1 << node_i) if went_left else 0
            d = len(slots)
            if d > MAX_PATH_FEATURES:
                raise UnsupportedModel(
                    f"tree {t}: a path with {d} distinct features (at most {MAX_PATH_FEATURES})"
                )
            zt, ht = _leaf_tables(np.array(z, dtype=np.float64), float(leaf["leaf_value"]))
            self.table_start.append(self.table_size)
            self.table_size += len(zt)
            self.tables_z.append(zt)
            self.tables_h.append(ht)
            self.slot_feature.extend(slots)
            self.slot_local.extend(tree_feats.index(f) for f in slots)
            self.slot_z.extend(z)
            self.slot_nodes.extend(on)
            self.slot_left.extend(left)
            self.slot_start.append(len(self.slot_feature))
        self.leaf_start.append(len(self.table_start))
        self.tree_feature.extend(tree_feats)
        self.feat_start.append(len(self.tree_feature))

    def finish(self, num_features: int) -> ShapTables:
        i64 = np.int64

        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(1)

        return ShapTables(
            forest=self.forest,
            num_features=num_features,
            base_value=self.base_value,
            node_start=np.array(self.node_start, dtype=i64),
            node_feature=np.array(self.node_feature, dtype=i64),
            node_cut=np.array(self.node_cut, dtype=i64),
            node_nan_left=np.array(self.node_nan_left, dtype=np.bool_),
            node_cats=np.array(self.node_cats, dtype=np.uint64),
            leaf_start=np.array(self.leaf_start, dtype=i64),
            slot_start=np.array(self.slot_start, dtype=i64),
            table_start=np.array(self.table_start, dtype=i64),
            slot_feature=np.array(self.slot_feature, dtype=i64),
            slot_one_minus_z=1.0 - np.array(self.slot_z, dtype=np.float64),
            slot_nodes=np.array(self.slot_nodes, dtype=np.uint64),
            slot_left=np.array(self.slot_left, dtype=np.uint64),
            table_z=cat(self.tables_z),
            table_h=cat(self.tables_h),
            feat_start=np.array(self.feat_start, dtype=i64),
            tree_feature=np.array(self.tree_feature, dtype=i64),
            slot_local=np.array(self.slot_local, dtype=i64),
        )


def _count(node: dict) -> float:
    return float(node["internal_count"] if "split_index" in node else node["leaf_count"])


def _nodes(
    node: dict,
    nodes: list[dict],
    leaves: list[tuple[dict, list[tuple[int, bool]]]],
    path: list[tuple[int, bool]],
) -> None:
    """Internal nodes in pre-order (``_walk``'s order) and every leaf with its path."""
    if "split_index" not in node:
        if path:
            leaves.append((node, list(path)))
        return
    i = len(nodes)
    nodes.append(node)
    _nodes(node["left_child"], nodes, leaves, [*path, (i, True)])
    _nodes(node["right_child"], nodes, leaves, [*path, (i, False)])


def _leaf_tables(z: np.ndarray, value: float) -> tuple[np.ndarray, np.ndarray]:
    """``Z(M)`` and ``H(M)`` of one leaf for every subset ``M`` (bit j = path feature j).

    ``H`` is a sum of positive terms (Shapley weights times cover fractions), so it is as
    accurate as the products in it; elementary symmetric polynomials of the ``z`` in ``M`` are
    built one bit at a time from the subset without its lowest bit.
    """
    d = len(z)
    size = 1 << d
    # Shapley weights w(s) = s! (d-1-s)! / d!
    w = np.array([_fact(s) * _fact(d - 1 - s) / _fact(d) for s in range(d)] + [0.0])
    e = np.zeros((size, d + 1))  # e[M, k]: k-th elementary symmetric polynomial of z over M
    e[0, 0] = 1.0
    zt = np.empty(size)
    ht = np.empty(size)
    full = np.prod(z)
    for m in range(size):
        if m:
            j = (m & -m).bit_length() - 1
            prev = e[m & (m - 1)]
            e[m, 0] = prev[0]
            e[m, 1:] = prev[1:] + z[j] * prev[:-1]
        k = m.bit_count()
        # H(M) = v Σ_{S⊆M} w(|S|) Π_{M∖S} z = v Σ_i w(|M| - i) e_i(z_M)
        ht[m] = value * float(np.dot(w[k - np.arange(k + 1)], e[m, : k + 1])) if d else 0.0
        zt[m] = np.prod(z[[j for j in range(d) if not m >> j & 1]]) if m != 0 else full
    return zt, ht


def _fact(n: int) -> float:
    return float(np.prod(np.arange(1, n + 1, dtype=np.float64))) if n > 0 else 1.0


if numba is not None:

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _explain(bins, node_start, node_feature, node_cut, node_nan_left, node_cats,
                 leaf_start, slot_start, table_start, slot_feature, slot_one_minus_z,
                 slot_nodes, slot_left, table_z, table_h, feat_start, tree_feature,
                 slot_local, block, out):  # fmt: skip
        n = bins.shape[0]
        trees = node_start.shape[0] - 1
        blocks = (n + block - 1) // block
        max_feats = 1
        for t in range(trees):
            max_feats = max(max_feats, feat_start[t + 1] - feat_start[t])
        cap = 1
        while cap < 2 * block:
            cap *= 2
        for blk in numba.prange(blocks):
            lo = blk * block
            hi = min(n, lo + block)
            keys = np.empty(cap, dtype=np.uint64)
            stamp = np.full(cap, -1, dtype=np.int64)
            where = np.empty(cap, dtype=np.int64)
            cache = np.empty((block, max_feats))
            phi = np.empty(max_feats)
            for t in range(trees):
                n0 = node_start[t]
                n1 = node_start[t + 1]
                if n1 == n0:
                    continue
                f0 = feat_start[t]
                nf = feat_start[t + 1] - f0
                used = 0
                for r in range(lo, hi):
                    # the row's decision at every internal node: bit i set = goes left
                    dec = np.uint64(0)
                    for i in range(n1 - n0):
                        node = n0 + i
                        b = np.int64(bins[r, node_feature[node]])
                        cut = node_cut[node]
                        if cut < 0:
                            go = (node_cats[node] >> np.uint64(b)) & np.uint64(1)
                        elif b == NAN_BIN:
                            go = np.uint64(node_nan_left[node])
                        else:
                            go = np.uint64(b <= cut)
                        dec |= go << np.uint64(i)
                    h = (dec * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
                    pos = np.int64(h) & (cap - 1)
                    while stamp[pos] == t and keys[pos] != dec:
                        pos = (pos + 1) & (cap - 1)
                    if stamp[pos] != t:
                        stamp[pos] = t
                        keys[pos] = dec
                        where[pos] = used
                        _tree_values(dec, t, leaf_start, slot_start, table_start,
                                     slot_one_minus_z, slot_nodes, slot_left, table_z,
                                     table_h, slot_local, phi, nf)  # fmt: skip
                        cache[used, :nf] = phi[:nf]
                        used += 1
                    c = where[pos]
                    for j in range(nf):
                        out[r, tree_feature[f0 + j]] += cache[c, j]

    @numba.njit(inline="always")
    def _tree_values(dec, t, leaf_start, slot_start, table_start, slot_one_minus_z,
                     slot_nodes, slot_left, table_z, table_h, slot_local, phi, nf):  # fmt: skip
        """One tree's contributions for one decision pattern, per feature of the tree."""
        for j in range(nf):
            phi[j] = 0.0
        for leaf in range(leaf_start[t], leaf_start[t + 1]):
            s0 = slot_start[leaf]
            d = slot_start[leaf + 1] - s0
            m = 0
            for j in range(d):
                s = s0 + j
                if ((dec ^ slot_left[s]) & slot_nodes[s]) == np.uint64(0):
                    m |= 1 << j
            base = table_start[leaf]
            zm = table_z[base + m]
            off = -zm * table_h[base + m]
            for j in range(d):
                s = s0 + j
                if (m >> j) & 1:
                    phi[slot_local[s]] += slot_one_minus_z[s] * zm * table_h[base + (m ^ (1 << j))]
                else:
                    phi[slot_local[s]] += off
