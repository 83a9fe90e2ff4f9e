"""``metta-exp job ...``: manage groups from any terminal, at any time.

A thin layer over the store: it turns records into tables, JSON and the live monitor, and asks the
runner and the backends to do the rest. Readers (``list``, ``show``, ``monitor``, ``logs``) never write
to the store and never create it. Nothing heavy is imported: no Hydra, SkyPilot, W&B, pandas,
matplotlib, nbformat or jinja2 (``notebook`` imports the notebook writer when it runs), and rich only
for the live monitor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from metta_exp.errors import NotFoundError, UsageError
from metta_exp.jobs_text import group_table, jobs_table, links_table
from metta_exp.paths import jupyter_command
from metta_exp.records import GroupRecord, JobRecord, iso
from metta_exp.status import ACTIVE, ALL_STATUSES, JobStatus
from metta_exp.store import DB_NAME, JobStore, default_state_dir

RETRY_DRIVE_WAIT_S = 30.0


def print_json_array(rows: Sequence[Mapping[str, object]]) -> None:
    """One JSON array, one object per line (readable, and fast: the C encoder does the work)."""
    if not rows:
        print("[]")
        return
    print("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]")


def open_store(readonly: bool = False) -> JobStore | None:
    """The store metta-exp finds (:func:`default_state_dir`), or None when there is none yet.
    ``readonly``: a reader's connection (works on a store it cannot write, never changes it)."""
    state_dir = default_state_dir()
    if not (state_dir / DB_NAME).exists():
        return None
    return JobStore.open(state_dir, create=False, readonly=readonly)


def store_for(group: str, readonly: bool = False) -> JobStore:
    """The store, which must hold ``group`` (``NotFoundError`` otherwise: exit code 2)."""
    store = open_store(readonly)
    if store is None:
        raise NotFoundError(
            f"no group '{group}': no groups yet in {default_state_dir()} (no job_state/ here or in a "
            "parent directory; METTA_EXP_STATE_DIR names another state directory)"
        )
    store.group(group)
    return store


# --- list, show -------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    store = open_store(readonly=True)
    summaries = store.list_groups() if store is not None else []
    if args.json:
        rows = [
            {
                "group": s.name,
                "total": s.total,
                **{st.value: s.counts[st.value] for st in ALL_STATUSES},
                "created_at": iso(s.created_at),
            }
            for s in summaries
        ]
        print_json_array(rows)
        return 0
    if not summaries:
        print(f"No groups yet in {default_state_dir()}. Launch one: metta-exp +experiment=NAME")
        return 0
    open_groups = {g.name: g for g in store.active_groups()} if store is not None else {}
    print(group_table(summaries, open_groups, time.time()))
    from metta_exp.supervise import owner_alive

    for name, group in open_groups.items():
        if not group.cancel_requested and not owner_alive(group):
            print(
                f"No runner drives {name}; its jobs run on unobserved. Resume it: metta-exp job resume {name}"
            )
    print(store_line())
    return 0


def store_line() -> str:
    """``store: PATH`` (``(none yet)`` when there is none): which store a command read."""
    path = default_state_dir() / DB_NAME
    return f"store: {path}" + ("" if path.exists() else " (none yet)")


def cmd_show(args: argparse.Namespace) -> int:
    from metta_exp.logtail import read_progress

    store = store_for(args.group, readonly=True)
    group = store.group(args.group)
    jobs = store.jobs(args.group)
    # the current attempt's progress: none yet for a pending job (its log is an earlier attempt's)
    progress = {j.run: read_progress(j.log_path) if j.status != JobStatus.PENDING else None for j in jobs}
    fractions = {
        run: (round(p.fraction, 4) if p and p.fraction is not None else None) for run, p in progress.items()
    }
    if args.json:
        rows = [
            {
                "group": j.group,
                "run": j.run,
                "status": j.status.value,
                "attempts": j.attempts,
                "exit_code": j.exit_code,
                "started_at": iso(j.started_at),
                "ended_at": iso(j.ended_at),
                "progress": fractions[j.run],
                "wandb_url": j.wandb_url,
                "log_path": j.log_path,
                "depends_on": list(j.depends_on),
                "reason": j.reason,
            }
            for j in jobs
        ]
        print_json_array(rows)
        return 0
    now = time.time()
    print(jobs_table(group, jobs, fractions, now))
    print()
    print(links_table(jobs))
    from metta_exp.supervise import owner_alive

    if not group.ended_at and not owner_alive(group):
        stopped = store.events(args.group, kind="runner_stopped")
        why = f" (last: {stopped[-1].detail.split(';')[0]})" if stopped and stopped[-1].detail else ""
        print(f"\nNo runner drives {args.group}{why}. Resume it: metta-exp job resume {args.group}")
    print(store_line())
    return 0


# --- monitor, logs ------------------------------------------------------------------------------------


def cmd_monitor(args: argparse.Namespace) -> int:
    from metta_exp.monitor import watch
    from metta_exp.supervise import Healer

    if args.refresh <= 0:
        raise UsageError(f"--refresh must be a positive number of seconds, got {args.refresh:g}")
    store = store_for(args.group, readonly=True)  # watching reads; its healer opens a writer if needed
    return watch(
        store, args.group, refresh=args.refresh, show_logs=not args.no_logs, heal=Healer(store, args.group)
    )


def cmd_logs(args: argparse.Namespace) -> int:
    from metta_exp.logtail import follow, print_log
    from metta_exp.supervise import Healer

    store = store_for(args.group, readonly=True)
    if args.tail is not None and args.tail < 0:
        raise UsageError(f"--tail must be 0 or more lines, got {args.tail}")
    if args.follow:
        return follow(
            store,
            args.group,
            args.run,
            args.attempt,
            args.tail,
            sys.stdout.buffer,
            sys.stderr,
            heal=Healer(store, args.group),
        )
    return print_log(store, args.group, args.run, args.attempt, args.tail, sys.stdout.buffer, sys.stderr)


# --- kill, retry, resume, notebook -----------------------------------------------------------------------


def plural(n: int, noun: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


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


def leftovers(group: GroupRecord, jobs: Sequence[JobRecord]) -> list[JobRecord]:
    """Ended jobs of a local group with processes still alive: helpers that daemonised and outlived
    their job, found by the markers in their environment (Linux)."""
    from metta_exp.backends import procs

    if group.backend != "local" or not procs.HAS_PROCFS:
        return []
    ended = {j.run_dir: j for j in jobs if j.status.is_terminal()}
    found: dict[str, JobRecord] = {}
    for proc in procs.process_table().values():
        markers = None if proc.dead else procs.environ_markers(proc.pid)
        if markers is not None and markers[0] == group.name and markers[1] in ended:
            found[markers[1]] = ended[markers[1]]
    return list(found.values())


def cmd_kill(args: argparse.Namespace) -> int:
    from metta_exp.backends import make_backend
    from metta_exp.runner import launch_of
    from metta_exp.supervise import ensure_driver

    store = store_for(args.group)
    group = store.group(args.group)
    jobs = store.jobs(args.group)
    active = [j for j in jobs if j.status in ACTIVE]
    pending = [j for j in jobs if j.status == JobStatus.PENDING]
    stray = leftovers(group, jobs)
    ended = len(jobs) - len(active) - len(pending)
    if not active and not pending and not stray:
        print(f"Nothing to kill in {args.group}: no job is running or pending ({ended} ended).")
        return 0
    plan = []
    if active:
        plan.append(f"end {plural(len(active), 'running job')} ({_names(active)})")
    if pending:
        plan.append(f"cancel {plural(len(pending), 'pending job')} ({_names(pending)})")
    if stray:
        plan.append(f"end the leftover processes of {plural(len(stray), 'ended job')} ({_names(stray)})")
    if ended:
        plan.append(f"leave {plural(ended, 'ended job')} as {'it is' if ended == 1 else 'they are'}")
    print(f"Kill {args.group}: " + "; ".join(plan) + ".")
    if not args.force and not confirm("Kill them?"):
        print("Nothing killed.")
        return 1
    backend = make_backend(group.backend, store.state_dir)  # unusable: an error before anything changes
    # Pending jobs are cancelled and launches blocked in one transaction. Active jobs are recorded as
    # cancelled before their processes are ended: a runner polling meanwhile then sees a terminal job,
    # not a job that died of SIGTERM (which it would record as failed, and perhaps retry). A runner
    # whose job was still launching finds it cancelled and ends what it started.
    active = store.request_cancel(args.group) if active or pending else []
    for job in active:
        store.finish_attempt(args.group, job.run, job.attempts, JobStatus.CANCELLED, reason="killed by user")
    try:
        if active or stray:
            more = f" and what {plural(len(stray), 'ended job')} left running" if stray else ""
            print(f"Ending {plural(len(active), 'job')}{more}…", flush=True)
            backend.cancel([launch_of(group, j) for j in [*active, *stray]])
    finally:
        backend.close()
    ensure_driver(store, args.group)  # someone must close the group (and write its notebook)
    after = store.jobs(args.group)
    cancelled = sum(1 for j in after if j.status == JobStatus.CANCELLED)
    print(
        f"Killed {args.group}: {cancelled} cancelled; "
        f"{sum(1 for j in after if j.status == JobStatus.SUCCEEDED)} succeeded and "
        f"{sum(1 for j in after if j.status == JobStatus.FAILED)} failed jobs left as they were."
    )
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from metta_exp.monitor import watch
    from metta_exp.supervise import Healer

    store = store_for(args.group)
    before = {j.run: j.status for j in store.jobs(args.group)}
    events = store.events(args.group)
    mark = events[-1].id if events else 0
    runs = store.requeue_for_retry(args.group)
    if not runs:
        active = sum(1 for s in before.values() if s in ACTIVE or s == JobStatus.PENDING)
        print(
            f"Nothing to retry in {args.group}: no failed, cancelled or skipped run"
            + (f" ({active} still pending or running)." if active else " (every run succeeded).")
        )
        return 0
    listed = ", ".join(f"{r} ({before[r].value})" for r in runs)
    print(f"Requeued {plural(len(runs), 'run')} of {args.group}: {listed}.")
    print(f"Earlier attempts stay in the history: metta-exp job show {args.group}")
    wait_driven(store, args.group, mark)
    if args.no_wait:
        print(f"Watch: metta-exp job monitor {args.group}")
        return 0
    return watch(store, args.group, heal=Healer(store, args.group))


def wait_driven(store: JobStore, group: str, after_event: int, timeout: float = RETRY_DRIVE_WAIT_S) -> bool:
    """Make sure a runner drives ``group`` after a retry: start one when none is alive, until a driver
    acted after event ``after_event`` (took the lease, or moved a job). A runner that was just ending
    the group may exit without seeing the requeued runs; the one started here then takes over."""
    from metta_exp.supervise import ensure_driver

    deadline = time.time() + timeout
    while time.time() < deadline:
        ensure_driver(store, group)
        if any(e.kind in ("runner", "status") for e in store.events(group, after_event)):
            return True
        time.sleep(0.1)
    return False


def cmd_resume(args: argparse.Namespace) -> int:
    from metta_exp.monitor import watch
    from metta_exp.supervise import Healer, ensure_driver

    store = store_for(args.group)
    started = ensure_driver(store, args.group)
    group = store.group(args.group)
    if group.ended_at:
        print(f"{args.group} has ended; nothing to drive.")
    else:
        print(f"{'Started a runner for' if started else 'A runner already drives'} {args.group}.")
    return watch(store, args.group, heal=Healer(store, args.group)) if not args.no_wait else 0


def cmd_notebook(args: argparse.Namespace) -> int:
    from metta_exp.notebook import write_group_notebook
    from metta_exp.paths import notebook_path

    store = store_for(args.group, readonly=True)
    group = store.group(args.group)
    path = Path(args.output) if args.output else notebook_path(group)
    written = write_group_notebook(group, store.jobs(args.group), path)
    print(f"Notebook: {written}")
    print(f"Open it in Jupyter: {jupyter_command(written.absolute())}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import webbrowser

    from metta_exp.paths import launch_dir, notebook_path, report_path
    from metta_exp.report import write_group_report

    store = store_for(args.group)
    group = store.group(args.group)
    path = Path(args.output).absolute() if args.output else report_path(notebook_path(group))
    print(f"Running the notebook of {args.group}…", file=sys.stderr, flush=True)
    written = write_group_report(group, store.jobs(args.group), path, launch_dir(group))
    print(f"Report: {written}")
    if args.open and not webbrowser.open(written.as_uri()):
        print(f"No web browser found here: open {written} in one.", file=sys.stderr)
    return 0


# --- the parser ------------------------------------------------------------------------------------------

EXAMPLES = {
    "list": "metta-exp job list\n  metta-exp job list --json | jq '.[] | select(.failed > 0) | .group'",
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
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str, text: str
) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--where", action="store_true", help="print which store this command reads (store: PATH) on stderr"
    )
    return sub.add_parser(
        name,
        parents=[common],
        help=help,
        description=text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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
        "every group with its counts by status",
        "Every group, newest first: counts by status, age, and whether a runner drives it.",
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON array of {group, total, <status counts>, created_at}"
    )
    p.set_defaults(func=cmd_list)

    p = _sub(
        sub,
        "show",
        "every job of a group",
        "Every job of GROUP: status, attempts, exit code, times, "
        "progress, W&B URL, log path, dependencies, failure reason.",
    )
    p.add_argument("group")
    p.add_argument("--json", action="store_true", help="one JSON array, one object per job")
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
    if args.where:
        print(store_line(), file=sys.stderr, flush=True)
    return int(args.func(args))
