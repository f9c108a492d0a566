"""item-text step: recipes, the reproduction of the published MiniLM features, outputs."""

import random

import numpy as np
import pytest
from features_support import BUNDLED_LASTFM

from recbole_recgoat.errors import InputError
from recbole_recgoat.features.cli import main
from recbole_recgoat.features.output import write_features
from recbole_recgoat.features.recipes import TextRecipe


def _slice_item_file(dest_dir, rows):
    lines = (BUNDLED_LASTFM / "lastfm-2k.item").read_text(encoding="utf-8").splitlines()
    body = [lines[1 + r] for r in rows]
    random.Random(1).shuffle(body)  # file order must not matter
    (dest_dir / "lastfm-2k").mkdir(parents=True)
    (dest_dir / "lastfm-2k" / "lastfm-2k.item").write_text("\n".join([lines[0]] + body) + "\n", encoding="utf-8")


def test_item_text_reproduces_published_minilm_features(isolated_run, capsys):
    """64 items (0, 1, 2, 1424 and 60 random rows) re-embedded from the raw tag text."""
    rows = sorted({0, 1, 2, 1424} | set(random.Random(0).sample(range(3, 1424), 60)))
    assert len(rows) == 64
    _slice_item_file(isolated_run / "data", rows)
    out = isolated_run / "text.npy"
    rc = main(["item-text", "--dataset", "lastfm-2k", "--data-path", str(isolated_run / "data"), "--out", str(out),
               "--batch-size", "32", "--no-progress", "--device", "cpu"])
    assert rc == 0
    emb = np.load(out)
    ids = (isolated_run / "text.npy.ids").read_text().split()
    assert ids == [str(r) for r in rows]  # not 0..n-1: a sidecar lists the original id of each row
    published = np.load(BUNDLED_LASTFM / "text_feat.npy")[rows]  # the COMMITTED features
    cos = (emb * published).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(published, axis=1)
    print(f"cosine over {len(rows)} items: min {cos.min():.7f} mean {cos.mean():.7f}")
    assert cos.min() >= 0.999
    # each re-embedded row is closest to its own published row among the 64
    assert (np.argmax(emb @ published.T, axis=1) == np.arange(len(rows))).all()
    assert "item-text" in (isolated_run / "text.npy.meta.json").read_text()


def test_recipes_render_the_configured_texts():
    lastfm = TextRecipe.from_config(
        {"file": "x.item", "id_field": "item_id", "template": "{tags}", "field_replace": {"tags": {",": ", "}},
         "prompt_template": "{name}. Tags: {tags}"}, "lastfm")
    row = {"item_id": "0", "name": "Groove Armada", "tags": "00s,chill,house"}
    assert lastfm.render(row) == "00s, chill, house"
    assert lastfm.render(row, lastfm.prompt_template) == "Groove Armada. Tags: 00s, chill, house"
    ml = TextRecipe.from_config(
        {"file": "x.item", "id_field": "item_id", "template": "{movie_title} ({release_year}). Genres: {class}.",
         "field_replace": {"class": {" ": ", "}}}, "ml")
    assert ml.render({"movie_title": "Toy Story", "release_year": "1995", "class": "Animation Children's Comedy"}) == (
        "Toy Story (1995). Genres: Animation, Children's, Comedy.")
    amazon = TextRecipe.from_config(
        {"file": "baby.item", "id_field": "item_id", "template": "{title} {brand} {categories} {description}",
         "missing": ""}, "baby")
    assert amazon.render({"title": "Sea Squirts", "brand": "", "categories": "Baby Bath Toys", "description": "Fun."}) == (
        "Sea Squirts  Baby Bath Toys Fun.")


@pytest.mark.parametrize("value, needle", [
    (None, "not set"),
    ({"file": "x", "id_field": "item_id"}, "template"),
    ({"file": "x", "id_field": "item_id", "template": "{a.b}"}, "placeholder"),
    ({"file": "x", "id_field": "item_id", "template": "{a}", "colour": 1}, "unknown key"),
])
def test_bad_recipes_are_input_errors(value, needle):
    with pytest.raises(InputError, match=needle):
        TextRecipe.from_config(value, "dataset_configs/x.yaml item_text")


def test_missing_column_names_the_file(isolated_run):
    (isolated_run / "d").mkdir()
    (isolated_run / "d" / "x.item").write_text("item_id:token\tname:token_seq\n1\ta\n", encoding="utf-8")
    recipe = TextRecipe.from_config({"file": "x.item", "id_field": "item_id", "template": "{tags}"}, "x.yaml item_text")
    with pytest.raises(InputError, match=r"x\.item: no column 'tags'"):
        recipe.load(str(isolated_run / "d"))


def test_outputs_are_atomic_and_never_silently_replaced(isolated_run):
    out = str(isolated_run / "f.npy")
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert write_features(out, a, ["0", "1", "2"]) == "written"
    assert not (isolated_run / "f.npy.ids").exists()  # ids 0..n-1: row r = id r
    assert write_features(out, a, ["0", "1", "2"]) == "unchanged"
    with pytest.raises(InputError, match="exists with different content"):
        write_features(out, a + 1, ["0", "1", "2"])
    assert np.array_equal(np.load(out), a)
    assert write_features(out, a + 1, ["1", "2", "3"], force=True) == "written"
    assert (isolated_run / "f.npy.ids").read_text() == "1\n2\n3\n"
    assert write_features(out, a, ["0", "1", "2"], force=True) == "written"
    assert not (isolated_run / "f.npy.ids").exists()  # a stale sidecar is removed
    assert [p.name for p in isolated_run.iterdir() if p.name.startswith(".tmp")] == []


def test_cli_bad_input_is_one_line(isolated_run, capsys):
    rc = main(["item-text", "--dataset", "lastfm-2k", "--out", "x.txt"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: --out=x.txt") and "\n" not in err
    rc = main(["item-text", "--dataset", "lastfm-2k", "--out", "x.npy", "--model-path", "no/such/folder"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--model-path=no/such/folder: not a folder" in err


def test_committed_features_load_aligned_to_internal_ids(isolated_run):
    from recbole_recgoat.quick_start import prepare

    bundled = BUNDLED_LASTFM.parent
    _, ds, *_ = prepare("BPR", "ml-100k", config_dict={"load_features": True, "state": "ERROR"}, log=False)
    feat = ds.item_features["text"].numpy()
    raw = np.load(bundled / "ml-100k" / "text_feat.npy")
    ids = (bundled / "ml-100k" / "text_feat.npy.ids").read_text().split()
    assert raw.shape == (1682, 384) and ids == [str(i) for i in range(1, 1683)]
    row = {tok: r for r, tok in enumerate(ids)}
    tokens = ds.field2id_token["item_id"]
    for k in (1, 2, 777, len(tokens) - 1):
        assert np.array_equal(feat[k], raw[row[tokens[k]]])
    assert not feat[0].any()  # PAD

    _, ds, *_ = prepare("BPR", "lastfm-2k", config_dict={"load_features": True, "state": "ERROR"}, log=False)
    users = ds.user_features.numpy()
    raw = np.load(bundled / "lastfm-2k" / "user_feat.npy")
    assert raw.shape == (1858, 384) and users.shape == (1859, 384)
    tokens = ds.field2id_token["user_id"]
    for k in (1, 100, len(tokens) - 1):
        assert np.array_equal(users[k], raw[int(tokens[k])])
    assert np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-5)


def test_committed_ml100k_text_matches_the_recipe(isolated_run):
    from recbole_recgoat.features.encoder import Encoder
    from recbole_recgoat.features.pipeline import item_texts

    _, _, ids, texts = item_texts("ml-100k", limit=8)
    assert texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    emb = Encoder(device="cpu", batch_size=8).encode(texts)
    committed = np.load(BUNDLED_LASTFM.parent / "ml-100k" / "text_feat.npy")[:8]  # rows = ids 1..8
    assert ids == [str(i) for i in range(1, 9)]
    assert ((emb * committed).sum(1) >= 0.9999).all()
