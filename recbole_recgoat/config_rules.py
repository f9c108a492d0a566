"""What a config may contain: the known keys of a model on a dataset, and the allowed values.

Known keys (:func:`known_keys`) are the keys of the yaml files the Config layers for the model and
dataset (RecBole's ``overall.yaml`` and dataset yamls, ``properties/overall.yaml``, RecBole's and
the plugin's ``model/<Model>.yaml``), the keys of every ``dataset_configs/*.yaml`` (dataset keys
such as ``item_text`` hold for a dataset of the user's own too), and :data:`CODE_READ_KEYS`, the
keys RecBole or the plugin read in code without a yaml default.  An unknown key is an error that
names it and the closest known keys (``difflib``), unless ``allow_unknown_keys: True`` (research
forks whose model reads keys of its own).

Allowed values are declared once: the protocol's keys and the keys that mean one thing in every plugin
model in ``properties/rules.yaml`` (its header describes a rule), a model's own keys in the ``rules:``
block of its ``properties/model/<Model>.yaml`` (beside their defaults, so ``dropout`` can mean edge
pruning in FREEDOM and feature dropout in BM3); checked by :func:`check_values`. ``rules`` is a
reserved yaml key: it is no config key (:data:`RESERVED_YAML_KEYS`). A mapping-valued key
(``eval_args``, ``train_neg_sample_args``, ...) is checked key by key (``keys:``, an unknown key
with the closest known ones) and value by value (``keys:``' sub-rules, or ``values:`` for every
value), with the nested key named in the message (``eval_args.mode``).
"""

import difflib
import os
import re
from functools import lru_cache

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_recgoat.errors import InputError
from recbole_recgoat.paths import dataset_configs_dir, properties_dir

RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.realpath(__import__("recbole").__file__)), "properties")

# Keys read in code (RecBole 1.2.1 or this package) that no yaml declares; they are accepted from a user.
CODE_READ_KEYS = frozenset({
    "model", "dataset",                                   # the run's names (also --model / --dataset)
    "encoding",                                           # RecBole's atomic-file encoding (None = utf-8)
    "verbose", "tail_ratio", "eta", "token_num_threshold",  # read by RecBole's trainer / metrics
    "nproc", "world_size", "ip", "port", "offset",        # distributed runs (RecBole's names)
    # derived by RecBole's Config itself (a saved config carries them)
    "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device", "local_rank", "single_spec",
    "valid_neg_sample_args", "test_neg_sample_args", "valid_metric_bigger",
})


# Keys of a model yaml that are not config keys: its value rules (read by model_rules()).
RESERVED_YAML_KEYS = frozenset({"rules"})


def load_yaml(path):
    """A yaml file read as the Config reads its files (RecBole's loader: ``1e-05`` is a float);
    ``{}`` for an empty file; a one-line error for a missing or malformed one (with its line)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            content = yaml.load(f.read(), Loader=RecBoleConfig._build_yaml_loader(None))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; expected a yaml file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; expected a yaml file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not text (not UTF-8); expected a yaml file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise InputError(f"{path}: not valid yaml{where} ({problem})") from None
    return {} if content is None else content


def internal_yaml_files(model, dataset):
    """``[(path, whether its keys are dataset parameters)]`` the Config layers, lowest first."""
    ours = properties_dir()
    return [
        (os.path.join(RECBOLE_PROPERTIES, "overall.yaml"), False),
        (os.path.join(RECBOLE_PROPERTIES, "dataset", "sample.yaml"), True),
        (str(ours / "overall.yaml"), False),
        (os.path.join(RECBOLE_PROPERTIES, "model", f"{model}.yaml"), False),
        (str(ours / "model" / f"{model}.yaml"), False),
        (os.path.join(RECBOLE_PROPERTIES, "dataset", f"{dataset}.yaml"), True),
        (str(dataset_configs_dir() / f"{dataset}.yaml"), True),
    ]


@lru_cache(maxsize=None)
def _yaml_keys(path):
    if not os.path.isfile(path):
        return frozenset()
    content = load_yaml(path)
    return frozenset(content) - RESERVED_YAML_KEYS if isinstance(content, dict) else frozenset()


@lru_cache(maxsize=None)
def dataset_keys():
    """Keys of every dataset yaml (RecBole's ``dataset/*.yaml`` and ``dataset_configs/*.yaml``)."""
    keys = set()
    folders = [os.path.join(RECBOLE_PROPERTIES, "dataset"), str(dataset_configs_dir())]
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".yaml") and not name.endswith("url.yaml"):
                keys |= _yaml_keys(os.path.join(folder, name))
    return frozenset(keys)


def known_keys(model, dataset):
    """Every key a config of ``model`` (class name) on ``dataset`` may set."""
    keys = set(CODE_READ_KEYS) | dataset_keys()
    for path, _ in internal_yaml_files(model, dataset):
        keys |= _yaml_keys(path)
    return keys


def unknown_key_message(key, known, where="config", owners=()):
    """One line: ``key`` is unknown, the closest known keys (or the models that know it), and the
    escape hatch."""
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "no known key is close"
    if owners:
        hint = f"a key of {', '.join(owners)}, not of this model" + (f"; or did you mean {', '.join(close)}?" if close else "")
    return (f"{where}: unknown key '{key}' ({hint}); expected a key of RecBole's or this package's yaml "
            "(properties/, dataset_configs/); allow_unknown_keys: True accepts it")


def check_keys(keys, model, dataset, where="config"):
    """Raise for the first of ``keys`` that ``model`` on ``dataset`` does not know."""
    known = known_keys(model, dataset)
    for key in keys:
        if key not in known:
            raise InputError(unknown_key_message(key, known, where))


# -- values ---------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def value_rules():
    """``{'protocol': {key: rule}, 'plugin': {key: rule}}`` from ``properties/rules.yaml`` (``plugin``:
    the keys that mean the same in every plugin model)."""
    path = properties_dir() / "rules.yaml"
    doc = load_yaml(str(path))
    return {section: dict(doc.get(section) or {}) for section in ("protocol", "plugin")}


@lru_cache(maxsize=None)
def model_rules(model):
    """``{key: rule}`` of the ``rules:`` block of ``properties/model/<model>.yaml`` (``{}`` without one)."""
    path = properties_dir() / "model" / f"{model}.yaml"
    if not path.is_file():
        return {}
    rules = load_yaml(str(path)).get("rules") or {}
    if not isinstance(rules, dict):
        raise InputError(f"{path}: rules: expected a mapping key: rule, got {type(rules).__name__}")
    return dict(rules)


def rules_for(model, plugin_model):
    """Every value rule a config of ``model`` obeys: the protocol's, and for a plugin model the
    shared plugin rules overlaid by the model's own."""
    rules = dict(value_rules()["protocol"])
    if plugin_model:
        rules.update(value_rules()["plugin"])
        rules.update(model_rules(model))
    return rules


_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, (list, tuple)),
    "dict": lambda v: isinstance(v, dict),
}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "a bool", "str": "a string",
               "list": "a list", "dict": "a mapping"}


def _same(a, b):
    return a.lower() == b.lower() if isinstance(a, str) and isinstance(b, str) else a == b


def describe_rule(rule):
    """``rule`` in words: ``an integer >= 1 or auto``, ``True, False or auto``."""
    types = rule.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if rule.get("pattern_words") and rule.get("keys"):
        parts = [f"{rule['pattern_words']} or a mapping with keys {', '.join(rule['keys'])}"]
    elif rule.get("pattern_words"):
        parts = [rule["pattern_words"]]
    elif rule.get("keys") and types == ["dict"]:
        parts = [f"a mapping with keys {', '.join(rule['keys'])}"]
    elif rule.get("choices") is not None:
        parts = ["one of " + ", ".join(str(c) for c in rule["choices"])]
    elif types == ["bool"]:
        parts = ["True", "False"]
    else:
        text = " or ".join(_TYPE_WORDS[t] for t in types) or "a value"
        bounds = [f"{op} {rule[k]}" for k, op in (("min", ">="), ("gt", ">"), ("max", "<="), ("lt", "<")) if k in rule]
        if bounds:
            text += " " + " and ".join(bounds)
        if rule.get("items"):
            text += f" (each element {describe_rule(rule['items'])})"
        if rule.get("unique"):
            text += ", no element twice"
        if rule.get("values"):
            text += f" (each value {describe_rule(rule['values'])})"
        parts = [text]
    parts += [str(a) for a in rule.get("also") or []] + (["~"] if rule.get("nullable") else [])
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def value_ok(value, rule):
    """Whether ``value`` passes ``rule``."""
    if value is None:
        return bool(rule.get("nullable"))
    if any(_same(value, a) for a in rule.get("also") or []):
        return True
    types = rule.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if types and not any(_TYPES[t](value) for t in types):
        return False
    if rule.get("choices") is not None and not any(_same(value, c) for c in rule["choices"]):
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if ("min" in rule and value < rule["min"]) or ("max" in rule and value > rule["max"]):
            return False
        if ("gt" in rule and value <= rule["gt"]) or ("lt" in rule and value >= rule["lt"]):
            return False
    if rule.get("pattern") and isinstance(value, str) and not re.fullmatch(rule["pattern"], value):
        return False
    if rule.get("items") and isinstance(value, (list, tuple)):
        if not all(value_ok(v, rule["items"]) for v in value):
            return False
    if rule.get("unique") and isinstance(value, (list, tuple)) and len(set(map(repr, value))) != len(value):
        return False
    return True


def _suggestion(value, rule):
    """`` (did you mean full?)`` for a string close to one of the rule's choices or spelt values."""
    if not isinstance(value, str):
        return ""
    words = [str(c) for c in rule.get("choices") or []]
    words += re.findall(r"[A-Za-z_]+", rule.get("pattern_words") or "")
    close = difflib.get_close_matches(value, [w for w in words if w not in ("or", value)], n=2, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def check_value(name, value, rule):
    """Raise a one-line error naming ``name`` (``eval_args.mode`` for a nested key) when ``value``
    breaks ``rule``; a mapping is then checked key by key (``keys``: an unknown key is an error with
    the closest known ones) and value by value (``keys``' sub-rules, or ``values`` for every value)."""
    if not value_ok(value, rule):
        if isinstance(value, (list, tuple)) and rule.get("unique") and len(set(map(repr, value))) != len(value):
            twice = next(v for i, v in enumerate(value) if repr(v) in map(repr, value[:i]))
            raise InputError(f"{name}: {twice!r} given twice in {value!r}; expected {describe_rule(rule)}")
        raise InputError(f"{name}: got {value!r}{_suggestion(value, rule)}; expected {describe_rule(rule)}")
    if not isinstance(value, dict):
        return
    subrules = rule.get("keys")
    for key, sub in value.items():
        if subrules is not None:
            if key not in subrules:
                close = difflib.get_close_matches(str(key), [str(k) for k in subrules], n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}?" if close else "no known key is close"
                raise InputError(f"{name}: unknown key '{key}' ({hint}); expected keys among {', '.join(map(str, subrules))}")
            check_value(f"{name}.{key}", sub, subrules[key])
        elif rule.get("values"):
            check_value(f"{name}.{key}", sub, rule["values"])


def check_values(config_dict, model, plugin_model):
    """Raise for the first key of ``config_dict`` whose value breaks its rule (:func:`rules_for`);
    a mapping's keys and values are checked too (:func:`check_value`)."""
    for key, rule in rules_for(model, plugin_model).items():
        if key in config_dict:
            check_value(key, config_dict[key], rule)
