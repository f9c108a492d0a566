"""The few lines a run shows on the terminal before its first epoch (the log file gets them too).

Model and dataset, the data's statistics, the split as used (the published files, or RecBole's
split with its ratios), the protocol, the device as used, the seed, the settings that differ from
the defaults, and where the log file is.  RecBole's full config dump goes to the log file only.
"""

import os

import torch

# Keys a run sets itself or shows on another line: not listed among the changed settings.
NOT_SETTINGS = {
    "model", "dataset", "seed", "console", "state", "show_progress", "local_rank", "world_size", "ip", "port",
    "nproc", "offset", "single_spec", "device", "checkpoint_dir",
}
VALUE_WIDTH = 40


def split_text(config, dataset_name):
    """The split as used: the published files, or RecBole's split of ``eval_args``."""
    files = config["benchmark_filename"]
    if files:
        return f"published ({dataset_name}.{{{','.join(files)}}}.inter)"
    args = config["eval_args"] or {}
    split = args.get("split") or {}
    group = "per user" if args.get("group_by") == "user" else "over all interactions"
    order = "in time order" if args.get("order") == "TO" else "random"
    if "RS" in split:
        ratios = "/".join(f"{100 * float(r):g}" for r in split["RS"])
        return f"{order} {ratios} {group} (eval_args RS, seed {config['seed']})"
    if "LS" in split:
        return f"leave-one-out {group} ({split['LS']}), {order}"
    return str(split)


def protocol_text(config, items):
    """Ranking, masking, metrics, and model selection / early stopping."""
    modes = (config["eval_args"] or {}).get("mode") or {}
    mode = modes.get("test", "full") if isinstance(modes, dict) else modes
    if str(mode) == "full":
        ranking = f"full ranking of {items:,} items, training items masked " + (
            "(at test too: validation items unmasked, test_mask: train, MMRec's protocol)"
            if str(config["test_mask"]).lower() == "train" else "(at test also validation items)")
    else:
        ranking = f"ranking against sampled negatives ({mode})"
    metrics = f"{', '.join(config['metrics'])} @ {', '.join(str(k) for k in config['topk'])}"
    every = "every epoch" if int(config["eval_step"]) == 1 else f"every {config['eval_step']} epochs"
    stopping = (f"selection and early stopping on valid {config['valid_metric']}: patience {config['stopping_step']} "
                f"evaluations ({every}), at most {config['epochs']} epochs")
    return [f"{ranking}; {metrics}", stopping]


def device_text(config):
    """The device as used, with the processes of a data-parallel run."""
    device = config["device"]
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        text = f"CUDA ({device}, {torch.cuda.get_device_name(index)})"
    else:
        requested = config.external_config_dict.get("use_gpu", config.internal_config_dict.get("use_gpu"))
        cuda_note = " (no CUDA on this machine)" if requested and not torch.cuda.is_available() else ""
        threads = torch.get_num_threads()
        text = f"CPU, {threads} thread{'' if threads == 1 else 's'}{cuda_note}"
    if not config["single_spec"]:
        text += f"; {config['world_size']} processes"
    return text


def compact(value):
    text = repr(value) if isinstance(value, str) and not value.strip() else str(value)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."


def changed_settings(config):
    """``{key: value}`` the run was given (files, dict, command line) that differ from the defaults
    (RecBole's, the package's, the model's and the dataset's yaml), in the order given."""
    defaults, final = config.internal_config_dict, config.final_config_dict
    out = {}
    for key in config.external_config_dict:
        if key in NOT_SETTINGS or key not in final:
            continue
        if key not in defaults or defaults[key] != final[key]:
            out[key] = final[key]
    return out


def features_text(dataset):
    parts = [f"{m} {tuple(t.shape)[1]}-d" for m, t in (getattr(dataset, "item_features", None) or {}).items()]
    user = getattr(dataset, "user_features", None)
    if user is not None:
        parts.append(f"user {tuple(user.shape)[1]}-d")
    return ", ".join(parts)


def header_lines(config, dataset, stats, model, logfile=None):
    """The header of a run (a list of lines, at most a dozen)."""
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    data = (f"{stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions "
            f"(density {1.0 - stats['sparsity']:.2%})")
    features = features_text(dataset)
    split_counts = " / ".join(
        f"{name} {stats[f'{name}_interactions']:,}" for name in ("train", "valid", "test")
        if stats.get(f"{name}_interactions") is not None
    )
    protocol = protocol_text(config, stats["items"])
    changed = changed_settings(config)
    lines = [
        f"{config['model']} on {config['dataset']}",
        f"  data      {data}",
        *([f"  features  {features}"] if features else []),
        f"  split     {split_text(config, config['dataset'])}: {split_counts}",
        f"  protocol  {protocol[0]}",
        f"            {protocol[1]}",
        f"  device    {device_text(config)}",
        f"  seed      {config['seed']}" + (" (reproducible)" if config["reproducibility"] else ""),
        f"  model     {n_params:,} trainable parameters",
        "  settings  " + (", ".join(f"{k}={compact(v)}" for k, v in changed.items()) or "all defaults"),
    ]
    if logfile:
        lines.append(f"  log       {os.path.relpath(logfile)} (full config, per-epoch details; --verbose shows them here)")
    return lines
