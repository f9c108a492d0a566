"""Where the package's yaml defaults and bundled data live, installed or in a source checkout.

``pip install .`` copies ``properties/`` and ``dataset_configs/`` into the installed package
(``recbole_recgoat/properties``, ``recbole_recgoat/dataset_configs``); in a source checkout they
sit beside the package, at the repository root.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DATA_DIR = PACKAGE_DIR / "bundled"


def _resource_dir(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/: not found beside {PACKAGE_DIR}; the installation is incomplete")


def properties_dir() -> Path:
    """Folder holding ``overall.yaml`` and ``model/<Model>.yaml``."""
    return _resource_dir("properties")


def dataset_configs_dir() -> Path:
    """Folder holding ``<dataset>.yaml``."""
    return _resource_dir("dataset_configs")


def bundled_datasets() -> list:
    """Names of the datasets shipped inside the package."""
    if not BUNDLED_DATA_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DATA_DIR.iterdir() if p.is_dir())


def configured_datasets() -> list:
    """Names of the datasets that have a ``dataset_configs/<name>.yaml``."""
    return sorted(p.stem for p in dataset_configs_dir().glob("*.yaml"))
