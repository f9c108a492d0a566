"""``run_recbole.py``: RecBole's command line for plugin and RecBole models alike.

    python run_recbole.py --model=RecGOAT --dataset=lastfm-2k --config_files="a.yaml b.yaml" --learning_rate=0.0005

Every ``--key=value`` that is not one of the named flags is a config override (highest
precedence, as in RecBole).  Prints the best validation and the test metrics as a table (stdout);
while it runs, a short header and one line per epoch (stderr; ``--verbose``: all of RecBole's
log there too, ``--quiet``: nothing but warnings and errors).  The log file keeps everything.

Exit status (every command of the package): 0 success, 2 bad input (one ``error: ...`` line on
stderr naming the key, file or field; nothing written), 1 internal error (a traceback).
"""

import argparse
import json
import os
import sys

from recbole_recgoat.errors import InputError


def build_parser():
    parser = argparse.ArgumentParser(
        prog="run_recbole.py",
        description="Train and evaluate a model (plugin or RecBole) under the project's protocol. "
        "Any other --key=value overrides a config key.",
    )
    parser.add_argument("--model", "-m", default=None, help="model name (default RecGOAT)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: the bundled lastfm-2k)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (data-parallel)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes over all machines")
    parser.add_argument("--ip", default="127.0.0.1", help="address of the rank-0 machine")
    parser.add_argument("--port", default="5678", help="port of the rank-0 machine")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    parser.add_argument("--result_json", default=None, help="also write the result record to this file "
                        "(with --quiet: instead of printing the table)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--verbose", action="store_true",
                       help="the terminal shows all of RecBole's log (config, model, per-epoch details), as the log file")
    shown.add_argument("--quiet", action="store_true",
                       help="nothing while it runs but warnings and errors: the table only, or only --result_json")
    parser.add_argument("--checkpoint", default=None, help="re-score the test split of this checkpoint (.pth) and exit; "
                        "no training (its own config is used)")
    return parser


def parse_overrides(extra):
    """``['--lr=0.1', ...]`` -> ``{'lr': '0.1'}``; anything else is an error naming the argument."""
    overrides = {}
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg:
            raise InputError(f"argument {arg!r}: expected --key=value")
        key, value = arg[2:].split("=", 1)
        if not key:
            raise InputError(f"argument {arg!r}: empty key; expected --key=value")
        if key in overrides and overrides[key] != value:
            raise InputError(f"argument --{key}: given twice with different values")
        overrides[key] = value
    return overrides


def format_table(result):
    """Metric table: one row per metric, columns best-valid and test."""
    valid, test = result["best_valid_result"], result["test_result"]
    names = list(dict.fromkeys(list(valid) + list(test)))
    width = max([len(n) for n in names] + [6])
    best = "-" if result["best_epoch"] is None else result["best_epoch"] + 1  # counted from 1, as the epoch lines
    lines = [
        f"{result['model']} on {result['dataset']} (seed {result['seed']}, best epoch {best} of {result.get('epochs_run', '?')}, "
        f"selected on valid {result['valid_metric']})",
        f"{'metric':<{width}}  {'valid':>8}  {'test':>8}",
        f"{'-' * width}  {'-' * 8}  {'-' * 8}",
    ]
    for n in names:
        v = f"{valid[n]:.4f}" if n in valid else "-"
        t = f"{test[n]:.4f}" if n in test else "-"
        lines.append(f"{n:<{width}}  {v:>8}  {t:>8}")
    return "\n".join(lines)


def format_test_table(result):
    """Metric table of a re-scored checkpoint: one row per test metric."""
    test = result["test_result"]
    width = max([len(n) for n in test] + [6])
    lines = [f"{result['model']} on {result['dataset']} (seed {result['seed']}), checkpoint {result['checkpoint']}",
             f"{'metric':<{width}}  {'test':>8}", f"{'-' * width}  {'-' * 8}"]
    return "\n".join(lines + [f"{n:<{width}}  {v:>8.4f}" for n, v in test.items()])


def interrupted_line(args):
    """The one line a Ctrl-C leaves: what was kept and how to go on."""
    if args.checkpoint:
        return "interrupted: nothing was written; rerun the same command to re-score the checkpoint"
    return ("interrupted: no result; kept the log (log/) and the best checkpoint so far (saved/ or checkpoint_dir, "
            "if an epoch finished); rerun the same command to train again")


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        cmd_args = parse_overrides(extra)
        if args.result_json and not os.path.isdir(os.path.dirname(os.path.abspath(args.result_json))):
            raise InputError(f"--result_json={args.result_json}: no folder {os.path.dirname(os.path.abspath(args.result_json))}; "
                             "expected a file in an existing folder")
        if args.verbose or args.quiet:
            cmd_args["console"] = "verbose" if args.verbose else "quiet"
        config_files = args.config_files.split() if args.config_files else None
        if args.checkpoint:
            if cmd_args or config_files:
                raise InputError("--checkpoint: re-scores with the checkpoint's own config; expected no --config_files "
                                 f"or --key=value (got {', '.join(['--config_files'] * bool(config_files) + list(cmd_args))})")
            from recbole_recgoat.quick_start import evaluate_checkpoint

            result = evaluate_checkpoint(args.checkpoint, args.model, args.dataset)
            print(format_test_table(result))
            return 0
        from recbole_recgoat.quick_start import run_any

        result = run_any(
            model=args.model or "RecGOAT",
            dataset=args.dataset,
            config_file_list=config_files,
            cmd_args=cmd_args,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_line(args), file=sys.stderr)
        return 130
    if result is None:  # a non-zero rank of a multi-machine run
        return 0
    if not (args.quiet and args.result_json):
        print(format_table(result))
    if args.result_json:
        with open(args.result_json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0
