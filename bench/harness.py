"""What every bench script shares: tables, percentiles, load, process groups.

The scripts run on busy machines, so each table is printed with the
1-minute load average beside it, and every process a script starts is
started in a session of its own and ended with its whole tree, however
the script leaves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
# The bench imports corral's packages from this tree; it need not be installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Seconds a process tree gets to leave after SIGTERM before SIGKILL.
TERM_GRACE = 5.0


def repo_env(**extra: str) -> dict[str, str]:
    """This environment with the repository first on PYTHONPATH.

    corral need not be installed: its packages are imported from the tree.
    """
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), **extra)


def load_average() -> str:
    """The 1-minute load average and the core count, for a table's heading."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return "load n/a"
    return f"load {load:.2f} on {os.cpu_count()} cores"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the value at or below which `fraction`
    of the values lie."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a tool that was not run)."""
    return statistics.median(values) if values else float("nan")


def print_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """Print a titled, right-aligned table, with the load average under it.

    Floats are shown with 3 significant figures; the first column is left
    aligned.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
        for i, h in enumerate(header)
    ]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    print(f"\n{title}")
    print(line([str(h) for h in header]))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))
    print(f"({load_average()})", flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: not measured
            return "-"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago."""
    ports: set[int] = set()
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            ports.add(sock.getsockname()[1])
    return sorted(ports)


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(test: Callable[[], bool], timeout: float, step: float = 0.005) -> float:
    """Poll `test` every `step` s; the monotonic time it first passed.

    Raises TimeoutError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if test():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:g} s")
        time.sleep(step)


def start(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a process in a new session, so its whole group can be ended."""
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        list(argv), start_new_session=True, stdin=subprocess.DEVNULL, **kwargs
    )


def end_tree(proc: subprocess.Popen[bytes], grace: float = TERM_GRACE) -> None:
    """End `proc` and every process below it: SIGTERM, wait, then SIGKILL.

    Descendants are listed before the signal, because a supervisor puts its
    children in sessions of their own, out of reach of a group kill. Only
    processes known to be ours are signalled: `proc`'s group while `proc`
    is not yet reaped (so its id cannot have been reused), and the listed
    descendants through psutil, which checks that a pid still names the
    same process.
    """
    tree = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    _wait_unreaped(proc.pid, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)

    for child in tree:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if child.is_running() and os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGKILL)
            child.kill()
    psutil.wait_procs(tree, timeout=grace)


def _wait_unreaped(pid: int, timeout: float) -> None:
    """Wait up to `timeout` s for child `pid` to exit, leaving it unreaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is not None:
            return
        time.sleep(0.01)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@contextlib.contextmanager
def started(argv: Sequence[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """`start` as a context manager that ends the whole tree on the way out."""
    proc = start(argv, **kwargs)
    try:
        yield proc
    finally:
        end_tree(proc)


def python() -> str:
    """The interpreter running the bench, used for every child too."""
    return sys.executable
