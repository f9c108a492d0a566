"""Interaction files, cold users / items, checkpoints (issue #13): checked, counted, reloadable."""

import pytest
import torch
from features_support import read_inter, small_lastfm

from recbole_recgoat.data.inter_files import check_inter_file, unseen_summary
from recbole_recgoat.errors import InputError
from recbole_recgoat.quick_start import evaluate_checkpoint, load_data_and_model, prepare, run
from recbole_recgoat.trainer import get_trainer, read_checkpoint
from recbole_recgoat.utils.registry import plugin_models

WANT = ["user_id", "item_id"]


@pytest.mark.parametrize("text,match", [
    ("", "empty file"),
    ("user_id:token\titem_id:token\n", "header only"),
    ("user_id:token\titem_id:token\n\n\n", "header only"),
    ("userID\titemID\n1\t2\n", "header field 'userID' is not name:type"),
    ("user_id:tok\titem_id:token\n1\t2\n", "has type 'tok'"),
    ("uid:token\titem_id:token\n1\t2\n", r"header \(uid, item_id\) has no field user_id"),
    ("user_id:token\titem_id:token\n1\t2\n3\n", "line 3 has 1 field"),
    ("user_id:token\titem_id:token\n1\t\n", "line 2: empty item_id"),
])
def test_interaction_file_problems_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "x.train.inter"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=match) as info:
        check_inter_file(str(path), "the train split", WANT)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_float_field_must_parse(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\n1\t2\t4.5\n1\t3\tfive\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 3: rating 'five' is not a number"):
        check_inter_file(str(path), "x", WANT + ["rating"])
    assert check_inter_file(str(path), "x", WANT) == 2  # a field load_col does not ask for is not read


def test_cold_users_and_items_are_counted(isolated_run):
    """Validation / test rows whose user or item never occurs in training are counted in the log
    (the protocol evaluates them); the counts equal a recount from the files."""
    small_lastfm(isolated_run / "data", 30, mutate_eval=True)
    train = read_inter(isolated_run / "data" / "lastfm-2k" / "lastfm-2k.train.inter")
    config, ds, tr, va, te, _ = prepare("BPR", "lastfm-2k", config_dict={"data_path": "data", "state": "WARNING"}, log=False)
    notes = [line for _, line in unseen_summary(tr._dataset, {"valid": va._dataset, "test": te._dataset}, ds.uid_field, ds.iid_field)]
    for split in ("valid", "test"):
        rows = read_inter(isolated_run / "data" / "lastfm-2k" / f"lastfm-2k.{split}.inter")
        seen_u, seen_i = {u for u, _ in train}, {i for _, i in train}
        cold_items = {i for _, i in rows if i not in seen_i}
        cold_rows = sum(1 for u, i in rows if u not in seen_u or i not in seen_i)
        assert cold_items and cold_rows  # the mutated split has items training never saw
        line = next(v for v in notes if v.startswith(f"{split} split"))
        assert f"0 of 30 users and {len(cold_items)} of {len({i for _, i in rows})} items" in line
        assert f"({cold_rows} of {len(rows)} interactions)" in line and "evaluates them" in line


def test_checkpoint_problems_are_one_line_errors(isolated_run):
    (isolated_run / "garbage.pth").write_bytes(b"\x00garbage" * 100)
    torch.save([1, 2, 3], isolated_run / "foreign.pth")
    for name, match in (("missing.pth", "no such checkpoint file"), ("garbage.pth", "not a readable checkpoint"),
                        ("foreign.pth", "a torch file without config, state_dict")):
        with pytest.raises(InputError, match=match) as info:
            load_data_and_model(str(isolated_run / name))
        assert name in str(info.value) and "\n" not in str(info.value)


MODELS = list(plugin_models()) + ["BPR", "LightGCN"]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_reloads_from_its_checkpoint_to_the_same_metrics(isolated_run, model):
    """``load_data_and_model`` rebuilds every plugin model and BPR / LightGCN from a checkpoint
    (BM3's ``train_neg_sample_args: ~`` included) and re-scores the test split to the run's metrics;
    resume reads it too, and a truncated copy is a one-line error."""
    small_lastfm(isolated_run / "data", 60)
    cfg = {"data_path": "data", "epochs": 1, "state": "WARNING", "train_batch_size": 4096}
    result = run(model, "lastfm-2k", config_dict=cfg)
    again = evaluate_checkpoint(result["checkpoint"])
    assert again["test_result"] == result["test_result"]
    config, model_obj, *_ = load_data_and_model(result["checkpoint"])
    trainer = get_trainer(type(model_obj))(config, model_obj)
    trainer.resume_checkpoint(result["checkpoint"])
    assert trainer.start_epoch == 1
    cut = isolated_run / "cut.pth"
    data = open(result["checkpoint"], "rb").read()
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="cut.pth: not a readable checkpoint"):
        read_checkpoint(cut)
    with pytest.raises(InputError, match="cut.pth: not a readable checkpoint"):
        trainer.resume_checkpoint(cut)
