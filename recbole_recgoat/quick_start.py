"""One run of one model on one dataset, RecBole's pipeline with the plugin's parts.

``init_seed`` -> dataset (validated; nothing written on bad input) -> logger -> dataloaders ->
``init_seed`` again -> model on the TRAINING split -> trainer ``fit`` with early stopping on the
validation split -> test with the best checkpoint.  Never imports ``recbole.quick_start``.
"""

import logging
import os

import torch
from logging import getLogger

from recbole.data import data_preparation
from recbole.data.utils import get_dataloader
from recbole.utils import init_logger as recbole_init_logger
from recbole.utils import init_seed as recbole_init_seed
from recbole.utils import set_color

from recbole_recgoat import threads
from recbole_recgoat.config import Config
from recbole_recgoat.data.dataset import MultiModalDataset
from recbole_recgoat.data.inter_files import unseen_summary
from recbole_recgoat.distributed import join_process_group, launch
from recbole_recgoat.errors import InputError
from recbole_recgoat.run_header import header_lines
from recbole_recgoat.trainer import get_trainer, read_checkpoint
from recbole_recgoat.utils.allocator import reuse_freed_memory, wants_reuse
from recbole_recgoat.utils.console import TERMINAL, Stage, route_terminal
from recbole_recgoat.utils.environment import versions
from recbole_recgoat.utils.io import writable_folder_problem


def init_logger(config):
    """RecBole's logger (stdout + ``./log/<model>/<model>-<dataset>-<time>-<md5>.log``).

    RecBole configures the root logger with ``logging.basicConfig``, which does nothing the second
    time in a process; the previous run's handlers are closed first so each run gets its own file.
    RecBole creates ``./log/<model>`` with an exists-then-makedirs check that races when the ranks
    of a distributed run start together; the directories are created here first, race-free.
    The terminal then shows what ``config['console']`` says (:func:`~recbole_recgoat.utils.console.route_terminal`);
    the log file keeps everything.
    """
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    recbole_init_logger(config)
    route_terminal(config["console"] if "console" in config else None, root)  # None: normal
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def init_seed(seed, reproducibility):
    """RecBole's ``init_seed`` plus, when ``reproducibility`` is on, torch's deterministic mode.

    RecBole only makes cuDNN deterministic.  On CPU, back-propagation through advanced indexing
    (``x[index]``, used by LightGCN and most models) accumulates duplicate rows in a
    thread-dependent order unless ``torch.use_deterministic_algorithms`` is on; with it, the same
    seed gives the same numbers.  ``warn_only``: an op with no deterministic kernel (some CUDA
    scatter kernels) warns instead of failing.
    """
    recbole_init_seed(seed, reproducibility)
    if reproducibility:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(False)


def create_dataset(config):
    """The dataset for ``config``: a :class:`MultiModalDataset` (RecBole's Dataset + features)."""
    return MultiModalDataset(config)


def resolve_eval_batch_size(config, dataset):
    """``eval_batch_size: auto`` -> full-sort batches of ``eval_batch_users`` users x the catalogue,
    fewer users when the score matrix would exceed ``eval_max_scores`` entries (so a 10^6-item
    catalogue is scored a few users at a time: memory linear in the catalogue)."""
    if str(config["eval_batch_size"]).lower() == "auto":
        users = min(int(config["eval_batch_users"]), max(1, int(config["eval_max_scores"]) // dataset.item_num))
        config["eval_batch_size"] = users * dataset.item_num


def prepare(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None, log=True):
    """Config, dataset and dataloaders for a run; returns ``(config, dataset, train, valid, test, logfile)``."""
    config = Config(model, dataset, config_file_list, config_dict, cmd_args)
    for key, folder in (("checkpoint_dir", config["checkpoint_dir"]), ("log folder", os.path.join("log", config["model"]))):
        problem = writable_folder_problem(folder) if log or key == "checkpoint_dir" else None
        if problem:  # before anything loads or is written: not a PermissionError after training
            raise InputError(f"{key}: {folder}: {problem}; expected a folder this process can write")
    threads.apply_thread_count(config["cpu_threads"])
    join_process_group(config)  # a rank of a multi-process run: before any dataloader exists
    init_seed(config["seed"], config["reproducibility"])
    with Stage(f"loading {config['dataset']}", show=shows_steps(config) and log):
        ds = create_dataset(config)  # validated: bad input stops here, before any file is written
    # RecBole's trainer creates it with the same racy check as the log directory (see init_logger)
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    if wants_reuse(config["reuse_freed_memory"], ds.user_num + ds.item_num + ds.inter_num):
        reuse_freed_memory()
    logfile = init_logger(config) if log else None
    logger = getLogger()
    logger.info(threads.describe())
    if getattr(config, "unknown_keys", None):
        logger.warning(f"allow_unknown_keys: True: keys no yaml declares, accepted as given: {', '.join(config.unknown_keys)}")
    logger.info(config)
    logger.info(ds)
    resolve_eval_batch_size(config, ds)
    with Stage("splitting and building the dataloaders", show=shows_steps(config) and log):
        train_data, valid_data, test_data = data_preparation(config, ds)
        train_data = resolve_train_batch_size(config, train_data)
        apply_test_mask(config, train_data, test_data)
    # the test split is summarised by run() when it tests: a tuning trial never touches it
    notes = list(getattr(ds, "load_notes", [])) + unseen_summary(train_data._dataset, {"valid": valid_data._dataset},
                                                                 ds.uid_field, ds.iid_field)
    for level, line in notes:
        getattr(logger, level)(line)
    return config, ds, train_data, valid_data, test_data, logfile


def apply_test_mask(config, train_data, test_data):
    """``test_mask: train`` (MMRec's evaluation, and the papers built on it): a test user's
    validation items are ranked like any other item; only the user's training items are masked.

    RecBole's full-sort test loader masks ``(train + valid items) - test items`` of each user
    (``test_mask: train_valid``, the default); here the mask becomes ``train items - test items``
    (an item the user has in both splits stays rankable: it is a test positive). The validation
    loader is not touched: validation masks training items only under both settings.
    """
    if str(config["test_mask"] or "train_valid").lower() != "train" or test_data is None:
        return
    train = train_data._dataset
    train_items = {}
    for uid, iid in zip(train.inter_feat[train.uid_field].tolist(), train.inter_feat[train.iid_field].tolist()):
        train_items.setdefault(uid, set()).add(iid)
    for uid in test_data.uid_list.tolist():
        positives = set(test_data.uid2positive_item[uid].tolist())
        history = sorted(train_items.get(uid, set()) - positives)
        test_data.uid2history_item[uid] = torch.tensor(history, dtype=torch.int64)


def shows_steps(config):
    """Whether this process says on the terminal how long its slow steps took (not when quiet,
    not on ranks other than 0 of a multi-process run, not below INFO)."""
    state = str(config["state"] or "info").lower()
    return config["console"] != "quiet" and config["local_rank"] == 0 and state in ("info", "debug")


def resolve_train_batch_size(config, train_data):
    """``train_steps_per_epoch: S`` -> batches of ``max(train_batch_size, ceil(n_train / S))``.

    For full-graph models a training step costs ``O(users + items + interactions)``; with a fixed
    batch the number of steps also grows with the interactions, so an epoch grows quadratically.
    A fixed number of steps per epoch keeps the epoch linear on large catalogues (and leaves
    datasets with fewer than ``S x train_batch_size`` interactions unchanged).
    """
    steps = config["train_steps_per_epoch"]
    if not steps:
        return train_data
    batch = max(int(config["train_batch_size"]), -(-len(train_data._dataset) // int(steps)))
    if batch == config["train_batch_size"]:
        return train_data
    config["train_batch_size"] = batch  # the dataloader fixes its batch at construction: rebuild it
    return get_dataloader(config, "train")(config, train_data._dataset, train_data._sampler, shuffle=config["shuffle"])


def build_model(config, train_data):
    """Instantiate ``config.model_class`` on the TRAINING split, seeded as RecBole does."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return config.model_class(config, train_data._dataset).to(config["device"])


def dataset_stats(dataset, train_data, valid_data, test_data=None):
    """Users, items (PAD not counted), interactions per split, test users and sparsity of a run's data."""
    users, items = int(dataset.user_num) - 1, int(dataset.item_num) - 1  # RecBole counts [PAD]
    splits = {"train": train_data, "valid": valid_data, "test": test_data}
    stats = {"users": users, "items": items, "interactions": int(dataset.inter_num)}
    for name, loader in splits.items():
        stats[f"{name}_interactions"] = int(loader._dataset.inter_num) if loader is not None else None
    stats["test_users"] = int(len(getattr(test_data, "uid_list", []))) if test_data is not None else None
    stats["sparsity"] = 1.0 - stats["interactions"] / float(max(users * items, 1))
    return stats


def run(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None, saved=True, verbose=True,
        test=True, per_user=False):
    """Train with early stopping on validation, then test the best checkpoint.

    Args:
        saved (bool): write the best checkpoint (and test it); False tests the last parameters.
        test (bool): evaluate on the test split; False selects on validation only and never
            reads the test loader (``test_result`` is None): a tuning trial.
        per_user (bool): also return ``per_user``, the test metrics of every test user
            (:meth:`~recbole_recgoat.trainer.PluginTrainerMixin.per_user_metrics`; not json-able).

    Returns:
        dict: ``model``, ``dataset``, ``seed``, ``valid_metric``, ``best_valid_score``,
        ``best_valid_result``, ``test_result``, ``best_epoch``, ``epochs_run``,
        ``epoch_time_mean_s``, ``train_time_s``, ``peak_memory_bytes``, ``valid_curve``,
        ``diagnostics``, ``checkpoint``, ``log_file``, ``dataset_stats``, ``feature_norm`` (the
        loader's row scaling per item modality, ``item_feature_norm``), ``features`` (what the model
        read: ``{"items": [modality, ...], "users": bool}``), ``versions``,
        ``config`` (the final, json-able config).
    """
    config, ds, train_data, valid_data, test_data, logfile = prepare(
        model, dataset, config_file_list, config_dict, cmd_args
    )
    logger = getLogger()
    with Stage(f"building {config['model']}", show=shows_steps(config)):
        model_obj = build_model(config, train_data)
    logger.info(model_obj)
    stats = dataset_stats(ds, train_data, valid_data, test_data if test else None)
    if verbose:
        for line in header_lines(config, ds, stats, model_obj, logfile):
            logger.info(line, extra=TERMINAL)
    trainer = get_trainer(config.model_class)(config, model_obj)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], verbose=verbose
    )
    logger.info(set_color("best valid ", "yellow") + f": {dict(best_valid_result or {})}")
    test_result = None
    if test:
        for level, line in unseen_summary(train_data._dataset, {"test": test_data._dataset}, ds.uid_field, ds.iid_field):
            getattr(logger, level)(line)
        with Stage("testing", show=shows_steps(config)):
            test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        test_result = {k: float(v) for k, v in (test_result or {}).items()}
        logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "valid_metric": config["valid_metric"],
        "best_valid_score": float(best_valid_score),
        "best_valid_result": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "test_result": test_result,
        "best_epoch": trainer.best_epoch,
        "epochs_run": len(trainer.epoch_times),
        "epoch_time_mean_s": sum(trainer.epoch_times) / max(len(trainer.epoch_times), 1),
        "train_time_s": sum(trainer.epoch_times),
        "peak_memory_bytes": int(trainer.peak_memory_bytes),
        "valid_curve": [(e, s) for e, s, _ in trainer.valid_curve],
        "diagnostics": trainer.diagnostics,
        "checkpoint": trainer.saved_model_file if saved else None,
        "log_file": logfile,
        "dataset_stats": stats,
        "feature_norm": dict(getattr(ds, "item_feature_norm", {}) or {}),
        "features": model_obj.feature_set() if hasattr(model_obj, "feature_set") else {"items": [], "users": False},
        "versions": versions(),
        "cpu_threads": torch.get_num_threads(),
        "thread_policy": threads.describe(),
        "config": jsonable_config(config),
    }
    if per_user:
        result["per_user"] = trainer.per_user_metrics(ds, test_result) if test else None
    return result


def run_any(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None,
            nproc=1, world_size=-1, ip="127.0.0.1", port="5678", group_offset=0, saved=True):
    """:func:`run` in this process when ``nproc == 1`` and ``world_size <= 0``; otherwise on
    ``nproc`` spawned ranks of a data-parallel run (:func:`recbole_recgoat.distributed.launch`),
    returning rank 0's result (None on a machine whose first rank is not 0)."""
    if nproc <= 1 and world_size <= 0:
        return run(model, dataset, config_file_list, config_dict, cmd_args, saved=saved)
    kwargs = {"model": model, "dataset": dataset, "config_file_list": config_file_list,
              "config_dict": config_dict, "cmd_args": cmd_args, "saved": saved}
    return launch(run, kwargs, nproc, world_size, ip, port, group_offset)


def jsonable_config(config):
    """The final config as plain json types (enums, devices and the like as strings)."""
    out = {}
    for key, value in config.final_config_dict.items():
        out[key] = _jsonable(value)
    return out


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def load_data_and_model(model_file, model=None, dataset=None):
    """Rebuild config, data and model from a checkpoint written by :func:`run`.

    A missing, truncated or foreign file is a one-line :class:`~recbole_recgoat.errors.InputError`
    naming it (:func:`recbole_recgoat.trainer.read_checkpoint`).

    Returns:
        tuple: ``(config, model, dataset, train_data, valid_data, test_data)``; the model holds the
        checkpoint's parameters and is in eval mode.
    """
    checkpoint = read_checkpoint(model_file)
    saved = checkpoint["config"]
    stored_class = checkpoint.get("model_class")
    if stored_class is not None and stored_class != saved["model"]:
        raise InputError(f"{model_file}: its config names {saved['model']} but its parameters are {stored_class}'s; "
                         "expected a checkpoint as a run wrote it")
    for flag, given, stored in (("--model", model, saved["model"]), ("--dataset", dataset, saved["dataset"])):
        if given is not None and str(given) != str(stored):
            raise InputError(f"{flag}={given}: the checkpoint {model_file} is {saved['model']} on {saved['dataset']}; "
                             f"expected {flag}={stored} or no {flag} (a re-score uses the checkpoint's own config)")
    config_dict = {k: v for k, v in saved.final_config_dict.items() if k not in _DERIVED_KEYS}
    config_dict["data_path"] = os.path.dirname(os.path.normpath(saved["data_path"]))
    neg = config_dict.get("train_neg_sample_args")
    if isinstance(neg, dict) and neg.get("distribution") == "none":  # RecBole's own spelling of "no negatives"
        config_dict["train_neg_sample_args"] = None
    config, ds, train_data, valid_data, test_data, _ = prepare(
        saved["model"], saved["dataset"], config_dict=config_dict, log=False
    )
    model = build_model(config, train_data)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{model_file}: parameters do not fit {saved['model']} on {saved['dataset']} ({first}); "
                         "expected a checkpoint of this data and configuration") from None
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model.eval()
    return config, model, ds, train_data, valid_data, test_data


def evaluate_checkpoint(model_file, model=None, dataset=None):
    """Re-score the test split with the parameters of a checkpoint (no training): ``{'model',
    'dataset', 'seed', 'checkpoint', 'test_result'}``. ``model`` / ``dataset`` given (the command
    line's ``--model`` / ``--dataset``) must be the checkpoint's."""
    config, model, ds, _, _, test_data = load_data_and_model(model_file, model, dataset)
    trainer = get_trainer(config.model_class)(config, model)
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {"model": config["model"], "dataset": config["dataset"], "seed": config["seed"],
            "checkpoint": str(model_file), "test_result": {k: float(v) for k, v in (result or {}).items()}}


# Keys RecBole derives itself; passing them back in would fight its own derivation.
_DERIVED_KEYS = {
    "device", "use_gpu", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "single_spec", "local_rank",
    "valid_neg_sample_args", "test_neg_sample_args", "data_path", "model", "dataset", "valid_metric_bigger",
}
