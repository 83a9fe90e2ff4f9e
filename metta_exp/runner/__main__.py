"""``python -m metta_exp.runner GROUP``: the runner process of one group (``supervise.spawn_runner``
starts it detached, holding the lease it was handed in ``METTA_EXP_RUNNER_OWNER``). SIGTERM, SIGHUP and
SIGINT stop it after the cycle under way; it hands the group on and says how to resume."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from metta_exp.runner import Runner
from metta_exp.store import JobStore
from metta_exp.supervise import lease_owner_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metta_exp.runner", description="Drive one job group.")
    parser.add_argument("group")
    args = parser.parse_args(argv)
    from metta_exp.backends import make_backend

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
