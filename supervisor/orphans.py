"""Orphans that services leave behind: adopt them, end them, reap them.

A service that forks, calls setsid and forks again leaves a grandchild in
a session of its own: the stop signal to the service's process group
misses it, and so does a walk of the service's tree, because the middle
process has exited and the grandchild was re-parented. On Linux `corral
up` makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so
such orphans are re-parented to the supervisor instead of init and stay
among its descendants.

Every process the supervisor starts itself goes through
`process.tracked`, so a child of the supervisor that no Popen owns was
adopted. It belongs to the instance whose `CORRAL_INSTANCE_ID` it carries
in its environment (children inherit it) and ends when that instance
stops or restarts; what is left at the end of a run ends with the run.
Adopted processes that exit are reaped here, and only they: an exit status
that a Popen waits for is never taken.

Windows needs none of this (every child's tree lives in a job object), and
other POSIX systems have no subreaper: there the functions find nothing.
"""

from __future__ import annotations

import logging
import os
import sys

import psutil

from supervisor import process

log = logging.getLogger(__name__)

#: prctl option that makes orphaned descendants re-parent to this process.
PR_SET_CHILD_SUBREAPER = 36

_adopting = False


def become_subreaper() -> bool:
    """Adopt the orphans of our descendants (Linux); True if that is on.

    Call once, at the start of a run: the setting is per process and is
    not inherited by children.
    """
    global _adopting
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        _adopting = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _adopting = False
    if not _adopting:
        log.warning("cannot adopt orphans (no prctl subreaper); escapees may live")
    return _adopting


def strays(instance_id: str | None = None) -> list[psutil.Process]:
    """Adopted processes and their descendants, of one instance or all.

    With `instance_id`, only those whose environment names that instance;
    with None, every one (for the end of a run). Empty unless adopting.
    """
    if not _adopting:
        return []
    found: list[psutil.Process] = []
    with process.spawns_held() as owned:
        for child in _children():
            if child.pid not in owned:
                found.extend(p for p in process.tree(child.pid) if not _is_zombie(p))
    if instance_id is None:
        return found
    return [p for p in found if _instance_of(p) == instance_id]


def end_strays(
    instance_id: str | None, stop_signal: str = "SIGTERM", grace: float = 10.0
) -> None:
    """End the strays of `instance_id` (None: all) as a stop would, and reap."""
    found = strays(instance_id)
    if found:
        who = instance_id or "the run"
        log.info("ending %s processes %s left outside its tree", who, _pids(found))
        process.end_processes(found, stop_signal, grace)
    reap()


def reap() -> list[int]:
    """Reap adopted processes that have exited; returns their pids.

    Only zombies that no Popen owns are waited for, by pid, while spawning
    is held still, so no Popen loses its child's exit status. Cheap enough
    to call every second: one peek when nothing has exited.
    """
    if sys.platform == "win32":
        return []
    reaped: list[int] = []
    with process.spawns_held() as owned:
        while _adopting:
            try:
                # WNOWAIT only looks: the zombie stays for whoever owns it.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None:
                break
            if info.si_pid in owned:
                # The peek shows one zombie only; look past an owned one.
                reaped += [p for p in _unowned_zombies(owned) if _reap_pid(p)]
                break
            if _reap_pid(info.si_pid):
                reaped.append(info.si_pid)
    if reaped:
        log.debug("reaped adopted processes %s", reaped)
    return reaped


def _unowned_zombies(owned: set[int]) -> list[int]:
    return [c.pid for c in _children() if c.pid not in owned and _is_zombie(c)]


def _reap_pid(pid: int) -> bool:
    if sys.platform == "win32":
        return False
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def _children() -> list[psutil.Process]:
    try:
        return psutil.Process().children()
    except psutil.Error:
        return []


def _instance_of(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get("CORRAL_INSTANCE_ID")
    except psutil.Error:
        return None  # gone, or not ours to read: no instance to tie it to


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pids(procs: list[psutil.Process]) -> str:
    return ", ".join(str(p.pid) for p in procs)
