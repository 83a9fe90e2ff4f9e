"""The HTML report of a group: its notebook executed top to bottom, exported as one self-contained page.

    write_report(Path("experiments/notebooks/demo.ipynb"), Path("experiments/notebooks/demo.html"))

The notebook runs in a fresh kernel of this very interpreter (nbclient, ipykernel) with the launch
directory as its working directory; nbconvert's HTML exporter turns it into a page whose plots are
``data:`` URIs and whose styles are inline. The report template drops the page's only outside
references (RequireJS, MathJax, Mermaid from a CDN), so it opens offline, from a mail attachment or a
shared drive, with nothing else beside it. A cell that fails does not stop the report: its error is
shown where it happened, as Jupyter would. nbclient, nbconvert and ipykernel are imported inside
the functions (they are heavy; ``metta-exp job list`` must not pay for them).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metta_exp.atomic import write_atomic
from metta_exp.notebook.cells import templates_dir
from metta_exp.paths import make_output_dir, report_path
from metta_exp.records import GroupRecord, JobRecord
from metta_exp.trials import TrialRecord

__all__ = [
    "CELL_TIMEOUT_S",
    "execute_notebook",
    "html_of",
    "report_path",
    "write_group_report",
    "write_report",
]

CELL_TIMEOUT_S = 600
"""A cell running longer is an error in the report (fetching many W&B runs can take a while)."""


def write_group_report(
    group: GroupRecord,
    jobs: Sequence[JobRecord],
    target: Path,
    cwd: Path | None = None,
    trials: Sequence[TrialRecord] = (),
    gpu_hours: Mapping[str, float] | None = None,
) -> Path:
    """The report of ``group``: its notebook rendered from the records (as ``job notebook`` writes it;
    ``trials``: a search group's; ``gpu_hours``: each run's), executed and written to ``target``."""
    from metta_exp.notebook.cells import render_notebook, run_info

    notebook = render_notebook(group, [run_info(j) for j in jobs], trials=trials, gpu_hours=gpu_hours)
    return write_report(notebook, target, cwd, title=group.name)


def write_report(notebook: str, target: Path, cwd: Path | None = None, title: str = "report") -> Path:
    """Execute the notebook whose text is ``notebook`` (in ``cwd``, default: the current directory) and
    write its HTML to ``target`` atomically (parents created). Returns ``target``."""
    import nbformat

    nb = nbformat.reads(notebook, as_version=4)
    execute_notebook(nb, cwd if cwd is not None and cwd.is_dir() else Path.cwd())
    make_output_dir(target)
    return write_atomic(target, html_of(nb, title), parents=True)


def execute_notebook(nb: Any, cwd: Path) -> None:
    """Run every cell of ``nb`` in place, in a kernel of this interpreter, errors kept as outputs. The
    kernel is shut down, and its connection file and sockets removed, before this returns (or raises).

    The kernel listens on Unix sockets in a directory of its own (ZeroMQ's ``ipc`` transport), not on
    TCP ports: jupyter_client picks five free ports and the kernel binds them a moment later, and on a
    busy machine (reports of several groups at once, a notebook server, the test suite's kernels)
    another process took one in between: the kernel could not start ("Address already in use") and the
    report waited a minute for it ("Kernel didn't respond in 60 seconds"). Sockets in a private
    directory cannot be taken, and nothing but this process can reach them."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    # no progress bar: a report is read after the fact, where a bar is frozen text on a red block
    env = dict(os.environ, MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1", TQDM_DISABLE="1")
    env.pop("METTA_EXP_RUNNER_OWNER", None)
    with tempfile.TemporaryDirectory(prefix="metta-exp-kernel-", dir=_socket_parent()) as sockets:
        km = KernelManager(
            kernel_name="python3",
            kernel_spec_manager=_own_kernel_specs(),
            transport="ipc",
            ip=os.path.join(sockets, "k"),  # the sockets: k-1 ... k-5 (a Unix socket path is short)
        )
        client = NotebookClient(
            nb,
            km=km,
            timeout=CELL_TIMEOUT_S,
            allow_errors=True,
            resources={"metadata": {"path": str(cwd)}},
        )
        # the kernel's own chatter ("parent exited") is not the report's business. cleanup_kc: nbclient
        # shuts down only kernels of managers it made itself; this one is ours, so without it the kernel
        # outlived the report and its connection file stayed in the temp directory.
        client.execute(env=env, stderr=subprocess.DEVNULL, cleanup_kc=True)


def _socket_parent() -> str | None:
    """Where the kernel's socket directory goes: the temporary directory, unless its path is too long for
    a Unix socket's (107 bytes on Linux, with ``/metta-exp-kernel-XXXXXXXX/k-5`` after it), then /tmp."""
    parent = tempfile.gettempdir()
    return parent if len(os.fsencode(parent)) <= 70 or not os.path.isdir("/tmp") else "/tmp"


def _own_kernel_specs() -> Any:
    """A kernel spec manager whose ``python3`` is always ipykernel on ``sys.executable`` (metta-exp's own
    environment), never a ``python3`` kernel a user registered for another interpreter."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class OwnKernelSpecs(KernelSpecManager):  # type: ignore[misc]
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    return OwnKernelSpecs()


def html_of(nb: Any, title: str) -> str:
    """``nb`` (executed) as one self-contained HTML page: images inline, no outside script or style."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_template_paths=[str(templates_dir() / "report")],
        template_file="report.html.j2",
        # plots are outputs, always embedded as data: URIs; embed_images is for markdown images (there
        # are none), and it breaks inline HTML: it parses each tag alone, emptying a status badge's span
        embed_images=False,
        exclude_input=True,  # a report: what the cells show; the code is in the notebook
        exclude_output_prompt=True,
    )
    nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    return str(body)
