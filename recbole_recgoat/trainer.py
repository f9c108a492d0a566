"""The plugin's trainer: RecBole's trainers, with the fixes and hooks the plugin's models need.

:class:`PluginTrainerMixin` is mixed into whatever trainer RecBole would pick for a model
(``Trainer``, ``NCLTrainer``, ``RecVAETrainer``, ...), see :func:`with_plugin_mixin`.  It adds

* ``model.pre_epoch_processing()`` before every training epoch when the model defines it
  (FREEDOM re-samples its pruned graph there);
* ``model.epoch_diagnostics()`` after every training epoch when the model defines it; the dict
  it returns is written to RecBole's log;
* checkpoints read with ``weights_only=False`` (torch >= 2.6 refuses RecBole's pickled Config);
* a checkpoint name unique per run (RecBole's has one-second resolution), shared by all ranks
  of a multi-process run;
* data-parallel training on CPU (gloo) as well as CUDA: RecBole 1.2.1 wraps the model for
  DistributedDataParallel with ``device_ids=[local_rank]``, valid on GPUs only;
* ``fused_optimizer: True``: Adam / AdamW with torch's fused kernel (the same update; on CPU
  about 10x faster on large dense tables such as the fine-tuned 4096-d image features of FREEDOM
  and BM3; rounding differs from the default kernel, so it is off in the protocol, with which
  the published leaderboard was run);
* bookkeeping for results: per-epoch train time, peak memory, the best epoch, the validation
  curve;
* per-user metrics of the last evaluation (:meth:`PluginTrainerMixin.per_user_metrics`): its
  collector (:class:`UserCollector`) also records which user each evaluated row is;
* :meth:`PluginTrainerMixin.train_epoch`, one training epoch as ``fit`` runs it (benchmarks);
* one line per epoch for the terminal (RecBole's per-epoch blocks still go to the log file):
  epoch / max, train loss, the valid metric, the best so far and its epoch, patience left, the
  epoch's time and the ETA (:func:`recbole_recgoat.utils.console.training_eta`); epochs count
  from 1 there (RecBole's log and the result record count from 0);
* ``show_progress: auto``: RecBole's progress bar (with its ETA) for an evaluation of a large
  catalogue, on a terminal (:data:`PROGRESS_MIN_SCORES` scores or more).
"""

import inspect
import os
import sys
import uuid
import warnings
from time import time

import numpy as np
import torch
from recbole.evaluator.collector import Collector
from recbole.utils import get_local_time, set_color
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.console import TERMINAL, duration, training_eta
from recbole_recgoat.utils.profiling import PeakMemory

PROGRESS_MIN_SCORES = 2 * 10**8  # show_progress: auto shows a bar for evaluations scoring this many (user, item) pairs


def read_checkpoint(path, map_location="cpu"):
    """A checkpoint written by the plugin's trainer (``weights_only=False``: RecBole pickles its
    Config), or a one-line :class:`InputError` naming ``path`` when it is missing, truncated, not a
    torch file or a torch file of something else."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such checkpoint file; expected a .pth written by a run (saved/ or checkpoint_dir)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated zip, garbage bytes, pickles of missing classes: one answer
        why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise InputError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}{': ' + why if why else ''}); "
                         "expected a complete .pth written by a run") from None
    missing = [k for k in ("config", "state_dict") if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing or not hasattr(checkpoint["config"], "final_config_dict"):
        raise InputError(f"{path}: a torch file without {', '.join(missing) or 'a RecBole config'}; expected a checkpoint "
                         "written by a run of this package (config, state_dict, epoch)")
    return checkpoint


class UserCollector(Collector):
    """RecBole's ``Collector`` that also records the user id of every evaluated row and keeps the
    last evaluation's ``DataStruct`` (``last_struct``) and users (``last_users [U]`` or None when
    the rows are not one user each)."""

    def __init__(self, config):
        super().__init__(config)
        self._users = []
        self.last_struct = self.last_users = None

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if self._users is not None:
            try:
                self._users.append(interaction[self.config["USER_ID_FIELD"]].detach().cpu().numpy())
            except (KeyError, AttributeError, TypeError):
                self._users = None  # not a full-sort user batch: no per-user pairing possible

    def get_data_struct(self):
        struct = super().get_data_struct()
        self.last_struct = struct
        self.last_users = np.concatenate(self._users) if self._users else None
        self._users = []
        return struct


class PluginTrainerMixin:
    """Mixin over a RecBole trainer class; see the module docstring."""

    def __init__(self, config, model):
        distributed = not config["single_spec"]
        # RecBole wraps the model in DDP with device_ids=[local_rank], which torch refuses for a
        # CPU model: build the trainer as single-process, then wrap the model ourselves.
        config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = not distributed
        name = f"{config['model']}-{config['dataset']}-{get_local_time()}-{os.getpid()}-{uuid.uuid4().hex[:6]}.pth"
        if distributed:
            device_ids = [config["local_rank"]] if self.device.type == "cuda" else None
            # buffers that are not saved (features, graphs) are built from the data on every rank
            # alike: DDP need not broadcast them (it cannot broadcast sparse ones)
            derived = sorted({n for n, _ in self.model.named_buffers()} - set(self.model.state_dict()))
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, derived)
            self.distributed_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
            shared = [name]
            torch.distributed.broadcast_object_list(shared, src=0)  # every rank reads rank 0's checkpoint
            name = shared[0]
        self.saved_model_file = os.path.join(self.checkpoint_dir, name)
        self.epoch_times = []
        self.peak_memory_bytes = 0
        self.best_epoch = None
        self.valid_curve = []  # [(epoch, valid_score, {metric: value})]
        self.diagnostics = []  # [(epoch, {name: value})]
        self._epoch = -1
        self._fit_progress = None  # while fit runs: what the per-epoch terminal line needs
        self.eval_collector = UserCollector(config)

    # -- training --------------------------------------------------------------------------
    def _build_optimizer(self, **kwargs):
        """RecBole's optimizer; Adam / AdamW fused when ``fused_optimizer`` and every parameter is
        a dense floating tensor (parameter groups and other optimizers: RecBole's construction)."""
        learner = str(kwargs.get("learner", self.learner)).lower()
        if not (self.config["fused_optimizer"] and learner in ("adam", "adamw")):
            return super()._build_optimizer(**kwargs)
        params = list(kwargs.pop("params", self.model.parameters()))
        fusable = params and all(
            isinstance(p, torch.Tensor) and p.is_floating_point() and p.layout == torch.strided and p.device.type in ("cpu", "cuda")
            for p in params
        )
        if not fusable:
            return super()._build_optimizer(params=params, **kwargs)
        cls = torch.optim.Adam if learner == "adam" else torch.optim.AdamW
        return cls(params, lr=kwargs.get("learning_rate", self.learning_rate), weight_decay=kwargs.get("weight_decay", self.weight_decay), fused=True)

    def train_epoch(self, train_data, epoch_idx, show_progress=False):
        """One training epoch as ``fit`` runs it (pre-epoch hook, timing, peak memory, diagnostics);
        returns the epoch's loss (a float, or a tuple for a model with several loss parts)."""
        return self._train_epoch(train_data, epoch_idx, show_progress=show_progress)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's ``fit``, with one line per epoch for the terminal when ``verbose``."""
        validates = bool(valid_data) and self.eval_step > 0
        self._fit_progress = {"start": time(), "validates": validates, "verbose": verbose, "epoch_start": time()}

        def after_validation(epoch_idx, valid_score):
            self._report_epoch(epoch_idx, valid_score)
            if callback_fn is not None:
                callback_fn(epoch_idx, valid_score)

        try:
            return super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                               callback_fn=after_validation)
        finally:
            self._fit_progress = None

    def _report_epoch(self, epoch_idx, valid_score):
        """The terminal's line for epoch ``epoch_idx`` (logged, so the log file has it too)."""
        progress = self._fit_progress
        if not progress or not progress["verbose"]:
            return
        now = time()
        per_epoch = (now - progress["start"]) / max(epoch_idx - self.start_epoch + 1, 1)
        loss, places = self.train_loss_dict.get(epoch_idx), int(self.config["metric_decimal_place"] or 4)
        width = len(str(self.epochs))
        parts = [f"epoch {epoch_idx + 1:>{width}}/{self.epochs}"]
        if loss is not None:
            parts.append(f"loss {loss:.{int(self.config['loss_decimal_place'] or 4)}f}")
        stopped = False
        if valid_score is not None:
            stopped = self.cur_step > self.stopping_step
            parts.append(f"valid {self.valid_metric} {valid_score:.{places}f}")
        if self.best_epoch is not None:
            parts.append(f"best {self.best_valid_score:.{places}f} @{self.best_epoch + 1}")
            parts.append(f"patience {max(self.stopping_step - self.cur_step, 0)}/{self.stopping_step}")
        parts.append(duration(now - progress["epoch_start"]))
        early = progress["validates"]
        parts.append(training_eta(epoch_idx, self.epochs, per_epoch, self.best_epoch if early else None,
                                  self.stopping_step if early else None, self.eval_step, stopped=stopped))
        if stopped:
            parts.append("(early stop)")
        self.logger.info("  ".join(parts), extra=TERMINAL)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._epoch = epoch_idx
        hook = getattr(self.model, "pre_epoch_processing", None)
        start = time()
        if self._fit_progress:
            self._fit_progress["epoch_start"] = start
        with PeakMemory(self.device) as mem:
            if callable(hook):
                hook()
            bar = show_progress != "auto" and bool(show_progress)  # auto: bars for large evaluations only
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=bar)
        self.epoch_times.append(time() - start)
        self.peak_memory_bytes = max(self.peak_memory_bytes, mem.peak_bytes)
        diag = getattr(self.model, "epoch_diagnostics", None)
        if callable(diag):
            values = diag()
            if values:
                self.diagnostics.append((epoch_idx, dict(values)))
                text = ", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in values.items())
                self.logger.info(set_color(f"epoch {epoch_idx} diagnostics", "green") + f" [{text}]")
        progress = self._fit_progress
        if progress and not (progress["validates"] and (epoch_idx + 1) % self.eval_step == 0):
            self.train_loss_dict[epoch_idx] = sum(loss) if isinstance(loss, tuple) else loss
            self._report_epoch(epoch_idx, None)  # no validation after this epoch: its line now
        return loss

    def _auto_progress(self, eval_data, show_progress):
        """``show_progress`` for an evaluation: as given, or with ``auto`` a bar when stderr is a
        terminal and the evaluation scores at least :data:`PROGRESS_MIN_SCORES` pairs."""
        if show_progress != "auto":
            return bool(show_progress)
        if not sys.stderr.isatty():
            return False
        uids = getattr(eval_data, "uid_list", None)
        users = 0 if uids is None else len(uids)
        return users * int(eval_data._dataset.item_num) >= PROGRESS_MIN_SCORES

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=self._auto_progress(valid_data, show_progress))
        better = score >= self.best_valid_score if self.valid_metric_bigger else score <= self.best_valid_score
        if better:  # RecBole's early_stopping keeps ties as the new best, so do we
            self.best_epoch = self._epoch
        self.valid_curve.append((self._epoch, float(score), dict(result)))
        return score, result

    # -- checkpoints -----------------------------------------------------------------------
    def _read_checkpoint(self, path):
        return read_checkpoint(path, map_location=self.device)

    def resume_checkpoint(self, resume_file):
        """Resume training from ``resume_file`` (model, optimizer, epoch and early-stopping state)."""
        checkpoint = self._read_checkpoint(str(resume_file))
        missing = [k for k in ("epoch", "cur_step", "best_valid_score", "optimizer") if k not in checkpoint]
        if missing:
            raise InputError(f"{resume_file}: no {', '.join(missing)}; expected a checkpoint a run wrote while training")
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            self.logger.warning(f"checkpoint {resume_file} was written by model {checkpoint['config']['model']}")
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def load_model_file(self, model_file=None):
        """Load model parameters from ``model_file`` (default: this run's best checkpoint)."""
        path = model_file or self.saved_model_file
        if self.config["single_spec"]:
            checkpoint = self._read_checkpoint(path)
        else:  # rank 0 wrote it; it reads it and sends it (no shared folder needed between machines)
            torch.distributed.barrier()
            shared = [self._read_checkpoint(path) if torch.distributed.get_rank() == 0 else None]
            torch.distributed.broadcast_object_list(shared, src=0)
            checkpoint = shared[0]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(f"Loading model structure and parameters from {path}")
        return checkpoint

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's checkpoint (config, epoch, step, best score, parameters, optimizer) plus
        ``model_class``, the class the parameters belong to: a re-score refuses a checkpoint whose
        stored config names another model (:func:`recbole_recgoat.quick_start.load_data_and_model`)."""
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        torch.save({
            "config": self.config, "epoch": epoch, "cur_step": self.cur_step, "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(), "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(), "model_class": type(self.model).__name__,
        }, path, pickle_protocol=4)
        if verbose:
            self.logger.info(f"Saving current: {path}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            self.load_model_file(model_file)
        return super().evaluate(eval_data, load_best_model=False, show_progress=self._auto_progress(eval_data, show_progress))

    def per_user_metrics(self, dataset, result):
        """``{'user': tokens [U], '<metric>@k': values [U], ...}`` of the last evaluation, from
        RecBole's own metric classes (``used_info`` then ``metric_info``: the arrays RecBole
        averages), or None when they cannot be paired with users or do not average to ``result``
        (the metrics that evaluation returned; a warning says why)."""
        from recbole.evaluator.base_metric import TopkMetric
        from recbole.evaluator.register import metrics_dict

        struct, users = self.eval_collector.last_struct, self.eval_collector.last_users
        if struct is None or users is None:
            return None
        out = {}
        for name in self.config["metrics"]:
            cls = metrics_dict.get(name.lower())
            if cls is None or not issubclass(cls, TopkMetric):
                continue
            metric = cls(self.config)
            pos_index, pos_len = metric.used_info(struct)
            n_args = len(inspect.signature(metric.metric_info).parameters)
            values = metric.metric_info(pos_index, pos_len) if n_args >= 2 else metric.metric_info(pos_index)
            for k in metric.topk:
                out[f"{name.lower()}@{k}"] = np.asarray(values[:, k - 1], dtype=np.float64)
        if not out:
            return None
        if any(len(v) != len(users) for v in out.values()):
            warnings.warn("per-user metrics: row count differs from the user count; not stored")
            return None
        places = int(self.config["metric_decimal_place"])
        for name, values in out.items():
            if name in result and not matches_rounded(float(values.mean()), float(result[name]), places):
                warnings.warn(f"per-user {name}: mean {values.mean():.6f} != {result[name]} (rounded to {places} places); not stored")
                return None
        out["user"] = np.asarray(dataset.field2id_token[dataset.uid_field])[users].astype(str)
        return out


def matches_rounded(mean, reported, places):
    """Whether ``reported`` (RecBole's metric, rounded to ``places`` decimals) can be the rounding of
    ``mean``: within half a unit of the last place plus float32 slack.  Never compare rounded with
    rounded: RecBole stores the float32 mean 0.07375 as 0.0738, while float64 ``round`` gives 0.0737."""
    return abs(mean - reported) <= 0.5 * 10.0 ** -int(places) + 1e-6


_MIXED = {}


def with_plugin_mixin(trainer_class):
    """``trainer_class`` combined with :class:`PluginTrainerMixin` (cached, same name)."""
    if issubclass(trainer_class, PluginTrainerMixin):
        return trainer_class
    if trainer_class not in _MIXED:
        _MIXED[trainer_class] = type(trainer_class.__name__, (PluginTrainerMixin, trainer_class), {"__module__": __name__})
    return _MIXED[trainer_class]


def get_trainer(model_class):
    """The trainer for ``model_class``: RecBole's trainer for it, with the plugin's fixes mixed in.

    A model may name its own trainer class in ``model_class.trainer_class``.  Otherwise RecBole's
    rule applies (``<Model>Trainer`` if RecBole has one, ``TraditionalTrainer`` for traditional
    models, else ``Trainer``); the result is combined with
    :class:`PluginTrainerMixin`.
    """
    own = getattr(model_class, "trainer_class", None)
    if own is not None:
        return own if issubclass(own, PluginTrainerMixin) else with_plugin_mixin(own)
    return with_plugin_mixin(recbole_get_trainer(model_class.type, model_class.__name__))
