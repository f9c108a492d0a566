"""Converters from published multimodal formats to RecBole atomic files, keeping the split.

* **MMRec**: ``<ds>.inter`` (TSV, ``userID itemID [rating] [timestamp] x_label``, x_label 0/1/2 =
  train/valid/test) plus ``<feature>.npy`` files (row = itemID).
* **LATTICE json**: ``train.json`` / ``val.json`` / ``test.json``, each ``{user: [item, ...]}``.

Both write ``<name>.train.inter``, ``<name>.valid.inter`` and ``<name>.test.inter`` (loaded with
``benchmark_filename: [train, valid, test]``, which reproduces the split row for row) and copy
the feature matrices.  Re-running is safe: identical files are left alone, and a different
existing file is never overwritten (every target is checked before anything is written).
"""

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

from recbole_recgoat.data.feature_files import load_matrix
from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.io import atomic_write, copy_from

SPLITS = ("train", "valid", "test")
_OPTIONAL_COLUMNS = {"rating": "rating:float", "timestamp": "timestamp:float"}


def _atomic_inter_text(frame):
    """Atomic .inter text for a frame with columns user_id, item_id (+ rating, timestamp)."""
    header = ["user_id:token", "item_id:token"] + [_OPTIONAL_COLUMNS[c] for c in frame.columns[2:]]
    body = frame.to_csv(sep="\t", header=False, index=False, lineterminator="\n")
    return "\t".join(header) + "\n" + body


def write_files(targets, force=False):
    """Write ``{path: bytes | source file}`` safely; returns the paths written or left as they were.

    Every existing target is compared first; a different one raises (unless ``force``) before any
    file is touched.  Each file is written atomically (:func:`recbole_recgoat.utils.io.atomic_write`).
    """
    for path, content in targets.items():
        if os.path.exists(path) and not force and not _same_content(path, content):
            raise InputError(
                f"{path}: exists with different content; refusing to overwrite another dataset "
                "(remove it, pick another --name / --out, or pass --force)"
            )
    written = []
    for path, content in targets.items():
        if not (os.path.exists(path) and _same_content(path, content)):
            atomic_write(path, content if isinstance(content, bytes) else copy_from(content))
        written.append(path)
    return written


def _same_content(path, content):
    if isinstance(content, bytes):
        return os.path.getsize(path) == len(content) and open(path, "rb").read() == content
    return os.path.getsize(path) == os.path.getsize(content) and open(path, "rb").read() == open(content, "rb").read()


def _feature_targets(feature_files, out_dir):
    targets = {}
    for dest_name, src in (feature_files or {}).items():
        load_matrix(src)  # validate before copying
        targets[os.path.join(out_dir, dest_name)] = src
    return targets


def read_mmrec_inter(inter_file, user_col="userID", item_col="itemID", label_col="x_label"):
    """Read an MMRec ``.inter``; returns ``{split: DataFrame[user_id, item_id, (rating, timestamp)]}``."""
    if not os.path.isfile(inter_file):
        raise InputError(f"{inter_file}: file not found; expected an MMRec .inter (TSV with {user_col}, {item_col}, {label_col})")
    try:
        frame = pd.read_csv(inter_file, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        why = " ".join(str(exc).split())[:100]
        raise InputError(f"{inter_file}: not a readable TSV ({why}); expected an MMRec .inter with {user_col}, {item_col}, {label_col}") from None
    frame.columns = [c.strip() for c in frame.columns]
    for col in (user_col, item_col, label_col):
        if col not in frame.columns:
            raise InputError(f"{inter_file}: no column '{col}' (has {', '.join(frame.columns)}); expected {user_col}, {item_col}, {label_col}")
    labels = frame[label_col].str.strip()
    bad = ~labels.isin(["0", "1", "2"])
    if bad.any():
        raise InputError(f"{inter_file}: {label_col} '{labels[bad].iloc[0]}' at data row {int(np.flatnonzero(bad)[0]) + 1}; expected 0 (train), 1 (valid) or 2 (test)")
    keep = [user_col, item_col] + [c for c in _OPTIONAL_COLUMNS if c in frame.columns]
    out = frame[keep].apply(lambda s: s.str.strip())
    out.columns = ["user_id", "item_id"] + keep[2:]
    splits = {}
    for code, split in zip("012", SPLITS):
        part = out[labels.values == code].reset_index(drop=True)
        if part.empty:
            raise InputError(f"{inter_file}: no rows with {label_col}={code}; expected a non-empty {split} split")
        splits[split] = part
    return splits


def read_lattice_json(json_dir):
    """Read LATTICE ``train/val/test.json``; returns ``{split: DataFrame[user_id, item_id]}``."""
    splits = {}
    for split, fname in zip(SPLITS, ("train.json", "val.json", "test.json")):
        path = os.path.join(json_dir, fname)
        if not os.path.isfile(path):
            raise InputError(f"{path}: file not found; expected LATTICE {fname} ({{user: [item, ...]}})")
        try:
            with open(path, "r", encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid json ({exc.msg} at line {exc.lineno}); expected {{user: [item, ...]}}") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise InputError(f"{path}: expected a json object mapping each user to a list of items")
        users = [u for u, items in data.items() for _ in items]
        items = [str(i) for its in data.values() for i in its]
        splits[split] = pd.DataFrame({"user_id": users, "item_id": items})
    return splits


def write_benchmark_files(splits, out_dir, name, feature_files=None, force=False):
    """Write ``<name>.<split>.inter`` for each split and copy ``{dest_name: source .npy}``."""
    targets = {
        os.path.join(out_dir, f"{name}.{split}.inter"): _atomic_inter_text(splits[split]).encode("utf-8")
        for split in SPLITS
    }
    targets.update(_feature_targets(feature_files, out_dir))
    return write_files(targets, force=force)


def convert_mmrec(inter_file, out_dir, name, feature_files=None, force=False):
    """MMRec ``.inter`` (+ features) -> RecBole benchmark files; returns the paths written."""
    return write_benchmark_files(read_mmrec_inter(inter_file), out_dir, name, feature_files, force)


def convert_lattice_json(json_dir, out_dir, name, feature_files=None, force=False):
    """LATTICE json split (+ features) -> RecBole benchmark files; returns the paths written."""
    return write_benchmark_files(read_lattice_json(json_dir), out_dir, name, feature_files, force)


def _parse_features(pairs):
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"--feature {pair}: expected DEST_NAME=SOURCE.npy")
        dest, src = pair.split("=", 1)
        out[dest] = src
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_recgoat.data.converters",
        description="Convert a published split to RecBole atomic files (<name>.{train,valid,test}.inter).",
    )
    sub = parser.add_subparsers(dest="format", required=True)
    mm = sub.add_parser("mmrec", help="MMRec <ds>.inter with x_label 0/1/2")
    mm.add_argument("inter_file")
    lat = sub.add_parser("lattice", help="LATTICE train.json / val.json / test.json")
    lat.add_argument("json_dir")
    for p in (mm, lat):
        p.add_argument("--out", required=True, help="output folder: <data_path>/<name>")
        p.add_argument("--name", required=True, help="dataset name")
        p.add_argument("--feature", action="append", help="DEST_NAME=SOURCE.npy, e.g. text_feat.npy=/dl/text_feat.npy")
        p.add_argument("--force", action="store_true", help="overwrite different existing files")
    args = parser.parse_args(argv)
    try:
        features = _parse_features(args.feature)
        if args.format == "mmrec":
            paths = convert_mmrec(args.inter_file, args.out, args.name, features, args.force)
        else:
            paths = convert_lattice_json(args.json_dir, args.out, args.name, features, args.force)
    except InputError as exc:  # the package's exit codes: 0 done, 2 bad input, 1 internal error
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every file is written atomically: a finished one is whole, the others absent
        print("interrupted: the files already written are complete, the others are not there; rerun the same command "
              "to finish (it keeps identical files)", file=sys.stderr)
        return 130
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
