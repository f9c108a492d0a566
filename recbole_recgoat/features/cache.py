"""Response cache: one record per user, keyed by a hash of (prompt, backend, model, sampling).

Two formats, same records (``key``, ``user``, ``status`` ok/failed, ``answer``, ``content``,
``reason``, ``attempts``, ``backend``, ``model``, ``time``):

* **jsonl** (default): append-only, one json object per line, flushed and fsync'ed per record.
  A run killed mid-write leaves at most a truncated last line, which the next run drops (and
  cuts off the file) before appending.  A later record for the same key replaces an earlier one.
* **sqlite** (``.sqlite``/``.sqlite3``/``.db``): one row per key, committed per record.

Records are written by one thread (the pipeline's main loop).
"""

import hashlib
import json
import os
import sqlite3

from recbole_recgoat.errors import InputError

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def cache_key(prompt, identity):
    """sha256 of the prompt and what else decides the answer (backend, model, sampling params)."""
    blob = json.dumps({"prompt": prompt, **identity}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def open_cache(path, default_name):
    """A cache at ``path``: a ``.sqlite``/``.db`` file, a folder (``<folder>/<default_name>``) or a jsonl file."""
    if os.path.isdir(path) or path.endswith(os.sep) or path.endswith("/"):
        path = os.path.join(path, default_name)
    if path.lower().endswith(SQLITE_SUFFIXES):
        return SqliteCache(path)
    return JsonlCache(path)


class JsonlCache:
    def __init__(self, path):
        self.path = path
        self.created = not os.path.exists(path)  # this run made the file (an empty one can go again)
        self.records = {}
        self.dropped_tail = 0
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.exists(path):
            self._load()
        self._file = open(path, "ab")

    def _load(self):
        with open(self.path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1  # bytes after the last newline: a write cut short by a kill
        if end < len(data):
            self.dropped_tail = len(data) - end
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        for lineno, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["key"]
            except (ValueError, KeyError, TypeError):
                raise InputError(
                    f"{self.path}:{lineno}: not a cache record; expected one json object with a 'key' per line "
                    "(a cache written by python -m recbole_recgoat.features)"
                ) from None
            self.records[key] = rec

    def get(self, key):
        return self.records.get(key)

    def put(self, record):
        line = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records[record["key"]] = record

    def __len__(self):
        return len(self.records)

    def close(self):
        self._file.close()


class SqliteCache:
    def __init__(self, path):
        self.path = path
        self.created = not os.path.exists(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.dropped_tail = 0
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, user TEXT, record TEXT NOT NULL)")
            rows = self._db.execute("SELECT key, record FROM responses").fetchall()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path}: not a usable sqlite cache ({exc}); expected a cache written by this command") from None
        self.records = {k: json.loads(r) for k, r in rows}

    def get(self, key):
        return self.records.get(key)

    def put(self, record):
        blob = json.dumps(record, ensure_ascii=False, sort_keys=True)
        self._db.execute("INSERT OR REPLACE INTO responses (key, user, record) VALUES (?, ?, ?)", (record["key"], record["user"], blob))
        self.records[record["key"]] = record

    def __len__(self):
        return len(self.records)

    def close(self):
        self._db.close()
