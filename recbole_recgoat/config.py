"""The plugin's Config: RecBole's, with the plugin's defaults, model lookup and safe cmd-line.

Precedence, lowest first (RecBole's own rule, with the plugin's files slotted in):

1. RecBole ``properties/overall.yaml``
2. this package's ``properties/overall.yaml`` (the project's protocol)
3. RecBole ``properties/model/<Model>.yaml``, then this package's ``properties/model/<Model>.yaml``
4. RecBole ``properties/dataset/<dataset>.yaml``, then this package's ``dataset_configs/<dataset>.yaml``
5. ``config_file_list`` < ``config_dict`` < ``cmd_args``

Unlike RecBole, ``sys.argv`` is never read here: the command line passes its ``--key=value``
pairs explicitly as ``cmd_args`` (so a test runner's flags cannot leak into a model's config).
"""

import os

from recbole.config import Config as RecBoleConfig
from recbole.evaluator import metric_types
from recbole.utils import ModelType

from recbole_recgoat.config_rules import RESERVED_YAML_KEYS, check_values, internal_yaml_files, known_keys, load_yaml  # noqa: F401
from recbole_recgoat.config_rules import unknown_key_message
from recbole_recgoat.distributed import rank_device
from recbole_recgoat.errors import InputError
from recbole_recgoat.paths import BUNDLED_DATA_DIR, bundled_datasets, configured_datasets
from recbole_recgoat.threads import thread_count_setting
from recbole_recgoat.utils.allocator import reuse_setting
from recbole_recgoat.utils.console import console_mode
from recbole_recgoat.utils.registry import get_model, plugin_models

DEFAULT_DATASET = "lastfm-2k"
# RecBole 1.2.1's evaluator crashes on these (its collector never gathers the data they need): refuse them up front.
UNSUPPORTED_METRICS = {"itemcoverage", "giniindex", "averagepopularity", "tailpercentage"}


def convert_value(text):
    """A command-line string as the Config converts ``--key=value`` (RecBole's rule: a Python
    literal, ``true`` / ``false``, else the string itself); non-strings are returned as they are."""
    return RecBoleConfig._convert_config_dict(None, {"value": text})["value"]


class Config(RecBoleConfig):
    """RecBole ``Config`` for plugin and RecBole models alike.

    Args:
        model (str | type): model name (plugin first, then RecBole) or class.
        dataset (str): dataset name; default ``lastfm-2k`` (bundled).
        config_file_list (list[str]): yaml files.
        config_dict (dict): parameters.
        cmd_args (dict): ``--key=value`` pairs from a command line, highest precedence.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
        self._cmd_args = dict(cmd_args or {})
        for path in config_file_list or []:
            if not os.path.isfile(path):
                raise InputError(f"--config_files: {path} does not exist; expected a yaml file")
        super().__init__(model, dataset, config_file_list, config_dict)

    # -- external input ---------------------------------------------------------------------
    def _load_cmd_line(self):
        return self._convert_config_dict(dict(self._cmd_args))

    def _load_config_files(self, file_list):
        merged = {}
        for path in file_list or []:
            content = load_yaml(path)
            if not isinstance(content, dict):
                raise InputError(f"{path}: expected a yaml mapping of key: value, got {type(content).__name__}")
            merged.update(content)
        return merged

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise InputError("model: not given; pass --model=<Name>")
        model_class = get_model(model)
        if dataset is None:
            dataset = self.external_config_dict.get("dataset", DEFAULT_DATASET)
        return model_class.__name__, model_class, str(dataset)

    # -- internal defaults -----------------------------------------------------------------
    def _load_internal_config_dict(self, model, model_class, dataset):
        if model_class.type != ModelType.GENERAL and model_class.type != ModelType.TRADITIONAL:
            raise InputError(
                f"--model={model}: a {model_class.type.name.lower()} recommender; this package's "
                "protocol (full ranking of implicit feedback) runs general recommenders only"
            )
        self.internal_config_dict = dict()
        for path, dataset_keys in internal_yaml_files(model, dataset):
            if os.path.isfile(path):
                content = self._update_internal_config_dict(path)
                if content and dataset_keys:
                    self.parameters["Dataset"] += [k for k in content if k not in self.parameters["Dataset"]]
        self.internal_config_dict["MODEL_TYPE"] = model_class.type

    def _update_internal_config_dict(self, file):
        """RecBole's layering of one yaml, without its reserved keys (a model's ``rules:`` block)."""
        content = load_yaml(file)
        content = {k: v for k, v in content.items() if k not in RESERVED_YAML_KEYS} if isinstance(content, dict) else content
        if content:
            self.internal_config_dict.update(content)
        return content

    def _set_default_parameters(self):
        self._check_external_input()
        given_path = self.external_config_dict.get("data_path")
        super()._set_default_parameters()
        cfg = self.final_config_dict
        if given_path is not None:  # the user's data_path is used as given, never replaced by a fallback
            cfg["data_path"] = os.path.join(str(given_path), self.dataset)
            if not os.path.isdir(given_path):
                raise InputError(f"data_path: {given_path} does not exist; expected a folder holding {self.dataset}/")
            if not os.path.isdir(cfg["data_path"]):
                raise InputError(f"data_path: no folder {cfg['data_path']}; expected the atomic files of {self.dataset} there")
        data_dir = cfg["data_path"]
        if not os.path.isdir(data_dir) and self.dataset in bundled_datasets():
            cfg["data_path"] = str(BUNDLED_DATA_DIR / self.dataset)
        elif not os.path.isdir(data_dir):
            known = sorted(set(bundled_datasets()) | set(configured_datasets()) | {"ml-100k"})
            hint = " (its files are not in the data_path given)" if self.dataset in known else ""
            raise InputError(
                f"--dataset={self.dataset}: no folder {data_dir}{hint}; expected atomic files there "
                f"(set data_path); datasets with a config: {', '.join(known)}"
            )
        cfg["reuse_freed_memory"] = reuse_setting(cfg["reuse_freed_memory"])  # checked before data loads
        cfg["cpu_threads"] = thread_count_setting(cfg["cpu_threads"])
        cfg["console"] = console_mode(cfg.get("console"))
        cfg["show_progress"] = progress_setting(cfg.get("show_progress"))
        if str(cfg["load_features"]).lower() == "auto":
            cfg["load_features"] = bool(getattr(self.model_class, "uses_features", False))
        self._check_switches(cfg)

    def _check_switches(self, cfg):
        """A switch the user turned on that cannot take effect is an error, never ignored: the user
        branch (``use_user_features`` / ``use_user_graph``) on a dataset without user features, or
        without features loaded.  Checked for what a person types (command line, ``--config_files``);
        a ``config_dict`` (a tuning grid, a checkpoint's stored config) may carry the model's default."""
        typed = {**(getattr(self, "file_config_dict", None) or {}), **(getattr(self, "cmd_config_dict", None) or {})}
        for key in ("use_user_features", "use_user_graph"):
            if typed.get(key) is not True:
                continue
            if not cfg.get("user_feature_file"):
                raise InputError(f"{key}: True, but {self.dataset} has no user features (user_feature_file is not set); "
                                 f"expected {key}=False, or a user_feature_file in the dataset yaml")
            if not cfg.get("load_features"):
                raise InputError(f"{key}: True, but load_features is False (no features are loaded); "
                                 f"expected load_features: auto or True")

    def _check_external_input(self):
        """Unknown keys (unless ``allow_unknown_keys``), then every value against
        ``properties/rules.yaml``, then the metrics: all before any data loads or file is written."""
        cfg = self.final_config_dict
        known = known_keys(self.model, self.dataset)
        self.unknown_keys = sorted(k for k in self.external_config_dict if k not in known)
        allow = cfg.get("allow_unknown_keys")
        if not isinstance(allow, bool):
            raise InputError(f"allow_unknown_keys: got {allow!r}; expected True or False")
        if self.unknown_keys and not allow:
            key = self.unknown_keys[0]
            owners = [m for m in plugin_models() if m != self.model and key in known_keys(m, self.dataset)]
            raise InputError(unknown_key_message(key, known, where=f"--model={self.model}", owners=owners))
        check_values(cfg, self.model, self.model in plugin_models())
        metrics = [cfg["metrics"]] if isinstance(cfg["metrics"], str) else list(cfg["metrics"])
        for metric in metrics:
            if metric.lower() in UNSUPPORTED_METRICS:
                raise InputError(
                    f"metrics: {metric} is not offered (RecBole 1.2.1's collector crashes on it); "
                    "expected ranking metrics such as Recall, NDCG, Precision, MAP, Hit, MRR"
                )
            if metric.lower() not in metric_types:
                raise InputError(f"metrics: unknown metric {metric!r}; expected some of {', '.join(sorted(set(metric_types) - UNSUPPORTED_METRICS))}")
        topk = [cfg["topk"]] if isinstance(cfg["topk"], int) else list(cfg["topk"])
        name, _, k = str(cfg["valid_metric"]).partition("@")
        computed = {m.lower() for m in metrics}
        if name.lower() not in computed or (k and (not k.isdigit() or int(k) not in topk)):
            raise InputError(
                f"valid_metric: {cfg['valid_metric']!r} is not computed; expected <metric>@<k> with the metric in "
                f"metrics ({', '.join(metrics)}) and k in topk ({', '.join(str(t) for t in topk)})"
            )

    # -- device ----------------------------------------------------------------------------
    def _init_device(self):
        """RecBole's device logic; a rank of a multi-process run (``local_rank`` set) gets its own
        device here and joins the process group when the run starts
        (:mod:`recbole_recgoat.distributed`).  ``use_gpu`` then says whether the run uses CUDA
        (RecBole keeps ``True`` on a machine without it)."""
        if "local_rank" not in self.final_config_dict:
            super()._init_device()
            self.final_config_dict["use_gpu"] = self.final_config_dict["device"].type == "cuda"
            return
        rank_device(self.final_config_dict)


def progress_setting(value):
    """``show_progress`` as True, False or ``'auto'`` (None -> False)."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("auto", "true", "false"):
        return {"true": True, "false": False}.get(text, "auto")
    raise InputError(f"show_progress: got {value!r}; expected True, False or auto")
