"""One instance's life: spawn, probe, register, supervise, restart, stop.

States: `starting` (spawned, not yet ready) -> `ready` (registered) ->
`restarting` (waiting out a backoff) | `stopped` (asked to stop, or exited
0 with nothing to restart) | `failed` (out of restarts, or never started).

Three threads serve a running instance: the lifecycle thread (probes,
renewals, restarts), a waiter blocked in `Popen.wait` that deregisters the
instance the moment the child exits, and a reader that streams its output.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from registry import Registry, RegistryError, ServiceInstance
from supervisor import orphans, output, probes, process
from supervisor.model import Probe, ServiceConfig

log = logging.getLogger(__name__)

State = Literal["starting", "ready", "restarting", "stopped", "failed"]

#: A run that stayed ready this long (seconds) resets the restart count.
STABLE_RUN = 10.0

#: Until a readiness probe first passes, the first re-check comes this many
#: seconds after a failure, and each later gap doubles up to the interval.
STARTUP_PROBE_GAP = 0.01

#: With no readiness probe, an instance is ready once it has run this long.
DEFAULT_READY_AFTER = 1.0

#: How often a ready instance re-asserts its registry record (seconds).
RENEW_INTERVAL = 1.0


class StartRefused(OSError):
    """A start that no retry can mend (a fixed port another program holds).

    Raised by `Hooks.prepare`; the instance fails at once, not restarted.
    """


@dataclass
class Launch:
    """Everything one run of an instance needs, templates already rendered."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    endpoints: list[str]
    metadata: dict[str, str]
    readiness: tuple[Probe, str] | None = None
    liveness: tuple[Probe, str] | None = None
    port: int | None = None


@dataclass
class InstanceStatus:
    """A snapshot of one instance, for `ps` and for waiting on conditions.

    `started_at` is the Unix time of the current run's spawn (None before
    the first). `completed` is True once it exited 0 for good.
    """

    service: str
    id: str
    state: State
    pid: int | None
    restarts: int
    started_at: float | None
    endpoints: list[str] = field(default_factory=list)
    exit_code: int | None = None
    reason: str = ""
    completed: bool = False
    runs: int = 0


@dataclass
class Hooks:
    """How an instance reaches the rest of the supervisor."""

    prepare: Callable[[Instance], Launch]
    spawn: Callable[[list[str], dict[str, str], str], process.Popen]
    registry: Registry
    printer: output.Printer
    log_file: output.RotatingLog
    changed: Callable[[Instance], None]
    clock: Callable[[], float] = time.monotonic


@dataclass
class _Run:
    """How one run ended."""

    exit_code: int | None
    ready_for: float
    reason: str = ""
    stopped: bool = False
    refused: bool = False


class Instance:
    """One replica of a service and its supervision (see the module doc)."""

    def __init__(self, service: ServiceConfig, replica: int, hooks: Hooks) -> None:
        self.service = service
        self.replica = replica
        self.id = f"{service.name}-{replica}"
        self.hooks = hooks
        self.port: int | None = None
        self._cond = threading.Condition()
        self._reg_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._killing = False
        self._exited = False
        self._proc: process.Popen | None = None
        self._record: ServiceInstance | None = None
        self._record_was_set = False
        self._lines = probes.LineWatch()
        self._status = InstanceStatus(service.name, self.id, "stopped", None, 0, None)

    # -- what the orchestrator calls ---------------------------------------

    def start(self) -> None:
        """Begin (or begin again) supervising; a running instance is left as is."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = self._killing = False
            self._set("starting", reason="", completed=False, runs=0)
            self._thread = threading.Thread(
                target=self._life, name=f"corral-{self.id}", daemon=True
            )
            self._thread.start()

    def wait_for(self, dependencies: list[str]) -> None:
        """Show the instance as starting while its service waits for these.

        A running instance is left as is; `start` or `abandon` follows.
        """
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            waiting = f"waiting for {', '.join(dependencies)}"
            self._set("starting", pid=None, reason=waiting)

    def abandon(self) -> None:
        """Back to stopped if it waited for dependencies but never started."""
        with self._cond:
            idle = self._thread is None or not self._thread.is_alive()
            if idle and self._status.state == "starting":
                self._set("stopped", reason="")

    def stop(self) -> None:
        """Deregister, stop the process tree, and return once it is down."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._end_strays()
        with self._cond:
            if self._status.state != "failed":
                self._set("stopped", pid=None, endpoints=[])

    def kill(self) -> None:
        """SIGKILL the process tree now, and keep the instance from restarting.

        For a forced stop; a `stop` under way then finds nothing left to
        wait for, and one still to come skips the grace period.
        """
        with self._cond:
            self._stop = self._killing = True
            self._cond.notify_all()
            proc = None if self._exited else self._proc
        if proc is not None:
            process.kill_tree(proc, orphans.strays(self.id))

    def fail(self, reason: str) -> None:
        """Mark the instance failed without running it (e.g. a dependency failed)."""
        log.error("%s failed: %s", self.id, reason)
        with self._cond:
            self._set("failed", reason=reason, pid=None)

    def status(self) -> InstanceStatus:
        """A copy of the current status."""
        with self._cond:
            copy = InstanceStatus(**vars(self._status))
            copy.endpoints = list(self._status.endpoints)
            return copy

    def reassert(self) -> None:
        """Write the registry record again if the instance is registered."""
        with self._reg_lock:
            if self._record is not None:
                self.hooks.registry.register(self._record)

    # -- the lifecycle thread ---------------------------------------------

    def _life(self) -> None:
        in_row = 0
        while True:
            run = self._run_once()
            if run.stopped or self._stopping():
                self._finish("stopped", run)
                return
            if run.ready_for >= STABLE_RUN:
                in_row = 0
            if not self._should_restart(run) or in_row >= self.service.max_restarts:
                self._finish(self._final_state(run), run, in_row)
                return
            in_row += 1
            self._end_strays()
            if not self._back_off(run, in_row):
                self._finish("stopped", run)
                return

    def _should_restart(self, run: _Run) -> bool:
        if run.refused:
            return False
        policy = self.service.restart
        failed = run.exit_code != 0 or bool(run.reason)
        return policy == "always" or (policy == "on-failure" and failed)

    def _final_state(self, run: _Run) -> State:
        return "stopped" if run.exit_code == 0 and not run.reason else "failed"

    def _back_off(self, run: _Run, in_row: int) -> bool:
        """Wait before restart `in_row`; False if a stop came meanwhile."""
        backoff = self.service.backoff
        delay = min(backoff.initial * 2 ** (in_row - 1), backoff.max)
        log.info(
            "%s %s; restarting in %.3g s (restart %s of %s)",
            self.id,
            _ending(run),
            delay,
            in_row,
            self.service.max_restarts,
        )
        with self._cond:
            self._set("restarting", pid=None, restarts=self._status.restarts + 1)
        self.hooks.changed(self)
        with self._cond:
            return not self._cond.wait_for(lambda: self._stop, timeout=delay)

    def _finish(self, state: State, run: _Run, in_row: int = 0) -> None:
        completed = state == "stopped" and run.exit_code == 0 and not run.stopped
        reason = "" if state == "stopped" else _ending(run)
        if state == "failed" and run.refused:
            log.error("%s failed: %s", self.id, reason)
            self._end_strays()
        elif state == "failed":
            log.error(
                "%s failed for good after %s runs: %s", self.id, in_row + 1, reason
            )
            reason = f"{reason} after {in_row + 1} runs"
            self._end_strays()
        elif completed:
            log.info("%s completed (exit code 0)", self.id)
        with self._cond:
            self._set(state, pid=None, reason=reason, completed=completed, endpoints=[])
        self.hooks.changed(self)

    def _stopping(self) -> bool:
        with self._cond:
            return self._stop

    def _run_once(self) -> _Run:
        """Spawn, wait for ready, supervise until exit or stop."""
        try:
            launch = self.hooks.prepare(self)
            proc = self._spawn(launch)
        except StartRefused as exc:
            reason = f"cannot start: {exc}"
            return _Run(exit_code=None, ready_for=0.0, reason=reason, refused=True)
        except (OSError, ValueError) as exc:
            log.error("%s cannot start: %s", self.id, exc)
            return _Run(exit_code=None, ready_for=0.0, reason=f"cannot start: {exc}")

        context = probes.ProbeContext(launch.env, Path(launch.cwd), self._lines)
        problem = self._await_ready(launch, context)
        ready_at = self.hooks.clock()
        if problem is None and self._register(launch, proc):
            problem = self._supervise(launch, context)
        ready_for = self.hooks.clock() - ready_at if self._record_was_set else 0.0
        return self._end_run(proc, problem, ready_for)

    def _spawn(self, launch: Launch) -> process.Popen:
        self._lines = probes.LineWatch(
            [p.target for p, _ in _probes(launch) if p.kind == "log_line"]
        )
        self._record_was_set = False
        proc = self.hooks.spawn(launch.argv, launch.env, launch.cwd)
        with self._cond:
            self._proc = proc
            self._exited = False
            self._set(
                "starting",
                pid=proc.pid,
                started_at=time.time(),
                endpoints=list(launch.endpoints),
                exit_code=None,
                runs=self._status.runs + 1,
            )
        log.info("%s started with pid %s", self.id, proc.pid)
        self.hooks.changed(self)

        _thread(f"corral-{self.id}-out", self._read, proc)
        _thread(f"corral-{self.id}-wait", self._reap, proc)
        return proc

    def _read(self, proc: process.Popen) -> None:
        lines = self._lines
        if proc.stdout is None:
            return

        def on_line(text: str) -> None:
            self.hooks.log_file.write(text)
            self.hooks.printer.line(self.id, text)
            lines.feed(text)

        output.pump(proc.stdout, on_line)

    def _reap(self, proc: process.Popen) -> None:
        """Wait for the child; drop its registry record the moment it ends."""
        code = proc.wait()
        self._deregister()
        with self._cond:
            self._exited = True
            self._status.exit_code = code
            self._cond.notify_all()

    def _wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` s; True if the child exited or a stop came."""
        with self._cond:
            return self._cond.wait_for(lambda: self._exited or self._stop, timeout)

    def _await_ready(self, launch: Launch, context: probes.ProbeContext) -> str | None:
        """None once ready; else why not (exited, stopped, probe failed)."""
        if launch.readiness is None:
            if self._wait(DEFAULT_READY_AFTER):
                return "exited before it was ready"
            return None
        probe, target = launch.readiness
        if self._wait(probe.initial_delay):
            return "exited before it was ready"
        failures = 0
        gap = min(STARTUP_PROBE_GAP, probe.interval)
        while True:
            problem = probes.check(probe, target, context)
            if problem is None:
                return None

            # Most services come up in well under one interval: look again
            # soon, doubling the gap up to the interval, and count towards
            # `retries` only the checks made at the full interval.
            if gap >= probe.interval:
                failures += 1
                log.debug(
                    "%s readiness %s/%s: %s", self.id, failures, probe.retries, problem
                )
                if failures >= probe.retries:
                    return f"readiness probe failed {failures} times: {problem}"
            if self._wait(gap):
                return "exited before it was ready"
            gap = min(gap * 2, probe.interval)

    def _register(self, launch: Launch, proc: process.Popen) -> bool:
        record = ServiceInstance(
            id=self.id,
            name=self.service.name,
            version=self.service.version,
            metadata=dict(launch.metadata),
            endpoints=list(launch.endpoints),
            pid=proc.pid,
        )
        with self._reg_lock:
            # The waiter sets returncode before it deregisters, so checking
            # it under this lock never leaves a record of a dead child.
            if proc.returncode is not None or self._stopping():
                return False
            try:
                self.hooks.registry.register(record)
            except RegistryError as exc:
                log.warning("%s could not register: %s", self.id, exc)
            self._record = record
            self._record_was_set = True
        with self._cond:
            self._set("ready")
        if launch.endpoints:
            log.info("%s ready at %s", self.id, ", ".join(launch.endpoints))
        else:
            log.info("%s ready", self.id)
        self.hooks.changed(self)
        return True

    def _deregister(self) -> None:
        with self._reg_lock:
            record, self._record = self._record, None
            if record is None:
                return
            try:
                self.hooks.registry.deregister(record)
            except RegistryError as exc:
                log.warning("%s could not deregister: %s", self.id, exc)

    def _supervise(self, launch: Launch, context: probes.ProbeContext) -> str | None:
        """Renew and run liveness while ready; a reason if liveness failed."""
        clock = self.hooks.clock
        now = clock()
        next_renew = now + RENEW_INTERVAL
        probe = launch.liveness
        next_check = now + (probe[0].initial_delay if probe else float("inf"))
        failures = 0
        while not self._wait(max(0.0, min(next_renew, next_check) - clock())):
            if clock() >= next_renew:
                self._renew()
                next_renew = clock() + RENEW_INTERVAL
            if probe is None or clock() < next_check:
                continue
            problem = probes.check(probe[0], probe[1], context)
            failures = 0 if problem is None else failures + 1
            if failures >= probe[0].retries:
                return f"liveness probe failed {failures} times: {problem}"
            next_check = clock() + probe[0].interval
        return None

    def _renew(self) -> None:
        with self._reg_lock:
            if self._record is None:
                return
            try:
                self.hooks.registry.renew(self._record)
            except RegistryError as exc:
                log.warning("%s could not renew its registry record: %s", self.id, exc)

    def _end_run(self, proc: process.Popen, problem: str | None, ready: float) -> _Run:
        """Stop the child if it still runs; report how the run ended."""
        self._deregister()
        stopped = self._stopping()
        if proc.returncode is None:
            if problem and not stopped:
                log.warning("%s %s; stopping it", self.id, problem)
            self._stop_tree(proc)
        with self._cond:
            self._cond.wait_for(lambda: self._exited)
            code = self._status.exit_code
        # How the run ended is told once, by whatever comes next: the
        # restart, the failure or the completion.
        keep = problem if problem and "exited before" not in problem else ""
        return _Run(exit_code=code, ready_for=ready, reason=keep, stopped=stopped)

    def _stop_tree(self, proc: process.Popen) -> None:
        def exited(timeout: float) -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: self._exited, timeout)

        log.debug("%s stopping pid %s", self.id, proc.pid)
        service = self.service
        with self._cond:
            grace = 0.0 if self._killing else service.stop_grace_period
        process.stop_tree(
            proc, service.stop_signal, grace, exited, extra=orphans.strays(self.id)
        )

    def _end_strays(self) -> None:
        """End what this instance's runs left outside their trees.

        Called when a run will be followed by another, when the instance
        fails, and when it is stopped; a run that completed (exit 0, no
        restart) keeps what it started in the background until then.
        """
        service = self.service
        with self._cond:
            grace = 0.0 if self._killing else service.stop_grace_period
        orphans.end_strays(self.id, service.stop_signal, grace)

    def _set(self, state: State, **fields: object) -> None:
        """Change the status; the caller holds `_cond`."""
        self._status.state = state
        for name, value in fields.items():
            setattr(self._status, name, value)
        self._cond.notify_all()


def _ending(run: _Run) -> str:
    if run.reason:
        return run.reason
    if run.exit_code is None:
        return "did not start"
    return describe_exit(run.exit_code)


def describe_exit(code: int) -> str:
    """`exited with code 3`, or `killed by SIGKILL` for a POSIX signal.

    Popen reports death by signal N as exit code -N on POSIX.
    """
    if code >= 0 or sys.platform == "win32":
        return f"exited with code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _probes(launch: Launch) -> list[tuple[Probe, str]]:
    return [p for p in (launch.readiness, launch.liveness) if p is not None]


def _thread(name: str, target: Callable[[process.Popen], None], proc: object) -> None:
    threading.Thread(target=target, args=(proc,), name=name, daemon=True).start()
