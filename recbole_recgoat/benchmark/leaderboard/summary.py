"""The leaderboard's ranking statements: the average rank over datasets and each table's summary
(best row, runner-up, the focus model's rank). Partial rows (fewer seeds than configured) and
pending rows are named, never ranked."""

from recbole_recgoat.benchmark import stats as st
from recbole_recgoat.benchmark.leaderboard.text import fmt_num, fmt_p, pretty, seeds_text


def average_rank_lines(board, focus=None):
    """The overview's "Average rank" section: one row per ranked model, then the models pending or
    partial on some dataset, with the datasets where they are."""
    ar = board.get("average_rank") or {}
    if not ar.get("models"):
        return []
    dsets = ar["datasets"]
    heads = ", ".join(pretty(h) for h in ar["headline"])
    cols = ", ".join(pretty(c) for c in ar["columns"])
    tables = "; ".join(f"{d}: {ar['table'][d]}" for d in dsets)
    lines = ["", "## Average rank", "",
             f"Rank of each model on each dataset by the test mean (1 = best, ties share the mean rank), in the "
             f"first table of the dataset ({tables}); average over the datasets of the {heads} rank, and over "
             f"datasets x metrics ({cols}). Models ranked on fewer datasets come last.", "",
             "| Model | " + " | ".join(f"{d} ({heads})" for d in dsets) + f" | average rank ({heads}) | average rank (all) |",
             "|---|" + "---:|" * (len(dsets) + 2)]
    for m in ar["models"]:
        cells = []
        for d in dsets:
            r = (m["ranks"].get(d) or {}).get(board["datasets"][d]["headline"])
            cells.append("-" if r is None else f"{r:g} / {ar['n_models'][d]}")
        name = f"**{m['name']}**" if m["name"] == focus else m["name"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt_num(m['mean_rank_headline'], 2)} | "
                     f"{fmt_num(m['mean_rank_all'], 2)} |")
    pending = {}
    for dname, ds in board["datasets"].items():
        for n in (ds["tables"][0].get("pending") or []) if ds["tables"] else []:
            pending.setdefault(n, []).append(dname)
    if pending:
        lines += ["", "Pending (configured, no finished cell for its current tuning yet; not ranked there): "
                  + ", ".join(f"{n} ({', '.join(ds)})" for n, ds in pending.items()) + "."]
    part = ar.get("partial") or {}
    if part:
        lines += ["", "Partial (fewer seeds than configured; shown on its dataset's page, not ranked there yet): " + ", ".join(
            f"{n} ({', '.join(f'{d} {v} seeds' for d, v in by.items())})" for n, by in part.items()) + "."]
    return lines


def summary_lines(ds, focus=None):
    """A dataset's summary: per table, the best row on the headline metric (partial rows take no
    part), the runner-up with the tests against it, the focus model's rank, and the partial rows."""
    out = []
    head = ds["headline"]
    for table in ds["tables"]:
        rows = table["rows"]
        ranked = [r for r in rows if not r.get("partial")]
        partial = [r for r in rows if r.get("partial")]
        best = table["best"].get(head)
        if best is not None:
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
            f = next((r for r in ranked if r["name"] == focus), None)
            if f is not None and f["name"] != best:
                order = [r["name"] for r in sorted(ranked, key=lambda r: -r["test"][head]["mean"])]
                gap = st.relative_improvement(f["test"][head]["mean"], b["test"][head]["mean"])
                seed_t = next((t for t in table.get("seed_tests") or [] if t["other"] == focus), None)
                out.append(f"{focus} ranks {order.index(focus) + 1} of {len(ranked)} in this table "
                           f"({fmt_num(f['test'][head]['mean'])} ± {fmt_num(f['test'][head]['std'])}), "
                           f"{gap:+.2f}% relative to {best}"
                           + (f" (paired t over seeds p = {fmt_p(seed_t['p_t'])})." if seed_t else "."))
            elif f is not None and len(ranked) > 1:
                out.append(f"{focus} is the best row of this table.")
        if partial:
            out.append(f"**{table['title']}**: not ranked yet, seeds still running: " + ", ".join(
                f"{r['name']} ({r['partial']} seeds, {fmt_num(r['test'][head]['mean'])})" for r in partial) + ".")
    kept = {r["name"]: r for t in ds["tables"] for r in t["rows"] if r.get("first_epoch_kept")}
    if kept:
        out.append("**Kept the model after its first epoch** (early stopping: validation never beat that first score "
                   "within the patience): " + ", ".join(
                       f"{n} ({r['first_epoch_kept']} of {r['n']} seeds)" for n, r in kept.items()) + ".")
    return [("- " + o) for o in out]
