"""One cell, run in whatever process the backend chose: ``quick_start.run`` plus two recorders.

The cell runs through :func:`recbole_recgoat.quick_start.run`, the function ``run_recbole.py``
calls, with the same config layering.  While it runs, :class:`Capture` watches RecBole's own
evaluation machinery (it changes nothing it watches):

* ``quick_start.data_preparation`` -> the dataset and its three dataloaders (dataset statistics,
  the user-token map);
* ``Collector.eval_batch_collect`` -> the internal user id of every row RecBole evaluates;
* ``Evaluator.evaluate`` -> the ``DataStruct`` of the last evaluation, which is the test evaluation
  of the best checkpoint.

From that ``DataStruct`` the per-user values come from RecBole's own metric classes
(``used_info`` then ``metric_info``: the very arrays RecBole averages), so their mean equals the
reported test metric; that is checked, and the per-user values are dropped with a warning if not.
"""

import inspect
import os
import socket
import time
import traceback
import warnings

import numpy as np

from recbole_recgoat.lifetime import die_with_parent


class Capture:
    """Context manager recording dataset statistics and the last evaluation of a run."""

    def __enter__(self):
        import recbole_recgoat.quick_start as qs
        from recbole.evaluator.collector import Collector
        from recbole.evaluator.evaluator import Evaluator

        self._qs, self._collector, self._evaluator = qs, Collector, Evaluator
        self._orig = (qs.data_preparation, Collector.eval_batch_collect, Evaluator.evaluate)
        self.dataset = self.loaders = None
        self.last_struct = self.last_uids = self.last_config = None
        self._uids = []
        cap = self
        orig_prep, orig_collect, orig_eval = self._orig

        def data_preparation(config, dataset):
            out = orig_prep(config, dataset)
            cap.dataset, cap.loaders = dataset, out
            return out

        def eval_batch_collect(collector, scores_tensor, interaction, positive_u, positive_i):
            if cap._uids is not None:
                try:
                    cap._uids.append(interaction[collector.config["USER_ID_FIELD"]].detach().cpu().numpy())
                except (KeyError, AttributeError, TypeError):
                    cap._uids = None  # not a full-sort user batch: no per-user pairing possible
            return orig_collect(collector, scores_tensor, interaction, positive_u, positive_i)

        def evaluate(evaluator, dataobject):
            cap.last_struct, cap.last_config = dataobject, evaluator.config
            cap.last_uids = np.concatenate(cap._uids) if cap._uids else None
            cap._uids = []
            return orig_eval(evaluator, dataobject)

        qs.data_preparation = data_preparation
        Collector.eval_batch_collect = eval_batch_collect
        Evaluator.evaluate = evaluate
        return self

    def __exit__(self, *exc):
        self._qs.data_preparation, self._collector.eval_batch_collect, self._evaluator.evaluate = self._orig
        return False

    # -- results -----------------------------------------------------------------------------
    def dataset_stats(self):
        if self.dataset is None or self.loaders is None:
            return None
        ds = self.dataset
        train, valid, test = (getattr(l, "_dataset", None) for l in self.loaders)
        users, items = int(ds.user_num) - 1, int(ds.item_num) - 1  # RecBole counts [PAD]
        stats = {
            "users": users,
            "items": items,
            "interactions": int(ds.inter_num),
            "train_interactions": int(train.inter_num) if train is not None else None,
            "valid_interactions": int(valid.inter_num) if valid is not None else None,
            "test_interactions": int(test.inter_num) if test is not None else None,
            "test_users": int(len(getattr(self.loaders[2], "uid_list", []))),
        }
        stats["sparsity"] = 1.0 - stats["interactions"] / float(max(users * items, 1))
        return stats

    def per_user(self, test_result):
        """``{'user': tokens, 'recall@20': values, ...}`` of the last evaluation, or None."""
        if self.last_struct is None or self.last_uids is None:
            return None
        from recbole.evaluator.base_metric import TopkMetric
        from recbole.evaluator.register import metrics_dict

        config = self.last_config
        out = {}
        for name in config["metrics"]:
            cls = metrics_dict.get(name.lower())
            if cls is None or not issubclass(cls, TopkMetric):
                continue
            metric = cls(config)
            pos_index, pos_len = metric.used_info(self.last_struct)
            n_args = len(inspect.signature(metric.metric_info).parameters)
            values = metric.metric_info(pos_index, pos_len) if n_args >= 2 else metric.metric_info(pos_index)
            for k in metric.topk:
                out[f"{name.lower()}@{k}"] = np.asarray(values[:, k - 1], dtype=np.float64)
        if not out:
            return None
        uids = self.last_uids
        if any(len(v) != len(uids) for v in out.values()):
            warnings.warn("per-user metrics: row count differs from the user count; not stored")
            return None
        places = int(config["metric_decimal_place"] or 4)
        for name, values in out.items():
            if name in test_result and round(float(values.mean()), places) != round(float(test_result[name]), places):
                warnings.warn(f"per-user {name}: mean {values.mean():.6f} != test {test_result[name]}; not stored")
                return None
        uid_field = self.dataset.uid_field if self.dataset is not None else None
        try:
            tokens = np.asarray(self.dataset.field2id_token[uid_field])[uids].astype(str)
        except (AttributeError, KeyError, IndexError, TypeError):
            tokens = uids.astype(str)
        out["user"] = tokens
        return out


def run_cell(cell, store_root=None, threads=None):
    """Run one cell (a :class:`~recbole_recgoat.benchmark.spec.Cell` or its dict).

    Returns ``{'key', 'record', 'per_user', 'error'}``: the record is json-able; ``error`` is a
    traceback string when the cell raised (then ``record`` is None).
    """
    import torch

    import recbole_recgoat  # noqa: F401  (compat shims before recbole)
    from recbole_recgoat import quick_start
    from recbole_recgoat.benchmark.spec import Cell
    from recbole_recgoat.benchmark.store import Store

    if isinstance(cell, dict):
        cell = Cell.from_dict(cell)
    store = Store(store_root) if store_root else None
    if threads:
        torch.set_num_threads(int(threads))
    if store is not None:
        try:
            store.log_event("start", cell.key, entry=cell.entry, seed=cell.seed)
        except OSError:  # a remote worker without the store's folder
            pass
    checkpoint_dir = store.checkpoint_dir(cell.key) if store is not None else os.path.join("saved", cell.key)
    started = time.time()
    try:
        with Capture() as cap:
            result = quick_start.run(**cell.run_kwargs(checkpoint_dir))
        per_user = cap.per_user(result["test_result"])
        stats = cap.dataset_stats()
    except Exception:  # noqa: BLE001 - a failed cell is reported, the benchmark goes on
        return {"key": cell.key, "record": None, "per_user": None, "error": traceback.format_exc()}
    finished = time.time()
    record = dict(result)
    record.update({
        "key": cell.key,
        "setting": cell.setting,
        "variant": cell.entry,
        "cell": cell.as_dict(),
        "tuning": cell.tuning,
        "dataset_stats": stats,
        "valid_curve": [[int(e), float(s)] for e, s in result.get("valid_curve") or []],
        "per_user_metrics": sorted(k for k in (per_user or {}) if k != "user"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(finished)),
        "wall_time_s": finished - started,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
    })
    return {"key": cell.key, "record": record, "per_user": per_user, "error": None}


def init_worker(threads, parent_pid, gpu_queue=None):
    """Process-pool initializer: die with the parent, pin threads (and a GPU when given)."""
    die_with_parent(parent_pid)
    if gpu_queue is not None:
        try:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get(timeout=5))
        except Exception:  # noqa: BLE001  pragma: no cover
            pass
    import torch

    torch.set_num_threads(max(1, int(threads)))
