"""Texts produced elsewhere (an LLM run on a cluster, a hosted batch job, a curated file), imported.

``user-profiles --backend import --answers FILE`` and ``item-text --texts FILE`` read one text per
id from a ``.csv`` / ``.tsv`` file (header row; any quoting csv allows, multi-line fields
included) or a ``.jsonl`` file (one json object per line), with the id and text column names as
options.  Nothing in the file is dropped silently: an id of the dataset with no row, with
several rows (duplicate id) or with an empty text has no usable text and is a failure of the
failure report; an id of the file that is not an id of the dataset is counted and listed as
unknown.  Either stops the command with exit status 3 and nothing written (``--allow-failures``
writes, with the fallback text for the failures, and lists both in ``<out>.meta.json``).
"""

import csv
import json
import os
from dataclasses import dataclass

from recbole_recgoat.errors import InputError
from recbole_recgoat.features.prompt import extract_answer
from recbole_recgoat.utils.io import file_sha256

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


def _cell(value, path, where, column):
    if value is None:
        return ""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{path}: {where}: field {column!r} is {type(value).__name__}; expected text (or an integer id)")


@dataclass
class TextFile:
    """``rows[id] = [(row number, text), ...]`` of one imported file (row numbers count data rows from 1)."""

    path: str
    option: str
    id_column: str
    text_column: str
    fmt: str
    sha256: str
    rows: dict
    n_rows: int

    @classmethod
    def load(cls, path, id_column, text_column, option="--answers"):
        ext = os.path.splitext(str(path))[1].lower()
        if ext not in FORMATS:
            raise InputError(f"{option}={path}: unknown format {ext or '(no extension)'!r}; expected a .csv, .tsv or .jsonl file")
        if not os.path.isfile(path):
            raise InputError(f"{option}={path}: no such file; expected a {ext} file with columns {id_column}, {text_column}")
        fmt = FORMATS[ext]
        records = []
        try:
            with open(path, encoding="utf-8", newline="") as f:
                if fmt == "jsonl":
                    n = 0
                    for lineno, line in enumerate(f, start=1):
                        if not line.strip():
                            continue
                        try:
                            obj = json.loads(line)
                        except ValueError:
                            raise InputError(f"{path}: line {lineno}: not json; expected one json object per line") from None
                        if not isinstance(obj, dict):
                            raise InputError(f"{path}: line {lineno}: {type(obj).__name__}; expected one json object per line")
                        for col in (id_column, text_column):
                            if col not in obj:
                                raise InputError(f"{path}: line {lineno}: no field {col!r} (fields: {', '.join(map(str, obj))}); "
                                                 f"expected {id_column!r} and {text_column!r} (--id-column, --text-column)")
                        n += 1
                        where = f"line {lineno}"
                        records.append((n, _cell(obj[id_column], path, where, id_column), _cell(obj[text_column], path, where, text_column)))
                else:
                    reader = csv.DictReader(f, delimiter="," if fmt == "csv" else "\t")
                    header = reader.fieldnames or []
                    for col in (id_column, text_column):
                        if col not in header:
                            raise InputError(f"{path}: no column {col!r} in the header ({', '.join(header) or 'empty file'}); "
                                             f"expected {id_column!r} and {text_column!r} (--id-column, --text-column)")
                    for n, row in enumerate(reader, start=1):
                        if None in row:
                            raise InputError(f"{path}: row {n} (line {reader.line_num}): more fields than the header; "
                                             "expected one value per header column")
                        records.append((n, row[id_column] or "", row[text_column] or ""))
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a UTF-8 {ext} file") from None
        except csv.Error as exc:
            raise InputError(f"{path}: not a readable {fmt} file ({exc}); expected a header row and one record per row") from None
        rows = {}
        for n, ident, text in records:
            ident = ident.strip()
            if not ident:
                raise InputError(f"{path}: row {n}: empty {id_column!r}; expected an id on every row")
            rows.setdefault(ident, []).append((n, text))
        return cls(str(path), option, id_column, text_column, fmt, file_sha256(path), rows, len(records))

    def describe(self):
        return f"{self.path} (columns {self.id_column}, {self.text_column}; {self.n_rows} rows; sha256 {self.sha256[:12]})"

    def lookup(self, ident, extract=False):
        """``(text, None)`` for the id's one usable text, else ``(None, reason)``."""
        found = self.rows.get(str(ident), [])
        if not found:
            return None, f"no row in {os.path.basename(self.path)}"
        if len(found) > 1:
            return None, "duplicate id (rows " + ", ".join(str(n) for n, _ in found[:5]) + (", ..." if len(found) > 5 else "") + ")"
        n, text = found[0]
        if extract:
            answer, why = extract_answer(text)
            if answer is None:
                return None, f"{why} (row {n})"
            text = answer
        if not text.strip():
            return None, f"empty text (row {n})"
        return text.strip(), None

    def unknown(self, ids):
        """Ids of the file that are not in ``ids``, in file order."""
        known = set(str(i) for i in ids)
        return [i for i in self.rows if i not in known]


def format_unknown(unknown, limit=20):
    return ", ".join(unknown[:limit]) + (", ..." if len(unknown) > limit else "")


class ImportedAnswersBackend:
    """Answers produced elsewhere, read from a file: one text per user id (see the module docstring).

    The text is the answer that is embedded (``extract=True``: the last ``<answer>`` block of it,
    for raw LLM responses).  It goes through the pipeline's cache, checks and output like any
    backend's answer; the identity (and so the cache key) includes the file's sha256.
    """

    name = "import"
    sequential = True
    fix_hint = "fix the file and rerun"

    def __init__(self, texts, extract=False):
        self.texts = texts
        self.extract = extract

    def identity(self):
        return {"backend": "import", "model": f"{os.path.basename(self.texts.path)} sha256:{self.texts.sha256}",
                "params": {"id_column": self.texts.id_column, "text_column": self.texts.text_column,
                           "extract_answer": self.extract}}

    def describe(self):
        return f"answers imported from {self.texts.describe()}"

    def unknown(self, users):
        return self.texts.unknown(users)

    def ask(self, request):
        from recbole_recgoat.features.backends import Outcome

        text, reason = self.texts.lookup(request.user, self.extract)
        if text is None:
            return Outcome(False, reason=reason, attempts=1)
        return Outcome(True, answer=text, content=text, attempts=1)
