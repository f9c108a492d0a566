"""Every user mistake gets a one-line error and exit status 2, and changes no file (issues #13, #26).

Each case runs a real command (``run_recbole.py``, the feature pipeline, the converters, the
benchmark, a checkpoint re-score) as a process of its own in its own working directory (forked
from a zygote that imported torch and RecBole once: tests/forkserver.py), and asserts: exit
status 2, exactly one ``error:`` line on stderr naming the key / file / field, no traceback, and
every file of the working directory (its data included) and of the bundled dataset as it was.
Every case fails before training: that is the point.
"""

import hashlib
import os
import queue
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from features_support import small_lastfm
from forkserver import Zygote

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "recbole_recgoat" / "bundled"
RUN = [sys.executable, str(REPO / "run_recbole.py")]
FEAT = [sys.executable, "-m", "recbole_recgoat.features"]
CONV = [sys.executable, "-m", "recbole_recgoat.data.converters"]
BENCH = [sys.executable, "-m", "recbole_recgoat.benchmark"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
INTER = "data/lastfm-2k/lastfm-2k.{}.inter"


def tree_state(root, content=True):
    """``{relative path: sha256 | (size, mtime) | 'dir'}`` of everything under ``root``."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in files:
            p = os.path.join(dirpath, f)
            if content:
                out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            else:
                st = os.stat(p)
                out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what each case puts in its working directory ---------------------------------------------------
def data(ws):
    return small_lastfm(ws / "data", 20)


def write(rel, text):
    def setup(ws):
        data(ws)
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return setup


def remove(rel):
    def setup(ws):
        data(ws)
        (ws / rel).unlink()
    return setup


def zero_text_features(ws):
    data(ws)
    (ws / "feats").mkdir()
    np.save(ws / "feats" / "text_feat.npy", np.zeros((1425, 384), dtype=np.float32))


def checkpoint_file(kind):
    def setup(ws):
        data(ws)
        path = ws / f"{kind}.pth"
        if kind == "garbage":
            path.write_bytes(b"this is not a checkpoint\n" * 40)
        elif kind == "truncated":
            path.write_bytes(REAL_CHECKPOINT.read_bytes()[: REAL_CHECKPOINT.stat().st_size // 2])
        elif kind == "foreign":
            import torch

            torch.save({"weights": torch.zeros(3)}, path)
    return setup


def mmrec_file(text):
    def setup(ws):
        (ws / "mm.inter").write_text(text, encoding="utf-8")
    return setup


def existing_other_dataset(ws):
    (ws / "mm.inter").write_text("userID\titemID\tx_label\n1\t2\t0\n1\t3\t1\n1\t4\t2\n", encoding="utf-8")
    (ws / "out").mkdir()
    (ws / "out" / "d.train.inter").write_text("user_id:token\titem_id:token\n9\t9\n", encoding="utf-8")


def features_folder(kind):
    """``feats/`` given as --feature_path: missing, empty, or with ``text_feat.npy`` a folder."""
    def setup(ws):
        data(ws)
        if kind == "empty":
            (ws / "feats").mkdir()
        elif kind == "npy-is-folder":
            (ws / "feats" / "text_feat.npy").mkdir(parents=True)
        elif kind == "file":
            (ws / "feats").write_text("not a folder\n", encoding="utf-8")
    return setup


def split_alias(kind):
    """The slice's splits aliased or repeated: ``test -> valid`` symlink, a copy, doubled rows."""
    def setup(ws):
        data(ws)
        path = ws / INTER.format("test")
        valid = ws / INTER.format("valid")
        if kind == "symlink":
            path.unlink()
            path.symlink_to(valid.name)
        elif kind == "copy":
            path.write_bytes(valid.read_bytes())
        elif kind == "valid-is-train":
            valid.write_bytes((ws / INTER.format("train")).read_bytes())
        elif kind == "train-doubled":
            train = ws / INTER.format("train")
            lines = train.read_text(encoding="utf-8").splitlines()
            train.write_text("\n".join(lines + lines[1:]) + "\n", encoding="utf-8")
        elif kind == "valid-one-repeat":
            lines = valid.read_text(encoding="utf-8").splitlines()
            valid.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    return setup


def edited_checkpoint(ws):
    """The real BPR checkpoint with its stored config edited to name LightGCN (same parameter names)."""
    import torch

    data(ws)
    checkpoint = torch.load(REAL_CHECKPOINT, map_location="cpu", weights_only=False)
    checkpoint["config"]["model"] = "LightGCN"
    torch.save(checkpoint, ws / "edited.pth")


def real_checkpoint(ws):
    data(ws)
    (ws / "bpr.pth").write_bytes(REAL_CHECKPOINT.read_bytes())


def a_file(rel):
    def setup(ws):
        data(ws)
        (ws / rel).write_text("a file, not a folder\n", encoding="utf-8")
    return setup


HELD = []  # (fd,) of store locks held by this test process while the cases run


def store_in_use(ws):
    """A store whose writer lock is held (by this process, as a running benchmark would hold it)."""
    import fcntl

    (ws / "st").mkdir()
    fd = os.open(str(ws / "st" / ".writer"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"pid 4242 on somehost (benchmark run, since 2026-01-01T00:00:00)\n")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    HELD.append(fd)


def existing_out(ws):
    data(ws)
    np.save(ws / "u.npy", np.ones((3, 4), dtype=np.float32))


def nothing(ws):
    pass


D = ["--data_path=data", "--epochs=1"]
HEADER = "user_id:token\titem_id:token\trating:float\n"
# (id, setup, command, fragments the error line must contain)
CASES = [
    ("misspelt-key", nothing, RUN + ["--lamda_cl=0.1", "--epochs=1"], ["lamda_cl", "lambda_cl"]),
    ("key-of-another-model", data, RUN + ["--model=BPR", "--knn_k=5"] + D, ["knn_k", "RecGOAT"]),
    ("data-path-missing", nothing, RUN + ["--data_path=/no/such/dir/", "--epochs=1"], ["data_path", "/no/such/dir/"]),
    ("knn-k-zero", nothing, RUN + ["--knn_k=0", "--epochs=1"], ["knn_k", "0"]),
    ("epochs-not-a-number", nothing, RUN + ["--epochs=abc"], ["epochs", "abc"]),
    ("negative-learning-rate", nothing, RUN + ["--learning_rate=-1", "--epochs=1"], ["learning_rate", "-1"]),
    ("zero-batch", nothing, RUN + ["--model=BPR", "--train_batch_size=0", "--epochs=1"], ["train_batch_size"]),
    ("bad-choice", nothing, RUN + ["--fusion=mean", "--epochs=1"], ["fusion", "mean", "weighted"]),
    ("bad-test-mask", nothing, RUN + ["--model=BPR", "--test_mask=valid", "--epochs=1"], ["test_mask", "valid", "train_valid"]),
    ("valid-metric-not-computed", nothing, RUN + ["--model=BPR", "--valid_metric=Recall@30", "--epochs=1"], ["valid_metric", "Recall@30"]),
    ("unknown-metric", nothing, RUN + ["--model=BPR", "--metrics=['Recal']", "--epochs=1"], ["metrics", "Recal"]),
    ("unknown-model", nothing, RUN + ["--model=NoSuchModel"], ["NoSuchModel"]),
    ("unknown-dataset", nothing, RUN + ["--model=BPR", "--dataset=nosuch", "--epochs=1"], ["nosuch"]),
    ("config-file-missing", nothing, RUN + ["--model=BPR", "--config_files=missing.yaml"], ["missing.yaml"]),
    ("config-file-malformed", write("bad.yaml", "epochs: 1\nlearning_rate: [0.1\n"), RUN + ["--model=BPR", "--config_files=bad.yaml"],
     ["bad.yaml", "line"]),
    ("config-file-misspelt", write("my.yaml", "epochs: 1\nstoping_step: 3\n"), RUN + ["--model=BPR", "--config_files=my.yaml"],
     ["stoping_step", "stopping_step"]),
    ("train-split-empty", write(INTER.format("train"), ""), RUN + ["--model=BPR"] + D, ["lastfm-2k.train.inter", "empty"]),
    ("train-split-header-only", write(INTER.format("train"), HEADER), RUN + ["--model=BPR"] + D, ["lastfm-2k.train.inter", "header only"]),
    ("wrong-header", write(INTER.format("train"), "userID\titemID\n1\t2\n"), RUN + ["--model=BPR"] + D, ["lastfm-2k.train.inter", "userID"]),
    ("header-without-load-col-field", write(INTER.format("train"), "uid:token\titem_id:token\n1\t2\n"), RUN + ["--model=BPR"] + D,
     ["lastfm-2k.train.inter", "user_id"]),
    ("id-missing-in-row", write(INTER.format("valid"), HEADER + "1\t2\t1\n\t3\t1\n"), RUN + ["--model=BPR"] + D,
     ["lastfm-2k.valid.inter", "line 3", "user_id"]),
    ("test-split-missing", remove(INTER.format("test")), RUN + ["--model=BPR"] + D, ["lastfm-2k.test.inter"]),
    ("constant-features", zero_text_features, RUN + ["--model=VBPR", "--modalities=['text']", "--feature_path=feats"] + D,
     ["text_feat.npy", "constant"]),
    ("checkpoint-missing", nothing, RUN + ["--checkpoint=missing.pth"], ["missing.pth"]),
    ("checkpoint-garbage", checkpoint_file("garbage"), RUN + ["--checkpoint=garbage.pth"], ["garbage.pth"]),
    ("checkpoint-truncated", checkpoint_file("truncated"), RUN + ["--checkpoint=truncated.pth"], ["truncated.pth"]),
    ("checkpoint-foreign", checkpoint_file("foreign"), RUN + ["--checkpoint=foreign.pth"], ["foreign.pth", "state_dict"]),
    ("features-bad-batch-size", data, FEAT + ["item-text", "--data-path", "data", "--out", "t.npy", "--batch-size", "0"], ["--batch-size"]),
    ("features-server-down", data, FEAT + ["user-profiles", "--data-path", "data", "--out", "u.npy", "--backend", "openai",
                                           "--base-url", "http://127.0.0.1:{port}/v1", "--llm-model", "m", "--no-progress"],
     ["http://127.0.0.1:{port}/v1/chat/completions", "refused"]),
    ("features-import-missing-column", write("answers.csv", "user_id,text\n0,Likes ambient music.\n"),
     FEAT + ["user-profiles", "--data-path", "data", "--out", "u.npy", "--backend", "import", "--answers", "answers.csv",
             "--text-column", "summary", "--no-progress"], ["answers.csv", "no column 'summary'", "--text-column"]),
    ("features-item-texts-missing-file", data, FEAT + ["item-text", "--data-path", "data", "--out", "t.npy", "--texts", "no.jsonl"],
     ["--texts=no.jsonl", "no such file"]),
    ("converter-missing-file", nothing, CONV + ["mmrec", "nofile.inter", "--out", "out", "--name", "d"], ["nofile.inter"]),
    ("converter-bad-label", mmrec_file("userID\titemID\tx_label\n1\t2\t7\n"), CONV + ["mmrec", "mm.inter", "--out", "out", "--name", "d"],
     ["mm.inter", "x_label"]),
    ("converter-would-overwrite", existing_other_dataset, CONV + ["mmrec", "mm.inter", "--out", "out", "--name", "d"],
     ["d.train.inter", "refusing to overwrite"]),
    ("benchmark-misspelt-override", nothing, BENCH + ["run", "--models", "BPR", "--set", "epoch=1", "--store", "st"], ["epoch", "epochs"]),
    ("benchmark-bad-value", nothing, BENCH + ["run", "--models", "BPR", "--set", "epochs=0", "--store", "st"], ["epochs", "0", ">= 1"]),
    ("benchmark-misspelt-variant", write("b.yaml", "models: [BPR]\nvariants:\n  G-noCL: {model: RecGOAT, lamda_cl: 0.0}\n"),
     BENCH + ["run", "--config", "b.yaml", "--store", "st"], ["lamda_cl", "lambda_cl"]),
    ("benchmark-unknown-yaml-key", write("b.yaml", "models: [BPR]\nseed: 3\n"), BENCH + ["run", "--config", "b.yaml"], ["b.yaml", "seed"]),
    # -- issue 26 ---------------------------------------------------------------------------------
    # paths are used as given: never a fallback to the bundled copy
    ("feature-path-missing", data, RUN + ["--model=VBPR", "--modalities=['text']", "--feature_path=nosuchdir"] + D,
     ["feature_path", "nosuchdir"]),
    ("feature-path-empty", features_folder("empty"), RUN + ["--model=VBPR", "--modalities=['text']", "--feature_path=feats"] + D,
     ["feats/text_feat.npy", "not found"]),
    ("feature-file-is-a-folder", features_folder("npy-is-folder"),
     RUN + ["--model=VBPR", "--modalities=['text']", "--feature_path=feats"] + D, ["feats/text_feat.npy", "is a folder"]),
    ("feature-path-is-a-file", features_folder("file"), RUN + ["--model=VBPR", "--modalities=['text']", "--feature_path=feats"] + D,
     ["feature_path", "feats", "a file"]),
    ("checkpoint-dir-under-a-file", a_file("afile"), RUN + ["--model=BPR", "--checkpoint_dir=afile/ck"] + D,
     ["checkpoint_dir", "afile/ck", "is a file"]),
    ("checkpoint-dir-is-a-file", a_file("afile"), RUN + ["--model=BPR", "--checkpoint_dir=afile"] + D,
     ["checkpoint_dir", "afile", "is a file"]),
    # split sanity
    ("test-split-symlink-to-valid", split_alias("symlink"), RUN + ["--model=BPR"] + D,
     ["lastfm-2k.test.inter", "the same file as", "lastfm-2k.valid.inter"]),
    ("test-split-copy-of-valid", split_alias("copy"), RUN + ["--model=BPR"] + D,
     ["lastfm-2k.test.inter", "identical to", "lastfm-2k.valid.inter"]),
    ("valid-split-copy-of-train", split_alias("valid-is-train"), RUN + ["--model=BPR"] + D,
     ["lastfm-2k.valid.inter", "identical to", "lastfm-2k.train.inter"]),
    ("train-split-rows-doubled", split_alias("train-doubled"), RUN + ["--model=BPR"] + D,
     ["lastfm-2k.train.inter", "duplicated (user_id, item_id)", "rm_dup_inter"]),
    ("valid-split-one-repeated-row", split_alias("valid-one-repeat"), RUN + ["--model=BPR"] + D,
     ["lastfm-2k.valid.inter", "1 duplicated", "lines 2 and", "rm_dup_inter"]),
    # switches that cannot take effect
    ("user-features-without-user-data", nothing, RUN + ["--model=RecGOAT", "--dataset=ml-100k", "--use_user_features=True", "--epochs=1"],
     ["use_user_features", "ml-100k", "user_feature_file"]),
    ("user-graph-without-user-data", nothing, RUN + ["--model=RecGOAT", "--dataset=ml-100k", "--use_user_graph=True", "--epochs=1"],
     ["use_user_graph", "ml-100k"]),
    ("user-features-in-config-file", write("u.yaml", "use_user_features: True\n"),
     RUN + ["--model=RecGOAT", "--dataset=ml-100k", "--config_files=u.yaml"], ["use_user_features", "ml-100k"]),
    ("checkpoint-with-other-model", real_checkpoint, RUN + ["--checkpoint=bpr.pth", "--model=RecGOAT"], ["--model=RecGOAT", "BPR"]),
    ("checkpoint-with-other-dataset", real_checkpoint, RUN + ["--checkpoint=bpr.pth", "--dataset=ml-100k"],
     ["--dataset=ml-100k", "lastfm-2k"]),
    ("checkpoint-config-edited", edited_checkpoint, RUN + ["--checkpoint=edited.pth"], ["edited.pth", "LightGCN", "BPR"]),
    # values: seeds in RecBole's range, nested settings key by key and value by value
    ("seed-negative", nothing, RUN + ["--model=BPR", "--seed=-1", "--epochs=1"], ["seed", "-1", ">= 0"]),
    ("seed-too-large", nothing, RUN + ["--model=BPR", "--seed=4294967296", "--epochs=1"], ["seed", "4294967296"]),
    ("seed-not-an-integer", nothing, RUN + ["--model=BPR", "--seed=1.5", "--epochs=1"], ["seed", "1.5"]),
    ("eval-args-mode-typo", nothing, RUN + ["--model=BPR", "--eval_args={'mode': 'ful'}", "--epochs=1"],
     ["eval_args.mode", "ful", "did you mean full"]),
    ("eval-args-mode-typo-in-yaml", write("e.yaml", "eval_args: {mode: ful}\n"), RUN + ["--model=BPR", "--config_files=e.yaml"],
     ["eval_args.mode", "ful"]),
    ("eval-args-unknown-key", nothing, RUN + ["--model=BPR", "--eval_args={'moda': 'full'}", "--epochs=1"],
     ["eval_args", "moda", "did you mean mode"]),
    ("eval-args-bad-order", nothing, RUN + ["--model=BPR", "--eval_args={'order': 'random'}", "--epochs=1"],
     ["eval_args.order", "random", "RO, TO"]),
    ("eval-args-bad-group-by", nothing, RUN + ["--model=BPR", "--eval_args={'group_by': 'item'}", "--epochs=1"],
     ["eval_args.group_by", "item"]),
    ("eval-args-unknown-split", nothing, RUN + ["--model=BPR", "--eval_args={'split': {'XS': [0.8, 0.1, 0.1]}}", "--epochs=1"],
     ["eval_args.split", "XS", "RS, LS"]),
    ("eval-args-mode-valid-typo", nothing, RUN + ["--model=BPR", "--eval_args={'mode': {'valid': 'uni'}}", "--epochs=1"],
     ["eval_args.mode.valid", "uni"]),
    ("eval-args-not-a-mapping", nothing, RUN + ["--model=BPR", "--eval_args=full", "--epochs=1"], ["eval_args", "full", "mapping"]),
    ("neg-sample-unknown-key", write("n.yaml", "train_neg_sample_args: {distribution: uniform, sample_num: 1, bogus_key: 3}\n"),
     RUN + ["--model=BPR", "--config_files=n.yaml"], ["train_neg_sample_args", "bogus_key"]),
    ("neg-sample-distribution-typo", nothing,
     RUN + ["--model=BPR", "--train_neg_sample_args={'distribution': 'uniformm'}", "--epochs=1"],
     ["train_neg_sample_args.distribution", "uniformm", "did you mean uniform"]),
    ("neg-sample-num-zero", nothing, RUN + ["--model=BPR", "--train_neg_sample_args={'sample_num': 0}", "--epochs=1"],
     ["train_neg_sample_args.sample_num", "0"]),
    ("feature-dims-zero", nothing, RUN + ["--model=VBPR", "--item_feature_dims={'text': 0}", "--epochs=1"],
     ["item_feature_dims.text", "0"]),
    ("feature-files-not-a-name", nothing, RUN + ["--model=VBPR", "--item_feature_files={'text': 3}", "--epochs=1"],
     ["item_feature_files.text", "3"]),
    ("fusion-init-negative", nothing, RUN + ["--fusion_init={'id': -0.5}", "--epochs=1"], ["fusion_init.id", "-0.5"]),
    ("load-col-not-a-list", nothing, RUN + ["--model=BPR", "--load_col={'inter': 5}", "--epochs=1"], ["load_col.inter", "5"]),
    ("modality-twice", nothing, RUN + ["--model=VBPR", "--modalities=['text','text']", "--epochs=1"], ["modalities", "'text' given twice"]),
    ("modality-twice-in-yaml", write("m.yaml", "modalities: [audio, text, audio]\n"), RUN + ["--model=RecGOAT", "--config_files=m.yaml"],
     ["modalities", "'audio' given twice"]),
    # the benchmark checks every model, dataset, seed and the store before the first cell
    ("benchmark-unknown-dataset", nothing, BENCH + ["run", "--models", "BPR", "--datasets", "nosuch", "--set", "epochs=1", "--store", "st"],
     ["nosuch"]),
    ("benchmark-second-dataset-unknown", nothing,
     BENCH + ["run", "--models", "BPR", "--datasets", "lastfm-2k", "nosuch", "--set", "epochs=1", "--store", "st"], ["nosuch"]),
    ("benchmark-negative-seed", nothing, BENCH + ["run", "--models", "BPR", "--seed-list", "-1", "--set", "epochs=1", "--store", "st"],
     ["seeds", "-1"]),
    ("benchmark-nested-typo", nothing, BENCH + ["run", "--models", "BPR", "--set", "eval_args={'mode': 'ful'}", "--store", "st"],
     ["eval_args.mode", "ful"]),
    ("benchmark-variant-modality-twice", write("b.yaml", "models: [BPR]\ndatasets: [ml-100k]\n"
                                                             "variants:\n  G-dup: {model: VBPR, modalities: [text, text]}\n"),
     BENCH + ["run", "--config", "b.yaml", "--store", "st"], ["modalities", "twice"]),
    ("benchmark-store-is-a-file", a_file("st"), BENCH + ["run", "--models", "BPR", "--set", "epochs=1", "--store", "st"],
     ["--store st", "is a file"]),
    ("benchmark-store-under-a-file", a_file("st"), BENCH + ["run", "--models", "BPR", "--set", "epochs=1", "--store", "st/inner"],
     ["--store st/inner", "is a file"]),
    ("benchmark-tune-store-is-a-file", a_file("st"), BENCH + ["tune", "--models", "BPR", "--store", "st"], ["--store st", "is a file"]),
    ("benchmark-store-in-use", store_in_use, BENCH + ["run", "--models", "BPR", "--set", "epochs=1", "--store", "st"],
     ["--store", "in use by pid 4242 on somehost", "one writer"]),
    # the feature pipeline checks --out before the first request
    ("features-out-exists-before-requests", existing_out,
     FEAT + ["user-profiles", "--data-path", "data", "--out", "u.npy", "--backend", "openai",
             "--base-url", "http://127.0.0.1:{port}/v1", "--llm-model", "m", "--no-progress"],
     ["u.npy", "exists", "--force"]),
]
REAL_CHECKPOINT = None


def make_real_checkpoint(root):
    """A real (BPR, 1 epoch) checkpoint on the 20-user slice, for the truncated-file case."""
    global REAL_CHECKPOINT
    from recbole_recgoat.quick_start import run

    here = os.getcwd()
    os.chdir(root)
    try:
        small_lastfm(root / "data", 20)
        result = run("BPR", config_dict={"epochs": 1, "data_path": "data", "state": "WARNING"})
    finally:
        os.chdir(here)
    REAL_CHECKPOINT = root / result["checkpoint"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case run once, two processes at a time, each forked from a zygote that has imported
    torch and RecBole once (tests/forkserver.py; each in its own working directory):
    ``{name: (returncode, stdout, stderr, seconds, changed files, bundled files changed)}``."""
    make_real_checkpoint(tmp_path_factory.mktemp("ck"))
    prepared = []
    for name, setup, command, fragments in CASES:
        ws = tmp_path_factory.mktemp(name)
        port = closed_port()
        setup(ws)
        prepared.append((name, ws, [c.replace("{port}", str(port)) for c in command], port))

    zygotes = queue.Queue()
    logs = tmp_path_factory.mktemp("output")

    def run_case(item):
        name, ws, command, port = item
        before = tree_state(ws)
        out, err = logs / f"{name}.out", logs / f"{name}.err"
        zygote = zygotes.get()
        try:
            started = time.monotonic()
            returncode = zygote.run(command, ws, out, err)
            seconds = time.monotonic() - started
        finally:
            zygotes.put(zygote)
        after = tree_state(ws)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return name, (returncode, out.read_text(), err.read_text(), seconds, changed, port)

    bundled_before = tree_state(BUNDLED, content=False)
    with Zygote(ENV) as z1, Zygote(ENV) as z2, ThreadPoolExecutor(max_workers=2) as pool:
        zygotes.put(z1), zygotes.put(z2)
        results = dict(pool.map(run_case, prepared))
    results["bundled changed"] = tree_state(BUNDLED, content=False) != bundled_before
    while HELD:
        os.close(HELD.pop())
    return results


@pytest.mark.parametrize("name,fragments", [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, fragments, outcomes):
    returncode, stdout, stderr, seconds, changed, port = outcomes[name]
    fragments = [f.replace("{port}", str(port)) for f in fragments]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert returncode == 2, f"{name}: exit {returncode}\n{stderr[-3000:]}"
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert changed == [], f"{name}: the working directory changed: {changed}"
    assert not outcomes["bundled changed"]
    if name == "features-server-down":  # the whole command, start-up included (generous on a busy machine)
        assert seconds < 60, f"a dead server took {seconds:.1f}s to report"


def test_at_least_60_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 60
    assert len({(tuple(c[2]), tuple(c[3])) for c in CASES}) == len(CASES)


def test_server_down_stops_within_seconds(isolated_run, capsys):
    """Default options (4 workers, 3 retries with backoff, 120 s timeout) against a closed port on
    127.0.0.1: the run ends in seconds, not after a retry round per user."""
    from recbole_recgoat.features.cli import main

    data(isolated_run)
    port = closed_port()
    started = time.monotonic()
    rc = main(["user-profiles", "--data-path", "data", "--out", "u.npy", "--backend", "openai", "--llm-model", "m",
               "--base-url", f"http://127.0.0.1:{port}/v1", "--no-progress", "--device", "cpu"])
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    assert rc == 2 and seconds < 10, (seconds, err[-2000:])
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: http://127.0.0.1:{port}/v1/chat/completions: connection refused (no server listening); "
                      "expected a running OpenAI-compatible server at --base-url"]
    assert not (isolated_run / "u.npy").exists()


def test_transport_errors_in_a_row_stop_the_client():
    """Errors other than a refused connection stop the run after ``max_connection_errors`` in a
    row; an answer of the server (an error status included) resets the count."""
    from recbole_recgoat.features.backends import FatalBackendError, OpenAIChatBackend

    client = OpenAIChatBackend("http://127.0.0.1:9/v1", "m", max_connection_errors=3)
    client._transport_error(ConnectionResetError("reset"))
    client._transport_error(ConnectionResetError("reset"))
    client._server_answered()
    client._transport_error(ConnectionResetError("reset"))
    client._transport_error(ConnectionResetError("reset"))
    with pytest.raises(FatalBackendError, match="3 connection errors in a row"):
        client._transport_error(ConnectionResetError("reset"))
    never = OpenAIChatBackend("http://127.0.0.1:9/v1", "m", max_connection_errors=0)
    for _ in range(20):
        never._transport_error(OSError("unreachable"))
    with pytest.raises(FatalBackendError, match="connection refused"):
        never._transport_error(ConnectionRefusedError())


def test_server_down_keeps_the_answered_cache(isolated_run):
    """A server that answered some users, then died: the run stops within seconds with exit 2 and
    one line naming the URL, and the answers it gave stay in the cache."""
    from features_support import FakeChatServer, complete_lines, wait_for

    data(isolated_run)
    cache = isolated_run / "c.jsonl"
    with FakeChatServer(delay=0.4) as server:
        url = server.url
        args = ["user-profiles", "--data-path", "data", "--out", "u.npy", "--backend", "openai", "--llm-model", "m",
                "--no-progress", "--device", "cpu", "--concurrency", "1", "--cache", str(cache), "--base-url", url]
        proc = subprocess.Popen(FEAT + args, cwd=isolated_run, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: complete_lines(cache) >= 3, timeout=120), "no answers were cached"
    died = time.monotonic()  # the port is closed from here on
    _, err = proc.communicate(timeout=60)
    seconds = time.monotonic() - died
    answered = complete_lines(cache)
    # < 10 s on an idle machine; the bound here is loose because it includes the in-flight answer and
    # the interpreter's exit on a busy one (test_server_down_stops_within_seconds holds the 10 s)
    assert proc.returncode == 2 and seconds < 30, (seconds, err[-2000:])
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and url + "/chat/completions" in errors[0] and "refused" in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert 3 <= answered < 20 and f"{answered} answers are kept" in err
    assert not (isolated_run / "u.npy").exists()


def test_the_zygote_runs_a_command_as_python_would(tmp_path):
    """What the cases' processes report (exit status, stdout, stderr, working directory, argv) is
    what ``python SCRIPT`` / ``python -m MODULE`` report for the same command."""
    (tmp_path / "probe.py").write_text(
        "import os, sys\nprint('out', os.getcwd(), sys.argv[1:])\nprint('err line', file=sys.stderr)\n"
        "if sys.argv[1] == 'raise':\n    raise ValueError('boom')\n"
        "if sys.argv[1] == 'message':\n    sys.exit('error: a message')\nsys.exit(int(sys.argv[1]))\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "__main__.py").write_text("import sys\nprint('module', sys.argv[1:])\nsys.exit(2)\n")
    commands = [[sys.executable, str(tmp_path / "probe.py"), code] for code in ("0", "3", "raise", "message")]
    commands.append([sys.executable, "-m", "pkg", "--flag"])
    with Zygote(ENV) as zygote:
        for i, command in enumerate(commands):
            real = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
            out, err = tmp_path / f"{i}.out", tmp_path / f"{i}.err"
            assert zygote.run(command, tmp_path, out, err) == real.returncode, command
            assert out.read_text() == real.stdout
            last = (err.read_text().splitlines() or [""])[-1]
            assert last == (real.stderr.splitlines() or [""])[-1]
            assert ("Traceback" in err.read_text()) == ("Traceback" in real.stderr)


def test_the_zygote_kills_a_command_past_its_timeout(tmp_path):
    (tmp_path / "hang.py").write_text("import time\ntime.sleep(600)\n")
    zygote = Zygote(ENV)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="past 2 s"):
        zygote.run([sys.executable, str(tmp_path / "hang.py")], tmp_path, tmp_path / "o", tmp_path / "e", timeout=2)
    zygote.close()
    assert time.monotonic() - started < 60 and zygote.proc.returncode == -9
