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

import torch
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_recgoat.errors import InputError
from recbole_recgoat.paths import BUNDLED_DATA_DIR, bundled_datasets, configured_datasets
from recbole_recgoat.paths import dataset_configs_dir, properties_dir
from recbole_recgoat.threads import thread_count_setting
from recbole_recgoat.utils.allocator import reuse_setting
from recbole_recgoat.utils.registry import get_model

DEFAULT_DATASET = "lastfm-2k"
RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.realpath(__import__("recbole").__file__)), "properties")
# RecBole's collector crashes on these (see docs/recbole-notes): refuse them up front.
UNSUPPORTED_METRICS = {"itemcoverage", "giniindex", "averagepopularity", "tailpercentage"}


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
        import yaml

        merged = {}
        for path in file_list or []:
            with open(path, "r", encoding="utf-8") as f:
                try:
                    content = yaml.load(f.read(), Loader=self.yaml_loader)
                except yaml.YAMLError as exc:
                    raise InputError(f"{path}: not valid yaml ({exc.__class__.__name__})") from None
            if content is None:
                continue
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
        files = [
            os.path.join(RECBOLE_PROPERTIES, "overall.yaml"),
            os.path.join(RECBOLE_PROPERTIES, "dataset", "sample.yaml"),
            str(ours / "overall.yaml"),
            os.path.join(RECBOLE_PROPERTIES, "model", f"{model}.yaml"),
            str(ours / "model" / f"{model}.yaml"),
            os.path.join(RECBOLE_PROPERTIES, "dataset", f"{dataset}.yaml"),
            str(dataset_configs_dir() / f"{dataset}.yaml"),
        ]
        for path in files:
            if os.path.isfile(path):
                content = self._update_internal_config_dict(path)
                if content and "dataset" in path:
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
        cfg["reuse_freed_memory"] = reuse_setting(cfg.get("reuse_freed_memory", "auto"))  # checked before data loads
        cfg["cpu_threads"] = thread_count_setting(cfg.get("cpu_threads", "auto"))
        if str(cfg.get("load_features", "auto")).lower() == "auto":
            cfg["load_features"] = bool(getattr(self.model_class, "uses_features", False))
        for metric in cfg["metrics"]:
            if metric.lower() in UNSUPPORTED_METRICS:
                raise InputError(
                    f"metrics: {metric} is not offered (RecBole 1.2.1's collector crashes on it); "
                    "expected ranking metrics such as Recall, NDCG, Precision, MAP, Hit, MRR"
                )

    # -- device ----------------------------------------------------------------------------
    def _init_device(self):
        """RecBole's device logic, plus gloo for multi-process training on CPU.

        RecBole 1.2.1 always initialises NCCL; here the backend is NCCL when the run uses CUDA
        and gloo otherwise (or ``dist_backend`` when set).
        """
        cfg = self.final_config_dict
        if "local_rank" not in cfg:
            return super()._init_device()
        gpu_id = cfg["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
        cfg["gpu_id"] = gpu_id
        use_cuda = bool(cfg.get("use_gpu", True)) and len(gpu_id) > 0 and torch.cuda.is_available()
        backend = cfg.get("dist_backend") or ("nccl" if use_cuda else "gloo")
        rank = cfg["local_rank"] + cfg.get("offset", 0)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                backend=backend,
                rank=rank,
                world_size=cfg["world_size"],
                init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
            )
        if use_cuda:
            cfg["device"] = torch.device("cuda", cfg["local_rank"])
            torch.cuda.set_device(cfg["local_rank"])
        else:
            cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False
