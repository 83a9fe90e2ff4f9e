"""``metta-exp job ...``: manage groups from any terminal, at any time.

A thin layer over :mod:`metta_exp.groups` (the Python API): it parses arguments, asks before a kill, and
turns what the API returns into tables, JSON and the live monitor. Readers (``list``, ``show``,
``monitor``, ``logs``) never write to the store and never create it. Nothing heavy is imported: no
Hydra, SkyPilot, W&B, pandas, matplotlib, nbformat or jinja2 (``notebook`` imports the notebook writer
when it runs), and rich only for the live monitor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from metta_exp import groups
from metta_exp.cli.tables import fmt_age, group_table, jobs_table, links_table, runs_table, table
from metta_exp.errors import UsageError
from metta_exp.history.listing import DEFAULT_LIMIT, fmt_gpu_hours
from metta_exp.paths import jupyter_command
from metta_exp.records import GroupSummary, JobRecord, iso
from metta_exp.status import ACTIVE, ALL_STATUSES, JobStatus
from metta_exp.store import DB_NAME, default_state_dir
from metta_exp.text import plural
from metta_exp.trials import TrialRecord


def print_json_array(rows: Sequence[Mapping[str, object]]) -> None:
    """One JSON array, one object per line (readable, and fast: the C encoder does the work)."""
    if not rows:
        print("[]")
        return
    encode = json.JSONEncoder(check_circular=False).encode  # flat rows: no cycle to look for
    print("[\n" + ",\n".join(map(encode, rows)) + "\n]")


# --- list, show -------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    shown = groups.listing(
        args.patterns, status=args.status, since=args.since, until=args.until, limit=window(args)
    )
    filtered = bool(args.patterns or args.status or args.since or args.until)
    if args.json:
        print_json_array([group_json(s, shown.gpu_hours.get(s.name, 0.0)) for s in shown.groups])
        if shown.hidden:
            print(hidden_line(shown.hidden, "group", older=True), file=sys.stderr)
        return 0
    if not shown.groups:
        if filtered:
            print("No groups match.")
        else:
            print(f"No groups yet in {default_state_dir()}. Launch one: metta-exp +experiment=NAME")
        return 0
    open_groups, orphans = groups.unattended()
    print(group_table(shown.groups, open_groups, time.time(), gpu_hours=shown.gpu_hours))
    if shown.hidden:
        print(hidden_line(shown.hidden, "group", older=True))
    total = sum(shown.gpu_hours.values())
    if total > 0:
        print(
            f"GPU-hours: {fmt_gpu_hours(total)} in {'this group' if len(shown.groups) == 1 else 'these groups'}."
        )
    for name in orphans:
        print(f"No runner drives {name}; its jobs run on unobserved. Resume it: metta-exp job resume {name}")
    print(store_line())
    return 0


def window(args: argparse.Namespace) -> int | None:
    """How many rows ``-n``/``--all`` ask for (None: all of them)."""
    if args.all:
        return None
    if args.n < 1:
        raise UsageError(f"-n must be 1 or more, got {args.n}")
    return int(args.n)


def hidden_line(hidden: int, noun: str, older: bool) -> str:
    """``9,950 older groups not shown: --all shows every one, -n N the newest N.`` (``older``: the rows
    are newest first, else ``more ... the first N``)."""
    what = f"{hidden:,} {'older' if older else 'more'} {noun}{'' if hidden == 1 else 's'}"
    return f"{what} not shown: --all shows every one, -n N the {'newest' if older else 'first'} N."


def group_json(s: GroupSummary, gpu_hours: float) -> dict[str, object]:
    """One group of ``job list --json``."""
    return {
        "group": s.name,
        "total": s.total,
        **{st.value: s.counts[st.value] for st in ALL_STATUSES},
        "created_at": iso(s.created_at),
        "ended_at": iso(s.ended_at),
        "experiment": s.experiment,
        "backend": s.backend,
        "gpu_hours": gpu_hours,
    }


def cmd_runs(args: argparse.Namespace) -> int:
    found = groups.run_rows(
        args.patterns,
        status=args.status,
        since=args.since,
        until=args.until,
        where=[w for w in args.where if w is not None],
        sort=args.sort,
        reverse=args.reverse,
        limit=window(args),
    )
    hidden = hidden_line(found.hidden, "run", older=False) if found.hidden else None
    if args.json or args.csv:
        from metta_exp.history.runs import runs_csv, runs_json

        if args.json:
            print_json_array(runs_json(found))
        else:
            sys.stdout.write(runs_csv(found))
        if hidden:
            print(hidden, file=sys.stderr)
        return 0
    if not found.rows:
        print("No runs match." if found.matched == 0 else "")
        return 0
    text, notes = runs_table(found, time.time(), terminal_width())
    print(text)
    for line in [*([hidden] if hidden else []), *notes]:
        print(line)
    print(store_line())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import webbrowser

    print("Running the comparison notebook…", file=sys.stderr, flush=True)
    notebook, report = groups.compare(args.groups, args.output)
    print(f"Notebook: {notebook}")
    print(f"  in Jupyter: {jupyter_command(notebook)}")
    print(f"Report: {report}  (HTML, plots included: any browser opens it)")
    if args.open and report is not None and not webbrowser.open(report.as_uri()):
        print(f"No web browser found here: open {report} in one.", file=sys.stderr)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from metta_exp.history.remove import fmt_bytes, refusal

    removal = groups.rm_plan(
        args.patterns, older_than=args.older_than, status=args.status, notebooks=args.notebooks
    )
    if removal.active:
        raise refusal(removal.active)
    if removal.empty:
        print("Nothing to remove: no ended group matches.")
        return 0
    print(rm_plan_text(removal, fmt_bytes))
    if args.dry_run:
        print("Dry run: nothing removed.")
        return 0
    if not args.force and not confirm("Remove them?"):
        print("Nothing removed.")
        return 1
    try:
        done = groups.rm(removal)
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. Groups removed from the store stay removed; what is left of their files is in "
            f"{removal.state_dir / '.removing'}, which the next 'metta-exp job rm' deletes.",
            file=sys.stderr,
        )
        return 130
    print(f"Removed {plural(len(done.groups), 'group')}; freed {fmt_bytes(done.freed)}.")
    return 0


def rm_plan_text(removal: groups.RemovalPlan, fmt_bytes: Callable[[int], str], limit: int = 20) -> str:
    """What ``job rm`` removes: a line for the whole, a row per group (the first ``limit``), and what an
    interrupted ``job rm`` left."""
    gone = removal.removals
    jobs = sum(r.group.total for r in gone)
    head = f"Remove {plural(len(gone), 'group')} ({plural(jobs, 'job')}), freeing {fmt_bytes(removal.size)}:"
    now = time.time()
    rows = [
        [
            r.group.name,
            plural(r.group.total, "job"),
            ", ".join(f"{n} {s}" for s, n in r.group.counts.items() if n) or "-",
            f"created {fmt_age(now - r.group.created_at)} ago",
            fmt_bytes(r.size),
        ]
        for r in gone[:limit]
    ]
    lines = [
        head,
        *("  " + line for line in table(["GROUP", "JOBS", "STATUS", "AGE", "DISK"], rows).splitlines()[1:]),
    ]
    if len(gone) > limit:
        lines.append(f"  … and {len(gone) - limit} more")
    if removal.leftovers:
        where = removal.state_dir / ".removing"
        lines.append(f"Also what an interrupted job rm left in {where}: {fmt_bytes(removal.leftover_size)}.")
    return "\n".join(lines)


def terminal_width() -> int | None:
    """The width to fit a table into: ``$COLUMNS``, else the terminal's; None when the output is not a
    terminal (a pipe or a file gets whole lines)."""
    import os

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None


def store_line() -> str:
    """``store: PATH`` (``(none yet)`` when there is none): which store a command read."""
    path = default_state_dir() / DB_NAME
    return f"store: {path}" + ("" if path.exists() else " (none yet)")


def cmd_show(args: argparse.Namespace) -> int:
    view = groups.show(args.group)
    if args.json:
        trials = view.trial_by_run()
        print_json_array(
            [
                job_json(j, view.progress[j.run], trials.get(j.run))
                | {"gpu_hours": view.gpu_hours.get(j.run, 0.0)}
                for j in view.jobs
            ]
        )
        return 0
    print(jobs_table(view.group, view.jobs, view.progress, time.time(), view.trials, view.gpu_hours))
    print()
    print(links_table(view.jobs))
    if not view.driven:
        why = f" (last: {view.last_stop})" if view.last_stop else ""
        print(f"\nNo runner drives {args.group}{why}. Resume it: metta-exp job resume {args.group}")
    print(store_line())
    return 0


def job_json(j: JobRecord, progress: float | None, trial: TrialRecord | None = None) -> dict[str, object]:
    """One job of ``job show --json``; ``trial``: the search trial the job runs (None: not a search's)."""
    return {
        "group": j.group,
        "run": j.run,
        "status": j.status.value,
        "attempts": j.attempts,
        "exit_code": j.exit_code,
        "started_at": iso(j.started_at),
        "ended_at": iso(j.ended_at),
        "progress": progress,
        "wandb_url": j.wandb_url,
        "log_path": j.log_path,
        "depends_on": list(j.depends_on),
        "reason": j.reason,
        "trial": None if trial is None else trial_json(trial),
    }


def trial_json(t: TrialRecord) -> dict[str, object]:
    """A search trial in ``job show --json``: its number, state (running, complete, pruned, failed),
    objective value (None unless complete), parameters by config key, and why it was pruned or failed."""
    return {
        "number": t.number,
        "state": t.state.value,
        "value": t.value,
        "params": dict(t.params),
        "reason": t.reason,
    }


# --- monitor, logs ------------------------------------------------------------------------------------


def cmd_monitor(args: argparse.Namespace) -> int:
    from metta_exp.monitor.live import watch
    from metta_exp.supervise import Healer

    if args.refresh <= 0:
        raise UsageError(f"--refresh must be a positive number of seconds, got {args.refresh:g}")
    store = groups.store_for(args.group, readonly=True)  # watching reads; its healer opens a writer if needed
    return watch(
        store, args.group, refresh=args.refresh, show_logs=not args.no_logs, heal=Healer(store, args.group)
    )


def cmd_logs(args: argparse.Namespace) -> int:
    groups.store_for(args.group, readonly=True)  # an unknown group before a bad --tail
    if args.tail is not None and args.tail < 0:
        raise UsageError(f"--tail must be 0 or more lines, got {args.tail}")
    return groups.logs(
        args.group, args.run, args.attempt, args.tail, sys.stdout.buffer, sys.stderr, args.follow
    )


# --- kill, retry, resume, notebook -----------------------------------------------------------------------


def _names(jobs: Sequence[JobRecord], limit: int = 8) -> str:
    runs = [j.run for j in jobs]
    more = f", … ({len(runs) - limit} more)" if len(runs) > limit else ""
    return ", ".join(runs[:limit]) + more


def confirm(question: str) -> bool:
    """Ask ``question [y/N]`` on the terminal; no terminal or end of input means no."""
    if not sys.stdin.isatty():
        print(f"{question} [y/N] no (stdin is not a terminal: use --force)")
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def kill_plan_text(plan: groups.KillPlan) -> str:
    """``Kill GROUP: end 3 running jobs (a, b, c); cancel 1 pending job (d); ...``"""
    parts = []
    if plan.active:
        parts.append(f"end {plural(len(plan.active), 'running job')} ({_names(plan.active)})")
    if plan.pending:
        parts.append(f"cancel {plural(len(plan.pending), 'pending job')} ({_names(plan.pending)})")
    if plan.stray:
        what = plural(len(plan.stray), "ended job")
        parts.append(f"end the leftover processes of {what} ({_names(plan.stray)})")
    if plan.ended:
        parts.append(
            f"leave {plural(plan.ended, 'ended job')} as {'it is' if plan.ended == 1 else 'they are'}"
        )
    return f"Kill {plan.group}: " + "; ".join(parts) + "."


def cmd_kill(args: argparse.Namespace) -> int:
    groups.store_for(args.group)  # the writer's store: an error now if it cannot be written
    plan = groups.kill_plan(args.group)
    if plan.empty:
        print(f"Nothing to kill in {args.group}: no job is running or pending ({plan.ended} ended).")
        return 0
    print(kill_plan_text(plan))
    if not args.force and not confirm("Kill them?"):
        print("Nothing killed.")
        return 1
    if plan.active or plan.stray:
        more = f" and what {plural(len(plan.stray), 'ended job')} left running" if plan.stray else ""
        print(f"Ending {plural(len(plan.active), 'job')}{more}…", flush=True)
    done = groups.kill(args.group, plan)
    left = done.succeeded + done.failed
    print(
        f"Killed {args.group}: {done.cancelled} cancelled; {plural(left, 'job')} left as "
        f"{'it was' if left == 1 else 'they were'} ({done.succeeded} succeeded, {done.failed} failed)."
    )
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from metta_exp.monitor.live import watch
    from metta_exp.supervise import Healer

    store = groups.store_for(args.group)
    requeued = groups.retry(args.group)
    if not requeued:
        active = sum(1 for j in store.jobs(args.group) if j.status in ACTIVE or j.status == JobStatus.PENDING)
        print(
            f"Nothing to retry in {args.group}: no failed, cancelled or skipped run"
            + (f" ({active} still pending or running)." if active else " (every run succeeded).")
        )
        return 0
    listed = ", ".join(f"{r} ({status.value})" for r, status in requeued)
    print(f"Requeued {plural(len(requeued), 'run')} of {args.group}: {listed}.")
    print(f"Earlier attempts stay in the history: metta-exp job show {args.group}")
    if args.no_wait:
        print(f"Watch: metta-exp job monitor {args.group}")
        return 0
    return watch(store, args.group, heal=Healer(store, args.group))


def cmd_resume(args: argparse.Namespace) -> int:
    from metta_exp.monitor.live import watch
    from metta_exp.supervise import Healer

    store = groups.store_for(args.group)
    started = groups.resume(args.group)
    if store.group(args.group).ended_at:
        print(f"{args.group} has ended; nothing to drive.")
    else:
        print(f"{'Started a runner for' if started else 'A runner already drives'} {args.group}.")
    return watch(store, args.group, heal=Healer(store, args.group)) if not args.no_wait else 0


def cmd_notebook(args: argparse.Namespace) -> int:
    written = groups.notebook(args.group, args.output)
    print(f"Notebook: {written}")
    print(f"Open it in Jupyter: {jupyter_command(written.absolute())}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import webbrowser

    groups.store_for(args.group)
    print(f"Running the notebook of {args.group}…", file=sys.stderr, flush=True)
    written = groups.report(args.group, args.output)
    print(f"Report: {written}")
    if args.open and not webbrowser.open(written.as_uri()):
        print(f"No web browser found here: open {written} in one.", file=sys.stderr)
    return 0


# --- the parser ------------------------------------------------------------------------------------------

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


def _sub(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    text: str,
    store_flag: bool = True,
) -> argparse.ArgumentParser:
    """A command's parser; ``store_flag``: with the bare ``--where`` every command takes (``job runs``
    has its own, which also filters)."""
    common = argparse.ArgumentParser(add_help=False)
    if store_flag:
        common.add_argument(
            "--where",
            action="store_true",
            help="print which store this command reads (store: PATH) on stderr",
        )
    return sub.add_parser(
        name,
        parents=[common],
        help=help,
        description=text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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
    p.add_argument(
        "--since", metavar="T", help="created at T or later: 7d, 12h, 2026-12-01, 2026-12-01T14:30"
    )
    if until:
        p.add_argument("--until", metavar="T", help="created before T (a date: until the end of that day)")


def add_window(p: argparse.ArgumentParser, noun: str) -> None:
    """``-n N`` / ``--all``: how many rows to show."""
    window = p.add_mutually_exclusive_group()
    window.add_argument(
        "-n", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"show {DEFAULT_LIMIT} {noun} unless told N"
    )
    window.add_argument("--all", action="store_true", help=f"show every {noun[:-1]} the filters select")


def build_parser() -> argparse.ArgumentParser:
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

    p = _sub(
        sub,
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
    p.set_defaults(func=cmd_list)

    p = _sub(
        sub,
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
        "--sort", metavar="KEY", help="a metric (reward or overview/reward), a column or an override"
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
    p.set_defaults(func=cmd_runs)

    p = _sub(
        sub,
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
    p.set_defaults(func=cmd_compare)

    p = _sub(
        sub,
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
    p.set_defaults(func=cmd_rm)

    p = _sub(
        sub,
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
    p.set_defaults(func=cmd_show)

    p = _sub(
        sub,
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
    p.set_defaults(func=cmd_monitor)

    p = _sub(
        sub,
        "kill",
        "end a group's running jobs and cancel its pending ones",
        "End the running jobs of GROUP (whole process trees), cancel its pending ones and stop further "
        "launches.\nSucceeded and failed jobs stay as they are. Asks first unless --force. Safe while "
        "a runner or monitor runs.",
    )
    p.add_argument("group")
    p.add_argument("--force", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_kill)

    p = _sub(
        sub,
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
    p.set_defaults(func=cmd_logs)

    p = _sub(
        sub,
        "retry",
        "relaunch a group's failed, cancelled and skipped runs",
        "Relaunch the failed, cancelled and skipped runs of GROUP as new attempts, with their names, "
        "arguments\nand dependencies; succeeded runs are not rerun and earlier attempts stay in the "
        "history. Then watch.",
    )
    p.add_argument("group")
    p.add_argument("--no-wait", action="store_true", help="return once a runner drives the group")
    p.set_defaults(func=cmd_retry)

    p = _sub(
        sub,
        "notebook",
        "(re)write a group's analysis notebook",
        "Write the analysis notebook of GROUP (by default where the group's config says).",
    )
    p.add_argument("group")
    p.add_argument("-o", "--output", metavar="PATH", help="where to write it")
    p.set_defaults(func=cmd_notebook)

    p = _sub(
        sub,
        "report",
        "(re)write a group's HTML report",
        "Run the analysis notebook of GROUP top to bottom and write it as one self-contained HTML page "
        "(plots\nembedded, nothing to install to read it), by default beside the notebook "
        "(<notebook>.html).",
    )
    p.add_argument("group")
    p.add_argument("-o", "--output", metavar="PATH", help="where to write it")
    p.add_argument("--open", action="store_true", help="then open it in the web browser")
    p.set_defaults(func=cmd_report)

    p = _sub(
        sub,
        "resume",
        "drive a group whose runner stopped, and watch it",
        "Start a runner for GROUP if none is alive, then watch it.",
    )
    p.add_argument("group")
    p.add_argument("--no-wait", action="store_true", help="return once a runner drives the group")
    p.set_defaults(func=cmd_resume)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.where is True or (isinstance(args.where, list) and None in args.where):
        print(store_line(), file=sys.stderr, flush=True)
    return int(args.func(args))
