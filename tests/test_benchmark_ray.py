"""The opt-in Ray backend writes to the same store (skipped where ray does not import)."""

import pytest

from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.benchmark.runner import import_ray
from recbole_recgoat.benchmark.store import Store
from recbole_recgoat.errors import InputError

ARGS = ["run", "--models", "Pop", "--seeds", "2", "--store", "store", "--set", "state=WARNING",
        "--set", "train_batch_size=4096"]


def _ray_or_skip():
    try:
        return import_ray()
    except InputError as exc:
        pytest.skip(str(exc))


def test_ray_backend_same_store():
    _ray_or_skip()
    assert main([*ARGS, "--backend", "ray", "--jobs", "1", "--threads", "1"]) == 0
    store = Store("store")
    recs = store.records()
    assert sorted(r["seed"] for r in recs) == [999, 1000]
    assert all(r["per_user_file"] for r in recs)
    events = [e for e, _, _ in store.run_events()]
    assert events.count("submit") == 2
    # The local backend sees the Ray records as finished: nothing runs again.
    before = store.records_path.read_bytes()
    assert main([*ARGS, "--jobs", "1"]) == 0
    assert store.records_path.read_bytes() == before


def test_ray_missing_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError) as exc:
        import_ray()
    assert "\n" not in str(exc.value) and "--backend local" in str(exc.value)
    assert main([*ARGS, "--backend", "ray", "--jobs", "1"]) == 2
