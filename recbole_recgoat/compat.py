"""Make RecBole 1.2.1 run on a current scientific Python stack.

Applied once, when :mod:`recbole_recgoat` is imported, before any RecBole module is loaded.

* numpy >= 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``; RecBole's
  ``Config.compatibility_settings`` reads them.  We define them as the aliases they were.
* scipy >= 1.13 removed ``dok_matrix._update``, which LightGCN, NGCF, NCL, GCMC and SpectralCF
  use to fill their adjacency.  We restore it by writing into the matrix's internal dict.
* torch >= 2.6 loads checkpoints ``weights_only`` by default; RecBole's checkpoints pickle its
  Config.  That one is handled where checkpoints are read, in :mod:`recbole_recgoat.trainer`.
* LightGCN's adjacency is built through a Python dict of every edge (``dok_matrix``): minutes
  and gigabytes at a million items.  :func:`lightgcn_norm_adj` builds the same matrix (same
  entries, same order, same float32 values; tested) with vectorised scipy, in linear memory.

The package never imports ``recbole.quick_start`` (it imports ray, which fails on numpy 2).
"""

import numpy as np
import scipy.sparse as sp

_NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "bool8": "bool_",
}


def _patch_numpy():
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))


def _dok_update(self, data):
    """Bulk-assign ``{(row, col): value}`` into a ``dok_matrix`` (scipy < 1.13 semantics)."""
    if hasattr(self, "_dict"):  # scipy >= 1.13 keeps the entries in a private dict
        self._dict.update(data)
    else:  # pragma: no cover - older scipy has _update already
        dict.update(self, data)


def _patch_scipy():
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = _dok_update


def lightgcn_norm_adj(self):
    """``D^-1/2 A D^-1/2`` of LightGCN's bipartite graph, as RecBole's ``get_norm_adj_mat``
    computes it (binary A, degree = number of neighbours + 1e-7), without a dict of edges.

    Returns:
        torch.Tensor: sparse COO ``[n_users + n_items, n_users + n_items]``.
    """
    import torch

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


def _patch_recbole_models():
    from recbole.model.general_recommender.lightgcn import LightGCN

    if not getattr(LightGCN.get_norm_adj_mat, "_recgoat_vectorised", False):
        LightGCN._recbole_get_norm_adj_mat = LightGCN.get_norm_adj_mat
        lightgcn_norm_adj._recgoat_vectorised = True
        LightGCN.get_norm_adj_mat = lightgcn_norm_adj


def apply():
    """Apply every shim; idempotent."""
    _patch_numpy()
    _patch_scipy()
    _patch_recbole_models()


apply()
