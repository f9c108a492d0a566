"""Feature matrices (.npy): load, validate, and re-align to RecBole's internal ids.

A feature file holds one row per ORIGINAL id: row ``r`` describes the item (or user) whose
original id is the integer ``r`` (the MMRec convention, e.g. ``text_feat.npy`` row i = itemID i).
For ids that are not integers (ASINs, ...), a sidecar ``<file>.ids`` text file lists the original
id of each row, one per line.

RecBole renumbers ids (``dataset.field2id_token[field][k]`` is the original token of internal id
``k``; 0 is ``[PAD]``), so each matrix is gathered into internal order; the PAD row is zero.

Every problem raises :class:`~recbole_recgoat.errors.InputError` with a one-line message that
names the file and what was expected; nothing is written.
"""

import os

import numpy as np

from recbole_recgoat.errors import InputError

_CHECK_ROWS = 65536  # rows checked for NaN/Inf at a time (bounded memory on 10^6-row files)


def resolve_feature_path(filename, search_dirs):
    """First existing ``filename`` among ``search_dirs`` (absolute paths are taken as they are)."""
    if os.path.isabs(filename):
        candidates = [filename]
    else:
        candidates = [os.path.join(d, filename) for d in search_dirs if d]
    for path in candidates:
        if os.path.isfile(path):
            return path
        if os.path.isdir(path):
            raise InputError(f"{path}: is a folder; expected a .npy feature matrix")
    raise InputError(f"{candidates[0]}: file not found (looked in {', '.join(dict.fromkeys(search_dirs))}); expected a .npy feature matrix")


def load_matrix(path, expected_dim=None, what="feature"):
    """Load a 2-D numeric ``.npy`` and check it; returns a read-only memory map.

    Args:
        path (str): the .npy file.
        expected_dim (int | None): required number of columns.
        what (str): how to call the matrix in messages.

    Returns:
        np.ndarray: shape ``[n_rows, dim]``.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found; expected the .npy {what} matrix")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise InputError(f"{path}: not a readable .npy file ({exc.__class__.__name__}); expected a 2-D float array") from None
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{path}: non-numeric dtype {arr.dtype}; expected a float (or integer) {what} matrix")
    if arr.ndim != 2:
        raise InputError(f"{path}: {arr.ndim}-D array of shape {arr.shape}; expected 2-D [rows, dim]")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{path}: empty array of shape {arr.shape}; expected [rows, dim] with rows, dim > 0")
    if expected_dim is not None and arr.shape[1] != int(expected_dim):
        raise InputError(f"{path}: dimension {arr.shape[1]}; expected {int(expected_dim)} columns")
    if arr.dtype.kind == "f":
        for start in range(0, arr.shape[0], _CHECK_ROWS):
            block = np.asarray(arr[start : start + _CHECK_ROWS])
            finite = np.isfinite(block)
            if not finite.all():
                row = start + int(np.argwhere(~finite)[0][0])
                bad = "NaN" if np.isnan(block).any() else "Inf"
                raise InputError(f"{path}: contains {bad} (first at row {row}); expected finite values")
    return arr


def _row_index(path, n_rows):
    """``{original id token: row}`` from ``<path>.ids`` if present, else None (row = int(id))."""
    ids_path = path + ".ids"
    if not os.path.isfile(ids_path):
        return None
    with open(ids_path, "r", encoding="utf-8") as f:
        ids = [line.rstrip("\n") for line in f if line.strip()]
    if len(ids) != n_rows:
        raise InputError(f"{ids_path}: {len(ids)} ids for {n_rows} rows of {os.path.basename(path)}; expected one id per row")
    return {tok: r for r, tok in enumerate(ids)}


def align_to_internal_ids(arr, tokens, path, field):
    """Gather feature rows into RecBole's internal id order.

    Args:
        arr (np.ndarray): ``[n_rows, dim]`` matrix, row = original id.
        tokens (np.ndarray): ``dataset.field2id_token[field]``, ``[n_internal]``, ``tokens[0]`` = PAD.
        path (str): the file, for messages.
        field (str): ``item_id`` / ``user_id``, for messages.

    Returns:
        np.ndarray: float32 ``[n_internal, dim]``; row 0 (PAD) is zero.
    """
    originals = np.asarray(tokens[1:]).astype(str)
    index = _row_index(path, arr.shape[0])
    if index is None:
        try:
            rows = originals.astype(np.int64)
        except ValueError:
            sample = next(t for t in originals if not t.lstrip("-").isdigit())
            raise InputError(
                f"{path}: {field} '{sample}' is not an integer row number; expected integer ids or a sidecar {os.path.basename(path)}.ids"
            ) from None
        missing = originals[(rows < 0) | (rows >= arr.shape[0])]
    else:
        rows = np.fromiter((index.get(t, -1) for t in originals), dtype=np.int64, count=len(originals))
        missing = originals[rows < 0]
    if len(missing):
        raise InputError(
            f"{path}: {len(missing)} {field}s in the interactions have no feature row "
            f"(e.g. {', '.join(missing[:3])}); the file has {arr.shape[0]} rows"
        )
    out = np.zeros((len(tokens), arr.shape[1]), dtype=np.float32)
    order = np.argsort(rows, kind="stable")  # read the memory map in file order
    out[1 + order] = np.asarray(arr[rows[order]], dtype=np.float32)
    return out


FEATURE_NORMS = ("l2", "none")


def declared_feature_norms(value, declared):
    """``{modality: 'l2' | 'none'}`` from the dataset yaml's ``item_feature_norm`` (``~`` = none
    for all); ``declared`` are the modalities of ``item_feature_files``.  A one-line error names
    the key and modality of anything else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"item_feature_norm: got {value!r}; expected a mapping modality: l2 | none")
    out = {}
    for m, how in value.items():
        if m not in declared:
            raise InputError(f"item_feature_norm: {m}: not a modality of item_feature_files ({', '.join(declared) or 'none'})")
        how = "none" if how is None or how is False else str(how).lower()
        if how not in FEATURE_NORMS:
            raise InputError(f"item_feature_norm: {m}: {value[m]!r}; expected one of {', '.join(FEATURE_NORMS)}")
        out[m] = how
    return out


def normalize_rows(arr, how):
    """``arr`` (float32 ``[n, dim]``) scaled as ``how`` says, in place: ``l2`` divides every
    non-zero row by its Euclidean norm (zero rows, e.g. PAD, stay zero); ``none`` leaves it."""
    if how == "l2":
        norms = np.linalg.norm(arr.astype(np.float64), axis=1, keepdims=True)
        arr /= np.where(norms > 0, norms, 1.0).astype(arr.dtype)
    return arr
