"""``metta-exp job ...``: manage groups from any terminal, at any time.

A thin layer over :mod:`metta_exp.groups` (the Python API): it parses arguments, asks before a kill, and
turns what the API returns into tables, JSON and the live monitor. Readers (``list``, ``show``,
``monitor``, ``logs``) never write to the store and never create it. Nothing heavy is imported: no
Hydra, SkyPilot, W&B, pandas, matplotlib, nbformat or jinja2 (``notebook`` imports the notebook writer
when it runs), and rich only for the live monitor.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from metta_exp import groups
from metta_exp.cli.job_parser import parse
from metta_exp.cli.tables import (
    fmt_bytes,
    fmt_gpu_hours,
    group_json,
    group_table,
    hidden_line,
    job_json,
    jobs_table,
    json_array,
    jupyter_line,
    kill_plan_text,
    links_table,
    log_missing_line,
    notebook_lines,
    rm_plan_text,
    runs_csv,
    runs_json,
    runs_table,
    store_line,
)
from metta_exp.errors import UsageError
from metta_exp.text import plural

# --- list, runs, show -----------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    shown = groups.listing(
        args.patterns, status=args.status, since=args.since, until=args.until, limit=window(args)
    )
    filtered = bool(args.patterns or args.status or args.since or args.until)
    if args.json:
        print(json_array([group_json(s, shown.gpu_hours.get(s.name, 0.0)) for s in shown.groups]))
        if shown.hidden:
            print(hidden_line(shown.hidden, "group", older=True), file=sys.stderr)
        return 0
    if not shown.groups:
        if filtered:
            print("No groups match.")
        else:
            print(f"No groups yet in {groups.store_path().parent}. Launch one: metta-exp +experiment=NAME")
        return 0
    print(group_table(shown.groups, shown.open_groups, time.time(), gpu_hours=shown.gpu_hours))
    if shown.hidden:
        print(hidden_line(shown.hidden, "group", older=True))
    total = sum(shown.gpu_hours.values())
    if total > 0:
        print(
            f"GPU-hours: {fmt_gpu_hours(total)} in {'this group' if len(shown.groups) == 1 else 'these groups'}."
        )
    for name in shown.orphans:
        if why := shown.held.get(name):
            print(f"No runner drives {name}: {why}. Then resume it: metta-exp job resume {name}")
        else:
            print(
                f"No runner drives {name}; its jobs run on unobserved. Resume it: metta-exp job resume {name}"
            )
    print(store_line(groups.store_path()))
    return 0


def window(args: argparse.Namespace) -> int | None:
    """How many rows ``-n``/``--all`` ask for (None: all of them)."""
    if args.all:
        return None
    if args.n < 1:
        raise UsageError(f"-n must be 1 or more, got {args.n}")
    return int(args.n)


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
        if args.json:
            print(json_array(runs_json(found)))
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
    print(store_line(groups.store_path()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import webbrowser

    names = groups.compare_names(args.groups)  # bad names before the line that says it runs
    print(f"Running the comparison notebook of {', '.join(names)}…", file=sys.stderr, flush=True)
    notebook, report = groups.compare(names, args.output)
    print(f"Notebook: {notebook}")
    print(f"  in Jupyter: {jupyter_line(notebook)}")
    print(f"Report: {report}  (HTML, plots included: any browser opens it)")
    if args.open and report is not None and not webbrowser.open(report.as_uri()):
        print(f"No web browser found here: open {report} in one.", file=sys.stderr)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    removal = groups.rm_plan(
        args.patterns,
        older_than=args.older_than,
        status=args.status,
        notebooks=args.notebooks,
        refuse_open=True,
    )
    if removal.empty:
        print("Nothing to remove: no ended group matches.")
        return 0
    print(rm_plan_text(removal))
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


def terminal_width() -> int | None:
    """The width to fit a table into: ``$COLUMNS``, else the terminal's; None when the output is not a
    terminal (a pipe or a file gets whole lines)."""
    import os

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None


def cmd_show(args: argparse.Namespace) -> int:
    view = groups.show(args.group)
    if args.json:
        trials = view.trial_by_run()
        rows = [
            job_json(j, view.progress[j.run], trials.get(j.run))
            | {"gpu_hours": view.gpu_hours.get(j.run, 0.0)}
            for j in view.jobs
        ]
        print(json_array(rows))
        return 0
    print(jobs_table(view.group, view.jobs, view.progress, time.time(), view.trials, view.gpu_hours))
    print()
    print(links_table(view.jobs))
    if not view.driven:
        why = f" (last: {view.last_stop})" if view.last_stop else ""
        print(f"\nNo runner drives {args.group}{why}. Resume it: metta-exp job resume {args.group}")
    print(store_line(groups.store_path()))
    return 0


# --- monitor, logs ------------------------------------------------------------------------------------


def cmd_monitor(args: argparse.Namespace) -> int:
    return groups.watch(args.group, refresh=args.refresh, show_logs=not args.no_logs)


def cmd_logs(args: argparse.Namespace) -> int:
    out, err = sys.stdout.buffer, sys.stderr
    if not args.follow:
        found = groups.log(args.group, args.run, args.attempt, args.tail)
        if not found.exists:
            print(log_missing_line(found), file=err)
        for data in found.chunks():
            out.write(data)
        out.flush()
        return 0
    for event in groups.follow_log(args.group, args.run, args.attempt, args.tail):
        if event.kind == "bytes":
            out.write(event.data)
            out.flush()
        elif event.kind == "attempt":
            print(f"--- {args.run}: attempt {event.attempt} ({event.path})", file=err, flush=True)
        elif event.kind == "waiting":
            print(f"--- waiting for {args.run} to start ({event.status.value})", file=err, flush=True)
        else:
            return 0 if event.succeeded else 1
    return 1


# --- kill, retry, resume, notebook -----------------------------------------------------------------------


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


def cmd_kill(args: argparse.Namespace) -> int:
    def ask(plan: groups.KillPlan) -> bool:
        print(kill_plan_text(plan))
        if not args.force and not confirm("Kill them?"):
            return False
        if plan.active or plan.stray:
            more = f" and what {plural(len(plan.stray), 'ended job')} left running" if plan.stray else ""
            print(f"Ending {plural(len(plan.active), 'job')}{more}…", flush=True)
        return True

    done = groups.kill(args.group, confirm=ask)  # one store: its plan, the question, the kill
    if done.plan is not None and done.plan.empty:
        print(f"Nothing to kill in {args.group}: no job is running or pending ({done.plan.ended} ended).")
        return 0
    if not done.killed:
        print("Nothing killed.")
        return 1
    left = done.succeeded + done.failed
    kept = (
        f"; {plural(left, 'job')} left as {'it was' if left == 1 else 'they were'} "
        f"({done.succeeded} succeeded, {done.failed} failed)"
        if left
        else ""
    )
    print(f"Killed {args.group}: {done.cancelled} cancelled{kept}.")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    requeued = groups.retry(args.group)
    if not requeued:
        going = sum(1 for j in groups.show(args.group).jobs if not j.status.is_terminal())
        print(
            f"Nothing to retry in {args.group}: no failed, cancelled or skipped run"
            + (f" ({going} still pending or running)." if going else " (every run succeeded).")
        )
        return 0
    listed = ", ".join(f"{r} ({status.value})" for r, status in requeued)
    print(f"Requeued {plural(len(requeued), 'run')} of {args.group}: {listed}.")
    print(f"Earlier attempts stay in the history: metta-exp job show {args.group}")
    if args.no_wait:
        print(f"Watch: metta-exp job monitor {args.group}")
        return 0
    return groups.watch(args.group, since_retry=True)  # the new attempts, not the group's history again


def cmd_resume(args: argparse.Namespace) -> int:
    started = groups.resume(args.group)
    if groups.record(args.group).ended_at:
        print(f"{args.group} has ended; nothing to drive.")
    else:
        print(f"{'Started a runner for' if started else 'A runner already drives'} {args.group}.")
    return groups.watch(args.group) if not args.no_wait else 0


def cmd_notebook(args: argparse.Namespace) -> int:
    for line in notebook_lines(groups.notebook(args.group, args.output)):
        print(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import webbrowser

    groups.record(args.group)  # an unknown group before the line that says it runs
    print(f"Running the notebook of {args.group}…", file=sys.stderr, flush=True)
    written = groups.report(args.group, args.output)
    print(f"Report: {written}")
    if args.open and not webbrowser.open(written.as_uri()):
        print(f"No web browser found here: open {written} in one.", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": cmd_list,
    "runs": cmd_runs,
    "compare": cmd_compare,
    "rm": cmd_rm,
    "show": cmd_show,
    "monitor": cmd_monitor,
    "kill": cmd_kill,
    "logs": cmd_logs,
    "retry": cmd_retry,
    "notebook": cmd_notebook,
    "report": cmd_report,
    "resume": cmd_resume,
}


def main(argv: Sequence[str]) -> int:
    return run(parse(argv))


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` (from :func:`~metta_exp.cli.job_parser.parse`) names; its exit code."""
    if args.where is True or (isinstance(args.where, list) and None in args.where):
        print(store_line(groups.store_path()), file=sys.stderr, flush=True)
    return int(COMMANDS[args.command](args))
