"""The training user-item graph and normalised adjacencies, as edge lists and sparse tensors.

Normalisation is PyTorch Geometric's ``gcn_norm`` (degree = row sum, ``D^-1/2 A D^-1/2``).
"""

import warnings
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from recbole_recgoat.errors import InputError


def rows(x, index):
    """``x[index]`` for a 1-D index, with a deterministic backward on CPU.

    Advanced indexing (``x[index]``) back-propagates through ``index_put_(accumulate=True)``, whose
    CPU kernel adds duplicate rows in a thread-dependent order (results differ in the last bits
    from run to run); ``index_select`` back-propagates through ``index_add_``, which does not.
    """
    return x.index_select(0, index)


def training_edges(dataset):
    """Distinct (user, item) pairs of ``dataset``'s interactions (the TRAINING split for models).

    Returns:
        tuple[LongTensor, LongTensor]: users ``[E]`` and items ``[E]``, internal ids.
    """
    csr = dataset.inter_matrix(form="csr")
    csr.sum_duplicates()
    coo = csr.tocoo()
    return torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))


def edge_softmax(src, index, num_nodes):
    """``[E]``: ``softmax`` of ``src [E]`` over the edges that share a node ``index[e]`` (GAT's; GRCN).

    The forward is PyTorch Geometric's ``torch_geometric.utils.softmax(src, index, num_nodes=...)``
    op for op (shift by the node's maximum, ``exp``, node sums ``+ 1e-16``; bit-identical); the
    backward is one fused ``y * (g - sum_node(g y))`` instead of autograd through its seven ops:
    0.76 ms against 0.59 ms per softmax forward + backward on Last.fm-2K's 44,327 edges (one thread,
    ``benchmarks/profile_step.py GRCN``: GRCN runs ``M (R + 2)`` of them per step, 10 on Last.fm-2K).
    """
    return _EdgeSoftmax.apply(src, index, int(num_nodes))


class _EdgeSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, src, index, num_nodes):
        # PyG's include_self=False max, at half the cost (0.10 against 0.21 ms on 44 k edges): the
        # -inf start changes only the nodes without edges, which no edge reads
        node_max = src.new_full((num_nodes,), -float("inf")).scatter_reduce_(0, index, src, reduce="amax", include_self=True)
        e = (src - node_max.index_select(0, index)).exp()
        node_sum = src.new_zeros(num_nodes).scatter_add_(0, index, e) + 1e-16
        y = e / node_sum.index_select(0, index)
        ctx.num_nodes = num_nodes
        ctx.save_for_backward(y, index)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, index = ctx.saved_tensors
        gy = grad * y
        node_dot = gy.new_zeros(ctx.num_nodes).scatter_add_(0, index, gy)
        return gy - y * node_dot.index_select(0, index), None, None


def sparse_from_edges(rows, cols, values, shape):
    """Coalesced sparse COO ``[shape]`` with ``values[e]`` at ``(rows[e], cols[e])``."""
    index = torch.stack([rows, cols])
    return torch.sparse_coo_tensor(index, values, shape, check_invariants=False).coalesce()


def normalized_graph(edge_index, n_nodes, weights=None):
    """Sparse ``D^-1/2 A D^-1/2`` ``[N, N]`` of an edge list ``[2, E]`` (degree = row sum of the
    optional ``[E]`` weights; an isolated node's row is zero)."""
    w = None if weights is None else weights.float()
    edge_index, values = gcn_norm(edge_index, w, n_nodes, add_self_loops=False, flow="target_to_source")
    return sparse_from_edges(edge_index[0], edge_index[1], values, (n_nodes, n_nodes))


def bipartite_norm_adj(users, items, n_users, n_items, weights=None):
    """Symmetric-normalised user-item adjacency ``D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` (LightGCN).

    Args:
        users, items (LongTensor): ``[E]`` interaction endpoints (internal ids).
        n_users, n_items (int): node counts (PAD included, as RecBole counts).
        weights (Tensor | None): optional ``[E]`` edge weights.

    Returns:
        torch.Tensor: sparse ``[n_users + n_items, n_users + n_items]``.
    """
    edge_index = torch.stack([torch.cat([users, items + n_users]), torch.cat([items + n_users, users])])
    w = None if weights is None else torch.cat([weights, weights])
    return normalized_graph(edge_index, n_users + n_items, w)


def user_cooccurrence_topk(users, items, n_users, n_items, k, weighting="softmax", max_block_pairs=2**24):
    """The user-user co-occurrence graph (DRAGON, Zhou et al., ECAI 2023): every user's ``k`` users
    who share the most items with him.

    With ``R`` the binary ``[n_users, n_items]`` matrix of the given (user, item) pairs (duplicates
    count once), ``C = R R^T`` counts the items two users share; the diagonal (a user with himself)
    is dropped. Each row keeps its ``k`` largest counts (ties: the smaller user id first; a row
    with fewer than ``k`` co-users keeps them all, a row with none has no edge).

    ``C`` is a sparse product (scipy) computed for blocks of consecutive users, each block holding
    about ``max_block_pairs`` (user, item, co-user) triples (a user's share is the summed degree of
    his items), and the top-``k`` is one lexsort per block: never a dense ``users x users`` matrix,
    memory bounded by the block (a user whose triples alone exceed it gets a block of his own).

    Args:
        users, items (LongTensor): ``[E]`` interaction endpoints (pass the TRAINING edges).
        n_users, n_items (int): node counts.
        k (int): neighbours kept per user.
        weighting (str): edge weights ``[E']``: ``softmax`` (per row, ``softmax_v(C_uv)`` over the
            kept co-users: DRAGON's ``user_aggr_mode``), ``mean`` (``1 / deg(u)``) or ``count``
            (``C_uv`` itself).
        max_block_pairs (int): triples per block of ``R R^T`` (memory bound).

    Returns:
        tuple[LongTensor, Tensor]: ``edge_index [2, E']`` (row = user, col = co-user; rows in
        increasing order, each row's co-users by decreasing count) and ``weights [E']`` (float32).
    """
    import scipy.sparse as sp

    if weighting not in ("softmax", "mean", "count"):
        raise ValueError(f"weighting: '{weighting}' is not one of softmax, mean, count")
    u = users.detach().cpu().numpy().astype(np.int64)
    i = items.detach().cpu().numpy().astype(np.int64)
    r = sp.csr_matrix((np.ones(u.size, dtype=np.int64), (u, i)), shape=(n_users, n_items))
    r.sum_duplicates()
    r.data[:] = 1  # a (user, item) pair counts once
    rt = r.T.tocsr()
    work = np.cumsum(r @ np.asarray(r.sum(axis=0)).ravel())  # [n_users] cumulative triples
    block = work // max(1, int(max_block_pairs))
    starts = np.flatnonzero(np.diff(block, prepend=-1))
    rows, cols, counts = [], [], []
    for start, stop in zip(starts, np.append(starts[1:], n_users)):
        c = (r[start:stop] @ rt).tocoo()  # [b, n_users] shared-item counts
        row, col, cnt = c.row.astype(np.int64) + start, c.col.astype(np.int64), c.data.astype(np.int64)
        keep = (row != col) & (cnt > 0)
        row, col, cnt = row[keep], col[keep], cnt[keep]
        order = np.lexsort((col, -cnt, row))  # by row, then count descending, then co-user id
        row, col, cnt = row[order], col[order], cnt[order]
        first = np.searchsorted(row, row, side="left")  # position of each row's first entry
        keep = (np.arange(row.size) - first) < k  # rank within the row
        rows.append(row[keep]), cols.append(col[keep]), counts.append(cnt[keep])
    row = torch.from_numpy(np.concatenate(rows)) if rows else torch.empty(0, dtype=torch.long)
    col = torch.from_numpy(np.concatenate(cols)) if cols else torch.empty(0, dtype=torch.long)
    cnt = torch.from_numpy(np.concatenate(counts)).double() if counts else torch.empty(0, dtype=torch.float64)
    if weighting == "count":
        weights = cnt
    elif weighting == "mean":
        weights = 1.0 / torch.bincount(row, minlength=n_users).double()[row]
    else:  # softmax per row, shifted by the row's maximum (its first entry)
        row_max = torch.full((n_users,), -float("inf"), dtype=torch.float64).scatter_reduce(0, row, cnt, "amax")
        e = torch.exp(cnt - row_max[row])
        weights = e / torch.zeros(n_users, dtype=torch.float64).index_add_(0, row, e)[row]
    return torch.stack([row, col]).to(users.device), weights.float().to(users.device)


def weighted_sparse_sum(mats, weights):
    """``sum_k w_k A_k`` of sparse COO ``[N, N]`` matrices (duplicates summed, coalesced)."""
    index = torch.cat([m.indices() for m in mats], dim=1)
    values = torch.cat([w * m.values() for m, w in zip(mats, weights)])
    return torch.sparse_coo_tensor(index, values, mats[0].shape, check_invariants=False).coalesce()


def sparse_max(mats):
    """Element-wise maximum of sparse COO ``[N, M]`` matrices over the union of their patterns.

    An entry stored in only some of the matrices takes the largest of the values stored there
    (absent entries count as ``-inf``, not 0, so a negative stored value survives); coalesced.
    Memory linear in the stored entries (no dense ``[N, M]``).
    """
    mats = [m.coalesce() for m in mats]
    index = torch.cat([m.indices() for m in mats], dim=1)
    values = torch.cat([m.values() for m in mats])
    n_cols = mats[0].shape[1]
    uniq, inverse = torch.unique(index[0] * n_cols + index[1], return_inverse=True)  # sorted (row, col) keys
    out = values.new_full((uniq.numel(),), -float("inf")).scatter_reduce(0, inverse, values, "amax", include_self=True)
    pairs = torch.stack([uniq // n_cols, uniq % n_cols])
    return torch.sparse_coo_tensor(pairs, out, mats[0].shape, check_invariants=False).coalesce()


def sample_without_replacement(weights, n):
    """``n`` distinct indices of ``weights [E]``, drawn successively with probability ``prop. to weights``.

    ``torch.multinomial`` (torch RNG, so reproducible under a seed) while ``E`` fits its limit
    (2^24 categories); beyond it the equivalent exponential-race trick ``top-n(w / Exp(1))``.

    Returns:
        LongTensor: ``[n]`` indices.
    """
    n = int(n)
    if n >= weights.numel():
        return torch.arange(weights.numel(), device=weights.device)
    if weights.numel() <= 2**24:
        return torch.multinomial(weights, n, replacement=False)
    race = weights / torch.empty_like(weights).exponential_(1.0)
    return race.topk(n).indices


class BufferDict(nn.Module):
    """An ordered ``{name: tensor}`` of buffers (the data a model is built from: feature matrices,
    edge lists), so ``model.to(device)`` moves them; not saved in checkpoints (``persistent=False``:
    they are rebuilt from the data)."""

    def __init__(self, tensors=None):
        super().__init__()
        self._names = []
        for name, tensor in (tensors or {}).items():
            self[name] = tensor

    def __setitem__(self, name, tensor):
        if name not in self._names:
            self._names.append(name)
        self.register_buffer(name, tensor, persistent=False)

    def __getitem__(self, name):
        return self._buffers[name]

    def __contains__(self, name):
        return name in self._buffers

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def keys(self):
        return list(self._names)

    def values(self):
        return [self._buffers[n] for n in self._names]

    def items(self):
        return [(n, self._buffers[n]) for n in self._names]

    def as_dict(self):
        """A plain ``OrderedDict`` of the tensors."""
        return OrderedDict(self.items())

    def extra_repr(self):
        return ", ".join(f"{n}: {tuple(t.shape)}" for n, t in self.items())


def modality_mix_weights(modalities, image_weight=0.1, text_modality="text", explicit=None):
    """Weights ``{modality: w}`` (summing to 1) of the per-modality item-item graphs.

    ``explicit`` (a mapping) wins, normalised to sum 1; otherwise the text modality gets
    ``1 - image_weight`` and the other modalities share ``image_weight`` (FREEDOM's
    ``mm_image_weight`` with image + text); without a text modality, equal weights.
    """
    modalities = list(modalities)
    if explicit:
        unknown = [m for m in explicit if m not in modalities]
        missing = [m for m in modalities if m not in explicit]
        if unknown or missing:
            raise InputError(
                f"modality_weights: got {dict(explicit)}; expected one non-negative weight for each of "
                f"{', '.join(modalities)}"
            )
        total = float(sum(float(explicit[m]) for m in modalities))
        if total <= 0 or any(float(explicit[m]) < 0 for m in modalities):
            raise InputError(f"modality_weights: got {dict(explicit)}; expected non-negative weights with a positive sum")
        return {m: float(explicit[m]) / total for m in modalities}
    if len(modalities) == 1:
        return {modalities[0]: 1.0}
    if text_modality in modalities:
        others = [m for m in modalities if m != text_modality]
        w = {m: float(image_weight) / len(others) for m in others}
        w[text_modality] = 1.0 - float(image_weight)
        return {m: w[m] for m in modalities}
    return {m: 1.0 / len(modalities) for m in modalities}



class BipartiteEdgeOps(nn.Module):
    """Per-edge weighted sums and per-edge dot products over a fixed bipartite edge list
    ``(u_e, i_e)``, ``e = 1..E``, with edge values that change every step (GRCN's affinities and
    refined-graph weights), as sparse CSR kernels instead of ``[E, d]`` gathers and ``index_add``.

    * ``to_users(w, x) = sum_{e: u_e = u} w_e x[i_e]``  ``[n_users, d]`` (and ``to_items``): a CSR
      product (SpMM) with the values ``w``;
    * ``dot(a, b)_e = a[u_e] . b[i_e]``  ``[E]``: ``torch.sparse.sampled_addmm`` (SDDMM).

    Each is the other's backward (``d to_users / d w = dot(g, x)``, ``d dot / d a = to_users(g, b)``),
    so forwards and backwards never materialise an ``[E, d]`` tensor. Justification
    (``benchmarks/profile_step.py GRCN --dataset lastfm-2k --threads 1 --shapes``, commit 9ece2c3,
    docs/performance.md "The four baselines of issue 25"): GRCN's step spent ~80% of its time in
    ``[E, 64]`` ``mul`` / ``fill_`` / ``index_select`` / ``scatter_add_`` (E = 44,327). Median ms
    of one call, one thread, quiet, d = 64 (Last.fm-2K's graph size / Baby's, 1,859 x 1,426 users x
    items with 44 k edges / 19,446 x 7,051 with 120 k):

    ===============================================  ============  ============
    op                                               Last.fm-2K    Baby
    ===============================================  ============  ============
    SpMM ``zeros.index_add(0, u, w[:, None] x[i])``  2.92          14.8
    SpMM ``sparse.mm(csr, x, "sum")``                0.33          1.41 / 1.65
    SpMM MKL ``csr @ x`` (used)                      0.17          1.28 / 1.25
    SDDMM ``(a[u] * b[i]).sum(1)``                   2.74          18.2
    SDDMM ``sampled_addmm`` (used)                   0.27          1.39
    ===============================================  ============  ============

    Same sums in another order: equal to float tolerance (not bit-identical).

    ``copies = M`` stacks ``M`` copies of the graph side by side (block-diagonal: copy ``k``'s users
    are rows ``k n_users ..``, its items ``k n_items ..``, its edges ``k E ..``), so that ``M``
    modalities' computations over the same graph run as one kernel call each (tensors
    ``[M n_users, C]``, ``[M n_items, C]``, ``[M E]``): each row's sum is the one a single copy
    computes (the same numbers), and the per-call overhead, which on Last.fm-2K's small graph is about
    half of each op's cost, is paid once instead of ``M`` times.

    The values ``w`` and the outputs of :meth:`dot` are in the edge list's own order (copy after
    copy); ``users`` / ``items`` ``[copies E]`` are the (stacked) endpoints of each edge.

    Args:
        users, items (LongTensor): ``[E]`` edge endpoints (distinct pairs).
        n_users, n_items (int): node counts.
        copies (int): block-diagonal copies of the graph (default 1).
    """

    def __init__(self, users, items, n_users, n_items, copies=1):
        super().__init__()
        copies = int(copies)
        users = torch.cat([users + k * int(n_users) for k in range(copies)])
        items = torch.cat([items + k * int(n_items) for k in range(copies)])
        self.copies = copies
        self.n_users, self.n_items = int(n_users) * copies, int(n_items) * copies
        by_user = torch.argsort(users * self.n_items + items, stable=True)
        by_item = torch.argsort(items * self.n_users + users, stable=True)
        identity = torch.equal(by_user, torch.arange(users.numel(), device=users.device))
        # MKL's CSR kernels take 32-bit indices: stored so, they are not converted at every call
        index = torch.int32 if max(self.n_users, self.n_items, users.numel()) < 2**31 else torch.long
        self.register_buffer("users", users, persistent=False)
        self.register_buffer("items", items, persistent=False)
        self.register_buffer("by_user", None if identity else by_user, persistent=False)
        self.register_buffer("by_item", by_item, persistent=False)
        self.register_buffer("user_ptr", self._row_ptr(users, self.n_users).to(index), persistent=False)
        self.register_buffer("item_ptr", self._row_ptr(items, self.n_items).to(index), persistent=False)
        self.register_buffer("user_cols", items[by_user].to(index), persistent=False)  # items, user-major
        self.register_buffer("item_cols", users[by_item].to(index), persistent=False)  # users, item-major
        with warnings.catch_warnings():  # torch warns once per process that CSR is in beta
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)
            # SDDMM's sparsity pattern (user-major, zero values): sampled_addmm's ``input``, times beta = 0
            self.register_buffer("pattern", self._csr(users.new_zeros(users.numel(), dtype=torch.float32), True), persistent=False)

    @staticmethod
    def _row_ptr(rows_, n):
        ptr = torch.zeros(n + 1, dtype=torch.long, device=rows_.device)
        ptr[1:] = torch.cumsum(torch.bincount(rows_, minlength=n), 0)
        return ptr

    def _csr(self, w, to_users):
        """CSR ``[n_users, n_items]`` (``to_users``) or ``[n_items, n_users]`` with edge values ``w``."""
        if to_users:
            vals = w if self.by_user is None else w.index_select(0, self.by_user)
            return torch.sparse_csr_tensor(self.user_ptr, self.user_cols, vals, (self.n_users, self.n_items), check_invariants=False)
        vals = w.index_select(0, self.by_item)
        return torch.sparse_csr_tensor(self.item_ptr, self.item_cols, vals, (self.n_items, self.n_users), check_invariants=False)

    def _spmm(self, w, x, to_users):
        # MKL's CSR product (``a @ x``), not the row-parallel ``sparse.mm(..., "sum")`` of
        # SparseOperator: at these widths (64) and sizes it is the faster one (figures above)
        return self._csr(w, to_users) @ x.contiguous()

    def _sddmm(self, a, b):
        """``a[u_e] . b[i_e]`` ``[E]`` (edge order)."""
        pattern = self.pattern if self.pattern.dtype == a.dtype else self.pattern.to(a.dtype)
        vals = torch.sparse.sampled_addmm(pattern, a.contiguous(), b.t(), beta=0.0).values()
        if self.by_user is None:
            return vals
        return torch.empty_like(vals).index_copy_(0, self.by_user, vals)

    def to_users(self, w, x_items):
        """``[n_users, d]``: ``sum_{i in N(u)} w_ui x_items[i]``."""
        return _EdgeSum.apply(w, x_items, self, True)

    def to_items(self, w, x_users):
        """``[n_items, d]``: ``sum_{u in N(i)} w_ui x_users[u]``."""
        return _EdgeSum.apply(w, x_users, self, False)

    def dot(self, x_users, x_items):
        """``[E]``: ``x_users[u_e] . x_items[i_e]``."""
        return _EdgeDot.apply(x_users, x_items, self)

    def extra_repr(self):
        return f"copies={self.copies}, n_users={self.n_users}, n_items={self.n_items}, edges={self.user_cols.numel()}"


class _EdgeSum(torch.autograd.Function):
    """``out[dst] = sum_e w_e x[src_e]``; backward ``dx = A(w)^T g``, ``dw_e = g[dst_e] . x[src_e]``."""

    @staticmethod
    def forward(ctx, w, x, ops, to_users):
        ctx.ops, ctx.to_users = ops, to_users
        ctx.save_for_backward(w, x)
        return ops._spmm(w, x, to_users)

    @staticmethod
    def backward(ctx, grad):
        w, x = ctx.saved_tensors
        ops, to_users = ctx.ops, ctx.to_users
        grad_w = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = ops._spmm(w, grad, not to_users)
        if ctx.needs_input_grad[0]:
            grad_w = ops._sddmm(grad, x) if to_users else ops._sddmm(x, grad)
        return grad_w, grad_x, None, None


class _EdgeDot(torch.autograd.Function):
    """``s_e = a[u_e] . b[i_e]``; backward ``da = A(g) b``, ``db = A(g)^T a``."""

    @staticmethod
    def forward(ctx, a, b, ops):
        ctx.ops = ops
        ctx.save_for_backward(a, b)
        return ops._sddmm(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ops = ctx.ops
        grad_a = ops._spmm(grad, b, True) if ctx.needs_input_grad[0] else None
        grad_b = ops._spmm(grad, a, False) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None
