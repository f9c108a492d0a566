"""The leaderboard's PNG figures: bars with error bars (std over seeds) per metric, validation curves."""

from pathlib import Path

import numpy as np

from recbole_recgoat.benchmark.leaderboard.compute import shown_columns
from recbole_recgoat.benchmark.leaderboard.text import pretty


def _slug(text):
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def average_rank_labels(models, n_datasets):
    """A bar's label: the model's name, plus "(k of N datasets)" when its average covers fewer datasets."""
    return [m["name"] + (f" ({len(m['datasets'])} of {n_datasets} datasets)" if len(m["datasets"]) < n_datasets else "")
            for m in models]


def group_starts(models):
    """Positions k where models[k] is ranked on another number of datasets than models[k - 1]."""
    return [k for k in range(1, len(models)) if len(models[k]["datasets"]) != len(models[k - 1]["datasets"])]


def make_figures(board, fig_dir, columns=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for dname, ds in board["datasets"].items():
        cols = shown_columns(ds, columns)
        for table in ds["tables"]:
            rows = table["rows"]
            if not rows or not cols:  # every row pending (a dataset the grid has not reached yet)
                continue
            names = [r["name"] for r in rows]
            ncol = len(cols)
            fig, axes = plt.subplots(1, ncol, figsize=(max(3.2 * ncol, 6), 3.6 + 0.12 * len(rows)), squeeze=False)
            for ax, m in zip(axes[0], cols):
                means = [r["test"][m]["mean"] for r in rows]
                stds = [r["test"][m]["std"] for r in rows]
                colors = ["tab:red" if n == table["best"].get(m) else "tab:blue" for n in names]
                ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color=colors, alpha=0.85)
                ax.set_xticks(range(len(rows)))
                ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
                ax.set_title(f"test {pretty(m)}", fontsize=10)
                ax.grid(axis="y", alpha=0.3)
                hi = max(mu + (sd or 0) for mu, sd in zip(means, stds))
                ax.set_ylim(0.0, hi * 1.12 if hi > 0 else 1.0)
            fig.suptitle(f"{dname}: {table['title']} (mean ± std over seeds; best in red)", fontsize=10)
            fig.tight_layout()
            path = fig_dir / f"{_slug(dname)}-{_slug(table['title'])}-bars.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            out[f"{dname}/{table['title']}/bars"] = str(path)

            fig, ax = plt.subplots(figsize=(6.4, 4.0))
            for r in rows:
                curve = r.get("valid_curve_mean") or {}
                if not curve.get("epoch"):
                    continue
                epochs, mean, std = curve["epoch"], curve["mean"], curve["std"]
                line = ax.plot(epochs, mean, label=r["name"], lw=1.5, marker="o" if len(epochs) <= 30 else None,
                               markersize=3)[0]
                ax.fill_between(epochs, np.array(mean) - np.array(std), np.array(mean) + np.array(std),
                                color=line.get_color(), alpha=0.15)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"valid {pretty(ds['valid_metric'])}")
            ax.set_title(f"{dname}: {table['title']}: validation curves (mean ± std over seeds)", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = fig_dir / f"{_slug(dname)}-{_slug(table['title'])}-valid_curves.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            out[f"{dname}/{table['title']}/valid_curves"] = str(path)
    ar = board.get("average_rank") or {}
    models = [m for m in ar.get("models") or [] if m["mean_rank_headline"] is not None]
    if models:
        fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.35 * len(models)))
        names = average_rank_labels(models, len(ar["datasets"]))[::-1]
        ax.barh(range(len(models)), [m["mean_rank_headline"] for m in models][::-1], color="tab:blue", alpha=0.85,
                label=f"{', '.join(pretty(h) for h in ar['headline'])}")
        ax.scatter([m["mean_rank_all"] for m in models][::-1], range(len(models)), color="tab:red", zorder=3,
                   label="all shown metrics")
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlabel(f"average rank over {', '.join(ar['datasets'])} (1 = best)")
        ax.grid(axis="x", alpha=0.3)
        for k in group_starts(models):  # a dashed line between groups ranked on different numbers of datasets
            ax.axhline(len(models) - k - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1 - 0.6 / len(models)), ncol=2, frameon=False)
        fig.tight_layout()
        path = fig_dir / "average_rank.png"
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        out["average_rank"] = str(path)
    return out
