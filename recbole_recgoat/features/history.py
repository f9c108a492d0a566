"""Each user's TRAINING interactions, from the same RecBole split the models train on.

The split is :func:`recbole_recgoat.data.dataset.training_split` of the dataset's config with the
project's seed (published split via ``benchmark_filename``; otherwise RecBole's seeded random
split, identical to the models' for the same seed and config); nothing is trained.  Internal ids
are mapped back to the original tokens.
"""

from recbole_recgoat.config import Config
from recbole_recgoat.data.dataset import training_split
from recbole_recgoat.features.output import sort_ids

SPLIT_MODEL = "BPR"  # any general model: the split depends on the dataset config and the seed only

def _config_dict(data_path=None, seed=None):
    cfg = {"load_features": False, "show_progress": False, "state": "ERROR"}
    if data_path:
        cfg["data_path"] = data_path
    if seed is not None:
        cfg["seed"] = int(seed)
    return cfg


def load_config(dataset, data_path=None, config_files=None, seed=None, model=SPLIT_MODEL):
    """The plugin's Config for ``dataset`` (no data read)."""
    return Config(model, dataset, config_files, _config_dict(data_path, seed))


def training_histories(dataset, data_path=None, config_files=None, seed=None, model=SPLIT_MODEL):
    """``(config, {user: [item, ...]})``: every user of the dataset (sorted original ids) and the
    distinct items of their training interactions, in the training split's row order."""
    config = load_config(dataset, data_path, config_files, seed, model)
    ds, train = training_split(config)  # RecBole's pandas FutureWarnings: silenced at source (compat)
    uid, iid = ds.uid_field, ds.iid_field
    utok, itok = ds.field2id_token[uid], ds.field2id_token[iid]
    users = sort_ids(str(t) for t in utok[1:])
    seen = {u: {} for u in users}
    for u, i in zip(train.inter_feat[uid].tolist(), train.inter_feat[iid].tolist()):
        seen[str(utok[u])].setdefault(str(itok[i]), None)
    return config, {u: list(seen[u]) for u in users}
