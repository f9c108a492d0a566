"""Writing feature matrices the multimodal dataset loads directly (row = original id).

When the ids are exactly the integers 0..n-1, row r is id r and nothing else is written.
Otherwise (ml-100k items start at 1, Amazon ASINs, ...) the rows are in sorted id order and a
sidecar ``<file>.ids`` lists the original id of each row, one per line (read by
:mod:`recbole_recgoat.data.feature_files`).  Files are written to a temporary name and renamed into
place; an existing output with different content is only replaced with ``force``.
"""

import json
import os
import re

import numpy as np

from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.io import atomic_write

_INT = re.compile(r"-?\d+\Z")


def sort_ids(ids):
    """Original ids in output order: numerically when all are integers, else as text."""
    ids = list(ids)
    if all(_INT.match(i) for i in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def needs_sidecar(ids):
    """False when ``ids`` (in output order) are exactly '0', '1', ..., 'n-1'."""
    return any(tok != str(r) for r, tok in enumerate(ids))


def _ids_bytes(ids):
    return ("".join(f"{i}\n" for i in ids)).encode("utf-8")


def _same(path, matrix, ids_blob):
    try:
        old = np.load(path, allow_pickle=False)
    except Exception:  # noqa: BLE001 - unreadable = different
        return False
    if old.dtype != matrix.dtype or old.shape != matrix.shape or not np.array_equal(old, matrix):
        return False
    side = path + ".ids"
    if ids_blob is None:
        return not os.path.exists(side)
    return os.path.isfile(side) and open(side, "rb").read() == ids_blob


def check_out_path(path):
    if not path or not str(path).endswith(".npy"):
        raise InputError(f"--out={path}: expected a file name ending in .npy")
    if os.path.isdir(path):
        raise InputError(f"--out={path}: is a folder; expected a .npy file name")


def write_features(path, matrix, ids, force=False):
    """Write ``matrix`` (row i = ``ids[i]``) to ``path``; returns ``'written'`` or ``'unchanged'``."""
    check_out_path(path)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    ids = [str(i) for i in ids]
    if len(ids) != matrix.shape[0]:
        raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} rows")
    ids_blob = _ids_bytes(ids) if needs_sidecar(ids) else None
    if os.path.exists(path):
        if _same(path, matrix, ids_blob):
            return "unchanged"
        if not force:
            raise InputError(f"{path}: exists with different content; expected a new --out, or --force to replace it")
    side = path + ".ids"
    if ids_blob is not None:
        atomic_write(side, ids_blob)
    atomic_write(path, lambda f: np.save(f, matrix, allow_pickle=False))
    if ids_blob is None and os.path.exists(side):
        os.remove(side)  # a stale sidecar would re-map the rows of the new file
    return "written"


def write_json(path, obj):
    blob = (json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
    atomic_write(path, blob)
