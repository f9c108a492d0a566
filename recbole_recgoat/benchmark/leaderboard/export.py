"""Writing a leaderboard: ``<name>.md`` (the overview: average rank, one line per dataset),
``<name>-<dataset>.md`` (a dataset's results page) and ``<name>-<dataset>.tex`` (its tables in
LaTeX), ``<name>.csv``, ``<name>.json`` (everything, the full config of every row included) and
``<name>_figures/*.png``."""

import csv
import json
import os
from pathlib import Path

import numpy as np

from recbole_recgoat.benchmark.leaderboard.figures import make_figures
from recbole_recgoat.benchmark.leaderboard.latex import render_latex
from recbole_recgoat.benchmark.leaderboard.markdown import page_name, render_dataset, render_markdown


def write(board, out_dir, name="leaderboard", columns=None, title=None, focus=None, command=None, figures=True,
          note=None):
    """Write ``<name>.md``, ``<name>.csv``, ``<name>.json`` and ``<name>_figures/*.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / f"{name}_figures"
    if figures:
        board["figures"] = make_figures(board, fig_dir, columns)
        board["figures"] = {k: os.path.relpath(v, out_dir) for k, v in board["figures"].items()}
    else:
        board["figures"] = {}
    (out_dir / f"{name}.json").write_text(json.dumps(board, indent=1, default=_json_default) + "\n", encoding="utf-8")
    write_csv(board, out_dir / f"{name}.csv")
    md = render_markdown(board, columns=columns, title=title, focus=focus, command=command, note=note, name=name)
    (out_dir / f"{name}.md").write_text(md, encoding="utf-8")
    pages, tex = {}, {}
    for dname in board["datasets"]:
        stem = page_name(name, dname)
        pages[dname] = out_dir / f"{stem}.md"
        pages[dname].write_text(render_dataset(board, dname, columns=columns, title=title, focus=focus, command=command,
                                               name=name), encoding="utf-8")
        tex[dname] = out_dir / f"{stem}.tex"
        tex[dname].write_text(render_latex(board, dname, columns=columns, title=title), encoding="utf-8")
    return {"md": out_dir / f"{name}.md", "pages": pages, "tex": tex, "csv": out_dir / f"{name}.csv",
            "json": out_dir / f"{name}.json", "figures": [out_dir / p for p in board["figures"].values()]}


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)


def write_csv(board, path):
    header = ["dataset", "table", "name", "model", "features", "n_seeds", "seeds"]
    lines = []
    all_metrics = []
    for ds in board["datasets"].values():
        for m in ds["metrics"]:
            if m not in all_metrics:
                all_metrics.append(m)
    cost_fields = ["best_epoch", "epochs_run", "epoch_time_mean_s", "train_time_s", "wall_time_s", "peak_memory_mb"]
    header += [f"test_{m}_{s}" for m in all_metrics for s in ("mean", "std")]
    header += [f"valid_{m}_{s}" for m in all_metrics for s in ("mean", "std")]
    header += [f"{c}_{s}" for c in cost_fields for s in ("mean", "std")]
    for dname, ds in board["datasets"].items():
        for table in ds["tables"]:
            for r in table["rows"]:
                row = [dname, table["title"], r["name"], r["model"], r.get("features", "n/a"), r["n"],
                       " ".join(map(str, r["seeds"]))]
                for m in all_metrics:
                    v = r["test"].get(m, {})
                    row += [_csv_num(v.get("mean")), _csv_num(v.get("std"))]
                for m in all_metrics:
                    v = r["valid"].get(m, {})
                    row += [_csv_num(v.get("mean")), _csv_num(v.get("std"))]
                for c in cost_fields:
                    v = r["cost"].get(c, {})
                    row += [_csv_num(v.get("mean")), _csv_num(v.get("std"))]
                lines.append(row)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(lines)


def _csv_num(x):
    return "" if x is None else repr(float(x))
