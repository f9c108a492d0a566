"""A RecBole ``Dataset`` that also carries item modality features and user LM features.

Dataset yaml keys (``dataset_configs/<dataset>.yaml``):

``item_feature_files``   mapping modality -> .npy file (row = original item id), any number.
``item_feature_dims``    optional mapping modality -> expected number of columns.
``modalities``           optional subset (and order) of the modalities to use; default all.
``user_feature_file``    optional .npy of user LM features (row = original user id).
``user_feature_dim``     optional expected number of columns.
``item_feature_norm``    optional mapping modality -> ``l2`` | ``none``: row scaling applied once
                         here, after loading (``l2``: unit rows, zero rows such as PAD stay zero);
                         default (``~``) none.  ``dataset.item_feature_norm`` says what each loaded
                         modality got; runs record it (``result["feature_norm"]``).
``feature_path``         folder of the feature files, used as given (a missing folder or file
                         there is an error); without it the dataset folder, then the package's
                         bundled folder for that dataset.
``load_features``        ``auto`` (multimodal models only), ``true`` or ``false``.

Models read ``dataset.item_features`` (``{modality: FloatTensor [n_items, d_m]}``, internal id
order, row 0 = PAD = zeros) and ``dataset.user_features`` (``FloatTensor [n_users, d_u]`` or None).
"""

import os
from collections import OrderedDict

import numpy as np
import torch
from recbole.data.dataset import Dataset
from recbole.utils import init_seed

from recbole_recgoat.data.feature_files import (
    align_to_internal_ids,
    declared_feature_norms,
    load_matrix,
    normalize_rows,
    resolve_feature_path,
)
from recbole_recgoat.data.inter_files import check_inter_files
from recbole_recgoat.errors import InputError
from recbole_recgoat.paths import BUNDLED_DATA_DIR


class MultiModalDataset(Dataset):
    """RecBole dataset + per-modality item feature matrices + optional user feature matrix."""

    def __init__(self, config):
        self.load_notes = []  # (level, line) for the run's log: what loading found worth saying
        super().__init__(config)
        self.item_features = OrderedDict()
        self.user_features = None
        self.feature_files = {}
        self.item_feature_norm = {}
        if config["load_features"]:
            self._load_features()

    def _load_inter_feat(self, token, dataset_path):
        check_inter_files(self.config, token, dataset_path)  # one-line errors instead of RecBole's tracebacks
        super()._load_inter_feat(token, dataset_path)
        keep = self.config["rm_dup_inter"]
        if keep and self.benchmark_filename_list:  # RecBole filters nothing of a published split: rm_dup_inter would do nothing
            import pandas as pd

            bounds = np.cumsum([0] + list(self.file_size_list))
            parts = [self.inter_feat.iloc[a:b].drop_duplicates(subset=[self.uid_field, self.iid_field], keep=keep)
                     for a, b in zip(bounds[:-1], bounds[1:])]
            dropped = len(self.inter_feat) - sum(len(p) for p in parts)
            if dropped:
                self.inter_feat = pd.concat(parts, ignore_index=True)
                self.file_size_list = [len(p) for p in parts]
                self.load_notes.append(("warning", f"rm_dup_inter: {keep}: dropped {dropped} repeated (user, item) rows "
                                                   f"within the splits ({', '.join(map(str, self.benchmark_filename_list))})"))

    # -- paths -----------------------------------------------------------------------------
    def _search_dirs(self):
        """Where feature files are looked for: the user's ``feature_path`` only (never a fallback to
        the bundled copy), else the dataset folder, then the bundled one."""
        given = self.config["feature_path"]
        if given:
            if not os.path.isdir(given):
                what = "a file" if os.path.exists(given) else "no such folder"
                raise InputError(f"feature_path: {given}: {what}; expected the folder holding the feature files")
            return [str(given)]
        dirs = [self.dataset_path, str(BUNDLED_DATA_DIR / self.dataset_name)]
        return [d for d in dirs if d]

    def _declared_modalities(self):
        files = self.config["item_feature_files"] or {}
        if not isinstance(files, dict):
            raise InputError(f"item_feature_files: got {files!r}; expected a mapping modality: file.npy")
        chosen = self.config["modalities"]
        if chosen is None:
            return list(files)
        if isinstance(chosen, str):
            chosen = [chosen]
        unknown = [m for m in chosen if m not in files]
        if unknown:
            raise InputError(
                f"modalities: {', '.join(unknown)} not declared for {self.dataset_name}; "
                f"expected a subset of item_feature_files ({', '.join(files) or 'none'})"
            )
        return list(chosen)

    # -- loading ---------------------------------------------------------------------------
    def _load_features(self):
        files = self.config["item_feature_files"] or {}
        dims = self.config["item_feature_dims"] or {}
        modalities = self._declared_modalities()
        norms = declared_feature_norms(self.config["item_feature_norm"], list(files))
        loaded = OrderedDict()
        for m in modalities:
            path = resolve_feature_path(files[m], self._search_dirs())
            loaded[m] = (path, load_matrix(path, dims.get(m), what=f"item feature '{m}'"))
        row_counts = {p: a.shape[0] for p, a in loaded.values()}
        if len(set(row_counts.values())) > 1:
            desc = ", ".join(f"{p} has {n} rows" for p, n in row_counts.items())
            raise InputError(f"item feature row count mismatch: {desc}; expected one row per item in every modality")
        tokens = self.field2id_token[self.iid_field]
        for m, (path, arr) in loaded.items():
            self.item_feature_norm[m] = norms.get(m, "none")
            aligned = normalize_rows(align_to_internal_ids(arr, tokens, path, self.iid_field), self.item_feature_norm[m])
            self._check_spread(aligned, path, f"item feature '{m}'", "items")
            self.item_features[m] = torch.from_numpy(aligned)
            self.feature_files[m] = path
        user_file = self.config["user_feature_file"]
        if user_file:
            path = resolve_feature_path(user_file, self._search_dirs())
            arr = load_matrix(path, self.config["user_feature_dim"], what="user feature")
            tokens = self.field2id_token[self.uid_field]
            aligned = align_to_internal_ids(arr, tokens, path, self.uid_field)
            self._check_spread(aligned, path, "user feature", "users")
            self.user_features = torch.from_numpy(aligned)
            self.feature_files["user"] = path

    def _check_spread(self, aligned, path, what, rows_are):
        """A matrix whose rows (PAD excluded) are all equal carries no information: an error.
        All-zero rows are counted in a warning (cosine kNN leaves them without neighbours)."""
        rows = aligned[1:]
        if len(rows) > 1 and float((rows.max(axis=0) - rows.min(axis=0)).max()) == 0.0:
            raise InputError(f"{path}: {what} is constant (all {len(rows)} rows of the {rows_are} equal); "
                             f"expected features that differ between {rows_are}")
        zero = int((~rows.any(axis=1)).sum())
        if zero:
            self.load_notes.append(("warning", f"{path}: {what}: {zero} of {len(rows)} {rows_are} have an all-zero row"))

    def __str__(self):
        info = [super().__str__()]
        for m, feat in self.item_features.items():
            info.append(f"item feature [{m}]: {tuple(feat.shape)} from {self.feature_files[m]}, norm {self.item_feature_norm[m]}")
        if self.user_features is not None:
            info.append(f"user feature: {tuple(self.user_features.shape)} from {self.feature_files['user']}")
        return "\n".join(info)


def training_split(config):
    """``(dataset, train)``: the dataset of ``config`` and its TRAINING split (a RecBole Dataset), as a
    run splits it: seeded with the run's seed, then RecBole's ``build`` (the published split with
    ``benchmark_filename``, else RecBole's seeded random split) - without dataloaders or a model."""
    init_seed(config["seed"], config["reproducibility"])
    dataset = MultiModalDataset(config)
    train, _, _ = dataset.build()
    return dataset, train
