"""Make RecBole 1.2.1 run on a current scientific Python stack.

Applied once, when :mod:`recbole_recgoat` is imported, before any RecBole module is loaded.

* numpy >= 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``; RecBole's
  ``Config.compatibility_settings`` reads them.  We define them as the aliases they were.
* scipy >= 1.13 removed ``dok_matrix._update``, which LightGCN, NGCF, NCL, GCMC and SpectralCF
  use to fill their adjacency.  We restore it by writing into the matrix's internal dict.
* torch >= 2.6 loads checkpoints ``weights_only`` by default; RecBole's checkpoints pickle its
  Config.  That one is handled where checkpoints are read, in :mod:`recbole_recgoat.trainer`.

Deprecation messages of RecBole 1.2.1 (and PyG) on a current stack are not the user's business;
each is fixed at its cause, or silenced for that message at its source only, never in general:

* ``torch.cuda.amp.GradScaler(...)`` / ``torch.cuda.amp.autocast(...)`` (RecBole's trainers, once
  per epoch): its trainer module is given ``torch.amp``'s versions with ``device_type='cuda'``,
  which is what the deprecated ones call (the same objects, no warning).
* pandas' "A value is trying to be set on a copy ... chained assignment using an inplace method"
  (``Dataset._fill_nan`` and ``Dataset._load_feat``: ``df[field].fillna(..., inplace=True)``).
  With pandas < 3 (the pin) the in-place fill does fill; the message announces pandas 3, where it
  would not.  Ignored while those two methods run, for that message from RecBole's dataset module
  only; under pandas 3 its ``ChainedAssignmentError`` is another category and still shows.
* torch's "torch.sparse.SparseTensor(indices, values, ...) is deprecated" (RecBole's models build
  adjacencies with ``torch.sparse.FloatTensor``): ignored when raised from ``recbole.model``.
* torch's "`torch.jit.script` is deprecated", which PyG raises while it is imported: ignored during
  that import (:func:`import_torch_geometric`).

Changes that make RecBole faster without changing a number are not shims: they live in
:mod:`recbole_recgoat.speed_patches`.

The package never imports ``recbole.quick_start`` (it imports ray, which fails on numpy 2).
"""

import functools
import types
import warnings

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


PANDAS_CHAINED_ASSIGNMENT = (
    "A value is trying to be set on a copy of a DataFrame or Series through chained assignment using an inplace method"
)
TORCH_SPARSE_CONSTRUCTOR = r"torch\.sparse\.SparseTensor\(indices, values"
TORCH_JIT_SCRIPT = r"`torch\.jit\.script` is deprecated"
NUMPY2_ARRAY_WRAP = r"__array_wrap__ must accept context and return_scalar arguments"


def _patch_amp():
    import torch
    import recbole.trainer.trainer as recbole_trainer

    if getattr(recbole_trainer.amp, "_recgoat_cuda_amp", False):
        return
    recbole_trainer.amp = types.SimpleNamespace(
        GradScaler=functools.partial(torch.amp.GradScaler, "cuda"),
        autocast=functools.partial(torch.amp.autocast, "cuda"),
        _recgoat_cuda_amp=True,
    )


def without_message(method, message, category, module):
    """``method`` run with the warning ``message`` (a regex, from the start) of ``category`` raised
    from ``module`` (a regex of the module name) ignored; every other warning is untouched."""
    if getattr(method, "_recgoat_without", None) == (message, category, module):
        return method

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
            return method(*args, **kwargs)

    wrapper._recgoat_without = (message, category, module)
    return wrapper


def _patch_pandas_chained_assignment():
    from recbole.data.dataset.dataset import Dataset

    for name in ("_fill_nan", "_load_feat"):
        setattr(Dataset, name, without_message(
            getattr(Dataset, name), PANDAS_CHAINED_ASSIGNMENT, FutureWarning, r"recbole\.data\.dataset\.dataset\Z"
        ))


def _patch_interaction_sort():
    """RecBole's ``Interaction.sort`` calls ``np.argsort`` on a torch tensor; numpy 2 deprecates the
    tensor's ``__array_wrap__`` signature on that path (one DeprecationWarning per sort, from
    ``numpy._core.fromnumeric``). Ignored there, for that message, during that method only."""
    from recbole.data.interaction import Interaction

    Interaction.sort = without_message(Interaction.sort, NUMPY2_ARRAY_WRAP, DeprecationWarning, r"numpy\._core\.fromnumeric\Z")


def apply_warning_filters():
    """The process-wide filters of this module (one message, from one source each); applied at
    import.  A test runner that resets the filters per test (pytest) calls it again."""
    warnings.filterwarnings("ignore", message=TORCH_SPARSE_CONSTRUCTOR, category=UserWarning, module=r"recbole\.model\.")


def import_torch_geometric():
    """``import torch_geometric``, without the ``torch.jit.script`` deprecation PyG raises while it
    is imported (torch >= 2.10 deprecates what PyG's modules call at import)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCH_JIT_SCRIPT, category=DeprecationWarning, module=r"torch\.jit\.")
        import torch_geometric
    return torch_geometric


def apply():
    """Apply every shim; idempotent."""
    _patch_numpy()
    _patch_scipy()
    _patch_amp()
    _patch_pandas_chained_assignment()
    _patch_interaction_sort()
    apply_warning_filters()


apply()
