"""Config keys and values are checked (issue #13): a misspelt key is an error with a suggestion,
and no key the project documents or uses is ever rejected (this test walks them all)."""

import ast
import re
from pathlib import Path

import pytest

from recbole_recgoat.config import Config
from recbole_recgoat.config_rules import CODE_READ_KEYS, known_keys, load_yaml, model_rules, value_ok, value_rules
from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.registry import get_model, plugin_models

REPO = Path(__file__).resolve().parents[1]
MODELS = list(plugin_models()) + ["BPR", "LightGCN", "Pop"]
DATASETS = sorted(p.stem for p in (REPO / "dataset_configs").glob("*.yaml"))
RUN_FLAGS = {"model", "m", "dataset", "d", "config_files", "nproc", "world_size", "ip", "port", "group_offset",
             "result_json", "checkpoint"}

MISSPELT_ON_PURPOSE = {"lamda_cl"}  # the README's example of a key that is refused


def known_anywhere():
    return set().union(*(known_keys(m, "lastfm-2k") for m in MODELS))


def test_misspelt_key_is_refused_with_the_closest_key():
    with pytest.raises(InputError, match=r"unknown key 'lamda_cl' \(did you mean lambda_cl"):
        Config("RecGOAT", "lastfm-2k", cmd_args={"lamda_cl": "0.1"})
    with pytest.raises(InputError, match=r"'knn_k' \(a key of .*RecGOAT"):
        Config("BPR", "lastfm-2k", config_dict={"knn_k": 5})  # a key of other models changes nothing for BPR


def test_allow_unknown_keys_is_the_escape_hatch():
    config = Config("BPR", "lastfm-2k", config_dict={"my_fork_knob": 3, "allow_unknown_keys": True})
    assert config["my_fork_knob"] == 3 and config.unknown_keys == ["my_fork_knob"]
    with pytest.raises(InputError, match="allow_unknown_keys: got 'yes'"):
        Config("BPR", "lastfm-2k", config_dict={"allow_unknown_keys": "yes"})


def test_a_model_rules_its_own_keys_and_rules_is_no_config_key():
    # FREEDOM's dropout prunes edges, BM3's perturbs the target view: each model's rules: block says so
    assert "dropout" in model_rules("FREEDOM") and "dropout" in model_rules("BM3")
    assert "dropout" not in value_rules()["plugin"]
    with pytest.raises(InputError, match=r"^vbpr_bias: got 3; expected True or False$"):
        Config("VBPR", "lastfm-2k", config_dict={"vbpr_bias": 3})
    with pytest.raises(InputError, match=r"^diag_sample: got 0; expected an integer >= 1$"):
        Config("RecGOAT", "lastfm-2k", config_dict={"diag_sample": 0})  # it divided by zero after epoch 1
    with pytest.raises(InputError, match=r"unknown key 'rules'"):
        Config("FREEDOM", "lastfm-2k", config_dict={"rules": {}})
    assert "rules" not in Config("FREEDOM", "lastfm-2k").final_config_dict


def test_values_are_checked_by_the_declared_rules():
    with pytest.raises(InputError, match=r"^lambda_ot: got -0.5; expected a number >= 0$"):
        Config("RecGOAT", "lastfm-2k", config_dict={"lambda_ot": -0.5})
    with pytest.raises(InputError, match=r"^reproducibility: got 'maybe'; expected True or False$"):
        Config("BPR", "lastfm-2k", config_dict={"reproducibility": "maybe"})
    assert Config("RecGOAT", "lastfm-2k", config_dict={"modalities": []})["modalities"] == []  # ID only stays possible
    assert Config("LightGCN", "lastfm-2k", config_dict={"n_layers": 0})["n_layers"] == 0
    rule = {"type": "list", "items": {"type": "int", "min": 1}}
    assert value_ok([1, 2], rule) and not value_ok([1, 0], rule) and not value_ok(True, {"type": "int"})


def test_every_plugin_key_has_a_rule_and_every_default_passes_it():
    rules = value_rules()
    shared = set(rules["protocol"]) | set(rules["plugin"])
    overall = set(load_yaml(REPO / "properties" / "overall.yaml"))
    assert sorted(overall - shared - {"gpu_id"}) == []  # gpu_id: '0', 0 or (0, 1) are all RecBole's
    for model in plugin_models():
        keys = set(load_yaml(REPO / "properties" / "model" / f"{model}.yaml")) - {"rules"}
        own = set(model_rules(model))
        missing = sorted(keys - shared - own)
        assert missing == [], f"{model}: add a rule for {missing} to the rules: block of properties/model/{model}.yaml"
        assert sorted(own - keys) == [], f"{model}: a rule for a key its yaml does not have checks nothing"
        space = load_yaml(REPO / "properties" / "model" / f"{model}.yaml").get("search_space") or {}
        assert sorted(set(space) - keys - overall) == [], f"{model}: search_space keys that nothing defaults"
    assert sorted(shared - known_anywhere()) == []  # a rule for a key nobody has would check nothing
    for model in MODELS:
        for dataset in ("lastfm-2k", "ml-100k"):
            Config(model, dataset)  # the defaults pass their own rules


# -- the walk: every documented key is accepted ---------------------------------------------------------
def _check(keys, model, dataset, where):
    known = known_keys(get_model(model).__name__, dataset)
    bad = sorted(set(keys) - known)
    assert not bad, f"{where}: {bad} rejected for {model} on {dataset}"


def test_yaml_defaults_and_dataset_configs_are_known():
    for dataset in DATASETS:
        keys = set(load_yaml(REPO / "dataset_configs" / f"{dataset}.yaml"))
        for model in MODELS:
            _check(keys, model, dataset, f"dataset_configs/{dataset}.yaml")
    overall = set(load_yaml(REPO / "properties" / "overall.yaml"))
    for model in MODELS:
        _check(overall, model, "lastfm-2k", "properties/overall.yaml")
        _check(value_rules()["protocol"], model, "lastfm-2k", "properties/rules.yaml (protocol)")
    for path in sorted((REPO / "properties" / "model").glob("*.yaml")):
        _check(set(load_yaml(path)) - {"rules"}, path.stem, "lastfm-2k", str(path.relative_to(REPO)))  # rules: reserved


def _search_space_keys(node, models):
    """``[(model, keys)]`` under a ``search_space`` mapping: ``{Model: {key: [...]}}``,
    ``{Model@dataset: {...}}``, also nested under dataset names (``{dataset: {Model: {...}}}`` or
    ``{Model: {dataset: {...}}}``)."""
    out = []
    for name, value in (node or {}).items():
        if not isinstance(value, dict):
            continue
        name = str(name).split("@")[0]  # Model@dataset: the grid of a model on one dataset
        if name in models:
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            plain = [k for k in value if k not in nested]
            out.append((name, plain))
            for sub in nested.values():  # per-dataset spaces of this model
                out.append((name, list(sub)))
        else:
            out += _search_space_keys(value, models)
    return out


def test_benchmark_yamls_use_known_keys():
    for path in sorted((REPO / "benchmarks").glob("*.yaml")):
        doc = load_yaml(path)
        models = [get_model(m).__name__ for m in doc.get("models") or []]
        datasets = doc.get("datasets") or ["lastfm-2k"]
        variants = doc.get("variants") or {}
        all_models = set(models) | {get_model(v["model"]).__name__ for v in variants.values()}
        for dataset in datasets:
            for model in all_models:
                _check(doc.get("overrides") or {}, model, dataset, f"{path.name} overrides")
                _check((doc.get("tune") or {}).get("overrides") or {}, model, dataset, f"{path.name} tune.overrides")
            for name, spec in variants.items():
                keys = [k for k in spec if k not in ("model", "datasets")]  # datasets: where the variant runs
                _check(keys, spec["model"], dataset, f"{path.name} variants.{name}")
            found = _search_space_keys(doc.get("search_space"), set(all_models) | set(MODELS))
            assert len(found) == len(doc.get("search_space") or {}), f"{path.name}: a search_space entry was not read"
            for model, keys in found:
                _check(keys, model, dataset, f"{path.name} search_space.{model}")


def test_readme_keys_are_known():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    anywhere = known_anywhere()
    for line in text.splitlines():
        keys = [k for k in re.findall(r"--([A-Za-z_]\w*)=", line) if k not in RUN_FLAGS | {"key", "KEY"} | MISSPELT_ON_PURPOSE]
        if "run_recbole.py" in line:
            model = (re.findall(r"--model=(\w+)", line) or ["RecGOAT"])[0]
            _check(keys, model, "lastfm-2k", f"README: {line.strip()}")
        else:
            assert not set(keys) - anywhere, f"README: {line.strip()}"
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        import yaml

        assert not set(yaml.safe_load(block) or {}) - anywhere, block
    for key in re.findall(r"`(\w+): [^`]*`", text):  # inline `key: value`
        assert key in anywhere or key == "error", key  # `error: ...` is the error line, not a key


def _test_keys():
    """``[(file, line, key)]``: keys the tests pass as ``config_dict=`` / ``cmd_args=`` literals,
    ``--key=value`` strings of run_recbole's command line and ``--set key=value`` pairs."""
    out = []
    for path in sorted((REPO / "tests").glob("*.py")):
        if path.name in ("test_config_keys.py", "test_bad_input.py"):  # they use wrong keys on purpose
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("config_dict", "cmd_args") and isinstance(node.value, ast.Dict):
                out += [(path.name, k.lineno, k.value) for k in node.value.keys if isinstance(k, ast.Constant)]
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                m = re.fullmatch(r"--([a-z_]\w*)=.*", node.value, flags=re.S)
                if m and m.group(1) not in RUN_FLAGS:
                    out.append((path.name, node.lineno, m.group(1)))
            if isinstance(node, ast.List):
                items = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                out += [(path.name, node.lineno, items[i + 1].split("=")[0])
                        for i in range(len(items) - 1) if items[i] == "--set" and "=" in items[i + 1]]
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "fast"]:
            for d in [n for n in ast.walk(fn) if isinstance(n, ast.Dict)]:
                out += [(path.name, k.lineno, k.value) for k in d.keys if isinstance(k, ast.Constant)]
    return out


def test_keys_used_by_the_tests_are_known():
    found = _test_keys()
    assert len(found) > 20  # the walk does find the tests' keys
    anywhere = known_anywhere() | CODE_READ_KEYS
    bad = [f"{f}:{line} {key}" for f, line, key in found if key not in anywhere]
    assert not bad, bad
