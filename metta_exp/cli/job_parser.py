"""The parser of ``metta-exp job ...``: every command, its arguments, help and examples (the commands
themselves are :mod:`metta_exp.cli.jobs`, which runs the one ``command`` names)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from typing import Any

EXAMPLES = {
    "list": "metta-exp job list\n  metta-exp job list 'lr_*' --status failed --since 7d\n"
    "  metta-exp job list --all --json | jq '.[] | select(.failed > 0) | .group'",
    "runs": "metta-exp job runs --since 7d --sort overview/reward -n 10\n"
    "  metta-exp job runs 'lr_*' --where 'trainer.learning_rate>=0.01' --csv > runs.csv",
    "compare": "metta-exp job compare baseline-1202 variant-1204 --open\n"
    "  metta-exp job compare 'lr_*' -o reports/lr.html",
    "rm": "metta-exp job rm lr_sweep               # lists what goes, asks\n"
    "  metta-exp job rm --older-than 30d --status failed --dry-run\n"
    "  metta-exp job rm 'lr_*' --notebooks --force",
    "show": "metta-exp job show lr_sweep\n  metta-exp job show lr_sweep --json",
    "monitor": "metta-exp job monitor lr_sweep\n  metta-exp job monitor lr_sweep --refresh 2.0 --no-logs",
    "kill": "metta-exp job kill lr_sweep           # shows what it will do and asks\n"
    "  metta-exp job kill lr_sweep --force",
    "logs": "metta-exp job logs lr_sweep high_lr --tail 50\n  metta-exp job logs lr_sweep high_lr --follow",
    "retry": "metta-exp job retry lr_sweep\n  metta-exp job retry lr_sweep --no-wait",
    "notebook": "metta-exp job notebook lr_sweep\n  metta-exp job notebook lr_sweep -o analysis/sweep.ipynb",
    "report": "metta-exp job report lr_sweep --open\n  metta-exp job report lr_sweep -o /tmp/lr_sweep.html",
    "resume": "metta-exp job resume lr_sweep",
}


class _NotRun:
    """Stands in for the parser of a command that is not being run: its arguments are not built (each
    costs argparse a help formatter), only its name and help line, which ``job --help`` lists."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_mutually_exclusive_group(self, **kwargs: Any) -> _NotRun:
        return self


def _sub(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    text: str,
    store_flag: bool = True,
    *,
    only: str | None = None,
) -> argparse.ArgumentParser:
    """A command's parser; ``store_flag``: with the bare ``--where`` every command takes (``job runs``
    has its own, which also filters). ``only``: the command being run (None: any); another command's
    parser gets no arguments."""
    p = sub.add_parser(
        name,
        help=help,
        description=text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if only not in (None, name):
        return _NotRun()  # type: ignore[return-value]
    if store_flag:  # added here, not from a shared parent parser: each parser built costs (job --help)
        p.add_argument(
            "--where",
            action="store_true",
            help="print which store this command reads (store: PATH) on stderr",
        )
    return p


def add_group_filters(
    p: argparse.ArgumentParser, status_means: str, until: bool = True, runs: bool = False
) -> None:
    """``--status``, ``--since``, ``--until``: the filters every history command shares."""
    p.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="S",
        help=("only runs in one of these statuses" if runs else f"only groups with {status_means}")
        + " (repeat it, or S1,S2)",
    )
    which = "of groups " if runs else ""
    p.add_argument(
        "--since", metavar="T", help=f"{which}created at T or later: 7d, 12h, 2026-12-01, 2026-12-01T14:30"
    )
    if until:
        p.add_argument(
            "--until", metavar="T", help=f"{which}created before T (a date: until the end of that day)"
        )


def add_window(p: argparse.ArgumentParser, noun: str) -> None:
    """``-n N`` / ``--all``: how many rows to show."""
    if isinstance(p, _NotRun):
        return
    from metta_exp.history import DEFAULT_LIMIT  # job list's and job runs' only

    window = p.add_mutually_exclusive_group()
    window.add_argument(
        "-n", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"show {DEFAULT_LIMIT} {noun} unless told N"
    )
    window.add_argument("--all", action="store_true", help=f"show every {noun[:-1]} the filters select")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` (after ``job``) parsed; ``--help`` and bad usage end here (argparse exits), before anything
    of the API is imported: ``metta-exp job --help`` and a typo answer at once."""
    argv = list(argv)
    command = argv[0] if argv and argv[0] in EXAMPLES else None  # its arguments alone are built
    return build_parser(command).parse_args(argv)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's arguments are built (every command's name and
    help line are, for ``job --help`` and a misspelt command's error): it parses that command alike."""
    parser = argparse.ArgumentParser(
        prog="metta-exp job",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Manage job groups from any terminal, at any time. State: the nearest "
        "job_state/jobs.sqlite in this\ndirectory or a parent (as git finds .git), or $METTA_EXP_STATE_DIR; "
        "--where prints which.\nExit codes: 0 every job succeeded (or nothing to wait for), 1 a job failed, "
        "was cancelled or skipped, 2 bad input, 130 interrupted while watching.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES[k].split("\n")[0] for k in EXAMPLES),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    new = functools.partial(_sub, sub, only=command)

    p = new(
        "list",
        "the groups with their counts by status",
        "The newest groups (50 unless -n N or --all): counts by status, GPU-hours, age, and whether a "
        "runner\ndrives it. A line says how many older ones the filters also select.",
    )
    p.add_argument("patterns", nargs="*", metavar="GLOB", help="group names or globs ('lr_*'): any of them")
    add_group_filters(p, "a job in one of these statuses")
    add_window(p, "groups")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON array of {group, total, <status counts>, created_at, ended_at, experiment, "
        "backend, gpu_hours} (the same rows)",
    )

    p = new(
        "runs",
        "every run across groups as one table",
        "Every run of the selected groups as one table, newest group first: status, attempts, start, "
        "running\ntime, GPUs and GPU-hours, the final value of each tracked metric, and the overrides "
        "that differ\n(its args, sweep point or trial params). 50 rows unless -n N or --all. Sorting: "
        "numbers largest\nfirst, text A to Z (--reverse flips it); runs without the key last.",
        store_flag=False,
    )
    p.add_argument("patterns", nargs="*", metavar="GLOB", help="group names or globs ('lr_*'): any of them")
    add_group_filters(p, "", runs=True)
    p.add_argument(
        "--where",
        action="append",
        nargs="?",
        default=[],
        metavar="EXPR",
        help="KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, KEY>N, KEY<N or KEY~GLOB on an override, a "
        "trial param, a metric or a column (group, run, status, attempts, gpus, gpu_hours, duration, steps); "
        "repeat it: all must hold. Bare: print which store this command reads (store: PATH) on stderr",
    )
    p.add_argument(
        "--sort",
        metavar="KEY",
        help="a metric (reward or overview/reward), a column or an override (learning_rate or "
        "trainer.learning_rate)",
    )
    p.add_argument("--reverse", action="store_true", help="the other way round")
    add_window(p, "runs")
    output = p.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="one JSON array of {group, run, status, attempts, started_at, ended_at, duration_s, gpus, "
        "gpu_hours, steps, metrics, overrides, args, params} (the same rows)",
    )
    output.add_argument(
        "--csv", action="store_true", help="CSV: those columns, a metric or override a column"
    )

    p = new(
        "compare",
        "one notebook and HTML report with several groups side by side",
        "Write one notebook with the groups side by side and its executed HTML report: curves coloured by "
        "group\n(each run thin, its group's median thick), a summary by group and one by run with "
        "GPU-hours, and\neach group's W&B links. By default experiments/notebooks/compare-A-vs-B.ipynb "
        "and .html here.",
    )
    p.add_argument("groups", nargs="+", metavar="GROUP", help="two groups or more: names or globs ('lr_*')")
    p.add_argument("-o", "--output", metavar="PATH", help="where: X.ipynb or X.html (the other beside it)")
    p.add_argument("--open", action="store_true", help="then open the report in the web browser")

    p = new(
        "rm",
        "remove ended groups, their run directories and logs",
        "Remove ended groups: their rows in the store, run directories and logs (with --notebooks, their "
        "notebooks\nand reports too). Lists what goes and the disk it frees, then asks (--force does not). "
        "Refuses groups\nthat have not ended (end them with job kill). The rows go in one transaction: "
        "a crash or Ctrl+C\nleaves each group whole or gone; files an interrupted rm left are deleted by "
        "the next one.",
    )
    p.add_argument("patterns", nargs="*", metavar="GROUP", help="group names or globs ('lr_*')")
    p.add_argument("--older-than", metavar="T", help="groups created before T: 30d, 2w, 2026-11-01")
    p.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="S",
        help="only groups with a job in one of these statuses",
    )
    p.add_argument("--notebooks", action="store_true", help="their notebooks and HTML reports too")
    p.add_argument("--force", action="store_true", help="do not ask")
    p.add_argument("--dry-run", action="store_true", help="print what would go, remove nothing")

    p = new(
        "show",
        "every job of a group",
        "Every job of GROUP: status, attempts, exit code, times, "
        "progress, W&B URL, log path, dependencies, failure reason.\nA search adds a line about its study: "
        "trials by state and the best so far.",
    )
    p.add_argument("group")
    p.add_argument(
        "--json", action="store_true", help="one JSON array, one object per job (a search's: with its trial)"
    )

    p = new(
        "monitor",
        "watch a group live until it ends",
        "A live view of GROUP until it ends: failed jobs first with the log lines that explain them, "
        "active jobs\nwith progress, completed jobs with artifacts, pending jobs with what they wait for. "
        "Ctrl+C stops\nwatching and leaves every job running. Starts a runner if the group's one died. "
        "Without a terminal\nit prints one line per change.",
    )
    p.add_argument("group")
    p.add_argument("--refresh", type=float, default=1.0, metavar="S", help="seconds between redraws (1.0)")
    p.add_argument("--no-logs", action="store_true", help="hide the active jobs' log tails")

    p = new(
        "kill",
        "end a group's running jobs and cancel its pending ones",
        "End the running jobs of GROUP (whole process trees), cancel its pending ones and stop further "
        "launches.\nSucceeded and failed jobs stay as they are. Asks first unless --force. Safe while "
        "a runner or monitor runs.",
    )
    p.add_argument("group")
    p.add_argument("--force", action="store_true", help="do not ask")

    p = new(
        "logs",
        "print a job's log",
        "Print the log of RUN in GROUP (its current attempt unless "
        "--attempt). With --follow, keep printing\nuntil the job ends (across retries), then exit 0 if "
        "it succeeded, 1 otherwise.",
    )
    p.add_argument("group")
    p.add_argument("run")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.add_argument("--attempt", type=int, metavar="K", help="the log of attempt K (1 is the first)")

    p = new(
        "retry",
        "relaunch a group's failed, cancelled and skipped runs",
        "Relaunch the failed, cancelled and skipped runs of GROUP as new attempts, with their names, "
        "arguments\nand dependencies; succeeded runs are not rerun and earlier attempts stay in the "
        "history. Then watch.",
    )
    p.add_argument("group")
    p.add_argument("--no-wait", action="store_true", help="return once a runner drives the group")

    p = new(
        "notebook",
        "(re)write a group's analysis notebook",
        "Write the analysis notebook of GROUP (by default where the group's config says).",
    )
    p.add_argument("group")
    p.add_argument("-o", "--output", metavar="PATH", help="where to write it")

    p = new(
        "report",
        "(re)write a group's HTML report",
        "Run the analysis notebook of GROUP top to bottom and write it as one self-contained HTML page "
        "(plots\nembedded, nothing to install to read it), by default beside the notebook "
        "(<notebook>.html).",
    )
    p.add_argument("group")
    p.add_argument("-o", "--output", metavar="PATH", help="where to write it")
    p.add_argument("--open", action="store_true", help="then open it in the web browser")

    p = new(
        "resume",
        "drive a group whose runner stopped, and watch it",
        "Start a runner for GROUP if none is alive, then watch it.",
    )
    p.add_argument("group")
    p.add_argument("--no-wait", action="store_true", help="return once a runner drives the group")
    return parser
