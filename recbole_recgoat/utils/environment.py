"""Versions and machine facts recorded with every result."""

import importlib.metadata
import platform

import torch

_PACKAGES = ["recbole-recgoat", "recbole", "torch", "numpy", "scipy", "pandas", "torch-geometric", "POT", "sentence-transformers"]


def versions():
    """``{package: version}`` for the packages a result depends on, plus python and platform."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    return out
