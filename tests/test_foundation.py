"""Foundation: config layering, model lookup, multimodal dataset, bad input, converters, CLI."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import BUNDLED, FIXTURES, REPO, snapshot_files
from recbole_recgoat.cli import main as cli_main
from recbole_recgoat.config import Config
from recbole_recgoat.data.converters import convert_lattice_json, convert_mmrec, read_mmrec_inter
from recbole_recgoat.errors import InputError
from recbole_recgoat.quick_start import load_data_and_model, prepare, run
from recbole_recgoat.trainer import get_trainer
from recbole_recgoat.utils.registry import get_model

LASTFM = BUNDLED / "lastfm-2k"


# ----------------------------------------------------------------------------- compat / config
def test_compat_shims_present():
    assert np.float_ is np.float64 and np.bool8 is np.bool_
    m = sp.dok_matrix((3, 3), dtype=np.float32)
    m._update({(0, 1): 2.0, (2, 2): 1.0})
    assert m.toarray()[0, 1] == 2.0 and m.nnz == 2


def test_protocol_defaults():
    cfg = Config("BPR")
    assert cfg["dataset"] == "lastfm-2k"
    assert [m.lower() for m in cfg["metrics"]] == ["recall", "ndcg", "precision", "map"]
    assert cfg["topk"] == [5, 10, 20, 50]
    assert cfg["valid_metric"] == "Recall@20" and cfg["stopping_step"] == 20
    assert cfg["epochs"] == 1000 and cfg["seed"] == 999
    assert cfg["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert cfg["benchmark_filename"] == ["train", "valid", "test"]


def test_runner_flags_do_not_leak(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "--learning_rate=0.5", "--epochs=77", "-x"])
    cfg = Config("BPR")
    assert cfg["learning_rate"] == 0.001 and cfg["epochs"] == 1000
    # explicit command-line arguments do reach the config, with the highest precedence
    cfg = Config("BPR", config_dict={"epochs": 5}, cmd_args={"epochs": "7"})
    assert cfg["epochs"] == 7


def test_precedence_file_dict_cmd(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("learning_rate: 0.01\nembedding_size: 32\n")
    cfg = Config("LightGCN", config_file_list=[str(f)], config_dict={"embedding_size": 16})
    assert cfg["learning_rate"] == 0.01 and cfg["embedding_size"] == 16
    assert cfg["n_layers"] == 2  # RecBole's own model yaml is still read


def test_model_lookup_plugin_first_then_recbole():
    from recbole.model.general_recommender import BPR, LightGCN, NGCF

    assert get_model("BPR") is BPR and get_model("lightgcn") is LightGCN and get_model("NGCF") is NGCF
    assert get_trainer(LightGCN).__mro__[1].__name__ == "PluginTrainerMixin"
    with pytest.raises(InputError) as err:
        get_model("NoSuchModel")
    msg = str(err.value)
    assert "NoSuchModel" in msg and "LightGCN" in msg and "\n" not in msg


def test_unknown_dataset_lists_known(capsys):
    assert cli_main(["--model=BPR", "--dataset=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and "lastfm-2k" in err and len(err.splitlines()) == 1


def test_non_general_model_refused():
    with pytest.raises(InputError, match="sequential"):
        Config("SASRec")


def test_unsupported_metric_refused():
    with pytest.raises(InputError, match="ItemCoverage"):
        Config("BPR", config_dict={"metrics": ["Recall", "ItemCoverage"]})


# ----------------------------------------------------------------------------- features
def test_feature_rows_land_on_internal_ids():
    cfg, ds, train, *_ = prepare("BPR", config_dict={"load_features": True, "modalities": ["text", "audio", "whisper"], "state": "WARNING"}, log=False)
    tokens = ds.field2id_token[ds.iid_field]
    raw = {m: np.load(LASTFM / f) for m, f in [("text", "text_feat.npy"), ("audio", "audio_feat.npy"), ("whisper", "whisper_feat.npy")]}
    # internal ids are not the original ids: the mapping must be followed
    assert any(str(k) != tokens[k] for k in range(1, len(tokens)))
    # lastfm-2k declares item_feature_norm {audio: l2, whisper: l2}: those rows are the file's, scaled to unit norm
    assert ds.item_feature_norm == {"text": "none", "audio": "l2", "whisper": "l2"}
    for m, arr in raw.items():
        feat = ds.item_features[m].numpy()
        assert feat.shape == (len(tokens), arr.shape[1])
        assert np.all(feat[0] == 0)  # PAD
        for k in range(1, len(tokens)):
            row = arr[int(tokens[k])].astype(np.float32)
            if ds.item_feature_norm[m] == "l2":
                np.testing.assert_allclose(feat[k], row / np.linalg.norm(row.astype(np.float64)), rtol=1e-6, atol=1e-7)
            else:
                np.testing.assert_allclose(feat[k], row, rtol=0, atol=0)
    # the training split's dataset carries the same tensors (models are built on it)
    assert train._dataset.item_features["text"] is ds.item_features["text"]


def _make_data_dir(tmp_path, name="mm"):
    d = tmp_path / "data" / name
    d.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        shutil.copy(LASTFM / f"lastfm-2k.{split}.inter", d / f"{name}.{split}.inter")
    np.save(d / "text.npy", np.load(LASTFM / "text_feat.npy"))
    np.save(d / "audio.npy", np.load(LASTFM / "audio_feat.npy"))
    return d


def _mm_config(tmp_path, name="mm", **extra):
    cfg = {
        "data_path": str(tmp_path / "data"),
        "load_col": {"inter": ["user_id", "item_id"]},
        "benchmark_filename": ["train", "valid", "test"],
        "item_feature_files": {"text": "text.npy", "audio": "audio.npy"},
        "load_features": True,
        "state": "WARNING",
    }
    cfg.update(extra)
    return cfg


def _corrupt(d, case):
    text = np.load(d / "text.npy")
    if case == "missing":
        os.remove(d / "audio.npy")
        return "audio.npy"
    if case == "rows":
        np.save(d / "audio.npy", np.load(d / "audio.npy")[:1400])
        return "row count mismatch"
    if case == "dim":
        return "dimension 384"
    if case == "nan":
        text[7, 3] = np.nan
        np.save(d / "text.npy", text)
        return "NaN"
    if case == "inf":
        text[9, 0] = np.inf
        np.save(d / "text.npy", text)
        return "Inf"
    if case == "dtype":
        np.save(d / "text.npy", np.full((1425, 4), "x"))
        return "non-numeric dtype"
    if case == "uncovered":
        np.save(d / "text.npy", text[:1000])
        np.save(d / "audio.npy", np.load(d / "audio.npy")[:1000])
        return "have no feature row"
    if case == "ndim":
        np.save(d / "text.npy", text[:, :, None])
        return "3-D"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "rows", "dim", "nan", "inf", "dtype", "uncovered", "ndim"])
def test_bad_feature_input_one_line_error_writes_nothing(tmp_path, case, capsys):
    d = _make_data_dir(tmp_path)
    expected = _corrupt(d, case)
    extra = {"item_feature_dims": {"text": 100}} if case == "dim" else {}
    cfg = _mm_config(tmp_path, **extra)
    before = snapshot_files(tmp_path)
    with pytest.raises(InputError) as err:
        prepare("BPR", "mm", config_dict=cfg)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg
    assert ("audio.npy" in msg) or ("text.npy" in msg)
    # the command line: exit code 2, one line on stderr, and no file written (no log, no checkpoint)
    overrides = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in cfg.items()]
    assert cli_main(["--model=BPR", "--dataset=mm"] + overrides) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert snapshot_files(tmp_path) == before


def test_feature_sidecar_ids_and_user_features(tmp_path):
    d = _make_data_dir(tmp_path)
    text = np.load(d / "text.npy")
    perm = np.random.default_rng(0).permutation(len(text))
    np.save(d / "shuffled.npy", text[perm])
    (d / "shuffled.npy.ids").write_text("\n".join(str(i) for i in perm) + "\n")
    users = np.random.default_rng(1).normal(size=(1858, 8)).astype(np.float32)
    np.save(d / "users.npy", users)
    cfg = _mm_config(tmp_path, item_feature_files={"text": "text.npy", "shuffled": "shuffled.npy"}, user_feature_file="users.npy")
    _, ds, *_ = prepare("BPR", "mm", config_dict=cfg, log=False)
    assert torch.equal(ds.item_features["text"], ds.item_features["shuffled"])
    utok = ds.field2id_token[ds.uid_field]
    for k in (1, 2, len(utok) - 1):
        np.testing.assert_array_equal(ds.user_features[k].numpy(), users[int(utok[k])])
    # a sidecar of the wrong length is refused
    (d / "shuffled.npy.ids").write_text("1\n2\n")
    with pytest.raises(InputError, match="one id per row"):
        prepare("BPR", "mm", config_dict=cfg, log=False)


def test_modalities_subset_and_unknown(tmp_path):
    _, ds, *_ = prepare("BPR", config_dict={"load_features": True, "modalities": ["audio"], "state": "WARNING"}, log=False)
    assert list(ds.item_features) == ["audio"]
    with pytest.raises(InputError, match="modalities: image"):
        prepare("BPR", config_dict={"load_features": True, "modalities": ["image"]}, log=False)


# ----------------------------------------------------------------------------- converters
def _split_pairs(ds_split):
    ds = ds_split._dataset
    u = ds.field2id_token[ds.uid_field][ds.inter_feat[ds.uid_field].numpy()]
    i = ds.field2id_token[ds.iid_field][ds.inter_feat[ds.iid_field].numpy()]
    return list(zip(u.tolist(), i.tolist()))


def _load_converted(tmp_path, name):
    cfg = {"data_path": str(tmp_path / "out"), "load_col": {"inter": ["user_id", "item_id"]},
           "benchmark_filename": ["train", "valid", "test"], "state": "WARNING", "shuffle": False}
    _, _, tr, va, te, _ = prepare("BPR", name, config_dict=cfg, log=False)
    return {"train": _split_pairs(tr), "valid": _split_pairs(va), "test": _split_pairs(te)}


def test_mmrec_converter_reproduces_published_split(tmp_path):
    src = FIXTURES / "lastfm_mmrec_slice" / "lfm2k_slice.inter"
    out = tmp_path / "out" / "lfm"
    convert_mmrec(str(src), str(out), "lfm", feature_files={"text_feat.npy": str(LASTFM / "text_feat.npy")})
    rows = [line.split("\t") for line in src.read_text().splitlines()[1:]]
    got = _load_converted(tmp_path, "lfm")
    for code, split in zip("012", ("train", "valid", "test")):
        assert got[split] == [(r[0], r[1]) for r in rows if r[3] == code]
    # re-running is a no-op; another dataset at the same place is refused and nothing changes
    before = snapshot_files(out)
    convert_mmrec(str(src), str(out), "lfm", feature_files={"text_feat.npy": str(LASTFM / "text_feat.npy")})
    assert snapshot_files(out) == before
    other = tmp_path / "other.inter"
    other.write_text("userID\titemID\tx_label\n1\t2\t0\n1\t3\t1\n1\t4\t2\n")
    with pytest.raises(InputError, match="refusing to overwrite"):
        convert_mmrec(str(other), str(out), "lfm")
    assert snapshot_files(out) == before


def test_bundled_dataset_is_the_published_split():
    """The committed dataset equals a fresh conversion of the published slice's users."""
    src = FIXTURES / "lastfm_mmrec_slice" / "lfm2k_slice.inter"
    published = read_mmrec_inter(str(src))
    for split in ("train", "valid", "test"):
        lines = (LASTFM / f"lastfm-2k.{split}.inter").read_text().splitlines()[1:]
        bundled = [tuple(line.split("\t")[:2]) for line in lines if int(line.split("\t")[0]) < 120]
        assert bundled == list(zip(published[split].user_id, published[split].item_id))


def test_lattice_converter_reproduces_baby_split(tmp_path):
    src = FIXTURES / "baby_lattice_slice"
    convert_lattice_json(str(src), str(tmp_path / "out" / "baby_slice"), "baby_slice")
    got = _load_converted(tmp_path, "baby_slice")
    for split, fname in (("train", "train.json"), ("valid", "val.json"), ("test", "test.json")):
        data = json.loads((src / fname).read_text())
        assert got[split] == [(u, str(i)) for u, items in data.items() for i in items]


def test_converter_bad_input(tmp_path):
    bad = tmp_path / "bad.inter"
    bad.write_text("userID\titemID\tx_label\n1\t2\t0\n1\t3\t5\n")
    with pytest.raises(InputError, match="x_label '5'"):
        convert_mmrec(str(bad), str(tmp_path / "o"), "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="no column 'x_label'"):
        (tmp_path / "b2.inter").write_text("userID\titemID\n1\t2\n")
        convert_mmrec(str(tmp_path / "b2.inter"), str(tmp_path / "o"), "o")


# ----------------------------------------------------------------------------- training runs
def test_run_recbole_cli_prints_table(capsys, fast):
    args = ["--model=BPR"] + [f"--{k}={v}" for k, v in fast.items()]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "recall@20" in out and "ndcg@20" in out and "valid" in out and "test" in out


def test_checkpoint_reloads_for_evaluation(fast):
    from recbole_recgoat.trainer import get_trainer as gt

    result = run("LightGCN", config_dict=fast)
    assert os.path.isfile(result["checkpoint"])
    config, model, ds, tr, va, te = load_data_and_model(result["checkpoint"])
    trainer = gt(type(model))(config, model)
    again = trainer.evaluate(te, load_best_model=False)
    assert {k: round(float(v), 4) for k, v in again.items()} == {k: round(v, 4) for k, v in result["test_result"].items()}
    # resume_checkpoint reads the same file (torch >= 2.6 weights-only default is handled)
    trainer.resume_checkpoint(result["checkpoint"])
    assert trainer.start_epoch == result["best_epoch"] + 1


def test_same_seed_same_metrics(fast):
    a = run("LightGCN", config_dict=fast)
    b = run("LightGCN", config_dict=fast)
    assert a["test_result"] == b["test_result"] and a["best_valid_result"] == b["best_valid_result"]
    # the record says which code, packages, config and seed produced it
    v = a["versions"]
    assert len(v["code_fingerprint"]) == 16 and v["code_fingerprint"] == b["versions"]["code_fingerprint"]
    assert v["recbole"] == "1.2.1" and v["torch"].startswith("2.13.0") and a["seed"] == 999
    assert a["config"]["learning_rate"] == 0.001 and a["config"]["model"] == "LightGCN"


def test_fused_optimizer_is_opt_in_same_update_and_reproducible(fast):
    """``fused_optimizer``: off in the protocol; on, Adam is torch's fused kernel, one step equals
    the default kernel's up to rounding, and two runs of one seed still give identical metrics."""
    from recbole_recgoat.quick_start import build_model

    config, ds, tr, *_ = prepare("FREEDOM", config_dict=dict(fast, fused_optimizer=True), log=False)
    assert prepare("BPR", config_dict=fast, log=False)[0]["fused_optimizer"] is False
    params, batch = {}, next(iter(tr))
    for fused in (False, True):
        config["fused_optimizer"] = fused
        torch.manual_seed(0)
        model = build_model(config, tr)
        trainer = get_trainer(type(model))(config, model)
        assert bool(trainer.optimizer.defaults.get("fused")) is fused
        torch.manual_seed(1)
        loss = model.calculate_loss(batch)
        sum(loss).backward() if isinstance(loss, tuple) else loss.backward()
        trainer.optimizer.step()
        params[fused] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert all(torch.allclose(params[False][k], params[True][k], atol=1e-6) for k in params[False])
    a = run("FREEDOM", config_dict=dict(fast, fused_optimizer=True))
    b = run("FREEDOM", config_dict=dict(fast, fused_optimizer=True))
    assert a["test_result"] == b["test_result"]


LANE_MODELS = ["BPR", "LightGCN"]


@pytest.mark.parametrize("model", LANE_MODELS)
def test_lane_metrics(model, tmp_path):
    """BPR / LightGCN through run_recbole.py; CI compares these numbers between its two lanes.

    ``RECGOAT_LANE_DIR``: write this lane's metrics there.  ``RECGOAT_REFERENCE_LANE``: a folder
    written by the other lane; metrics must be equal to 4 decimals.
    """
    out = tmp_path / f"{model}.json"
    args = [f"--model={model}", "--epochs=5", "--stopping_step=5", "--state=WARNING", f"--result_json={out}"]
    assert subprocess.run([sys.executable, str(REPO / "run_recbole.py")] + args, cwd=tmp_path, check=False).returncode == 0
    result = json.loads(out.read_text())
    metrics = {k: round(v, 4) for k, v in result["test_result"].items()}
    assert metrics["recall@20"] > 0.05  # far above random (20/1425 ~ 0.014)
    lane = os.environ.get("RECGOAT_LANE_DIR")
    if lane:
        os.makedirs(lane, exist_ok=True)
        with open(os.path.join(lane, f"{model}.json"), "w") as f:
            json.dump({"test": metrics, "numpy": np.__version__}, f)
    ref = os.environ.get("RECGOAT_REFERENCE_LANE")
    if ref:
        other = json.load(open(os.path.join(ref, f"{model}.json")))
        assert other["numpy"] != np.__version__, "the reference lane must use another numpy"
        assert other["test"] == metrics


def test_installed_package_finds_yaml_and_data(tmp_path):
    """Outside the checkout, the installed package (pip install ., not -e) has its yaml and data."""
    code = ("import recbole_recgoat, os; from recbole_recgoat.paths import properties_dir, dataset_configs_dir;"
            "print(recbole_recgoat.__file__); print(properties_dir()); print(dataset_configs_dir())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("recbole_recgoat is not installed in this environment (CI installs it with pip install .)")
    pkg, props, dsc = proc.stdout.split()
    if os.path.dirname(pkg) == str(REPO / "recbole_recgoat"):
        pytest.skip("installed in editable mode (the source tree itself)")
    assert props.startswith(os.path.dirname(pkg)) and dsc.startswith(os.path.dirname(pkg))
    assert os.path.isfile(os.path.join(props, "overall.yaml")) and os.path.isfile(os.path.join(dsc, "lastfm-2k.yaml"))
    run_cmd = [sys.executable, "-c", "from recbole_recgoat.cli import main; raise SystemExit(main(['--model=BPR','--epochs=1','--state=WARNING']))"]
    assert subprocess.run(run_cmd, cwd=tmp_path, env=env).returncode == 0


def test_bundled_feature_checksums():
    expected = {
        "text_feat.npy": "b21e98a91fc4ec11e879615f3c47b6f15bdb6e3b7c0d2a9cf0b8008ec83c46b0",
        "audio_feat.npy": "50dfedcc27f88929006bc4f425c94c55aa4bce177749b2f93e55fb3d8ac4018c",
        "whisper_feat.npy": "2a2690ff74430711e5a9e22889b5b40cc1b931f6250f25501192d7d63cf98995",
    }
    for name, digest in expected.items():
        assert hashlib.sha256((LASTFM / name).read_bytes()).hexdigest() == digest


_FAULTS_SCRIPT = """
import resource, sys, torch
from recbole_recgoat.utils.allocator import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "on" else False
x = torch.ones(2**25); del x  # 128 MiB, above glibc's largest default mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    x = torch.ones(2**25); del x
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator setting")
def test_reuse_freed_memory_stops_refaulting_large_tensors():
    """A 128 MiB tensor allocated again and again: glibc's default mmaps it afresh each time (one
    page fault per 4 KiB page); with ``reuse_freed_memory`` the freed block is reused."""
    pages = 2**27 // os.sysconf("SC_PAGE_SIZE")
    out = {}
    for mode in ("off", "on"):
        proc = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-2000:]
        applied, faults = proc.stdout.split()
        out[mode] = (applied == "True", float(faults))
    assert out["on"][0] and not out["off"][0]
    # off: every page of every allocation faults (fewer faults with transparent huge pages, which
    # back 2 MiB at a time; hence ratios, not page counts); on: the freed block comes back as is
    assert out["off"][1] >= pages // 512, out  # at least one fault per 2 MiB
    assert out["on"][1] < 0.25 * out["off"][1], out


def test_reuse_freed_memory_auto_rule():
    """``auto`` (the protocol's default) reuses freed memory on graphs below 10^6 users + items +
    interactions only; a bad value is a one-line error naming the key."""
    from recbole_recgoat.utils.allocator import AUTO_LIMIT, wants_reuse

    assert Config("BPR", "lastfm-2k")["reuse_freed_memory"] == "auto"
    assert wants_reuse("auto", 19445 + 7050 + 160792) and not wants_reuse("auto", AUTO_LIMIT)
    assert wants_reuse(True, 10**9) and not wants_reuse(False, 10)
    with pytest.raises(InputError, match=r"reuse_freed_memory: got 'sometimes'; expected True, False or auto"):
        wants_reuse("sometimes", 10)
    with pytest.raises(InputError, match=r"reuse_freed_memory: got 'sometimes'; expected True, False or auto"):
        Config("BPR", "lastfm-2k", cmd_args={"reuse_freed_memory": "sometimes"})  # before any data is read
    assert Config("BPR", "lastfm-2k", cmd_args={"reuse_freed_memory": "False"})["reuse_freed_memory"] is False
