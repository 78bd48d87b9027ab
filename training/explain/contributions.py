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

from training.compiled_forest import (
    NAN_BIN,
    CompiledForest,
    UnsupportedModel,
    _Split,
    _walk,
    cores,
)

try:
    import numba
except ImportError:  # pragma: no cover - exercised by patching ``_numba``
    numba = None

log = logging.getLogger(__name__)

Path = Literal["fast", "lightgbm"]

#: Distinct features on one root-to-leaf path beyond which the 2^d tables are not built.
MAX_PATH_FEATURES = 16
#: Rows per parallel block at most; a block explains each tree once per distinct decision
#: pattern among its rows, so bigger blocks share more (default model, 2 threads, 100k rows:
#: blocks of 2k rows 65-70k rows/s, 8k 110k, 32k 125-140k, 50k 165-180k). A block holds about
#: 16 bytes per row and feature (sums, cached values) plus 25 per row: ~32 MB at 65,536 rows
#: of 29 features.
BLOCK = 65536


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
    if len(X) == 0:  # LightGBM's predict divides by the row count
        values = np.zeros((0, booster.num_feature()))
        return Contributions(values=values, base_value=_base_value(booster, X), path="lightgbm")
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

    forest: CompiledForest  # binning of rows
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
            threads = min(threads, numba.config.NUMBA_NUM_THREADS)
            numba.set_num_threads(threads)
            # at least one block per thread, at most BLOCK rows (a block's sums stay in L2)
            block = max(1, min(BLOCK, -(-len(X) // threads)))
            _explain(
                bins, self.node_start, self.node_feature, self.node_cut, self.node_nan_left,
                self.node_cats, self.leaf_start, self.slot_start, self.table_start,
                self.slot_feature, self.slot_one_minus_z, self.slot_nodes, self.slot_left,
                self.table_z, self.table_h, self.feat_start, self.tree_feature,
                self.slot_local, block, out,
            )  # fmt: skip
        return Contributions(values=out, base_value=self.base_value, path="fast")


def _numba():
    """numba, or None when it cannot be imported (then contributions fall back to LightGBM)."""
    return numba


def _tables(booster: lgb.Booster) -> ShapTables:
    """The booster's SHAP tables, built once per booster object and set of trees used."""
    if _numba() is None:
        raise UnsupportedModel("numba is not available")
    key = (booster.best_iteration, booster.current_iteration())
    cached = getattr(booster, "_shap_tables", None)
    if cached is None or cached[0] != key:
        cached = (key, build_tables(booster))
        booster._shap_tables = cached
    return cached[1]


def build_tables(booster: lgb.Booster) -> ShapTables:
    """Parse the trees ``booster.predict`` would use into ``ShapTables``.

    Raises ``UnsupportedModel`` for whatever ``CompiledForest`` refuses and for trees the
    tables cannot hold (paths with too many distinct features, nodes with no data).
    """
    # refuses multiclass, zero-as-missing, category codes above 62, ...; built afresh rather
    # than taken from compiled_forest's per-booster cache, which ignores later changes of
    # best_iteration (the thresholds must be those of exactly the trees explained)
    forest = CompiledForest.from_booster(booster)
    dump = booster.dump_model(num_iteration=booster.best_iteration or None)
    b = _Builder(forest)
    for t, tree in enumerate(dump["tree_info"]):
        b.add_tree(t, tree["tree_structure"])
    return b.finish(booster.num_feature())


class _Builder:
    def __init__(self, forest: CompiledForest) -> None:
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
        # dump_model marks linear trees only on their leaves (no tree-level "is_linear")
        if any("leaf_const" in leaf or "leaf_coeff" in leaf for leaf, _ in leaves) or (
            "leaf_const" in root
        ):
            raise UnsupportedModel(f"tree {t} is a linear tree")
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
    # Shapley weights w(s) = s! (d-1-s)! / d!
    w = np.array([_fact(s) * _fact(d - 1 - s) / _fact(d) for s in range(d)] + [0.0])
    if numba is None:  # only tests without numba get here; any result is refused later
        return np.ones(1 << d), np.zeros(1 << d)
    return _subset_tables(np.asarray(z, dtype=np.float64), w, value)


def _fact(n: int) -> float:
    return float(np.prod(np.arange(1, n + 1, dtype=np.float64))) if n > 0 else 1.0


if numba is not None:

    @numba.njit(cache=True)
    def _subset_tables(z, w, value):
        d = z.shape[0]
        size = 1 << d
        e = np.zeros((size, d + 1))  # e[M, k]: k-th elementary symmetric polynomial over M
        e[0, 0] = 1.0
        zt = np.empty(size)
        ht = np.empty(size)
        for m in range(size):
            k = 0
            if m:
                low = m & -m
                j = 0
                while (low >> j) != 1:
                    j += 1
                prev = m & (m - 1)
                e[m, 0] = e[prev, 0]
                for i in range(1, d + 1):
                    e[m, i] = e[prev, i] + z[j] * e[prev, i - 1]
            # Z(M) = product of z outside M; H(M) = v Σ_i w(|M| - i) e_i(z_M)
            zm = 1.0
            for j in range(d):
                if (m >> j) & 1:
                    k += 1
                else:
                    zm *= z[j]
            hm = 0.0
            for i in range(k + 1):
                hm += w[k - i] * e[m, i]
            zt[m] = zm
            ht[m] = value * hm if d else 0.0
        return zt, ht

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _explain(bins, node_start, node_feature, node_cut, node_nan_left, node_cats,
                 leaf_start, slot_start, table_start, slot_feature, slot_one_minus_z,
                 slot_nodes, slot_left, table_z, table_h, feat_start, tree_feature,
                 slot_local, block, out):  # fmt: skip
        """Blocks of rows in parallel; inside a block, tree by tree, node by node over rows.

        Bins and sums are feature-major inside a block, so a node's decision for all rows and
        a feature's sums are contiguous loops; a tree's values are computed once per distinct
        decision pattern (hash table) and gathered per row. Each row's values are summed in
        tree order.
        """
        n = bins.shape[0]
        trees = node_start.shape[0] - 1
        blocks = (n + block - 1) // block
        max_feats = 1
        for t in range(trees):
            max_feats = max(max_feats, feat_start[t + 1] - feat_start[t])
        for blk in numba.prange(blocks):
            lo = blk * block
            rows = min(n, lo + block) - lo
            _explain_block(bins, lo, rows, block, max_feats, node_start, node_feature, node_cut,
                           node_nan_left, node_cats, leaf_start, slot_start, table_start,
                           slot_one_minus_z, slot_nodes, slot_left, table_z, table_h,
                           feat_start, tree_feature, slot_local, out)  # fmt: skip

    @numba.njit(cache=True, nogil=True)
    def _explain_block(bins, lo, rows, block, max_feats, node_start, node_feature, node_cut,
                       node_nan_left, node_cats, leaf_start, slot_start, table_start,
                       slot_one_minus_z, slot_nodes, slot_left, table_z, table_h, feat_start,
                       tree_feature, slot_local, out):  # fmt: skip
        """One block of rows (a separate function: numba's parfors mishandles arrays that are
        re-allocated inside a ``prange`` body, such as the growing hash table)."""
        n_features = bins.shape[1]
        trees = node_start.shape[0] - 1
        col = np.empty((n_features, block), dtype=np.uint8)
        acc = np.zeros((n_features, block))
        for r in range(rows):
            for f in range(n_features):
                col[f, r] = bins[lo + r, f]
        # hash table of the block's distinct patterns for the current tree: small (it
        # grows when half full), so probes stay in L1/L2 whatever the block size
        golden = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
        shift = np.uint64(64 - 10)
        keys = np.empty(1 << 10, dtype=np.uint64)
        slot = np.full(1 << 10, -1, dtype=np.int64)
        uniq = np.empty(block, dtype=np.uint64)
        dec = np.empty(block, dtype=np.uint64)
        pattern = np.empty(block, dtype=np.int64)
        cache = np.empty((max_feats, block))
        phi = np.empty(max_feats)
        for t in range(trees):
            n0 = node_start[t]
            n1 = node_start[t + 1]
            if n1 == n0:
                continue
            # decisions: bit i of dec[r] set = row r goes left at node i
            dec[:rows] = 0
            for i in range(n1 - n0):
                node = n0 + i
                c = col[node_feature[node]]
                bit = np.uint64(i)
                cut = node_cut[node]
                if cut < 0:
                    cats = node_cats[node]
                    for r in range(rows):
                        dec[r] |= ((cats >> np.uint64(c[r])) & np.uint64(1)) << bit
                else:
                    nan_left = node_nan_left[node]
                    for r in range(rows):
                        b = np.int64(c[r])
                        go = (b <= cut) | (nan_left & (b == NAN_BIN))
                        dec[r] |= np.uint64(go) << bit
            # one explanation per distinct pattern
            f0 = feat_start[t]
            nf = feat_start[t + 1] - f0
            used = 0
            slot[:] = -1
            for r in range(rows):
                key = dec[r]
                mask = len(keys) - 1
                pos = np.int64((key * golden) >> shift)
                while slot[pos] >= 0 and keys[pos] != key:
                    pos = (pos + 1) & mask
                if slot[pos] < 0:
                    keys[pos] = key
                    slot[pos] = used
                    uniq[used] = key
                    _tree_values(key, t, leaf_start, slot_start, table_start,
                                 slot_one_minus_z, slot_nodes, slot_left, table_z,
                                 table_h, slot_local, phi, nf)  # fmt: skip
                    for j in range(nf):
                        cache[j, used] = phi[j]
                    pattern[r] = used
                    used += 1
                    if 2 * used > len(keys):  # grow and re-insert
                        shift -= np.uint64(1)
                        keys = np.empty(2 * len(keys), dtype=np.uint64)
                        slot = np.full(len(keys), -1, dtype=np.int64)
                        mask = len(keys) - 1
                        for u in range(used):
                            pos = np.int64((uniq[u] * golden) >> shift)
                            while slot[pos] >= 0:
                                pos = (pos + 1) & mask
                            keys[pos] = uniq[u]
                            slot[pos] = u
                else:
                    pattern[r] = slot[pos]
            for j in range(nf):
                a = acc[tree_feature[f0 + j]]
                v = cache[j]
                for r in range(rows):
                    a[r] += v[pattern[r]]
        for r in range(rows):
            for f in range(n_features):
                out[lo + r, f] = acc[f, r]

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
