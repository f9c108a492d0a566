"""Load a script of ``benchmarks/`` or ``scripts/`` as a module (they are scripts, not a package), to call its ``main``."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def load_benchmark_script(name, folder=BENCHMARKS):
    """The module of ``<folder>/<name>.py`` (default ``benchmarks/``), executed once (its
    ``if __name__ == "__main__"`` not run)."""
    spec = importlib.util.spec_from_file_location(name, Path(folder) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
