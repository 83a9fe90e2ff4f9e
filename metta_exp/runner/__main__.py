"""``python -m metta_exp.runner GROUP``: the runner process of one group (``supervise.spawn_runner``
starts it detached, holding the lease it was handed in ``METTA_EXP_RUNNER_OWNER``). SIGTERM, SIGHUP and
SIGINT stop it after the cycle under way; it hands the group on and says how to resume.

``python -m metta_exp.runner --standby``: a runner started before its group exists
(``supervise.StandbyRunner``): it imports what it needs, then reads its group, state directory and lease
owner from one JSON line on stdin, writes to that group's runner log from then on, and drives it; at
end-of-file instead it exits, having touched nothing."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from metta_exp.backends import make_backend
from metta_exp.backends.local import LocalBackend  # noqa: F401 - imported ahead, while standing by
from metta_exp.paths import runner_log
from metta_exp.runner import Runner
from metta_exp.store import JobStore
from metta_exp.supervise.drive import STANDBY_FLAG
from metta_exp.supervise.lease import lease_owner_id


def standby() -> str | None:
    """Wait for the group on stdin; its name, with this process set up as ``spawn_runner`` sets one up
    (its log as stdout and stderr, the state directory and lease owner in its environment); None at
    end-of-file."""
    line = sys.stdin.readline()
    if not line.strip():
        return None
    handed = json.loads(line)
    state_dir, group = Path(handed["state_dir"]), str(handed["group"])
    log = runner_log(state_dir, group)
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    for target, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
    ):
        fd = os.open(path, flags, 0o644)
        os.dup2(fd, target)
        if target == 1:
            os.dup2(fd, 2)
        os.close(fd)
    os.environ["METTA_EXP_STATE_DIR"] = str(state_dir)
    os.environ["METTA_EXP_RUNNER_OWNER"] = str(handed["owner"])
    return group


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metta_exp.runner", description="Drive one job group.")
    parser.add_argument("group", nargs="?")
    parser.add_argument(STANDBY_FLAG, action="store_true", help="wait on stdin for the group to drive")
    args = parser.parse_args(argv)
    if args.standby:
        args.group = standby()
        if args.group is None:
            return 0
    elif args.group is None:
        parser.error("the group to drive is required")

    store = JobStore.open()
    group = store.group(args.group)
    owner = os.environ.pop("METTA_EXP_RUNNER_OWNER", None) or lease_owner_id()  # jobs must not inherit it
    backend = make_backend(group.backend, store.state_dir, group.exp, group.location)  # where it runs
    runner = Runner(store, args.group, backend, owner=owner)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: runner.stop(signal.Signals(signum).name))
    code = runner.drive()
    return 0 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
