"""The training user-item graph and normalised adjacencies, as edge lists and sparse tensors.

Normalisation is PyTorch Geometric's ``gcn_norm`` (degree = row sum, ``D^-1/2 A D^-1/2``).
"""

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
