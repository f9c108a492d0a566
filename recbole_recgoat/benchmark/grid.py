"""A model's hyper-parameter grid: where it comes from (``search_space`` of the model's yaml or of
the benchmark yaml), its size, and the seeded order in which ``exhaustive`` search proposes its
points (:mod:`recbole_recgoat.benchmark.tuning` runs the search)."""

from recbole_recgoat.config import load_yaml
from recbole_recgoat.errors import InputError


def model_search_space(model):
    """The ``search_space`` of ``properties/model/<model>.yaml`` (``{}`` if it has none)."""
    from recbole_recgoat.paths import properties_dir

    path = properties_dir() / "model" / f"{model}.yaml"
    if not path.is_file():
        return {}
    return validate_space(load_yaml(path).get("search_space") or {}, str(path))


def validate_space(space, where="search_space"):
    if not isinstance(space, dict):
        raise InputError(f"{where}: search_space must be a mapping param: [values...]")
    out = {}
    for name, values in space.items():
        if not isinstance(values, list) or not values:
            raise InputError(f"{where}: search_space.{name}: expected a non-empty list of values")
        out[str(name)] = list(values)
    return out


def search_space_for(spaces, model, dataset):
    """The grid of ``model`` on ``dataset``: the benchmark yaml's ``search_space`` entry
    ``<model>@<dataset>``, else ``<model>``, else ``properties/model/<model>.yaml``'s (each entry is
    a whole grid, not merged)."""
    for name in (f"{model}@{dataset}", model):
        if name in spaces:
            return validate_space(spaces[name], f"--config search_space.{name}")
    return model_search_space(model)


def space_size(space):
    n = 1
    for values in space.values():
        n *= len(values)
    return n if space else 0


def grid_order(space, seed):
    """Every grid point (``{param: index}``) in a random order fixed by ``seed``."""
    import itertools

    import numpy as np

    names = list(space)
    points = list(itertools.product(*[range(len(space[n])) for n in names]))
    order = np.random.default_rng(seed).permutation(len(points))
    return [dict(zip(names, points[i])) for i in order]


def grid_algo(space, seed):
    """A hyperopt ``algo`` proposing the grid points of :func:`grid_order` one after another."""
    order = grid_order(space, seed)

    def algo(new_ids, domain, trials, _seed):
        from hyperopt.base import miscs_update_idxs_vals

        docs = []
        start = len(trials.trials)
        for i, new_id in enumerate(new_ids):
            if start + i >= len(order):
                break  # grid exhausted: hyperopt stops on an empty proposal
            point = order[start + i]
            misc = {"tid": new_id, "cmd": domain.cmd, "workdir": domain.workdir}
            miscs_update_idxs_vals([misc], {n: [new_id] for n in point}, {n: [v] for n, v in point.items()})
            docs.extend(trials.new_trial_docs([new_id], [None], [domain.new_result()], [misc]))
        return docs

    return algo
