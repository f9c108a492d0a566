"""The results store: one directory, append-only, safe to kill at any instant.

Layout (``<store>/``)::

    records.jsonl            one line per finished cell (the only source of the leaderboard)
    per_user/<key>.npz       per-user test metrics of that cell (user tokens + one array per metric)
    checkpoints/<key>/       the cell's own RecBole checkpoint_dir (a rerun of the cell first removes
                             what a killed attempt left there)
    tuned/<model>-<dataset>.yaml     chosen hyper-parameters (``tune``), read by ``run --use-tuned``
    tuning/<model>-<dataset>-<tune_key>.jsonl   every tuning trial (validation results only)
    runs.log                 one ``start <key> <pid> <time>`` line per cell attempt (audit)
    failures.jsonl           cells that raised (not records: a rerun tries them again)

Durability of ``records.jsonl``: a record is one line, written with a single ``os.write`` on an
``O_APPEND`` descriptor under an exclusive ``flock`` and followed by ``fsync``.  Each line carries
a SHA-256 of its own content.  A writer killed in the middle of ``write`` can leave at most one
torn line without its newline; the next writer sees that the file does not end in ``\\n`` and starts
its record on a fresh line, so a torn line never swallows a complete record.  The reader drops
lines that do not parse or whose checksum does not match, and keeps the first record of each key
(a second one is counted as a duplicate and ignored), so a store holds at most one record per cell.
The per-user file is written (temp file + ``os.replace``) before the record, so a record never
points to a missing file.
"""

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.io import atomic_write, json_sha256

RECORDS = "records.jsonl"
SCHEMA = 1


def append_line(path, obj):
    """Append ``obj`` as one checksummed JSON line to ``path`` (see the module docstring).

    Returns the line written (bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = dict(obj)
    body.pop("checksum", None)
    body["checksum"] = json_sha256(body)
    line = (json.dumps(body, sort_keys=True, default=str) + "\n").encode("utf-8")
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            prefix = b""
            if size > 0:
                with open(path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":  # a torn line from a killed writer: start afresh
                        prefix = b"\n"
            data = prefix + line
            written = os.write(fd, data)
            if written != len(data):  # pragma: no cover - only a full disk or a signal gets here
                raise OSError(f"{path}: short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return line


def read_lines(path):
    """``(records, stats)``: the valid checksummed JSON objects of ``path`` in file order.

    ``stats`` counts ``torn`` (unparseable or checksum mismatch) lines.
    """
    path = Path(path)
    stats = {"torn": 0}
    if not path.exists():
        return [], stats
    out = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                stats["torn"] += 1
                continue
            if not isinstance(obj, dict) or "checksum" not in obj:
                stats["torn"] += 1
                continue
            body = dict(obj)
            want = body.pop("checksum")
            if json_sha256(body) != want:
                stats["torn"] += 1
                continue
            out.append(body)
    return out, stats


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Store:
    """A results store directory (see the module docstring)."""

    def __init__(self, root):
        self.root = Path(root).resolve()

    # -- paths -------------------------------------------------------------------------------
    @property
    def records_path(self):
        return self.root / RECORDS

    def per_user_path(self, key):
        return self.root / "per_user" / f"{key}.npz"

    def checkpoint_dir(self, key):
        return self.root / "checkpoints" / key

    def clean_checkpoints(self, key):
        """Remove the ``.pth`` files a killed attempt of cell ``key`` left in its checkpoint folder
        (called when the cell is run again); a file whose writer (the pid in its name, see
        :class:`recbole_recgoat.trainer.PluginTrainerMixin`) still runs on this host is kept.
        Returns the names removed."""
        folder = self.checkpoint_dir(key)
        if not folder.is_dir():
            return []
        removed = []
        for path in sorted(folder.glob("*.pth")):
            parts = path.stem.split("-")
            pid = int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else None
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue
            path.unlink()
            removed.append(path.name)
        return removed

    def tuned_path(self, model, dataset):
        return self.root / "tuned" / f"{model}-{dataset}.yaml"

    def trials_path(self, model, dataset, tune_key):
        return self.root / "tuning" / f"{model}-{dataset}-{tune_key}.jsonl"

    def trial_files(self, model, dataset):
        """``[(path, tune_key)]`` of every search of ``model`` on exactly ``dataset`` (not a dataset
        whose name starts alike, ``ml-100k`` vs ``ml-100k-llm``), in name order."""
        import re

        folder = self.root / "tuning"
        pattern = re.compile(rf"^{re.escape(model)}-{re.escape(dataset)}-([0-9a-f]{{16}})\.jsonl$")
        if not folder.is_dir():
            return []
        return [(p, m.group(1)) for p in sorted(folder.iterdir()) for m in [pattern.match(p.name)] if m]

    @property
    def runs_log(self):
        return self.root / "runs.log"

    # -- records -----------------------------------------------------------------------------
    def records(self, with_stats=False):
        """Records in file order, one per key (the first), torn lines dropped."""
        lines, stats = read_lines(self.records_path)
        seen, out = set(), []
        stats["duplicates"] = 0
        for rec in lines:
            key = rec.get("key")
            if key is None:
                stats["torn"] += 1
                continue
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            out.append(rec)
        return (out, stats) if with_stats else out

    def finished_keys(self):
        return {r["key"] for r in self.records()}

    def append_record(self, record, per_user=None):
        """Write ``per_user`` (if any) and then the record; skip if the key is already stored.

        Returns True if the record was written.
        """
        import numpy as np

        key = record["key"]
        if key in self.finished_keys():
            return False
        record = dict(record)
        record.setdefault("schema", SCHEMA)
        if per_user:
            path = self.per_user_path(key)
            import io

            buf = io.BytesIO()
            np.savez_compressed(buf, **{k: np.asarray(v) for k, v in per_user.items()})
            atomic_write(path, buf.getvalue())
            record["per_user_file"] = os.path.relpath(path, self.root)
        else:
            record["per_user_file"] = None
        with self._lock():
            if key in self.finished_keys():  # another writer got there first
                return False
            append_line(self.records_path, record)
        return True

    def load_per_user(self, record):
        """``{'user': tokens, '<metric>@k': values}`` of a record, or None."""
        import numpy as np

        rel = record.get("per_user_file")
        if not rel:
            return None
        path = self.root / rel
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @contextmanager
    def writer(self, command="benchmark"):
        """Hold the store's one-writer lock (``<store>/.writer``: an flock, with the holder's pid
        and command in the file) while the block runs; a second writer gets a one-line
        :class:`InputError` naming the running process instead of training the same cells again.
        The lock goes with the process (a killed writer leaves no stale lock)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".writer"
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
                raise InputError(f"--store {self.root}: in use by {holder}; expected one writer per store: wait for it "
                                 "to finish (then rerun to resume), or use another --store") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command}, since "
                          f"{time.strftime('%Y-%m-%dT%H:%M:%S')})\n".encode("utf-8"), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def _lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.root / ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- logs --------------------------------------------------------------------------------
    def log_event(self, event, key, **extra):
        """Append ``<event> <key> pid=<pid> host=<host> time=<iso> ...`` to ``runs.log``."""
        self.root.mkdir(parents=True, exist_ok=True)
        parts = [event, key, f"pid={os.getpid()}", f"host={socket.gethostname()}",
                 f"time={time.strftime('%Y-%m-%dT%H:%M:%S')}"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        data = (" ".join(parts) + "\n").encode("utf-8")
        fd = os.open(str(self.runs_log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def run_events(self):
        """``[(event, key, {field: value})]`` from ``runs.log``."""
        if not self.runs_log.exists():
            return []
        out = []
        for line in self.runs_log.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            out.append((parts[0], parts[1], fields))
        return out

    def record_failure(self, key, info):
        append_line(self.root / "failures.jsonl", {"key": key, **info})
