"""Cosine kNN graphs over feature rows (items, users): exact in row blocks or faiss IVF, cached.

Never an ``N x N`` matrix: exact search compares a block of rows with all rows at a time; above
:data:`KNN_EXACT_MAX_NODES` nodes ``auto`` uses a faiss IVF index (when installed) and measures its
recall against exact search on a sample.  Symmetrisation and self-loops are PyTorch Geometric's
``to_undirected`` / ``add_remaining_self_loops``; edge lists are kept sorted by (row, col).
:func:`knn_similarities` is the differentiable variant (a learned graph, LATTICE): exact blockwise
search without gradients, then the kept pairs' cosine similarities recomputed WITH autograd.
"""

import hashlib
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.utils import add_remaining_self_loops, coalesce, to_undirected

from recbole_recgoat.utils.console import Progress
from recbole_recgoat.utils.io import atomic_write

KNN_EXACT_MAX_NODES = 20_000  # above this, method="auto" uses faiss (IVF) when it is installed


def _exact_topk(xn, queries, valid, k, include_self, max_block_bytes, what=None):
    """Exact top-``k`` cosine neighbours of the rows ``queries`` of the normalised ``xn [N, f]``,
    in blocks of queries (memory ``O(block x N)``); ``what`` names the step on the terminal."""
    n = xn.shape[0]
    block = max(1, int(max_block_bytes // (4 * n)))
    vals, nbs = [], []
    with Progress(what or f"kNN graph of {n:,} rows (exact)", queries.numel()) as progress:
        for start in range(0, queries.numel(), block):
            idx = queries[start : start + block]
            sim = xn[idx] @ xn.T  # [b, N]
            sim[:, ~valid] = -float("inf")
            if not include_self:
                sim[torch.arange(idx.numel(), device=xn.device), idx] = -float("inf")
            val, nb = sim.topk(k, dim=1)
            vals.append(val)
            nbs.append(nb)
            progress.update(start + idx.numel())
    return torch.cat(vals), torch.cat(nbs)


def _faiss_topk(xn, nodes, k, include_self, nprobe, seed=0, search_block=32768):
    """Approximate top-``k`` inner-product neighbours with a faiss IVF-Flat index over ``nodes``.

    ``nlist = 4 sqrt(n)`` lists (at least 39 training points each), trained on a fixed-seed sample;
    ``nprobe`` lists searched per query.  Memory: the index holds the ``[n, f]`` vectors (linear).
    The queries are searched ``search_block`` at a time (each query's result is its own; the
    blocks only let the search show its progress).
    Returns ``(sims [n, k], neighbours [n, k])`` with -1 where fewer than ``k`` were found.
    """
    import faiss

    xs = np.ascontiguousarray(xn[nodes].cpu().numpy(), dtype=np.float32)
    n, f = xs.shape
    nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
    quantizer = faiss.IndexFlatIP(f)
    index = faiss.IndexIVFFlat(quantizer, f, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    train = xs[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
    index.cp.seed = seed
    index.train(train)
    index.add(xs)
    index.nprobe = min(nprobe, nlist)
    kk = k + (0 if include_self else 1)
    found = []
    with Progress(f"kNN graph of {n:,} rows (faiss)", n) as progress:
        for start in range(0, n, search_block):
            found.append(index.search(xs[start : start + search_block], kk))
            progress.update(min(n, start + search_block))
    sims = torch.from_numpy(np.concatenate([s for s, _ in found]))
    pos = torch.from_numpy(np.concatenate([p for _, p in found]))
    if not include_self:  # drop the query itself (or the last hit when it was not found)
        is_self = pos == torch.arange(n).unsqueeze(1)
        drop = torch.where(is_self.any(1), is_self.float().argmax(1), torch.full((n,), kk - 1))
        keep = torch.ones_like(pos, dtype=torch.bool)
        keep[torch.arange(n), drop] = False
        pos, sims = pos[keep].view(n, k), sims[keep].view(n, k)
    nb = torch.where(pos >= 0, nodes.cpu()[pos.clamp(min=0)], torch.full_like(pos, -1))
    return sims.to(xn.device), nb.to(xn.device)


@torch.no_grad()
def knn_neighbours(x, k, valid=None, include_self=True, max_block_bytes=256 * 2**20, method="auto",
                   nprobe=32, stats=None, recall_sample=1000):
    """Top-``k`` cosine neighbours of every row of ``x``; never an ``N x N`` matrix.

    ``method``: ``exact`` compares row blocks with all rows (memory ``O(block x N)``, time
    ``O(N^2 f)``); ``faiss`` searches an IVF index (memory ``O(N f)``, time about
    ``O(N^1.5 f)``); ``auto`` is exact up to :data:`KNN_EXACT_MAX_NODES` nodes, then faiss if it is
    installed.  With faiss, the recall@k against exact search on ``recall_sample`` random rows is
    measured and put in ``stats`` (a dict the caller passes), with the method and the time.

    Args:
        x (Tensor): ``[N, f]`` features.
        k (int): neighbours per node.
        valid (BoolTensor | None): ``[N]``; invalid nodes (e.g. RecBole's PAD id 0) get no edges
            and are nobody's neighbour.
        include_self (bool): whether a node may be its own neighbour (it is its nearest).
        max_block_bytes (int): bound on an exact similarity block.

    Returns:
        tuple[LongTensor, Tensor]: ``edge_index [2, E]`` (row = node, col = neighbour) and the
        cosine similarities ``[E]``.
    """
    start = time.perf_counter()
    n = x.shape[0]
    valid = torch.ones(n, dtype=torch.bool, device=x.device) if valid is None else valid.to(x.device)
    k = min(k, int(valid.sum()) - (0 if include_self else 1))
    if k <= 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device), torch.empty(0, device=x.device)
    xn = F.normalize(x.float(), dim=1)
    nodes = torch.nonzero(valid).flatten()
    if method == "auto":
        method = "exact" if nodes.numel() <= KNN_EXACT_MAX_NODES or not _has_faiss() else "faiss"
    if method == "exact":
        sims, nb = _exact_topk(xn, nodes, valid, k, include_self, max_block_bytes)
    elif method == "faiss":
        sims, nb = _faiss_topk(xn, nodes, k, include_self, nprobe)
    else:
        raise ValueError(f"knn_method: '{method}' is not one of auto, exact, faiss")
    found = nb >= 0
    rows = nodes.unsqueeze(1).expand_as(nb)[found]
    if stats is not None:
        stats.update({"method": method, "nodes": int(nodes.numel()), "k": k, "seconds": time.perf_counter() - start})
        if method == "faiss":
            gen = torch.Generator().manual_seed(0)
            pick = torch.randperm(nodes.numel(), generator=gen)[: min(recall_sample, nodes.numel())].to(x.device)
            _, exact_nb = _exact_topk(xn, nodes[pick], valid, k, include_self, max_block_bytes,
                                      what=f"kNN recall check on {pick.numel():,} of {n:,} rows")
            hits = (nb[pick].unsqueeze(2) == exact_nb.unsqueeze(1)).any(2).sum()
            stats["recall_at_k"] = float(hits) / exact_nb.numel()
    return torch.stack([rows, nb[found]]), sims[found]


def knn_similarities(x, k, valid=None, include_self=True, max_block_bytes=256 * 2**20):
    """Exact top-``k`` cosine neighbours of every row of ``x`` AND their similarities WITH autograd
    (a learned graph: LATTICE); never more than a ``block x N`` similarity slice.

    The neighbour search runs without gradients, a block of rows against all rows at a time (as
    :func:`knn_neighbours` ``method="exact"``); the selection is piecewise constant, so it has no
    gradient anyway.  The kept similarities are then recomputed from the normalised rows,
    ``s_ij = x_i . x_j / (||x_i|| ||x_j||)`` for the ``E = N k`` kept pairs only, so they carry
    gradients to ``x`` exactly as ``topk`` of the dense similarity matrix would (the values
    ``topk`` returns are those entries).  Memory: ``O(block x N)`` for the search (no gradient) and
    ``O(N k f)`` for the gathered pairs kept for backward.

    Args:
        x (Tensor): ``[N, f]`` rows (e.g. projected features), may require grad.
        k (int): neighbours per row (capped at the valid rows; the row itself counts when
            ``include_self``).
        valid (BoolTensor | None): ``[N]``; invalid rows (RecBole's PAD id 0) get no edges and are
            nobody's neighbour.
        include_self (bool): whether a row may be its own neighbour (it is its nearest).
        max_block_bytes (int): bound on one similarity block.

    Returns:
        tuple[LongTensor, Tensor]: ``edge_index [2, E]`` (row = node, col = neighbour; rows
        ascending, each row's neighbours by decreasing similarity; directed, no symmetrisation)
        and the cosine similarities ``[E]`` (differentiable w.r.t. ``x``).
    """
    n = x.shape[0]
    valid = torch.ones(n, dtype=torch.bool, device=x.device) if valid is None else valid.to(x.device)
    k = min(int(k), int(valid.sum()) - (0 if include_self else 1))
    if k <= 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device), x.new_zeros(0)
    xn = F.normalize(x, dim=1)  # [N, f], differentiable
    nodes = torch.nonzero(valid).flatten()
    with torch.no_grad():
        _, nb = _exact_topk(xn.detach().float(), nodes, valid, k, include_self, max_block_bytes,
                            what=f"learned kNN graph of {n:,} rows")
    rows = nodes.unsqueeze(1).expand_as(nb).reshape(-1)
    cols = nb.reshape(-1)
    sims = (xn.index_select(0, rows) * xn.index_select(0, cols)).sum(dim=1)  # [E]
    return torch.stack([rows, cols]), sims


def _has_faiss():
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def knn_graph(x, k, valid=None, include_self=True, symmetric=True, self_loops=False, method="auto", nprobe=32, stats=None):
    """Cosine kNN graph as an edge list: neighbours (:func:`knn_neighbours`), then (optionally)
    symmetrised (union of ``E`` and ``E^T``) and self-looped (``(i, i)`` for every valid node).

    Returns:
        LongTensor: ``edge_index [2, E]``, distinct edges sorted by (row, col).
    """
    n = x.shape[0]
    edge_index, _ = knn_neighbours(x, k, valid=valid, include_self=include_self, method=method, nprobe=nprobe, stats=stats)
    if symmetric:
        edge_index = to_undirected(edge_index, num_nodes=n)
    if self_loops:
        edge_index, _ = add_remaining_self_loops(edge_index, num_nodes=n)
        if valid is not None:  # invalid nodes have no edges: drop the loops given to them
            edge_index = edge_index[:, valid.to(edge_index.device)[edge_index[0]]]
    return coalesce(edge_index, num_nodes=n)


def tensor_fingerprint(*tensors, extra=""):
    """Short sha1 of tensors' bytes and an extra string (cache keys)."""
    h = hashlib.sha1(extra.encode("utf-8"))
    for t in tensors:
        a = t.detach().cpu().contiguous().numpy()
        h.update(str(a.shape).encode() + str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def cached_knn_graph(x, k, cache_dir=None, tag="", stats=None, **kwargs):
    """:func:`knn_graph`, cached on disk under a key of the features' bytes and the arguments.

    A change of the features (values, rows, modality set) or of any argument gives another key,
    so the graph is rebuilt; the same inputs load the saved edge list (``stats['cached']``).

    Returns:
        LongTensor: ``edge_index [2, E]`` on ``x``'s device.
    """
    if not cache_dir:
        return knn_graph(x, k, stats=stats, **kwargs)
    valid = kwargs.get("valid")
    key = tensor_fingerprint(x, *([valid] if valid is not None else []), extra=f"{k}|{sorted((a, b) for a, b in kwargs.items() if a != 'valid')}")
    path = os.path.join(cache_dir, f"{tag}knn-{key}.pt")
    if os.path.isfile(path):
        if stats is not None:
            stats["cached"] = path
        return torch.load(path, map_location=x.device, weights_only=True)
    edge_index = knn_graph(x, k, stats=stats, **kwargs)
    atomic_write(path, lambda f: torch.save(edge_index.cpu(), f))
    return edge_index


def edge_cosines(x, edge_index, max_block_bytes=64 * 2**20):
    """``[E]``: ``cos(x[i], x[j])`` for every edge ``(i, j)`` of ``edge_index [2, E]`` (``x [N, f]``).

    The endpoints' normalised rows are gathered in blocks of edges, at most ``max_block_bytes`` each,
    never all ``[E, f]`` at once (Baby's 4096-d image features with ``k = 10``: 2.3 GB gathered whole);
    each edge's value is the same whatever the block.
    """
    xn = F.normalize(x.float(), dim=1)
    step = max(1, int(max_block_bytes // (2 * xn.element_size() * max(xn.shape[1], 1))))
    src, dst = edge_index
    return torch.cat([
        (xn.index_select(0, src[s : s + step]) * xn.index_select(0, dst[s : s + step])).sum(dim=1)
        for s in range(0, src.numel(), step)
    ]) if src.numel() else xn.new_zeros(0)
