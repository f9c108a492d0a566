"""The leaderboard as Markdown: summary, dataset, tables (best in bold, improvement), significance,
cost, settings and the exact config of every row."""

import json
import os

import yaml

from recbole_recgoat.benchmark.leaderboard.compute import DEFAULT_COLUMNS, shown_columns
from recbole_recgoat.benchmark.leaderboard.summary import average_rank_lines, summary_lines
from recbole_recgoat.benchmark.leaderboard.text import fmt_num, fmt_p, pretty, seeds_text, table_seeds


def _cell(r, m, best, bold=True):
    v = r["test"][m]
    text = f"{fmt_num(v['mean'])} ± {fmt_num(v['std'])}"
    return f"**{text}**" if bold and best.get(m) == r["name"] else text


MASKING = {
    "train_valid": "a test user's training and validation items are masked (RecBole's default, `test_mask: train_valid`); "
                   "MMRec and the papers built on it (FREEDOM, BM3, LGMRec, ...) mask training items only "
                   "(`test_mask: train`), which ranks the validation items too and gives lower test scores",
    "train": "a test user's training items only are masked, as in MMRec and the papers built on it (`test_mask: train`); "
             "RecBole's default also masks the validation items (`test_mask: train_valid`) and gives higher test scores",
}


def masking_text(board):
    """What the test-time mask of the board's records was, in words (one sentence per setting)."""
    seen = []
    for ds in board["datasets"].values():
        mask = (ds.get("protocol") or {}).get("test_mask")
        if mask and mask not in seen:
            seen.append(mask)
    if not seen:
        return None
    return "Masking at test time: " + "; ".join(MASKING.get(m, f"`test_mask: {m}`") for m in seen) + "."


def page_name(name, dataset):
    """The file stem of a dataset's results page: ``leaderboard-lastfm-2k``."""
    return f"{name}-{dataset}"


def _header(board, command):
    lines = [f"Generated from the results store `{os.path.basename(board['store'])}` ({board['records']} records) "
             "by `python -m recbole_recgoat.benchmark leaderboard`; every number below is recomputed from the "
             "store's records alone (no training). Test-split values, mean ± sample std (ddof=1) over seeds; "
             "models were selected (early stopping, hyper-parameters) on the validation split only."]
    if command:
        lines += ["", "```", command, "```"]
    if board.get("provenance"):
        lines += ["", "Software of the records: " + ", ".join(
            f"{k} {' / '.join(str(v) for v in vals)}" for k, vals in board["provenance"].items()) + "."]
    mask = masking_text(board)
    if mask:
        lines += ["", mask]
    if board.get("ignored_settings"):
        lines += ["", "Ignored (older settings of a row in the same store): " + "; ".join(
            f"{i['variant']} on {i['dataset']} ({i['records']} records, setting {i['setting']})" for i in board["ignored_settings"])]
    return lines


def render_markdown(board, columns=None, title=None, focus=None, command=None, note=None, name="leaderboard"):
    """The overview page: the average rank of every model across datasets, and one line per
    dataset table with a link to the dataset's results page (:func:`render_dataset`)."""
    lines = [f"# {title or 'Leaderboard'}", ""]
    if note:
        lines += [note.strip(), ""]
    lines += _header(board, command)
    lines += average_rank_lines(board, focus)
    figs = board.get("figures") or {}
    if figs.get("average_rank"):
        lines += ["", f"![Average rank across datasets]({figs['average_rank']})"]
    lines += ["", "## Datasets"]
    for dname, ds in board["datasets"].items():
        page = page_name(name, dname)
        lines += ["", f"### [{dname}]({page}.md)", ""]
        s = ds.get("stats")
        if s:
            lines += [f"{s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions; "
                      f"results page [{page}.md]({page}.md), LaTeX [{page}.tex]({page}.tex).", ""]
        else:
            lines += [f"No finished cell yet: every row is pending ([{page}.md]({page}.md)).", ""]
        lines += summary_lines(ds, focus)
    return "\n".join(lines) + "\n"


def render_dataset(board, dname, columns=None, title=None, focus=None, command=None, name="leaderboard"):
    """A dataset's results page: the dataset, its tables (mean ± std, features, pending rows,
    improvement), the significance of each table's best row, the budget and cost, and every row's
    tuned settings as yaml. The full configs are in the JSON export."""
    ds = board["datasets"][dname]
    cols = shown_columns(ds, columns) if ds["metrics"] else [c for c in (columns or DEFAULT_COLUMNS)]
    head = ds["headline"]
    lines = [f"# {title or 'Leaderboard'}: {dname}", "", f"[All datasets and the average rank]({name}.md). "
             f"LaTeX of these tables: [{page_name(name, dname)}.tex]({page_name(name, dname)}.tex). The full config of "
             f"every row: [{name}.json]({name}.json).", ""]
    lines += _header(board, command)
    lines += ["", "## Dataset", ""]
    s = ds.get("stats")
    if s:
        lines += ["| users | items | interactions | train | valid | test | test users | sparsity |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {s['users']:,} | {s['items']:,} | {s['interactions']:,} | {s['train_interactions']:,} | "
                  f"{s['valid_interactions']:,} | {s['test_interactions']:,} | {s['test_users']:,} | {100 * s['sparsity']:.2f}% |"]
    else:
        lines += ["No finished cell on this dataset yet."]
    p = ds.get("protocol") or {}
    if p:
        lines += ["", "Protocol: " + ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in p.items())]
    if ds["tables"] and any(t["rows"] for t in ds["tables"]):
        lines += ["", "Summary:", ""] + summary_lines(ds, focus)
    lines += superseded_lines(ds)
    figs = board.get("figures") or {}
    for table in ds["tables"]:
        lines += table_lines(table, dname, cols, head, figs)
    lines += budget_lines(ds.get("budget"))
    lines += cost_lines(ds)
    lines += settings_lines(ds)
    return "\n".join(lines) + "\n"


def superseded_lines(ds):
    """Rows shown as pending because the store's current search chose other parameters than their
    cells ran with (their old cells stay in the store, not on the page)."""
    sup = ds.get("superseded") or {}
    if not sup:
        return []
    items = [f"{n} ({v['cells']} cells for {_flow(v['cells_params'])} of search {v['cells_tune_key']}; its current search "
             f"{v['current_tune_key']} chose {_flow(v['current_params'])})" for n, v in sup.items()]
    return ["", "Re-running for its current tuning, pending until then: " + "; ".join(items) + "."]


def table_lines(table, dname, cols, head, figs):
    rows, best = table["rows"], table["best"]
    pending = table.get("pending") or []
    nseeds = table_seeds(rows)
    lines = ["", f"## {table['title']}", ""]
    if rows:
        lines.append(f"Test split, mean ± std over {seeds_text(nseeds)}; best of each column in bold; "
                     + (f"rows sorted by test {pretty(head)}." if table.get("sort", "score") == "score"
                        else "rows in the order the table is defined in.")
                     + (" Seeds n/N: still running, not in bold or ranked yet." if any(r.get("partial") for r in rows) else "")
                     + (" Pending: configured, no finished cell for its current tuning in the store yet." if pending else ""))
    else:
        lines.append("Every row is pending: configured, no finished cell for its current tuning in the store yet.")
    lines += ["", "| Model | " + " | ".join(pretty(c) for c in cols) + " | seeds | features |",
              "|---|" + "---:|" * len(cols) + "---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(_cell(r, c, best) for c in cols)
                     + f" | {r.get('partial') or r['n']} | {r.get('features', 'n/a')} |")
    for n in pending:
        lines.append(f"| {n} | " + " | ".join(["pending"] * len(cols)) + " | 0 | pending |")
    if len(rows) > 1:
        imp = [table["improvement_pct"].get(c) for c in cols]
        lines.append("| *Improv. best vs runner-up* | " + " | ".join(
            "n/a" if v is None else f"{v:+.2f}% ({best[c]} vs {table['runner_up'][c]})" for v, c in zip(imp, cols)) + " | | |")
    same = [f"{r['name']} = {', '.join(r['same_run_as'])}" for r in rows if r.get("same_run_as")]
    if same:
        lines += ["", "Same runs (settings equal as written, e.g. a switch the tuning had already chosen; trained "
                  "once, `same_run_as` in the store): " + "; ".join(same) + "."]
    bar = figs.get(f"{dname}/{table['title']}/bars")
    if bar:
        lines += ["", f"![{table['title']}: test metrics]({bar})"]
    if table.get("seed_tests"):
        pu = table.get("per_user_tests") or {}
        pu_by = {m: {t["other"]: t for t in tests} for m, tests in pu.items()}
        lines += ["", f"Significance of {best[head]} (best on test {pretty(head)}) against each row: paired by seed "
                  "(t, Holm-adjusted over the table; Wilcoxon needs 5 seeds, its smallest two-sided p is then 0.0625), "
                  "and per test user (users paired by id, values averaged over the common seeds, Wilcoxon signed-rank "
                  "without zero differences, Holm-adjusted):", "",
                  "| vs | seeds | mean diff | p (t) | p (t, Holm) | p (Wilcoxon) | "
                  + " | ".join(f"per user {pretty(m)}: p (Holm), seeds p<0.05" for m in pu) + " |",
                  "|---|---:|---:|---:|---:|---:|" + "---:|" * len(pu)]
        for t in table["seed_tests"]:
            cells = []
            for m in pu:
                u = pu_by[m].get(t["other"])
                if u is None or u["seeds_significant"] is None:
                    cells.append("n/a")
                else:
                    cells.append(f"{fmt_p(u.get('p_wilcoxon_holm'))}, {u['seeds_significant']}/{u['n_seeds']}")
            lines.append(f"| {t['other']} | {t['n']} | {fmt_num(t['mean_diff'])} | {fmt_p(t['p_t'])} | "
                         f"{fmt_p(t.get('p_t_holm'))} | {fmt_p(t['p_wilcoxon'])} | " + " | ".join(cells) + " |")
    curve = figs.get(f"{dname}/{table['title']}/valid_curves")
    if curve:
        lines += ["", f"![{table['title']}: validation curves]({curve})"]
    return lines


def distinct_rows(ds):
    """The rows of a dataset's tables, each name once, in the order the tables first show them."""
    rows = {}
    for table in ds["tables"]:
        for r in table["rows"]:
            rows.setdefault(r["name"], r)
    return list(rows.values())


def cost_lines(ds):
    """One cost table per dataset: every row of its tables once."""
    rows = distinct_rows(ds)
    if not rows:
        return []
    lines = ["", "## Cost", "", "Mean over seeds of each row's seed runs.", "",
             "| Model | best epoch | epochs run | s / epoch | train s | wall s / cell | peak memory MB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["cost"]
        lines.append(f"| {r['name']} | {fmt_num(c['best_epoch']['mean'], 1)} | {fmt_num(c['epochs_run']['mean'], 1)} | "
                     f"{fmt_num(c['epoch_time_mean_s']['mean'], 2)} | {fmt_num(c['train_time_s']['mean'], 1)} | "
                     f"{fmt_num(c['wall_time_s']['mean'], 1)} | {fmt_num(c['peak_memory_mb']['mean'], 1)} |")
    return lines


def settings_of(r, common_seeds=None):
    """A row's settings as the page shows them (json-able): how it was tuned and its tuned
    parameters, or for a variant its base model and overrides (not re-tuned); the benchmark's
    overrides; its seeds when they differ from ``common_seeds``."""
    tun = r.get("tuning") or {}
    out = {}
    if r["variant"]:
        out["variant_of"] = r["model"]
        out["overrides"] = dict(r.get("variant_overrides") or {})
        out["tuned"] = f"as {r['model']}" if tun.get("params") else "defaults"
    else:
        if not tun:
            out["tuning"] = "not tuned (defaults)"
        elif not tun.get("space_size"):
            out["tuning"] = "no grid (defaults)"
        else:
            out["tuning"] = (f"{tun.get('algo')}, {tun.get('evaluated')} trials (budget {tun.get('max_evals')}), "
                             f"grid of {tun.get('space_size')}"
                             + (f"; cells run for the smaller search {tun['cells_tuned_by']}, same choice"
                                if tun.get("cells_tuned_by") else ""))
        if tun.get("params"):
            out["tuned"] = dict(tun["params"])
        if tun.get("overrides"):
            out["tuning_overrides"] = dict(tun["overrides"])
    if r.get("cell_overrides"):
        out["benchmark_overrides"] = dict(r["cell_overrides"])
    if list(r["seeds"]) != list(common_seeds or []):
        out["seeds"] = list(r["seeds"])
    return _plain(out)


def _flow(value, sort_keys=True):
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=sort_keys).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").rstrip()


def settings_lines(ds):
    """Every row's settings as one yaml block, one line per key (the full configs are in the JSON
    export)."""
    rows = distinct_rows(ds)
    if not rows:
        return []
    seeds = [tuple(r["seeds"]) for r in rows]
    common = max(set(seeds), key=seeds.count)
    body = []
    for r in rows:
        settings = settings_of(r, common)
        if r["variant"]:  # one line: its base and overrides ("tuned: as <base>" goes without saying)
            if str(settings.get("tuned", "")).startswith("as "):
                del settings["tuned"]
            body.append(f"{_flow(r['name'])}: {_flow(settings, sort_keys=False)}")  # variant_of first, overrides as written
            continue
        body.append(f"{_flow(r['name'])}:")
        body += [f"  {key}: {_flow(value)}" for key, value in settings.items()]
    return ["", "## Settings", "", f"Each row's tuning and tuned parameters (a variant: its base model's tuned parameters "
            f"plus its overrides, not re-tuned); every other key is the protocol's or the model's default. Seeds: "
            f"{', '.join(map(str, common))} unless a row says otherwise. The full config of every row is in the JSON "
            "export.", "", "```yaml"] + body + ["```"]


def budget_lines(budget):
    """The per-model budget table: tuning trials and hours, seed runs and hours, CPU-hours."""
    if not budget:
        return []
    lines = ["", "### Budget", "",
             "Each model's tuning (full-protocol trials on the validation split) and its seed runs, as recorded in "
             "the store: training wall-clock hours, and CPU-hours = hours x torch threads (the benchmark gives a "
             "model's trials the thread count of its runs).", "",
             "| Model | tuning trials / grid | tuning h | seed runs | seed-run h | threads | CPU-hours |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for b in budget:
        grid = "-" if b["space_size"] is None else b["space_size"]
        threads = "/".join(map(str, b["threads"])) or "n/a"
        lines.append(f"| {b['model']} | {b['trials']} / {grid} | {b['tuning_train_h']:.2f} | {b['runs']} | "
                     f"{b['runs_train_h']:.2f} | {threads} | {fmt_num(b['cpu_h'], 2)} |")
    return lines


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
