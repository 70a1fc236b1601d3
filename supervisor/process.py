"""Spawning children and stopping whole process trees.

Every child runs in its own process group (a new session on POSIX, a new
process group on Windows) so that a stop reaches the grandchildren that
`sh -c` wrappers leave behind. Children must not outlive the supervisor:
on Linux each gets a parent-death signal, on Windows each joins a job
object that kills its members when the supervisor's handle closes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: How long to wait for a tree to vanish after SIGKILL before giving up.
KILL_WAIT = 5.0

#: How often the stop path looks whether the processes of a tree are gone.
_POLL = 0.02

Popen = subprocess.Popen[bytes]

# Every child the supervisor starts, while its Popen may still wait for it.
# The orphan reaper (supervisor.orphans) leaves these to their Popen.
_owned: weakref.WeakSet[Popen] = weakref.WeakSet()
_owned_lock = threading.Lock()


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a child gets: `env`, unbuffered Python unless set."""
    result = dict(env)
    result.setdefault("PYTHONUNBUFFERED", "1")
    return result


def spawn(argv: Sequence[str], env: Mapping[str, str], cwd: Path | str) -> Popen:
    """Start `argv` in its own process group, stdout and stderr on one pipe.

    The spawning thread matters on Linux: the parent-death signal fires when
    that thread ends, so call this from a thread that lives as long as the
    supervisor (see `Spawner`).
    """
    if sys.platform == "win32":
        from supervisor import winjob

        return tracked(
            lambda: winjob.spawn(list(argv), child_environment(env), str(cwd))
        )
    hook = _parent_death_hook()
    return tracked(
        lambda: subprocess.Popen(
            list(argv),
            env=child_environment(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=hook,
        )
    )


def tracked(start: Callable[[], Popen]) -> Popen:
    """Start a child with `start` and remember it as one a Popen waits for.

    Spawning holds the same lock as the orphan reaper: a child that died
    the moment it was forked is then never taken for an adopted orphan,
    and its exit status stays with its Popen.
    """
    with _owned_lock:
        proc = start()
        _owned.add(proc)
    return proc


@contextlib.contextmanager
def spawns_held() -> Iterator[set[int]]:
    """Hold spawning still; yield the pids that a Popen has not reaped yet."""
    with _owned_lock:
        yield {p.pid for p in list(_owned) if p.returncode is None}


def _parent_death_hook() -> Callable[[], None] | None:
    """A preexec function that asks Linux to SIGKILL the child with us."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        log.debug("prctl unavailable; children rely on the state file")
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl; then the signal
        # will never come, so leave at once rather than run as an orphan.
        if os.getppid() != parent:
            os._exit(1)

    return hook


class Spawner:
    """Spawns children from one long-lived thread.

    Linux delivers the parent-death signal when the thread that forked the
    child exits, so instance threads, which come and go, hand their spawn
    requests to this thread instead of forking themselves.
    """

    def __init__(self, spawn_fn: Callable[..., Popen] = spawn) -> None:
        self._spawn = spawn_fn
        self._requests: queue.Queue[
            tuple[Callable[[], Popen], concurrent.futures.Future[Popen]]
        ] = queue.Queue()
        self._thread = threading.Thread(
            target=self._serve, name="corral-spawner", daemon=True
        )
        self._thread.start()

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | str
    ) -> Popen:
        """Spawn on the spawner thread; raises what spawning raised."""
        future: concurrent.futures.Future[Popen] = concurrent.futures.Future()
        self._requests.put((lambda: self._spawn(argv, env, cwd), future))
        return future.result()

    def _serve(self) -> None:
        while True:
            job, future = self._requests.get()
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the caller, not lost
                future.set_exception(exc)


def tree(pid: int) -> list[psutil.Process]:
    """The process `pid` and all its descendants that exist now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def stop_tree(
    proc: Popen,
    stop_signal: str = "SIGTERM",
    grace: float = 10.0,
    exited: Callable[[float], bool] | None = None,
    extra: Sequence[psutil.Process] = (),
) -> None:
    """Stop `proc` and every descendant: signal, wait `grace`, kill, wait.

    `exited(timeout)` waits for the child itself to be reaped (the instance's
    waiter thread does that); by default `proc.wait` is used. `extra` are
    processes outside the tree that go the same way (adopted orphans).
    """
    wait_child = exited or _popen_waiter(proc)
    members = [p for p in tree(proc.pid) if p.pid != proc.pid]
    members += [p for p in extra if p not in members]
    name = stop_signal.upper()
    log.debug("sending %s to process tree of pid %s", name, proc.pid)
    _signal_tree(proc, members, name)

    if _wait_gone(wait_child, members, grace):
        return

    members = _alive(members) + [
        p for p in tree(proc.pid) if p.pid != proc.pid and p not in members
    ]
    log.warning(
        "pid %s still running %.3g s after %s; killing its tree",
        proc.pid,
        grace,
        name,
    )
    _kill_tree(proc, members)
    if not _wait_gone(wait_child, members, KILL_WAIT):
        log.warning("pid %s tree survived SIGKILL for %.3g s", proc.pid, KILL_WAIT)


def kill_tree(proc: Popen, extra: Sequence[psutil.Process] = ()) -> None:
    """SIGKILL `proc`, its descendants and `extra` at once (no waiting)."""
    members = [p for p in tree(proc.pid) if p.pid != proc.pid]
    log.debug("killing the process tree of pid %s", proc.pid)
    _kill_tree(proc, members + [p for p in extra if p not in members])


def end_processes(
    procs: Sequence[psutil.Process], stop_signal: str, grace: float
) -> None:
    """Stop processes that are not our Popen children: signal, wait, kill."""
    if not procs:
        return
    name = stop_signal.upper()
    log.debug("sending %s to %s", name, ", ".join(str(p.pid) for p in procs))
    for proc in procs:
        _send(proc, name)

    if _wait_gone(lambda _t: True, list(procs), grace):
        return

    log.warning("killing %s, still running %.3g s after %s", _pids(procs), grace, name)
    left = _alive(list(procs))
    for proc in left:
        _send(proc, "SIGKILL")
    if not _wait_gone(lambda _t: True, left, KILL_WAIT):
        log.warning("%s survived SIGKILL for %.3g s", _pids(left), KILL_WAIT)


def _pids(procs: Sequence[psutil.Process]) -> str:
    return "pids " + ", ".join(str(p.pid) for p in _alive(list(procs)))


def kill_pids(pids: Sequence[tuple[int, float]], grace: float = 0.0) -> list[int]:
    """Kill processes given as (pid, create_time), with their trees.

    A pid whose creation time differs (by more than a second) now belongs to
    some other process and is left alone. Returns the pids that were ended.
    """
    victims: list[psutil.Process] = []
    for pid, started in pids:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) > 1.0:
                continue
            victims.extend(tree(pid))
        except psutil.Error:
            continue
    for proc in victims:
        _send(proc, "SIGKILL")
    _wait_gone(lambda _t: True, victims, KILL_WAIT)
    return [p.pid for p in victims]


def _popen_waiter(proc: Popen) -> Callable[[float], bool]:
    def wait(timeout: float) -> bool:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    return wait


def _signal_tree(proc: Popen, members: list[psutil.Process], name: str) -> None:
    if sys.platform == "win32":
        from supervisor import winjob

        winjob.interrupt(proc)
        return
    sig = _signal_number(name)
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        _send_child(proc, sig)
    for member in members:
        _send(member, name)


def _kill_tree(proc: Popen, members: list[psutil.Process]) -> None:
    if sys.platform == "win32":
        for member in members:
            _send(member, "SIGKILL")
        proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        _send_child(proc, int(signal.SIGKILL))
    for member in members:
        _send(member, "SIGKILL")


def _signal_number(name: str) -> int:
    try:
        return int(signal.Signals[name])
    except KeyError:
        log.warning("unknown stop signal %s; using SIGTERM", name)
        return int(signal.SIGTERM)


def _send_child(proc: Popen, sig: int) -> None:
    # Popen.send_signal skips a child already reaped, whose pid may have
    # been reused by an unrelated process.
    with contextlib.suppress(OSError):
        proc.send_signal(sig)


def _send(proc: psutil.Process, name: str) -> None:
    try:
        if name == "SIGKILL":
            proc.kill()
        else:
            proc.send_signal(_signal_number(name))
    except psutil.Error:
        pass  # gone or no longer ours to signal: nothing to do


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running; a zombie has finished, so it is not."""
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def _wait_gone(
    wait_child: Callable[[float], bool], members: list[psutil.Process], timeout: float
) -> bool:
    """Wait until the child is reaped and the members are gone, or timeout."""
    deadline = time.monotonic() + timeout
    if not wait_child(max(0.0, timeout)):
        return False
    while _alive(members):
        # Descendants are not our children, so no wait call reports their
        # end; a short poll bounded by the deadline is the portable way.
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True
