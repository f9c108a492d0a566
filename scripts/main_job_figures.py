#!/usr/bin/env python
"""The README's main-job figures, from a run of the main job itself.

    python scripts/main_job_figures.py            # runs `python run_recbole.py --model=RecGOAT` (minutes),
                                                  # records it in docs/main_job.json, rewrites the README
    python scripts/main_job_figures.py --no-run   # rewrites the README from the recorded docs/main_job.json

The record keeps what the sentence cites (epochs, best epoch, test Recall@20, minutes, seconds per
epoch, peak memory, threads, the commit); ``tests/test_readme_figures.py`` fails when the README
disagrees with it. Run it on an idle machine (the figures are timings) from a clean checkout: the
commit is recorded as the run saw it (``+dirty`` when the tree had changes).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(REPO, "docs", "main_job.json")
README = os.path.join(REPO, "README.md")
COMMAND = ["run_recbole.py", "--model=RecGOAT"]

# The sentence in the README, with one group per figure (kept in one place: the test reads it too).
SENTENCE = re.compile(
    r"ended the run after (?P<epochs>\d+) epochs \(best\s+epoch (?P<best>\d+), test Recall@20 (?P<recall>[\d.]+)\) in "
    r"(?P<minutes>[\d.]+) minutes on this project's 2-core CPU, idle \((?P<epoch_s>[\d.]+) s per\s+epoch, "
    r"training epochs add at most (?P<mib>\d+) MiB, (?P<threads>\d+) threads?; measured at commit (?P<commit>[0-9a-f]+)\)"
)


def figures(record):
    """The sentence's figures from a result record, as the README prints them."""
    threads = int(record["cpu_threads"])
    return {
        "epochs": str(record["epochs_run"]),
        "best": str(record["best_epoch"] + 1),  # the record counts from 0, the terminal from 1
        "recall": f"{record['test_result']['recall@20']:.4f}",
        "minutes": f"{record['train_time_s'] / 60:.1f}",
        "epoch_s": f"{record['epoch_time_mean_s']:.1f}",
        "mib": str(round(record["peak_memory_bytes"] / 2**20)),
        "threads": str(threads),
        "commit": record["versions"]["git_commit"].split("+")[0][:7],
    }


def sentence(record):
    f = figures(record)
    return (f"ended the run after {f['epochs']} epochs (best\nepoch {f['best']}, test Recall@20 {f['recall']}) in "
            f"{f['minutes']} minutes on this project's 2-core CPU, idle ({f['epoch_s']} s per\nepoch, training epochs add at most "
            f"{f['mib']} MiB, {f['threads']} thread{'s' if f['threads'] != '1' else ''}; measured at commit {f['commit']})")


def run_main_job():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "main.json")
        subprocess.run([sys.executable, *COMMAND, f"--result_json={out}"], cwd=REPO, check=True)
        with open(out, encoding="utf-8") as f:
            record = json.load(f)
    keep = ("model", "dataset", "seed", "best_epoch", "epochs_run", "best_valid_result", "test_result",
            "epoch_time_mean_s", "train_time_s", "peak_memory_bytes", "cpu_threads", "thread_policy", "versions")
    record = {k: record[k] for k in keep}
    record["command"] = "python " + " ".join(COMMAND)
    with open(RECORD, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="rewrite the README from docs/main_job.json")
    args = parser.parse_args(argv)
    if args.no_run:
        with open(RECORD, encoding="utf-8") as f:
            record = json.load(f)
    else:
        record = run_main_job()
    with open(README, encoding="utf-8") as f:
        text = f.read()
    new, n = SENTENCE.subn(sentence(record).replace("\\", "\\\\"), text)
    if n != 1:
        print(f"error: {README}: expected one main-job sentence, found {n}", file=sys.stderr)
        return 2
    with open(README, "w", encoding="utf-8") as f:
        f.write(new)
    print(sentence(record).replace("\n", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
