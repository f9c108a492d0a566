"""Make RecBole 1.2.1 run on a current scientific Python stack.

Applied once, when :mod:`recbole_recgoat` is imported, before any RecBole module is loaded.

* numpy >= 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``; RecBole's
  ``Config.compatibility_settings`` reads them.  We define them as the aliases they were.
* scipy >= 1.13 removed ``dok_matrix._update``, which LightGCN, NGCF, NCL, GCMC and SpectralCF
  use to fill their adjacency.  We restore it by writing into the matrix's internal dict.
* torch >= 2.6 loads checkpoints ``weights_only`` by default; RecBole's checkpoints pickle its
  Config.  That one is handled where checkpoints are read, in :mod:`recbole_recgoat.trainer`.

Changes that make RecBole faster without changing a number are not shims: they live in
:mod:`recbole_recgoat.speed_patches`.

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


def apply():
    """Apply every shim; idempotent."""
    _patch_numpy()
    _patch_scipy()


apply()
