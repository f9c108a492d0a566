"""Build the bundled dataset ``recbole_recgoat/bundled/ml-100k-llm`` from the shared files.

Source: ``../shared/data/ml-100k-llm-profiles/`` (its SOURCE.md: copies of the data files of
``danialebrat/Unifying-LLMs-with-Recsys``, MIT; MovieLens-100K GroupLens fold 1; TMDB text), and
RecBole's own ``ml-100k.item`` (titles, years, genres of the 1,682 movies).

    python scripts/make_bundled_ml100k_llm.py [SOURCE_FOLDER]           # everything (embeds ~7,100 texts)
    python scripts/make_bundled_ml100k_llm.py [SOURCE_FOLDER] --no-embed  # the split and item file only

What it writes (see the folder's FEATURES.md):

* the split, every rating (1-5) an interaction, as in the package's ml-100k config:
  test = ``u1.test`` row for row (users 1-462); validation = for each user, ``round(n / 8)`` (at
  least 1) of the user's ``n`` ``u1.base`` ratings, drawn with ``numpy.random.default_rng([999,
  user])`` from the ratings the GPT-4o-mini profile did NOT read; train = the rest of ``u1.base``.
  The profile's input rows (SOURCE.md: the user's five most recent 5-star and five most recent
  <= 2-star ``u1.base`` ratings) are rebuilt from the timestamps; ratings tied with the fifth
  most recent one count as read too (the original tie order is unknown), so validation holds
  none of them whatever the tie order was.
* ``ml-100k-llm.item``: RecBole's ``ml-100k.item``, byte for byte.
* through the package's own pipeline (``python -m recbole_recgoat.features``, all-MiniLM-L6-v2,
  CPU, batch 64): ``text_feat.npy`` (the TMDB overview), ``llm_feat.npy`` (the GPT-4o-mini movie
  profile), both with the recipe's title + year + genres text for films without one;
  ``user_feat.npy`` (GPT-4o-mini profiles), ``user_feat_lusifer.npy`` (Lusifer GPT-4o-mini
  summaries), ``user_feat_gpt41mini.npy`` (GPT-4.1-mini structured profiles; user 685's is empty
  and gets the offline metadata summary, listed in its meta.json), and for comparison
  ``user_feat_offline.npy`` (the offline metadata summary of each user's training movies, NOT an
  LLM: ``--backend offline``); ``.ids`` sidecars; each
  ``.meta.json`` without its run-dependent fields (date, seconds, temporary paths).

Every input is checked against its sha256 first.  Re-running it gives the same bytes (same
machine, CPU, library versions); existing outputs are replaced.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAME = "ml-100k-llm"
OUT = ROOT / "recbole_recgoat" / "bundled" / NAME
DEFAULT_SRC = ROOT / ".." / "shared" / "data" / "ml-100k-llm-profiles"
SEED = 999
VALID_SHARE = 1 / 8  # of each user's u1.base ratings: train / valid / test about 70 / 10 / 20 of all ratings
PROFILE_LAST = 5  # the GPT-4o-mini profile read the 5 most recent 5-star and 5 most recent <= 2-star ratings

SOURCES = {  # file -> sha256 (SOURCE.md)
    "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
    "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    "user_profiles_gpt4omini_100k.csv": "7c1ea16d2309d1eeb686c4019c2281fd8a11894da7e688e84248430a3a0ac36c",
    "user_summaries_lusifer_gpt4omini_100k.csv": "69787ff71265e33cb3591ef0d6a6d9d6d9165fbe4110fffcf6f2e51780aeefc8",
    "user_profiles_structured_gpt41mini_100k.csv": "900cb23b5939f60f5f2b3509d5eea3f1a1bc0c199aa83cd57637b0d8e66fabe9",
    "movies_structured_100k.csv": "526671b8771b3ff7bc882c12e92edd8996ff2926b1d4208620484585278fa776",
    "movies_tmdb_enriched_100k.csv": "ce713733054411328652bff0c18a2e139d1009215e80b9a8a48f900e79ad2170",
}
RECBOLE_ITEM_SHA256 = "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"

# (output, source file, id column, text column, the set it is)
ITEM_FEATURES = [
    ("text_feat.npy", "movies_tmdb_enriched_100k.csv", "movie_id", "overview", "TMDB overview"),
    ("llm_feat.npy", "movies_structured_100k.csv", "movie_id", "movie_info", "GPT-4o-mini movie profile"),
]
USER_FEATURES = [
    ("user_feat.npy", "user_profiles_gpt4omini_100k.csv", "summary", "GPT-4o-mini profiles (default)"),
    ("user_feat_lusifer.npy", "user_summaries_lusifer_gpt4omini_100k.csv", "summary", "Lusifer GPT-4o-mini summaries"),
    ("user_feat_gpt41mini.npy", "user_profiles_structured_gpt41mini_100k.csv", "user_profile", "GPT-4.1-mini structured profiles"),
    ("user_feat_offline.npy", None, None, "offline metadata summary (not an LLM)"),
]
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
VOLATILE_META = ("created", "seconds", "embed_seconds")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def recbole_item_file():
    import recbole

    return Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.item"


def check_sources(src):
    for name, digest in SOURCES.items():
        path = Path(src) / name
        if not path.is_file():
            sys.exit(f"error: {path}: missing; expected the shared ml-100k-llm-profiles files (SOURCE.md)")
        if sha256(path) != digest:
            sys.exit(f"error: {path}: sha256 differs from SOURCE.md; expected {digest}")
    if sha256(recbole_item_file()) != RECBOLE_ITEM_SHA256:
        sys.exit(f"error: {recbole_item_file()}: sha256 differs; expected RecBole 1.2.1's ml-100k.item")


def read_ratings(path):
    """``[(user, item, rating, timestamp), ...]`` of a GroupLens ``u*.base/test`` file, in file order."""
    rows = []
    for line in Path(path).read_text(encoding="ascii").splitlines():
        u, i, r, t = line.split("\t")
        rows.append((int(u), int(i), int(r), int(t)))
    return rows


def profile_input_rows(base):
    """Indices of ``base`` the GPT-4o-mini profile may have read: per user, the ratings of 5 (and of
    <= 2) whose timestamp is at least that of the fifth most recent one (ties all included)."""
    by_user = {}
    for k, (u, _, r, t) in enumerate(base):
        group = "pos" if r == 5 else "neg" if r <= 2 else None
        if group:
            by_user.setdefault((u, group), []).append((t, k))
    read = set()
    for rows in by_user.values():
        times = sorted((t for t, _ in rows), reverse=True)
        cut = times[min(PROFILE_LAST, len(times)) - 1]
        read.update(k for t, k in rows if t >= cut)
    return read


def split(base, test):
    """``(train, valid, test)`` row lists (see the module docstring)."""
    read = profile_input_rows(base)
    by_user = {}
    for k, row in enumerate(base):
        by_user.setdefault(row[0], []).append(k)
    valid_idx = set()
    for u in sorted(by_user):
        rows = by_user[u]
        n_valid = max(1, int(np.floor(len(rows) * VALID_SHARE + 0.5)))
        eligible = [k for k in rows if k not in read]
        rng = np.random.default_rng([SEED, u])
        take = rng.permutation(len(eligible))[: min(n_valid, len(eligible))]
        valid_idx.update(eligible[j] for j in take)
    train = [row for k, row in enumerate(base) if k not in valid_idx]
    valid = [row for k, row in enumerate(base) if k in valid_idx]
    return train, valid, list(test), read


def inter_bytes(rows):
    return (INTER_HEADER + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)).encode("ascii")


def write_split(src, out):
    base = read_ratings(Path(src) / "u1.base")
    test = read_ratings(Path(src) / "u1.test")
    train, valid, test, read = split(base, test)
    os.makedirs(out, exist_ok=True)
    for part, rows in (("train", train), ("valid", valid), ("test", test)):
        (Path(out) / f"{NAME}.{part}.inter").write_bytes(inter_bytes(rows))
    shutil.copyfile(recbole_item_file(), Path(out) / f"{NAME}.item")
    return {"train": len(train), "valid": len(valid), "test": len(test), "profile_rows": len(read)}


def _features(argv):
    from recbole_recgoat.features.cli import main

    code = main(argv)
    if code != 0:
        sys.exit(f"error: python -m recbole_recgoat.features {' '.join(argv)}: exit status {code}")


def _clean_meta(path, tmp):
    meta = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in VOLATILE_META:
        meta.pop(key, None)
    meta["command"] = meta["command"].replace(str(tmp), "<tmp>")
    Path(path).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def embed(src, out, only=None):
    """The item and user features, through the package's feature pipeline (see the module docstring);
    ``only``: these output names only."""
    out = os.path.relpath(out, ROOT)
    common = ["--dataset", NAME, "--data-path", str(Path(out).parent), "--device", "cpu", "--batch-size", "64",
              "--no-progress", "--force"]
    rel = os.path.relpath(src, ROOT)
    with tempfile.TemporaryDirectory(prefix="ml100k-llm-") as tmp:
        for name, file, id_col, text_col, _ in ITEM_FEATURES:
            if only and name not in only:
                continue
            _features(["item-text", *common, "--out", str(Path(out) / name), "--texts", f"{rel}/{file}",
                       "--id-column", id_col, "--text-column", text_col, "--allow-failures"])
            _clean_meta(Path(out) / f"{name}.meta.json", tmp)
        for name, file, text_col, _ in USER_FEATURES:
            if only and name not in only:
                continue
            if file is None:  # the offline metadata summary of the training movies (NOT an LLM), for comparison
                source = ["--backend", "offline"]
            else:
                allow = ["--allow-failures"] if name == "user_feat_gpt41mini.npy" else []  # user 685: empty profile
                source = ["--backend", "import", "--answers", f"{rel}/{file}", "--id-column", "user_id",
                          "--text-column", text_col, *allow]
            _features(["user-profiles", *common, "--out", str(Path(out) / name), *source,
                       "--cache", str(Path(tmp) / f"{name}.cache.jsonl")])
            _clean_meta(Path(out) / f"{name}.meta.json", tmp)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", nargs="?", default=str(DEFAULT_SRC), help="the shared ml-100k-llm-profiles folder")
    parser.add_argument("--out", default=str(OUT), help="output folder (default: the bundled one)")
    parser.add_argument("--no-embed", action="store_true", help="write the split and the item file only")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="embed these outputs only (e.g. user_feat_offline.npy); the split is written as always")
    opts = parser.parse_args(argv)
    os.chdir(ROOT)  # relative source paths in the recorded commands
    check_sources(opts.src)
    counts = write_split(opts.src, opts.out)
    print(f"{NAME}: train {counts['train']} / valid {counts['valid']} / test {counts['test']}; "
          f"{counts['profile_rows']} u1.base ratings read by the GPT-4o-mini profiles (never in valid)")
    if not opts.no_embed:
        embed(opts.src, opts.out, opts.only)
        write_sums(opts.out)
    for path in sorted(Path(opts.out).iterdir()):
        if path.suffix in (".inter", ".item", ".npy", ".ids"):
            print(f"{sha256(path)}  {path.name}")


def write_sums(out):
    """``SHA256SUMS`` (sha256sum format) of the data files: what a rebuild must give again."""
    files = sorted(p for p in Path(out).iterdir() if p.suffix in (".inter", ".item", ".npy", ".ids"))
    (Path(out) / "SHA256SUMS").write_text("".join(f"{sha256(p)}  {p.name}\n" for p in files), encoding="ascii")


if __name__ == "__main__":
    main()
