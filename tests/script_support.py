"""Load a script of ``benchmarks/`` as a module (they are scripts, not a package), to call its ``main``."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(name):
    """The module of ``benchmarks/<name>.py``, executed once (its ``if __name__ == "__main__"`` not run)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
