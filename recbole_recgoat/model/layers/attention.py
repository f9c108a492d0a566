"""Graph attention over a fixed graph: a stack of PyTorch Geometric ``GATConv`` layers, evaluated at
chosen rows along the edges into them, in checkpointed chunks of edges."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class GATEncoder(nn.Module):
    """Stack of PyTorch Geometric ``GATConv`` layers over a fixed graph.

    ``h^{l+1}_i = ||_{k=1..K} sum_{j in N(i)} alpha^k_ij W^k h^l_j`` with
    ``alpha^k = softmax_j(LeakyReLU(a_k^T [W^k h_i || W^k h_j]))`` (Velickovic et al., ICLR 2018):
    ``K = heads`` heads of width ``dim / K``, concatenated, so the width stays ``dim`` and a layer
    costs one head of width ``dim`` per edge; ELU between layers.

    Args:
        dim (int): input = output width ``d``.
        n_layers (int): number of GAT layers.
        heads (int): attention heads.
        dropout (float): dropout on the attention coefficients.
        layer_mean (bool): return ``mean(x, h^1, ..., h^L)`` (LightGCN-style readout, no ELU)
            instead of the last layer.
    """

    def __init__(self, dim, n_layers=1, heads=4, dropout=0.1, layer_mean=False):
        super().__init__()
        from torch_geometric.nn import GATConv

        if dim % heads:
            raise ValueError(f"gat_heads: {heads} does not divide the embedding size {dim}")
        self.layer_mean = layer_mean
        self.convs = nn.ModuleList(
            GATConv(dim, dim // heads, heads=heads, concat=True, dropout=dropout, add_self_loops=False)
            for _ in range(n_layers)
        )

    def forward(self, x, edge_index):
        """``x [N, d]``, ``edge_index [2, E]`` (source, target) -> ``[N, d]``."""
        acc = x
        for layer, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if self.layer_mean:
                acc = acc + x
            elif layer < len(self.convs) - 1:
                x = F.elu(x)
        return acc / (len(self.convs) + 1) if self.layer_mean else x

    def rows(self, x, edge_index, targets=None, chunk_edges=None):
        """The output at the rows ``targets`` (all rows when None), computed along the edges into
        them only, ``[len(targets), d]``.

        Exact for one layer (a node sees only its in-neighbours).  When more than ``chunk_edges``
        edges are involved, the targets are taken in blocks of about ``chunk_edges`` edges, each
        block under activation checkpointing when gradients are needed, so the per-edge tensors
        (``E x d``) never exist for the whole graph: memory ``O(chunk_edges d + N d)``.
        Several layers: the full forward, then the rows.
        """
        n = x.shape[0]
        if len(self.convs) != 1 or self.layer_mean:
            out = self.forward(x, edge_index)
            return out if targets is None else out.index_select(0, targets)
        if targets is not None:
            keep = torch.zeros(n, dtype=torch.bool, device=x.device)
            keep[targets] = True
            edge_index = edge_index[:, keep[edge_index[1]]]
        if not chunk_edges or edge_index.shape[1] <= chunk_edges:
            out = self.forward(x, edge_index)
            return out if targets is None else out.index_select(0, targets)
        targets = torch.arange(n, device=x.device) if targets is None else targets
        edge_index = edge_index[:, torch.argsort(edge_index[1], stable=True)]
        ends = torch.cumsum(torch.bincount(edge_index[1], minlength=n), 0)  # node t's edges end at ends[t]
        tgt_sorted, tgt_order = torch.sort(targets)
        # consecutive sorted targets whose edges fill one chunk; their edges are one contiguous range
        block_id = (ends[tgt_sorted] - 1).clamp(min=0) // chunk_edges
        _, counts = torch.unique_consecutive(block_id, return_counts=True)
        outs, start, lo = [], 0, 0
        for count in counts.tolist():
            block = tgt_sorted[start : start + count]
            hi = int(ends[block[-1]])
            sub = edge_index[:, lo:hi]
            if torch.is_grad_enabled():
                out = torch.utils.checkpoint.checkpoint(self.forward, x, sub, use_reentrant=False)
            else:
                out = self.forward(x, sub)
            outs.append(out.index_select(0, block))
            start, lo = start + count, hi
        result = torch.cat(outs)
        inverse = torch.empty_like(tgt_order)
        inverse[tgt_order] = torch.arange(tgt_order.numel(), device=x.device)
        return result.index_select(0, inverse)
