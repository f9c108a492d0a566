"""``test_mask: train`` (MMRec's evaluation): only the test-time mask changes.

Under RecBole's default (``train_valid``) a test user's training and validation items are never
ranked; under ``train`` the validation items compete with the test items.  Validation is the same
under both settings, and since masking fewer items can only push a test item down the ranking,
no test user scores higher under ``train`` (the default is the upper bound of the two)."""

import numpy as np
import pytest

from recbole_recgoat.errors import InputError
from recbole_recgoat.quick_start import prepare, run


def _masks(loader):
    return {int(u): set(loader.uid2history_item[int(u)].tolist()) for u in loader.uid_list}


def _items_by_user(dataset):
    out = {}
    for u, i in zip(dataset.inter_feat[dataset.uid_field].tolist(), dataset.inter_feat[dataset.iid_field].tolist()):
        out.setdefault(u, set()).add(i)
    return out


def test_train_mask_unmasks_exactly_the_validation_items_at_test_time():
    cfg = {"state": "WARNING", "show_progress": False}
    _, _, train_a, valid_a, test_a, _ = prepare("BPR", "lastfm-2k", config_dict=dict(cfg), log=False)
    _, _, train_b, valid_b, test_b, _ = prepare("BPR", "lastfm-2k", config_dict=dict(cfg, test_mask="train"), log=False)
    assert _masks(valid_a) == _masks(valid_b)  # validation: untouched
    train = _items_by_user(train_a._dataset)
    valid = _items_by_user(valid_a._dataset)
    default, mmrec = _masks(test_a), _masks(test_b)
    assert default.keys() == mmrec.keys()
    changed = 0
    for u in default:
        positives = set(test_b.uid2positive_item[u].tolist())
        assert mmrec[u] == train.get(u, set()) - positives  # training items only
        assert default[u] == (train.get(u, set()) | valid.get(u, set())) - positives  # RecBole's
        changed += default[u] != mmrec[u]
    assert changed > 1000  # on Last.fm-2K nearly every test user has validation items


def test_train_mask_keeps_validation_and_never_raises_a_test_score():
    # a high learning rate: BPR learns popularity in 3 epochs, and popular validation items, once
    # unmasked, take top slots (a tie-free model: Pop's tied scores reorder when the mask changes)
    cfg = {"epochs": 3, "stopping_step": 3, "learning_rate": 0.05, "state": "WARNING", "show_progress": False}
    a = run("BPR", "lastfm-2k", config_dict=dict(cfg), per_user=True, saved=False)
    b = run("BPR", "lastfm-2k", config_dict=dict(cfg, test_mask="train"), per_user=True, saved=False)
    assert a["best_valid_result"] == b["best_valid_result"]  # the same training and validation, bit for bit
    assert a["valid_curve"] == b["valid_curve"]
    pa, pb = a["per_user"], b["per_user"]
    assert np.array_equal(pa["user"], pb["user"])
    for metric in ("recall@10", "recall@20", "ndcg@10", "ndcg@20"):
        assert np.all(pb[metric] <= pa[metric] + 1e-12), metric  # per user: never higher
        assert pb[metric].mean() < pa[metric].mean(), metric  # and lower on the whole (unrounded)
        assert b["test_result"][metric] <= a["test_result"][metric], metric


def test_unknown_test_mask_is_an_error():
    with pytest.raises(InputError, match="test_mask"):
        prepare("BPR", "lastfm-2k", config_dict={"test_mask": "valid", "state": "WARNING"}, log=False)
