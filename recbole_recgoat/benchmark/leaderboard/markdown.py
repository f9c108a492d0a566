"""The leaderboard as Markdown: summary, dataset, tables (best in bold, improvement), significance,
cost, settings and the exact config of every row."""

import json
import math
import os

import yaml

from recbole_recgoat.benchmark import stats as st
from recbole_recgoat.benchmark.leaderboard.compute import shown_columns

_PRETTY = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP", "hit": "Hit", "mrr": "MRR"}


def seeds_text(counts):
    """``[1]`` -> "1 seed", ``[3, 5]`` -> "3/5 seeds"."""
    return f"{'/'.join(map(str, counts))} seed{'' if list(counts) == [1] else 's'}"


def pretty(metric):
    name, _, k = metric.partition("@")
    return f"{_PRETTY.get(name, name)}@{k}" if k else _PRETTY.get(name, name)


def fmt_p(p):
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def fmt_num(x, nd=4):
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "n/a" if x is None or math.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.{nd}f}"


def _cell(r, m, best, bold=True):
    v = r["test"][m]
    text = f"{fmt_num(v['mean'])} ± {fmt_num(v['std'])}"
    return f"**{text}**" if bold and best.get(m) == r["name"] else text


def render_markdown(board, columns=None, title=None, focus=None, command=None, note=None):
    lines = [f"# {title or 'Leaderboard'}", ""]
    if note:
        lines += [note.strip(), ""]
    lines.append(f"Generated from the results store `{os.path.basename(board['store'])}` ({board['records']} records) "
                 "by `python -m recbole_recgoat.benchmark leaderboard`; every number below is recomputed from the "
                 "store's records alone (no training). Test-split values, mean ± sample std (ddof=1) over seeds; "
                 "models were selected (early stopping, hyper-parameters) on the validation split only.")
    if command:
        lines += ["", "```", command, "```"]
    if board.get("provenance"):
        lines += ["", "Software of the records: " + ", ".join(
            f"{k} {' / '.join(str(v) for v in vals)}" for k, vals in board["provenance"].items()) + "."]
    if board.get("ignored_settings"):
        lines += ["", "Ignored (older settings of a row in the same store): " + "; ".join(
            f"{i['variant']} on {i['dataset']} ({i['records']} records, setting {i['setting']})" for i in board["ignored_settings"])]
    for dname, ds in board["datasets"].items():
        cols = shown_columns(ds, columns)
        head = ds["headline"]
        shown_configs = set()
        lines += ["", f"## {dname}", ""]
        lines += summary_lines(ds, focus)
        lines += ["", "### Dataset", ""]
        s = ds.get("stats")
        if s:
            lines += ["| users | items | interactions | train | valid | test | test users | sparsity |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|",
                      f"| {s['users']:,} | {s['items']:,} | {s['interactions']:,} | {s['train_interactions']:,} | "
                      f"{s['valid_interactions']:,} | {s['test_interactions']:,} | {s['test_users']:,} | {100 * s['sparsity']:.2f}% |"]
        p = ds.get("protocol") or {}
        lines += ["", "Protocol: " + ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in p.items())]
        lines += budget_lines(ds.get("budget"))
        for table in ds["tables"]:
            rows = table["rows"]
            best = table["best"]
            nseeds = sorted({r["n"] for r in rows})
            lines += ["", f"### {table['title']}", "",
                      f"Test split, mean ± std over {seeds_text(nseeds)}; best of each column in bold; "
                      + (f"rows sorted by test {pretty(head)}." if table.get("sort", "score") == "score"
                         else "rows in the order the table is defined in."), ""]
            lines.append("| Model | " + " | ".join(pretty(c) for c in cols) + " | seeds | features |")
            lines.append("|---|" + "---:|" * len(cols) + "---:|---|")
            for r in rows:
                lines.append(f"| {r['name']} | " + " | ".join(_cell(r, c, best) for c in cols)
                             + f" | {r['n']} | {r.get('features', 'n/a')} |")
            if len(rows) > 1:
                imp = [table["improvement_pct"].get(c) for c in cols]
                lines.append("| *Improv. best vs runner-up* | " + " | ".join(
                    "n/a" if v is None else f"{v:+.2f}% ({best[c]} vs {table['runner_up'][c]})" for v, c in zip(imp, cols)) + " | | |")
            figs = board.get("figures") or {}
            bar = figs.get(f"{dname}/{table['title']}/bars")
            if bar:
                lines += ["", f"![{table['title']}: test metrics]({bar})"]
            if table.get("seed_tests"):
                lines += ["", f"#### Significance of {best[head]} (best on test {pretty(head)})", "",
                          "Across seeds (paired by seed; Holm-adjusted over the comparisons of this table):", "",
                          "| vs | seeds | mean diff | t | p (t) | p (t, Holm) | W | p (Wilcoxon) |",
                          "|---|---:|---:|---:|---:|---:|---:|---:|"]
                for t in table["seed_tests"]:
                    lines.append(f"| {t['other']} | {t['n']} | {fmt_num(t['mean_diff'])} | {fmt_num(t['t'], 3)} | "
                                 f"{fmt_p(t['p_t'])} | {fmt_p(t.get('p_t_holm'))} | {fmt_num(t['W'], 1)} | {fmt_p(t['p_wilcoxon'])} |")
                lines += ["", "Wilcoxon across seeds needs at least 5 seeds (with 5, its smallest two-sided p is 0.0625)."]
                for metric, tests in (table.get("per_user_tests") or {}).items():
                    lines += ["", f"Per user on the test users, {pretty(metric)} (users paired by id, each user's value "
                              "averaged over the common seeds; Wilcoxon signed-rank with zero differences dropped, "
                              "Holm-adjusted; paired t; seeds with a per-seed Wilcoxon p < 0.05):", "",
                              "| vs | users | seeds | mean diff | p (Wilcoxon) | p (Wilcoxon, Holm) | p (t) | seeds p<0.05 |",
                              "|---|---:|---:|---:|---:|---:|---:|---:|"]
                    for t in tests:
                        sig = "n/a" if t["seeds_significant"] is None else f"{t['seeds_significant']}/{t['n_seeds']}"
                        lines.append(f"| {t['other']} | {t['n_users']} | {t['n_seeds']} | {fmt_num(t['mean_diff'])} | "
                                     f"{fmt_p(t['p_wilcoxon'])} | {fmt_p(t.get('p_wilcoxon_holm'))} | {fmt_p(t['p_t'])} | {sig} |")
            lines += ["", "#### Cost", "",
                      "| Model | best epoch | epochs run | s / epoch | train s | wall s / cell | peak memory MB |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for r in rows:
                c = r["cost"]
                lines.append(f"| {r['name']} | {fmt_num(c['best_epoch']['mean'], 1)} | {fmt_num(c['epochs_run']['mean'], 1)} | "
                             f"{fmt_num(c['epoch_time_mean_s']['mean'], 2)} | {fmt_num(c['train_time_s']['mean'], 1)} | "
                             f"{fmt_num(c['wall_time_s']['mean'], 1)} | {fmt_num(c['peak_memory_mb']['mean'], 1)} |")
            curve = figs.get(f"{dname}/{table['title']}/valid_curves")
            if curve:
                lines += ["", f"![{table['title']}: validation curves]({curve})"]
            lines += ["", "#### Settings", "",
                      "| Model | tuned parameters | variant overrides | tuning (algo, trials / budget, grid size) | seeds |",
                      "|---|---|---|---|---|"]
            for r in rows:
                tun = r.get("tuning")
                if not tun:
                    tun_txt = "not tuned (defaults)"
                elif not tun.get("space_size"):
                    tun_txt = "no grid (defaults)"
                else:
                    tun_txt = f"{tun.get('algo')}, {tun.get('evaluated')} / {tun.get('max_evals')}, {tun.get('space_size')}"
                tuned = ", ".join(f"`{k}={v}`" for k, v in ((tun or {}).get("params") or {}).items()) or "-"
                variant = ", ".join(f"`{k}={v}`" for k, v in (r.get("variant_overrides") or {}).items()) or "-"
                lines.append(f"| {r['name']} | {tuned} | {variant} | {tun_txt} | {', '.join(map(str, r['seeds']))} |")
            common = {k: v for k, v in (rows[0]["cell_overrides"] or {}).items()}
            if common:
                lines += ["", "Benchmark overrides (every cell): " + ", ".join(f"`{k}={v}`" for k, v in common.items())]
            tune_over = {}
            for r in rows:
                tune_over.update(((r.get("tuning") or {}).get("overrides")) or {})
            if tune_over:
                lines += ["", "Overrides of the tuning trials: " + ", ".join(f"`{k}={v}`" for k, v in tune_over.items())]
            for r in rows:
                if r["name"] in shown_configs:
                    continue
                shown_configs.add(r["name"])
                cfg = dict(r["config"])
                cfg["seeds"] = r["seeds"]
                text = yaml.safe_dump(_plain(cfg), sort_keys=True, default_flow_style=None, width=100)
                note = (f" (differs across seeds in: {', '.join(r['config_differs_across_seeds'])})"
                        if r["config_differs_across_seeds"] else "")
                lines += ["", f"<details><summary>Config of {r['name']}{note}</summary>", "", "```yaml", text.rstrip(),
                          "```", "", "</details>"]
    return "\n".join(lines) + "\n"


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


def summary_lines(ds, focus=None):
    out = []
    head = ds["headline"]
    for table in ds["tables"]:
        rows = table["rows"]
        best = table["best"].get(head)
        if best is None:
            continue
        b = next(r for r in rows if r["name"] == best)
        txt = (f"**{table['title']}**: best on test {pretty(head)} is **{best}** "
               f"({fmt_num(b['test'][head]['mean'])} ± {fmt_num(b['test'][head]['std'])}, {seeds_text([b['n']])})")
        runner = table["runner_up"].get(head)
        if runner:
            imp = table["improvement_pct"].get(head)
            seed_t = next((t for t in table.get("seed_tests") or [] if t["other"] == runner), None)
            pu = next((t for t in (table.get("per_user_tests") or {}).get(head, []) if t["other"] == runner), None)
            txt += f", {imp:+.2f}% over the runner-up {runner}" if imp is not None else f"; runner-up {runner}"
            tests = []
            if seed_t:
                tests.append(f"paired t over seeds p = {fmt_p(seed_t['p_t'])}")
            if pu:
                tests.append(f"per-user Wilcoxon p = {fmt_p(pu['p_wilcoxon'])}")
            if tests:
                txt += " (" + "; ".join(tests) + ")"
        out.append(txt + ".")
        if focus:
            f = next((r for r in rows if r["name"] == focus), None)
            if f is not None and f["name"] != best:
                order = [r["name"] for r in sorted(rows, key=lambda r: -r["test"][head]["mean"])]
                rank = order.index(focus) + 1
                gap = st.relative_improvement(f["test"][head]["mean"], b["test"][head]["mean"])
                seed_t = next((t for t in table.get("seed_tests") or [] if t["other"] == focus), None)
                out.append(f"{focus} ranks {rank} of {len(rows)} in this table ({fmt_num(f['test'][head]['mean'])} ± "
                           f"{fmt_num(f['test'][head]['std'])}), {gap:+.2f}% relative to {best}"
                           + (f" (paired t over seeds p = {fmt_p(seed_t['p_t'])})." if seed_t else "."))
            elif f is not None and len(rows) > 1:
                out.append(f"{focus} is the best row of this table.")
    return [("- " + o) for o in out]
