"""``metta-exp job ...``: manage groups from any terminal, at any time.

A thin layer over the store: it turns store records into tables, JSON and the live monitor. It imports
nothing heavy (no Hydra, SkyPilot, W&B, pandas or matplotlib).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from metta_exp.store import JobStore


def _resume(args: argparse.Namespace) -> int:
    from metta_exp.monitor import watch
    from metta_exp.runner import ensure_driver

    store = JobStore.open()
    store.group(args.group)
    started = ensure_driver(store, args.group)
    print(f"{'Started a runner for' if started else 'A runner already drives'} {args.group}.")
    return watch(store, args.group) if not args.no_wait else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metta-exp job", description="Manage job groups.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("resume", help="drive a group whose runner stopped, and watch it",
                       description="Start a runner for GROUP if none is alive, then watch it.\n\n"
                                   "Example: metta-exp job resume lr_sweep")
    p.add_argument("group")
    p.add_argument("--no-wait", action="store_true", help="return once a runner drives the group")
    p.set_defaults(func=_resume)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(args))
