"""What the per-model test files (test_preference_graph.py, test_grcn.py, ..., test_baselines.py) share: a quiet
builder of a model and its training data, one training step, the token -> internal id maps, a writer
for hand-made tiny datasets, the training pairs of an .inter file, a quiet copy of Last.fm-2K, and the
checks several models repeat (a checkpoint that reloads to the same test metrics, gradients on the
trained parameters only, two builds alike, RecGOAT's graphs in original ids). Each test file still names its model and its dataset
where it builds them.

The one-torch-thread fixture these files ask for (``pytestmark = pytest.mark.usefixtures("one_thread")``)
is conftest.py's ``one_thread``; conftest.py also registers this module for pytest's assertion rewriting.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BUNDLED

from recbole_recgoat.quick_start import build_model, load_data_and_model, prepare
from recbole_recgoat.trainer import get_trainer

LASTFM = BUNDLED / "lastfm-2k"
QUIET = {"state": "ERROR", "show_progress": False}


# ------------------------------------------------------------------------------------------ building
def model_and_data(model, dataset=None, **overrides):
    """``(net, train_data)``: ``model`` on ``dataset`` (None: the default dataset) built as a run builds it
    (seeded, training split), quiet and without a log file. The item-item graphs are cached under
    ./graphs (each test's own working directory) unless ``overrides`` names another ``graph_cache_dir``
    (None: no cache); any other key of ``overrides`` overrides the model's defaults."""
    cfg = dict(QUIET, graph_cache_dir=os.path.abspath("graphs"))
    cfg.update(overrides)
    config, _, train_data, _, _, _ = prepare(model, dataset, config_dict=cfg, log=False)
    return build_model(config, train_data), train_data


def train_step(net, batch, pre_epoch=False):
    """One training step's forward and backward, no optimizer step; with ``pre_epoch`` the model's
    ``pre_epoch_processing`` (graph rebuild, edge sampling) runs first. Returns the loss."""
    net.train()
    if pre_epoch and hasattr(net, "pre_epoch_processing"):
        net.pre_epoch_processing()
    loss = net.calculate_loss(batch)
    loss.backward()
    return loss


def token_ids(train_data):
    """``({user token: internal id}, {item token: internal id})`` for integer tokens, PAD left out."""
    ds = train_data._dataset
    uid = {int(t): k for k, t in enumerate(ds.field2id_token[ds.uid_field]) if t != "[PAD]"}
    iid = {int(t): k for k, t in enumerate(ds.field2id_token[ds.iid_field]) if t != "[PAD]"}
    return uid, iid


def user_item_pairs(net, dataset):
    """The ``(user token, item token)`` pairs of the user -> item block of ``net.norm_adj`` (the
    backbone's normalised user-item graph) in ``dataset``'s original tokens."""
    utok, itok = dataset.field2id_token[dataset.uid_field], dataset.field2id_token[dataset.iid_field]
    idx = net.norm_adj.coalesce().indices()
    ui = idx[:, idx[0] < net.n_users]
    return set(zip(utok[ui[0].numpy()], itok[ui[1].numpy() - net.n_users]))


# ------------------------------------------------------------------------------------------ data
def write_tiny_dataset(tmp_path, name, train, valid, test, features):
    """A hand-made dataset in ``tmp_path/data/<name>``: ``train`` ``{user: [items]}`` and ``valid`` /
    ``test`` ``{user: item}`` as the three benchmark .inter files, ``features`` ``{modality: array}``
    (one row per item token) as ``<modality>_feat.npy``. Returns the config keys that load it, with
    every modality of ``features`` in use and a training batch of 16."""
    d = tmp_path / "data" / name
    d.mkdir(parents=True)
    for split, rows in (("train", [(u, i) for u, its in train.items() for i in its]),
                        ("valid", list(valid.items())), ("test", list(test.items()))):
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in rows]
        (d / f"{name}.{split}.inter").write_text("\n".join(lines) + "\n")
    for m, x in features.items():
        np.save(d / f"{m}_feat.npy", x)
    return {
        "data_path": str(tmp_path / "data"),
        "load_col": {"inter": ["user_id", "item_id"]},
        "benchmark_filename": ["train", "valid", "test"],
        "item_feature_files": {m: f"{m}_feat.npy" for m in features},
        "modalities": list(features),
        "train_batch_size": 16,
    }


def training_pairs(inter_file):
    """The ``(user token, item token)`` pairs (strings) of an .inter file, header left out."""
    return {tuple(r.split("\t")[:2]) for r in Path(inter_file).read_text().splitlines()[1:]}


def copy_lastfm(tmp_path, name="lfm", permute_eval=False):
    """The bundled dataset in a folder of its own, plus user LM features built from TRAINING rows.

    The user feature of a user is the mean text feature of the user's training items (a stand-in
    for the LLM profile embedding; the real one is produced by ``python -m recbole_recgoat.features``).
    ``permute_eval`` shuffles the item column of the validation and test rows.
    """
    d = tmp_path / "data" / name
    d.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        shutil.copy(LASTFM / f"lastfm-2k.{split}.inter", d / f"{name}.{split}.inter")
    for f in ("text_feat.npy", "audio_feat.npy", "whisper_feat.npy"):
        shutil.copy(LASTFM / f, d / f)
    text = np.load(LASTFM / "text_feat.npy")
    train = np.loadtxt(LASTFM / "lastfm-2k.train.inter", skiprows=1, dtype=np.int64)
    n_users = 1858
    sums = np.zeros((n_users, text.shape[1]))
    np.add.at(sums, train[:, 0], text[train[:, 1]])
    counts = np.bincount(train[:, 0], minlength=n_users)[:, None]
    np.save(d / "user_feat.npy", (sums / np.maximum(counts, 1)).astype(np.float32))
    if permute_eval:
        rng = np.random.default_rng(7)
        lines = {s: (d / f"{name}.{s}.inter").read_text().splitlines() for s in ("valid", "test")}
        rows = [r.split("\t") for s in ("valid", "test") for r in lines[s][1:]]
        items = rng.permutation([r[1] for r in rows])
        k = 0
        for s in ("valid", "test"):
            out, pairs = [lines[s][0]], set()
            for r in lines[s][1:]:
                u, _, rating = r.split("\t")
                if (u, items[k]) not in pairs:  # each (user, item) pair once per split: the loader refuses repeats
                    pairs.add((u, items[k]))
                    out.append(f"{u}\t{items[k]}\t{rating}")
                k += 1
            (d / f"{name}.{s}.inter").write_text("\n".join(out) + "\n")
    return {
        "data_path": str(tmp_path / "data"),
        "load_col": {"inter": ["user_id", "item_id"]},
        "benchmark_filename": ["train", "valid", "test"],
        "item_feature_files": {"text": "text_feat.npy", "audio": "audio_feat.npy", "whisper": "whisper_feat.npy"},
        "modalities": ["text", "audio"],
        "user_feature_file": "user_feat.npy",
        "state": "WARNING",
        "graph_cache_dir": None,
    }


def quiet_lastfm_copy(root, permute_eval, **config):
    """The bundled Last.fm-2K as dataset ``lfm`` in a folder of its own (:func:`copy_lastfm`:
    with ``permute_eval`` other items in every validation and test row, each pair once per split),
    with ``config`` added and quiet: the config of a copy for ``prepare``."""
    return {**copy_lastfm(root, "lfm", permute_eval=permute_eval), **config, **QUIET}


# ------------------------------------------------------------------------------------------ checks
def assert_checkpoint_evaluates_the_same(result):
    """``result``'s checkpoint reloads (config, model, data) and evaluates to its test metrics (4 decimals)."""
    config, model, _, _, _, te = load_data_and_model(result["checkpoint"])
    again = get_trainer(type(model))(config, model).evaluate(te, load_best_model=False)
    assert {k: round(float(v), 4) for k, v in again.items()} == {k: round(v, 4) for k, v in result["test_result"].items()}


def assert_gradients_only_on(net, groups):
    """After a step: every parameter belongs to one of ``groups`` (name prefixes) and has a finite,
    non-zero gradient."""
    for name, prm in net.named_parameters():
        assert any(name.startswith(g) for g in groups), name
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
        assert prm.grad.abs().sum() > 0, name


def assert_same_built(a, b):
    """Two ``{what: {key: value}}`` of what a model built (in original ids) are the same: the same
    keys, float values equal to 1e-7, any other value equal."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].keys() == b[key].keys(), key
        assert all(a[key][e] == pytest.approx(b[key][e], abs=1e-7) if isinstance(a[key][e], float) else a[key][e] == b[key][e]
                   for e in a[key]), key


def recgoat_graphs(model, dataset):
    """What a RecGOAT model built from the interactions, in original ids (for the leakage tests: the
    same on a dataset and on a copy whose validation or test rows differ): the user-item edges
    ``ui`` ``{(user, item)}``, each modality's item-item edges, the user-user edges ``uu``, and each
    user's LM feature row as bytes (``user_feats``)."""
    utok, itok = dataset.field2id_token[dataset.uid_field], dataset.field2id_token[dataset.iid_field]
    idx = model.norm_adj.coalesce().indices()
    ui = idx[:, idx[0] < model.n_users]
    out = {"ui": set(zip(utok[ui[0].numpy()], itok[ui[1].numpy() - model.n_users]))}
    for m, e in model.mm_edges.items():
        out[m] = set(zip(itok[e[0].numpy()], itok[e[1].numpy()]))
    out["uu"] = set(zip(utok[model.user_edges[0].numpy()], utok[model.user_edges[1].numpy()]))
    feats = model.user_feats.numpy()
    out["user_feats"] = {utok[k]: feats[k].tobytes() for k in range(1, len(utok))}
    return out
