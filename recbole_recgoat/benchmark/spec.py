"""What a benchmark runs: entries (models and named variants) x datasets x seeds = cells.

An *entry* is a leaderboard row: a model name, or a named variant ``{name: {model: M, key: value}}``
(an ablation is a leaderboard of variants).  A *cell* is one entry on one dataset with one seed;
its key is a hash of everything that decides its result:

``model, dataset, seed, variant name, the variant's overrides, the tuned parameters, the
overrides of every cell (--set / yaml overrides) and the content of the config files``.

Keys that only change how a run is displayed, where it writes or where its bytes live (``state``,
``show_progress``, ``console``, ``checkpoint_dir``, ``gpu_id``, evaluation batch sizes, ``reuse_freed_memory``)
are left out, so they can change between a killed benchmark and its rerun without re-running
finished cells.

Config layering of a cell is exactly ``run_recbole.py``'s: ``config_file_list`` = the config
files, ``config_dict`` = tuned parameters < variant overrides, ``cmd_args`` = the benchmark's
overrides (what ``--key=value`` is on ``run_recbole.py``) plus the cell's ``seed`` and its own
``checkpoint_dir``.
"""

import os
from dataclasses import dataclass, field

from recbole_recgoat.config import convert_value
from recbole_recgoat.config_rules import check_values, known_keys, unknown_key_message
from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.io import file_sha256, json_sha256
from recbole_recgoat.utils.registry import plugin_models

BASE_SEED = 999
DEFAULT_DATASET = "lastfm-2k"
# Keys that never change a result (display, output location, evaluation batching).
NON_RESULT_KEYS = frozenset({
    "state", "show_progress", "checkpoint_dir", "gpu_id", "eval_batch_size", "eval_batch_users",
    "log_wandb", "wandb_project", "verbose", "reuse_freed_memory", "console",
})


def parse_set(pairs):
    """``['lr=0.1', 'epochs=5']`` -> ``{'lr': 0.1, 'epochs': 5}`` (values converted as the Config
    converts ``run_recbole.py``'s ``--key=value``)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise InputError(f"--set {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip().lstrip("-")] = convert_value(value)
    return out


def parse_seeds(seeds, base=BASE_SEED, datasets=None):
    """``5`` -> ``[999, ..., 1003]``; a list -> itself (ints); a mapping ``{dataset: count or list}``
    (seeds per dataset) -> ``{dataset: [seeds]}`` for each of ``datasets``."""
    if isinstance(seeds, dict):
        missing = [d for d in datasets or [] if d not in seeds]
        if missing:
            raise InputError(f"seeds: no entry for {', '.join(missing)}; expected seeds: {{dataset: count or [seeds]}} "
                             "naming every dataset")
        return {d: parse_seeds(seeds[d], base) for d in (datasets or seeds)}
    if seeds is None:
        seeds = 1
    if isinstance(seeds, (list, tuple)):
        out = [int(s) for s in seeds]
    else:
        n = int(seeds)
        if n < 1:
            raise InputError(f"--seeds {seeds}: expected a positive count")
        out = [base + i for i in range(n)]
    if len(set(out)) != len(out):
        raise InputError(f"seeds {out}: repeated seed")
    return out


def canonical_model(name):
    """The model's class name as the registry spells it (``lightgcn`` -> ``LightGCN``)."""
    from recbole_recgoat.utils.registry import get_model

    return get_model(name).__name__


def file_digest(path):
    """16 hex of the sha256 of a file's bytes (config files in cell keys)."""
    return file_sha256(path)[:16]


def short_hash(obj, n=16):
    """``n`` hex of the sha256 of ``obj``'s canonical JSON (cell, setting and trial keys)."""
    return json_sha256(obj)[:n]


@dataclass
class Entry:
    """A leaderboard row: ``name`` (model or variant name), ``model``, its ``overrides``, and the
    ``datasets`` it runs on (None: all of the benchmark's)."""

    name: str
    model: str
    overrides: dict = field(default_factory=dict)
    datasets: list = None


@dataclass
class Cell:
    """One training run of the benchmark (an entry on a dataset with a seed)."""

    entry: str
    model: str
    dataset: str
    seed: int
    config_files: list
    config_dict: dict  # tuned parameters < variant overrides
    overrides: dict  # the benchmark's overrides, cmd_args level
    tuning: dict = None  # where the tuned parameters came from, or None
    variant_overrides: dict = None  # the variant's own overrides (also inside config_dict)
    key: str = ""
    setting: str = ""  # the key without the seed: cells of one leaderboard row share it

    def identity(self, with_seed=True):
        ident = {
            "model": self.model,
            "dataset": self.dataset,
            "variant": self.entry,
            "config_dict": {k: v for k, v in self.config_dict.items() if k not in NON_RESULT_KEYS},
            "overrides": {k: v for k, v in self.overrides.items() if k not in NON_RESULT_KEYS},
            "config_files": [file_digest(p) for p in self.config_files],
        }
        if with_seed:
            ident["seed"] = self.seed
        return ident

    def finalize(self):
        self.key = short_hash(self.identity(True))
        self.setting = short_hash(self.identity(False))
        return self

    @property
    def run_key(self):
        """The identity without the row's name: two rows whose settings come out the same on a
        dataset and seed (e.g. an ablation switch the tuning had already chosen) are one run."""
        ident = self.identity(True)
        ident.pop("variant")
        return short_hash(ident)

    def run_kwargs(self, checkpoint_dir):
        """Arguments of :func:`recbole_recgoat.quick_start.run` for this cell."""
        cmd_args = dict(self.overrides)
        cmd_args["seed"] = self.seed
        cmd_args["checkpoint_dir"] = str(checkpoint_dir)
        return {
            "model": self.model,
            "dataset": self.dataset,
            "config_file_list": list(self.config_files) or None,
            "config_dict": dict(self.config_dict),
            "cmd_args": cmd_args,
        }

    def describe(self):
        return f"{self.entry} on {self.dataset} seed {self.seed} [{self.key}]"

    def as_dict(self):
        return {
            "entry": self.entry, "model": self.model, "dataset": self.dataset, "seed": self.seed,
            "config_files": list(self.config_files), "config_dict": dict(self.config_dict),
            "overrides": dict(self.overrides), "tuning": self.tuning,
            "variant_overrides": dict(self.variant_overrides or {}), "key": self.key,
            "setting": self.setting,
        }

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def build_entries(models, variants=None):
    """Entries for ``models`` (plain) followed by ``variants`` ({name: {model: M, key: value, ...}}; an
    optional ``datasets: [...]`` in a variant limits it to those datasets, e.g. a user-feature
    ablation on the datasets that have user features)."""
    entries, names = [], set()
    for m in models or []:
        name = canonical_model(m)
        if name in names:
            continue
        names.add(name)
        entries.append(Entry(name, name, {}))
    for vname, spec in (variants or {}).items():
        if not isinstance(spec, dict) or "model" not in spec:
            raise InputError(f"variants: {vname}: expected a mapping with a 'model' key and overrides")
        if vname in names:
            raise InputError(f"variants: {vname}: name already used by a model or another variant")
        names.add(vname)
        overrides = {k: v for k, v in spec.items() if k not in ("model", "datasets")}
        only = spec.get("datasets")
        only = [only] if isinstance(only, str) else (list(only) if only is not None else None)
        entries.append(Entry(str(vname), canonical_model(spec["model"]), overrides, only))
    if not entries:
        raise InputError("models: none given; pass --models M1 M2 ... or a yaml with models:")
    return entries


def known_config_keys(model, dataset=DEFAULT_DATASET):
    """Every key a config of ``model`` on ``dataset`` may set (:func:`recbole_recgoat.config_rules.known_keys`)."""
    return known_keys(canonical_model(model), dataset or DEFAULT_DATASET)


def check_keys(entries, dataset=DEFAULT_DATASET, search_spaces=None, overrides=None):
    """Refuse variant overrides, search-space parameters and benchmark-wide ``overrides`` that are
    no config key of their model, before any cell runs.

    A misspelt ablation switch would otherwise give a "variant" identical to its model (the run
    itself refuses it too, but only when the cell starts).
    """
    items = [(e.model, f"variants: {e.name}", k) for e in entries for k in e.overrides]
    items += [(m, f"search_space of {m}", k) for m, space in (search_spaces or {}).items() for k in space]
    items += [(e.model, f"overrides (for {e.name})", k) for e in entries for k in (overrides or {})]
    for model, where, key in items:
        known = known_config_keys(model, dataset)
        if key not in known and not (overrides or {}).get("allow_unknown_keys"):
            raise InputError(unknown_key_message(key, known, where))
    for e in entries:  # values too (properties/rules.yaml): a bad one would fail every cell, one by one
        check_values({**e.overrides, **(overrides or {})}, e.model, e.model in plugin_models())


def build_cells(entries, datasets, seeds, config_files=None, overrides=None, tuned=None, known_datasets=None):
    """Every cell, in order entry-major then dataset then seed.

    ``seeds``: a list for every dataset, or ``{dataset: [seeds]}`` (:func:`parse_seeds`).
    ``tuned`` maps ``(model, dataset)`` to ``(params, info)``; tuned params sit below a variant's
    overrides.  An entry with ``datasets`` runs on those only; each must be a benchmark dataset
    (``known_datasets``, the benchmark yaml's, default ``datasets``: a ``--datasets`` subset of them
    runs the entries that name it and skips the others).
    """
    files = [os.path.abspath(p) for p in (config_files or [])]
    for p in files:
        if not os.path.isfile(p):
            raise InputError(f"--config_files: {p} does not exist; expected a yaml file")
    datasets = list(datasets or [DEFAULT_DATASET])
    cells = []
    known = list(dict.fromkeys(list(known_datasets or []) + datasets))
    for entry in entries:
        unknown = [d for d in entry.datasets or [] if d not in known]
        if unknown:
            raise InputError(f"variants: {entry.name}: datasets {', '.join(unknown)} not in the benchmark's datasets "
                             f"({', '.join(known)}); expected a subset")
        for dataset in [d for d in datasets if entry.datasets is None or d in entry.datasets]:
            params, info = (tuned or {}).get((entry.model, dataset), ({}, None))
            config_dict = {**params, **entry.overrides}
            for seed in (seeds[dataset] if isinstance(seeds, dict) else seeds):
                cells.append(Cell(entry.name, entry.model, dataset, int(seed), files, config_dict,
                                  dict(overrides or {}), tuning=info,
                                  variant_overrides=dict(entry.overrides)).finalize())
    return cells


@dataclass
class Grid:
    """What ``run`` trains: rows (:class:`Entry`) x datasets x seeds with the run's config files and
    overrides; :meth:`cells` builds its cells for given tuned parameters (:func:`build_cells`)."""

    entries: list
    datasets: list
    seeds: object  # a list for every dataset, or {dataset: [seeds]}
    config_files: list = field(default_factory=list)
    overrides: dict = field(default_factory=dict)
    known_datasets: list = None
    use_tuned: bool = False

    def cells(self, tuned=None, entries=None, datasets=None):
        """The cells of ``entries`` (default all) on ``datasets`` (default all), every seed."""
        return build_cells(self.entries if entries is None else entries, self.datasets if datasets is None else datasets,
                           self.seeds, self.config_files, self.overrides, tuned, known_datasets=self.known_datasets)


def preflight(cells):
    """Every check a cell's run makes before loading data (config keys and values, the dataset's
    folder, the seed's range, ...), once per row x dataset and once per seed, before the first
    cell trains: a mistake is one line and exit 2, not a failed cell in the store."""
    from recbole_recgoat.config import Config
    from recbole_recgoat.config_rules import check_value, value_rules

    seed_rule = value_rules()["protocol"]["seed"]
    for seed in sorted({c.seed for c in cells}):
        check_value("seeds", seed, seed_rule)
    checked = set()
    for cell in cells:
        if (cell.entry, cell.dataset) in checked:
            continue
        checked.add((cell.entry, cell.dataset))
        kwargs = cell.run_kwargs("saved")
        Config(kwargs["model"], kwargs["dataset"], kwargs["config_file_list"], kwargs["config_dict"], kwargs["cmd_args"])
