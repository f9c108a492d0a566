"""Speed patches of RecBole 1.2.1: the same numbers, computed faster (applied when
:mod:`recbole_recgoat` is imported, after :mod:`recbole_recgoat.compat`).

* LightGCN's adjacency is built through a Python dict of every edge (``dok_matrix``): minutes
  and gigabytes at a million items.  :func:`lightgcn_norm_adj` builds the same matrix (same
  entries, same order, same float32 values; tests/test_scale.py) with vectorised scipy, in linear
  memory.  RecBole's own builder stays available as ``LightGCN._recbole_get_norm_adj_mat``.
"""

import numpy as np
import scipy.sparse as sp
import torch


def lightgcn_norm_adj(self):
    """``D^-1/2 A D^-1/2`` of LightGCN's bipartite graph, as RecBole's ``get_norm_adj_mat``
    computes it (binary A, degree = number of neighbours + 1e-7), without a dict of edges.

    Returns:
        torch.Tensor: sparse COO ``[n_users + n_items, n_users + n_items]``.
    """
    inter = self.interaction_matrix.tocoo()
    n = self.n_users + self.n_items
    rows = np.concatenate([inter.row, inter.col + self.n_users])
    cols = np.concatenate([inter.col + self.n_users, inter.row])
    adj = sp.coo_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # a pair given twice is one edge, as with the dict
    deg = np.diff(adj.indptr).astype(np.float64) + 1e-7
    d = sp.diags(np.power(deg, -0.5))
    norm = sp.coo_matrix(d * adj * d)
    index = torch.from_numpy(np.vstack([norm.row, norm.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(norm.data.astype(np.float32)), (n, n), check_invariants=False)


def _patch_lightgcn():
    from recbole.model.general_recommender.lightgcn import LightGCN

    if not getattr(LightGCN.get_norm_adj_mat, "_recgoat_vectorised", False):
        LightGCN._recbole_get_norm_adj_mat = LightGCN.get_norm_adj_mat
        lightgcn_norm_adj._recgoat_vectorised = True
        LightGCN.get_norm_adj_mat = lightgcn_norm_adj


def apply():
    """Apply every speed patch; idempotent."""
    _patch_lightgcn()


apply()
