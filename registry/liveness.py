"""Whether a registry record is stale: a dead owner process or a lapsed lease.

Death is decided on proof only. A process is dead when it is gone, when it
is a zombie of this user, or when its pid now belongs to a process created
at another time. A process that exists but cannot be inspected is alive.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import psutil

from registry.instance import ServiceInstance, this_host

log = logging.getLogger(__name__)

#: Creation times that differ by more than this (seconds) are two processes.
START_TOLERANCE = 1.0


def process_started(pid: int) -> float | None:
    """The creation time of process `pid` as psutil reports it, or None."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError, ValueError):
        return None


def lease_expired(instance: ServiceInstance, now: float | None = None) -> bool:
    """Whether the instance has a ttl and was last renewed longer ago than it."""
    if instance.ttl is None:
        return False
    renewed = instance.heartbeat
    if renewed is None:
        renewed = float(instance.timestamp)
    current = time.time() if now is None else now
    return current > renewed + instance.ttl


def owner_dead(instance: ServiceInstance, host: str | None = None) -> bool:
    """Whether the record names a process of this host that is proven gone.

    Records with no pid, or registered from another host (or with no host,
    so no proof of where the pid lives), are never called dead.
    """
    if instance.pid is None or instance.pid <= 0:
        return False
    if instance.host is None or instance.host != (host or this_host()):
        return False
    return not process_alive(instance.pid, instance.pid_started)


def process_alive(pid: int, started: float | None) -> bool:
    """Whether `pid` runs and, given `started`, is the process created then."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        log.debug("pid %s is gone", pid)
        return False
    except (psutil.AccessDenied, OSError):
        return True

    try:
        created = process.create_time()
    except psutil.ZombieProcess:
        return not _own_zombie(process)
    except psutil.NoSuchProcess:
        log.debug("pid %s is gone", pid)
        return False
    except (psutil.AccessDenied, OSError):
        # Exists but cannot be inspected: no proof of death.
        return True

    if _own_zombie(process):
        return False

    if started is not None and abs(created - started) > START_TOLERANCE:
        log.debug("pid %s was reused (created %s, not %s)", pid, created, started)
        return False
    return True


def _own_zombie(process: psutil.Process) -> bool:
    # A zombie has exited and only waits for its parent to reap it. One of
    # another user is left alone, as its state is not ours to judge.
    if sys.platform == "win32":
        return False
    try:
        if process.status() != psutil.STATUS_ZOMBIE:
            return False
        own = process.uids().real == os.getuid()
    except psutil.NoSuchProcess:
        return True
    except (psutil.AccessDenied, OSError):
        return False
    if own:
        log.debug("pid %s is a zombie of this user: dead", process.pid)
    return own


def is_stale(instance: ServiceInstance, now: float | None = None) -> bool:
    """Whether prune() should remove the record: lease lapsed or owner dead."""
    return lease_expired(instance, now) or owner_dead(instance)
