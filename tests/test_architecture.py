"""The package's layering, read from its source: data flows one way, config -> dataset (+feature
files) -> graphs -> model -> trainer -> run -> results store -> leaderboard.

A module may import (at module level or inside a function) only modules of its own layer or of
the layers before it; no private (``_name``) name is imported from another module; no file of the
package exceeds 400 lines.  A new module lands in the layer of its folder (longest prefix).
"""

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = "recbole_recgoat"
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / PACKAGE
MAX_LINES = 400

# lowest first; each entry lists module prefixes (relative to the package)
LAYERS = [
    ("base", ["errors", "paths", "threads", "lifetime", "compat", "speed_patches", "utils"]),
    ("config", ["distributed", "config_rules", "config"]),
    ("dataset", ["data"]),
    ("graphs", ["model.layers"]),
    ("model", ["model"]),
    ("trainer", ["trainer"]),
    ("run", ["quick_start", "run_header"]),
    ("features", ["features"]),
    ("results store", ["benchmark"]),
    ("leaderboard", ["benchmark.leaderboard"]),
    ("commands", ["", "cli", "benchmark.cli", "benchmark.__main__", "features.cli", "features.__main__"]),
]


def layer_of(module):
    """``(rank, name)`` of a dotted module name of the package (longest matching prefix)."""
    rel = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    best = None
    for rank, (name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if rel == prefix or (prefix and rel.startswith(prefix + ".")) or (prefix == "" and rel == ""):
                if best is None or len(prefix) > best[2]:
                    best = (rank, name, len(prefix))
    if best is None:
        raise AssertionError(f"{module}: in no layer; add its folder to LAYERS in tests/test_architecture.py")
    return best[0], best[1]


def module_name(path, root=ROOT):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(dotted, root=ROOT):
    rel = Path(*dotted.split("."))
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def package_imports(path, root=ROOT):
    """``(tree, [(line, imported module, imported name or None)], {alias: module})``: every import
    of the package in ``path``, and the names bound to the package's modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path, root)
    package_of_here = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    out.append((node.lineno, alias.name, None))
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package_of_here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if is_module(target, root):
                    out.append((node.lineno, target, None))
                    aliases[alias.asname or alias.name] = target
                else:
                    out.append((node.lineno, base, alias.name))
    return tree, out, aliases


def package_files(root=ROOT):
    return sorted(p for p in (root / PACKAGE).rglob("*.py") if "bundled" not in p.parts)


def layering_violations(root=ROOT):
    """One line per import against the flow."""
    problems = []
    for path in package_files(root):
        here = module_name(path, root)
        rank, name = layer_of(here)
        for line, target, _ in package_imports(path, root)[1]:
            t_rank, t_name = layer_of(target)
            if t_rank > rank:
                problems.append(f"{path.relative_to(root)}:{line}: {here} ({name}) imports {target} ({t_name})")
    return problems


def private_name_uses(root=ROOT):
    """One line per private name of a module used by another: imported, or read as ``module._name``."""
    problems = []
    for path in package_files(root):
        here = module_name(path, root)
        tree, imports, aliases = package_imports(path, root)
        for line, target, name in imports:
            if name and name.startswith("_") and target != here:
                problems.append(f"{path.relative_to(root)}:{line}: imports {name} from {target}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                problems.append(f"{path.relative_to(root)}:{node.lineno}: uses {aliases[node.value.id]}.{node.attr}")
    return problems


def plant(tmp_path, module, code):
    """A copy of the package (without its data) with ``code`` appended to ``module``; its root."""
    shutil.copytree(PACKAGE_DIR, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("bundled", "__pycache__"))
    target = tmp_path / PACKAGE / module
    target.write_text(target.read_text(encoding="utf-8") + "\n" + code, encoding="utf-8")
    return tmp_path


def test_imports_flow_one_way():
    assert layering_violations() == []


def test_no_private_name_crosses_a_module():
    assert private_name_uses() == []
    problems = []  # nor do the benchmark and maintenance scripts import one
    for path in sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                problems += [f"{path.name}:{node.lineno}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert problems == []


def test_no_package_file_over_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in package_files()}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


@pytest.mark.parametrize("module, code", [
    ("model/abstract.py", "from recbole_recgoat.trainer import get_trainer\n"),
    ("model/layers/graph.py", "def f():\n    from recbole_recgoat.quick_start import run\n"),
    ("data/dataset.py", "from recbole_recgoat.features.output import sort_ids\n"),
    ("config.py", "import recbole_recgoat.benchmark.store\n"),
    ("benchmark/store.py", "from recbole_recgoat.benchmark.leaderboard import build\n"),
    ("utils/io.py", "from ..model import abstract\n"),
])
def test_a_planted_back_edge_is_caught(tmp_path, module, code):
    problems = layering_violations(plant(tmp_path, module, code))
    assert len(problems) == 1 and problems[0].startswith(f"{PACKAGE}/{module}:"), problems


def test_a_planted_private_name_is_caught(tmp_path):
    root = plant(tmp_path, "quick_start.py", "from recbole_recgoat.trainer import _MIXED\nfrom recbole_recgoat import trainer\ntrainer._MIXED\n")
    problems = private_name_uses(root)
    assert len(problems) == 2 and all(p.startswith(f"{PACKAGE}/quick_start.py:") and "_MIXED" in p for p in problems)


def test_a_planted_long_file_is_caught(tmp_path):
    root = plant(tmp_path, "errors.py", "\n" * MAX_LINES)
    assert [p.name for p in package_files(root) if len(p.read_text().splitlines()) > MAX_LINES] == ["errors.py"]
