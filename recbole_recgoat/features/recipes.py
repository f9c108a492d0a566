"""Item text recipes: how a dataset's item metadata becomes one text per item.

A recipe lives in the dataset yaml (``dataset_configs/<dataset>.yaml``) under ``item_text``::

    item_text:
      file: lastfm-2k.item          # atomic file (TSV, header name:type), in the dataset folder
      id_field: item_id             # column holding the ORIGINAL item id (row key of the .npy)
      template: "{tags}"            # text to embed; {column} placeholders, {{ }} for braces
      replace: {",": ", "}          # applied, in order, to the rendered text
      field_replace:                # applied, in order, to one column's value before rendering
        tags: {}
      missing: ""                   # value of an empty column
      prompt_template: "{name}. Tags: {tags}"   # item text in the LLM prompt (default: template)
      summary:                      # what the offline MetadataSummaryBackend counts
        title: name                 # column naming an item (optional)
        attributes: {tags: ","}     # multi-valued columns -> separator (null: one value per item)
        top_k: 10

The standard Amazon recipe ("title + brand + category path + description", MMRec) is
``template: "{title} {brand} {categories} {description}"`` over an ``.item`` file with those
columns, ``categories`` holding the category path as text.
"""

import csv
import os
import string
from dataclasses import dataclass, field

from recbole_recgoat.errors import InputError

RECIPE_KEYS = ("file", "id_field", "template", "prompt_template", "replace", "field_replace", "missing", "summary")
SUMMARY_KEYS = ("title", "attributes", "top_k")


def _placeholders(template, where):
    """Column names used by ``template``; only plain ``{name}`` placeholders are allowed."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"{where}: template {template!r} is not valid ({exc}); expected text with {{column}} placeholders") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name or not name.replace("_", "a").replace("-", "a").isalnum() or spec or conv:
            raise InputError(
                f"{where}: placeholder {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} in {template!r}; "
                "expected plain {column} placeholders"
            )
        names.append(name)
    return names


def _pairs(value, where):
    """A ``{old: new}`` mapping (yaml keeps the order) -> list of pairs."""
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputError(f"{where}: got {value!r}; expected a mapping of text to replacement text")
    return [(k, v) for k, v in value.items() if k]


def _apply(text, pairs):
    for old, new in pairs:
        text = text.replace(old, new)
    return text


@dataclass
class TextRecipe:
    """How to turn one row of an item file into the text to embed (and the text for the prompt)."""

    file: str
    id_field: str
    template: str
    prompt_template: str
    replace: list = field(default_factory=list)
    field_replace: dict = field(default_factory=dict)
    missing: str = ""
    summary_title: str = None
    summary_attributes: dict = field(default_factory=dict)
    summary_top_k: int = 10
    where: str = "item_text"

    @classmethod
    def from_config(cls, value, where):
        """Parse the ``item_text`` mapping of a dataset config; ``where`` names it in messages."""
        if value is None:
            raise InputError(
                f"{where}: not set; expected an item_text recipe (item_text: {{file: <ds>.item, id_field: item_id, "
                "template: '{title} ...'}}) in the dataset yaml"
            )
        if not isinstance(value, dict):
            raise InputError(f"{where}: got {value!r}; expected a mapping with file, id_field, template")
        unknown = sorted(set(value) - set(RECIPE_KEYS))
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(RECIPE_KEYS)}")
        for key in ("file", "id_field", "template"):
            if not isinstance(value.get(key), str) or not value.get(key):
                raise InputError(f"{where}.{key}: got {value.get(key)!r}; expected a non-empty string")
        template = value["template"]
        prompt_template = value.get("prompt_template") or template
        if not isinstance(prompt_template, str):
            raise InputError(f"{where}.prompt_template: got {prompt_template!r}; expected a string")
        _placeholders(template, f"{where}.template")
        _placeholders(prompt_template, f"{where}.prompt_template")
        field_replace = value.get("field_replace") or {}
        if not isinstance(field_replace, dict):
            raise InputError(f"{where}.field_replace: got {field_replace!r}; expected a mapping column -> {{old: new}}")
        field_replace = {k: _pairs(v, f"{where}.field_replace.{k}") for k, v in field_replace.items()}
        missing = value.get("missing", "")
        if missing is None:
            missing = ""
        if not isinstance(missing, str):
            raise InputError(f"{where}.missing: got {missing!r}; expected a string")
        summary = value.get("summary") or {}
        if not isinstance(summary, dict) or set(summary) - set(SUMMARY_KEYS):
            raise InputError(f"{where}.summary: got {summary!r}; expected a mapping with {', '.join(SUMMARY_KEYS)}")
        attributes = summary.get("attributes") or {}
        if isinstance(attributes, list):
            attributes = {name: None for name in attributes}
        if not isinstance(attributes, dict) or not all(v is None or (isinstance(v, str) and v) for v in attributes.values()):
            raise InputError(f"{where}.summary.attributes: got {attributes!r}; expected a mapping column -> separator (or null)")
        top_k = summary.get("top_k", 10)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"{where}.summary.top_k: got {top_k!r}; expected a positive integer")
        title = summary.get("title")
        if title is not None and not isinstance(title, str):
            raise InputError(f"{where}.summary.title: got {title!r}; expected a column name")
        return cls(
            file=value["file"],
            id_field=value["id_field"],
            template=template,
            prompt_template=prompt_template,
            replace=_pairs(value.get("replace"), f"{where}.replace"),
            field_replace=field_replace,
            missing=missing,
            summary_title=title,
            summary_attributes=dict(attributes),
            summary_top_k=top_k,
            where=where,
        )

    def columns(self):
        """Every column the recipe reads."""
        names = [self.id_field]
        names += _placeholders(self.template, self.where) + _placeholders(self.prompt_template, self.where)
        names += list(self.field_replace) + list(self.summary_attributes)
        if self.summary_title:
            names.append(self.summary_title)
        return list(dict.fromkeys(names))

    def summary_params(self):
        """The offline summary's settings, for the cache key."""
        return {"title": self.summary_title, "attributes": self.summary_attributes, "top_k": self.summary_top_k}

    def _value(self, row, name):
        value = row.get(name, "")
        if value == "":
            value = self.missing
        return _apply(value, self.field_replace.get(name, []))

    def render(self, row, template=None):
        """The text of one item row (a ``{column: raw value}`` dict)."""
        template = self.template if template is None else template
        values = {name: self._value(row, name) for name in _placeholders(template, self.where)}
        return _apply(template.format_map(values), self.replace)

    def load(self, data_dir):
        """Read the item file; returns an :class:`ItemTable`."""
        path = self.file if os.path.isabs(self.file) else os.path.join(data_dir, self.file)
        return ItemTable.read(path, self)


class ItemTable:
    """The rows of an item file, keyed by original item id (file order kept)."""

    def __init__(self, path, recipe, ids, rows):
        self.path = path
        self.recipe = recipe
        self.ids = ids
        self.rows = rows

    @classmethod
    def read(cls, path, recipe):
        if not os.path.isfile(path):
            raise InputError(
                f"{path}: file not found; expected the item file that {recipe.where}.file names "
                "(an atomic TSV with a name:type header)"
            )
        with open(path, "r", encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            try:
                header = next(reader)
            except StopIteration:
                raise InputError(f"{path}: empty file; expected a header line of name:type columns") from None
            names = [h.split(":", 1)[0].strip() for h in header]
            missing = [c for c in recipe.columns() if c not in names]
            if missing:
                raise InputError(
                    f"{path}: no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(names)}); "
                    f"expected the columns that {recipe.where} uses"
                )
            id_col = names.index(recipe.id_field)
            ids, rows = [], {}
            for lineno, cells in enumerate(reader, start=2):
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                if len(cells) != len(names):
                    raise InputError(f"{path}:{lineno}: {len(cells)} tab-separated fields; expected {len(names)} ({', '.join(names)})")
                iid = cells[id_col].strip()
                if not iid:
                    raise InputError(f"{path}:{lineno}: empty {recipe.id_field}; expected an item id")
                if iid in rows:
                    raise InputError(f"{path}:{lineno}: {recipe.id_field} {iid} appears twice; expected one row per item")
                ids.append(iid)
                rows[iid] = dict(zip(names, cells))
        if not ids:
            raise InputError(f"{path}: no item rows; expected one row per item after the header")
        return cls(path, recipe, ids, rows)

    def __len__(self):
        return len(self.ids)

    def __contains__(self, iid):
        return iid in self.rows

    def text(self, iid):
        """The text to embed for item ``iid``."""
        return self.recipe.render(self.rows[iid])

    def prompt_text(self, iid):
        """The item's description in the LLM prompt; empty when the item is not in the file."""
        row = self.rows.get(iid)
        return self.recipe.render(row, self.recipe.prompt_template) if row is not None else ""

    def attribute_values(self, iid):
        """``{column: [values]}`` of the summary attributes of item ``iid`` (distinct, file order)."""
        row = self.rows.get(iid, {})
        out = {}
        for name, sep in self.recipe.summary_attributes.items():
            raw = row.get(name, "")
            parts = raw.split(sep) if sep else [raw]
            out[name] = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
        return out

    def title(self, iid):
        if not self.recipe.summary_title:
            return None
        return self.rows.get(iid, {}).get(self.recipe.summary_title, "").strip() or None
