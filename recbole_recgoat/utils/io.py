"""Files the package writes and the digests it records: one atomic write, one sha256.

Every file the package produces (converted datasets, feature matrices, result stores, cached
graphs, tuned parameters) goes through :func:`atomic_write`: the bytes go to a temporary file in
the target's folder, are flushed to disk, and the temporary file is renamed over the target, so a
reader (or a run killed half-way) sees the old file or the new one, never a torn one.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path):
    """Make a rename in ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path, data):
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``).

    Args:
        path (str | Path): the target; its folder is created when missing.
        data (bytes | callable): the content, or ``writer(binary_file)`` that writes it
            (``np.save``, ``torch.save``, a copy from another file, ...).

    The file gets the usual permissions (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def copy_from(source):
    """A writer for :func:`atomic_write` that copies the bytes of the file ``source``."""

    def write(f):
        with open(source, "rb") as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                f.write(block)

    return write


def file_sha256(path):
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(obj):
    """Deterministic compact JSON (sorted keys), the text that checksums and keys are taken of."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)


def json_sha256(obj):
    """Hex sha256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def writable_folder_problem(path):
    """Why the folder ``path`` (existing or to be created) could not be written, or None; creates
    nothing: ``path`` exists as a writable folder, or its nearest existing ancestor is a writable
    folder (so ``os.makedirs`` would succeed)."""
    path = os.path.abspath(str(path))
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable" if probe == path else f"cannot create it ({probe} is not writable)"
    return None
