"""Versions, code identity and machine facts recorded with every result."""

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess

import torch

from recbole_recgoat.paths import PACKAGE_DIR, dataset_configs_dir, properties_dir

_PACKAGES = ["recbole-recgoat", "recbole", "torch", "numpy", "scipy", "pandas", "torch-geometric", "POT", "sentence-transformers", "faiss-cpu"]


@functools.lru_cache(maxsize=1)
def code_fingerprint():
    """sha1 (16 hex) of the package's Python sources and yaml defaults: two results with the same
    fingerprint ran the same code and defaults, whatever the version number says."""
    h = hashlib.sha1()
    files = []
    for root in (PACKAGE_DIR, properties_dir(), dataset_configs_dir()):
        for dirpath, dirnames, names in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "bundled"))
            files += [os.path.join(dirpath, n) for n in names if n.endswith((".py", ".yaml"))]
    for path in sorted(set(files)):
        h.update(os.path.relpath(path, PACKAGE_DIR.parent).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def git_commit():
    """The checkout's commit (with ``+dirty`` for uncommitted changes), or None outside git."""
    try:
        cwd = str(PACKAGE_DIR.parent)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "recbole_recgoat", "properties", "dataset_configs"],
                               cwd=cwd, capture_output=True, text=True, timeout=5).stdout.strip()
        return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions(extra_packages=()):
    """``{package: version}`` for the packages a result depends on (and ``extra_packages``), the
    code's fingerprint and commit, python and platform; None for a package that is not installed."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in dict.fromkeys(_PACKAGES + list(extra_packages)):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    out["code_fingerprint"] = code_fingerprint()
    out["git_commit"] = git_commit()
    return out
