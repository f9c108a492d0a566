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

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_recgoat.distributed import rank_device
from recbole_recgoat.errors import InputError
from recbole_recgoat.paths import BUNDLED_DATA_DIR, bundled_datasets, configured_datasets
from recbole_recgoat.paths import dataset_configs_dir, properties_dir
from recbole_recgoat.threads import thread_count_setting
from recbole_recgoat.utils.allocator import reuse_setting
from recbole_recgoat.utils.console import console_mode
from recbole_recgoat.utils.registry import get_model

DEFAULT_DATASET = "lastfm-2k"
RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.realpath(__import__("recbole").__file__)), "properties")
# RecBole 1.2.1's evaluator crashes on these (its collector never gathers the data they need): refuse them up front.
UNSUPPORTED_METRICS = {"itemcoverage", "giniindex", "averagepopularity", "tailpercentage"}


def load_yaml(path):
    """A yaml file read as the Config reads its files (RecBole's loader: ``1e-05`` is a float);
    ``{}`` for an empty file; a one-line error for a missing or malformed one."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            content = yaml.load(f.read(), Loader=RecBoleConfig._build_yaml_loader(None))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; expected a yaml file") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid yaml ({exc.__class__.__name__})") from None
    return {} if content is None else content


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
        ours = properties_dir()
        files = [  # (yaml, whether its keys are dataset parameters), lowest precedence first
            (os.path.join(RECBOLE_PROPERTIES, "overall.yaml"), False),
            (os.path.join(RECBOLE_PROPERTIES, "dataset", "sample.yaml"), True),
            (str(ours / "overall.yaml"), False),
            (os.path.join(RECBOLE_PROPERTIES, "model", f"{model}.yaml"), False),
            (str(ours / "model" / f"{model}.yaml"), False),
            (os.path.join(RECBOLE_PROPERTIES, "dataset", f"{dataset}.yaml"), True),
            (str(dataset_configs_dir() / f"{dataset}.yaml"), True),
        ]
        for path, dataset_keys in files:
            if os.path.isfile(path):
                content = self._update_internal_config_dict(path)
                if content and dataset_keys:
                    self.parameters["Dataset"] += [k for k in content if k not in self.parameters["Dataset"]]
        self.internal_config_dict["MODEL_TYPE"] = model_class.type

    def _set_default_parameters(self):
        super()._set_default_parameters()
        cfg = self.final_config_dict
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
        for metric in cfg["metrics"]:
            if metric.lower() in UNSUPPORTED_METRICS:
                raise InputError(
                    f"metrics: {metric} is not offered (RecBole 1.2.1's collector crashes on it); "
                    "expected ranking metrics such as Recall, NDCG, Precision, MAP, Hit, MRR"
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
