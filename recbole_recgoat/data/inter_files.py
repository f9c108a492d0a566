"""Interaction files checked before RecBole reads them, and what the splits share with training.

RecBole 1.2.1 answers a missing split file with ``ValueError: File ... not exist``, a header
without ``:type`` with an unpacking ``ValueError``, and an empty, header-only or wrongly named file
with a traceback deep in its pipeline (or, worse, trains on nothing).  :func:`check_inter_files`
reads every ``.inter`` file a dataset will load and raises a one-line
:class:`~recbole_recgoat.errors.InputError` naming the file (and line) for: a missing file, an
empty or header-only file, a header field that is not ``name:type`` with a RecBole type, a header
without the fields ``load_col`` asks for, a row with too few fields, an empty id or a float
field that is not a number, a (user, item) pair on two rows of one file (unless ``rm_dup_inter``),
and two splits that are one file or have identical content.  Nothing is written.

:func:`unseen_summary` counts the validation / test users and items that never occur in training
(the protocol evaluates them: full ranking gives such users their untrained embeddings, and such
items stay rankable), so they are counted in the log instead of passing silently.
"""

import os

import numpy as np
from recbole.utils import FeatureType

from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.io import file_sha256

_TYPES = {t.value for t in FeatureType}


def inter_file_paths(token, dataset_path, benchmark_filename):
    """``[(path, split name)]`` of the interaction files RecBole will read."""
    if not benchmark_filename:
        return [(os.path.join(dataset_path, f"{token}.inter"), "all interactions (split at load)")]
    return [(os.path.join(dataset_path, f"{token}.{part}.inter"), f"the {part} split") for part in benchmark_filename]


def _needed_fields(config):
    load_col = config["load_col"]
    if isinstance(load_col, dict) and load_col.get("inter") is not None:
        wanted = list(load_col["inter"])
    else:
        wanted = []
    for key in ("USER_ID_FIELD", "ITEM_ID_FIELD"):
        if config[key] and config[key] not in wanted:
            wanted.append(config[key])
    return wanted


def _parse_header(path, line, sep):
    fields = {}
    for pos, text in enumerate(line.split(sep)):
        name, colon, ftype = text.partition(":")
        if not colon or not name:
            raise InputError(f"{path}: header field {text!r} is not name:type; expected e.g. user_id:token "
                             f"(types: {', '.join(sorted(_TYPES))})")
        if ftype not in _TYPES:
            raise InputError(f"{path}: header field {text!r} has type {ftype!r}; expected one of {', '.join(sorted(_TYPES))}")
        fields[name] = (pos, ftype)
    return fields


def check_inter_file(path, what, wanted, sep="\t", encoding="utf-8", pair=None):
    """Check one atomic ``.inter`` file (see the module docstring); returns its data row count.

    ``pair`` (``(user field, item field)``): a (user, item) pair on two rows is an error naming the
    count and the first repeat (RecBole's ``rm_dup_inter`` drops them; pass None to allow them)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file; expected {what} as a RecBole atomic .inter file")
    try:
        with open(path, "r", encoding=encoding) as f:
            header = f.readline().rstrip("\r\n")
            if not header.strip():
                raise InputError(f"{path}: empty file; expected a header (e.g. user_id:token{sep!r}item_id:token) "
                                 "and one interaction per line")
            fields = _parse_header(path, header, sep)
            missing = [w for w in wanted if w not in fields]
            if missing:
                raise InputError(f"{path}: header ({', '.join(fields)}) has no field {', '.join(missing)}; "
                                 f"expected the fields load_col asks for: {', '.join(wanted)}")
            checks = [(w, fields[w][0], fields[w][1]) for w in wanted]
            width = max(p for _, p, _ in checks) + 1
            rows = 0
            seen, dups, first_dup = {}, 0, None
            at = (fields[pair[0]][0], fields[pair[1]][0]) if pair and all(p in fields for p in pair) else None
            for lineno, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                rows += 1
                values = line.split(sep)
                if len(values) < width:
                    raise InputError(f"{path}: line {lineno} has {len(values)} field(s); expected {len(fields)} (the header's)")
                for name, pos, ftype in checks:
                    value = values[pos].strip()
                    if not value and ftype in ("token", "float"):
                        raise InputError(f"{path}: line {lineno}: empty {name}; expected a value")
                    if ftype == "float":
                        try:
                            float(value)
                        except ValueError:
                            raise InputError(f"{path}: line {lineno}: {name} {value!r} is not a number; expected a float") from None
                if at is not None:
                    key = (values[at[0]].strip(), values[at[1]].strip())
                    if key in seen:
                        dups += 1
                        if first_dup is None:
                            first_dup = (key, seen[key], lineno)
                    else:
                        seen[key] = lineno
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not {encoding} text (byte {exc.start}); expected a tab-separated atomic file") from None
    if rows == 0:
        raise InputError(f"{path}: header only, no interactions; expected one interaction per line")
    if dups:
        (u, i), line_a, line_b = first_dup
        raise InputError(f"{path}: {dups} duplicated ({pair[0]}, {pair[1]}) row(s), first {pair[0]} {u} {pair[1]} {i} on lines "
                         f"{line_a} and {line_b}; expected each pair once (rm_dup_inter: first drops the repeats)")
    return rows


def check_inter_files(config, token, dataset_path):
    """Check every interaction file of the dataset ``token`` in ``dataset_path`` (before loading)."""
    if not os.path.isdir(dataset_path):
        raise InputError(f"data_path: no folder {dataset_path}; expected the atomic files of {token} there")
    wanted = _needed_fields(config)
    sep = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    pair = None if config["rm_dup_inter"] else (config["USER_ID_FIELD"], config["ITEM_ID_FIELD"])
    seen = {}
    for path, what in inter_file_paths(token, dataset_path, config["benchmark_filename"]):
        check_inter_file(path, what, wanted, sep, encoding, pair)
        key = (os.path.realpath(path), file_sha256(path))
        for (real, digest), other in seen.items():
            if real == key[0] or digest == key[1]:
                how = "the same file as" if real == key[0] else "identical to"
                raise InputError(f"{path}: {what} is {how} {other}; expected different interactions in every split")
        seen[key] = path


def unseen_summary(train, splits, uid_field, iid_field):
    """``[(level, line)]``: per split, how many users / items / interactions never occur in training.

    Args:
        train: the training split (RecBole Dataset); ``splits``: ``{name: Dataset}``.
    """
    seen_u = np.unique(train.inter_feat[uid_field].numpy())
    seen_i = np.unique(train.inter_feat[iid_field].numpy())
    out = []
    for name, ds in splits.items():
        if ds is None:
            continue
        users, items = ds.inter_feat[uid_field].numpy(), ds.inter_feat[iid_field].numpy()
        cold_u = ~np.isin(users, seen_u)
        cold_i = ~np.isin(items, seen_i)
        n_u, n_i = len(np.unique(users[cold_u])), len(np.unique(items[cold_i]))
        n_rows = int((cold_u | cold_i).sum())
        if not n_rows:
            out.append(("info", f"{name} split: every user and item occurs in training"))
            continue
        out.append(("warning", (
            f"{name} split: {n_u} of {len(np.unique(users))} users and {n_i} of {len(np.unique(items))} items never occur "
            f"in training ({n_rows} of {len(users)} interactions); the protocol evaluates them (full ranking: such users "
            "are scored with untrained embeddings, such items stay in the catalogue)")))
    return out
