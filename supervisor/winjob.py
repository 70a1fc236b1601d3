"""The Windows half of `supervisor.process`: process groups and a job object.

Each child starts in a new process group, so CTRL_BREAK_EVENT reaches it
and its console children without reaching corral. Each child also joins
one job object created with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: when the
supervisor dies, Windows closes its handle to the job and ends every
member, which is what the parent-death signal does on Linux.
"""

from __future__ import annotations

import sys

if sys.platform != "win32":
    raise ImportError("supervisor.winjob is only for Windows")

import ctypes
import logging
import signal
import subprocess
import threading
from ctypes import wintypes

log = logging.getLogger(__name__)

_JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
_PROCESS_SET_QUOTA = 0x0100
_PROCESS_TERMINATE = 0x0001


class _IoCounters(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_ulonglong)
        for name in (
            "ReadOperationCount",
            "WriteOperationCount",
            "OtherOperationCount",
            "ReadTransferCount",
            "WriteTransferCount",
            "OtherTransferCount",
        )
    ]


class _BasicLimits(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", wintypes.DWORD),
        ("SchedulingClass", wintypes.DWORD),
    ]


class _ExtendedLimits(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_job_lock = threading.Lock()
_job: int | None = None


def _kill_on_close_job() -> int | None:
    """The supervisor's job object, created on first use; None if refused."""
    global _job
    with _job_lock:
        if _job is None:
            handle = _kernel32.CreateJobObjectW(None, None)
            if not handle:
                log.warning("cannot create a job object: %s", ctypes.get_last_error())
                return None
            info = _ExtendedLimits()
            info.BasicLimitInformation.LimitFlags = _JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            ok = _kernel32.SetInformationJobObject(
                handle,
                _JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
                ctypes.byref(info),
                ctypes.sizeof(info),
            )
            if not ok:
                log.warning(
                    "cannot configure the job object: %s", ctypes.get_last_error()
                )
            _job = int(handle)
        return _job


def _join_job(pid: int) -> None:
    job = _kill_on_close_job()
    if job is None:
        return
    process = _kernel32.OpenProcess(_PROCESS_SET_QUOTA | _PROCESS_TERMINATE, False, pid)
    if not process:
        log.warning("cannot open pid %s to add it to the job object", pid)
        return
    try:
        if not _kernel32.AssignProcessToJobObject(job, process):
            log.warning("pid %s did not join the job object", pid)
    finally:
        _kernel32.CloseHandle(process)


def spawn(argv: list[str], env: dict[str, str], cwd: str) -> subprocess.Popen[bytes]:
    """Start `argv` in a new process group and in the kill-on-close job."""
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
    )
    _join_job(proc.pid)
    return proc


def interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Ask the child's process group to stop (CTRL_BREAK_EVENT)."""
    try:
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    except OSError as exc:
        log.debug("CTRL_BREAK_EVENT to pid %s failed: %s", proc.pid, exc)
