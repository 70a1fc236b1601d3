"""The orchestrator behind `corral up`: start in dependency order, supervise,
prune the registry, and stop everything cleanly.

`Orchestrator` is safe to drive from other threads (the control channel):
`start`, `stop`, `restart`, `snapshot`, `wait_settled` and `shutdown`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

import psutil

from registry import (
    Registry,
    RegistryCorrupt,
    RegistryError,
    ServiceInstance,
    open_registry,
)
from registry.errors import RegistryWriteError
from registry.liveness import is_stale
from supervisor import graph, orphans, output, process, state, watchdog
from supervisor.control_attach import attach
from supervisor.errors import StartFailed, UsageError
from supervisor.instance import Hooks, Instance, InstanceStatus, Launch, StartRefused
from supervisor.interpolate import endpoints_variable, render
from supervisor.model import Dependency, Probe, ProjectConfig, ServiceConfig

log = logging.getLogger(__name__)

#: How often the registry is pruned of stale entries (seconds).
PRUNE_INTERVAL = 1.0

#: Seconds that processes left after every service stopped get after
#: SIGTERM before they are killed.
LEFTOVER_GRACE = 2.0


class IdTaken(StartRefused):
    """An instance id that another live process holds in the registry."""

    def __init__(self, registry: str, record: ServiceInstance):
        self.registry = registry
        self.record = record
        where = f" on {record.host}" if record.host else ""
        super().__init__(
            f"{registry} already holds {record.id!r} for a live process (pid "
            f"{record.pid}{where}); another environment uses this registry with "
            "the same service name (rename the service or use another registry)"
        )


class PortInUse(StartRefused):
    """A fixed port that another program already listens on."""

    def __init__(self, service: str, port: int):
        self.service = service
        self.port = port
        super().__init__(
            f"port {port} of service {service!r} is already in use by another "
            "program (stop it, or use port: auto)"
        )


class Orchestrator:
    """Runs the services of one configuration (see the module doc)."""

    def __init__(
        self,
        config: ProjectConfig,
        registry: Registry,
        printer: output.Printer | None = None,
        spawner: process.Spawner | None = None,
        state_file: state.StateFile | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.printer = printer or output.LivePrinter()
        self.spawner = spawner or process.Spawner()
        self.state_file = state_file
        self._cond = threading.Condition()
        self._closing = False
        self._closed = threading.Event()
        self._pending: set[str] = set()
        self._held_down = False
        self._ports: dict[str, int] = {}
        self._port_lock = threading.Lock()
        self._logs: list[output.RotatingLog] = []
        self._created: dict[tuple[int, float | None], float] = {}
        self._recording = threading.Lock()
        self._stopped_with: dict[str, set[str]] = {}
        self._strays: list[dict[str, float]] = []
        self.instances = self._make_instances()
        self.printer.reserve(self.instances)
        self._pruner = threading.Thread(
            target=self._prune_loop, name="corral-pruner", daemon=True
        )
        self._pruner.start()

    # -- the API for the CLI and the control channel ------------------------

    def start(self, names: Iterable[str] | None = None) -> None:
        """Start these services (default: all) with their dependencies.

        Returns at once; each service waits for its dependencies' conditions
        in its own thread. Unknown names raise UsageError.
        """
        wanted = self._services(names)
        with self._cond:
            # Dependents that a stop of these services took down come back
            # with them, so that `stop api` then `start api` undoes itself.
            along = set().union(*(self._stopped_with.pop(n, set()) for n in wanted))
        wanted += [n for n in self.config.services if n in along and n not in wanted]
        for name in graph.with_dependencies(self.config, wanted):
            with self._cond:
                self._pending.add(name)
            self._show_waiting(name)
            threading.Thread(
                target=self._launch, args=(name,), name=f"corral-launch-{name}"
            ).start()

    def stop(self, names: Iterable[str] | None = None) -> None:
        """Stop these services (default: all) and their dependents, dependents
        first; returns when they are down."""
        named = self._services(names)
        wanted = set(named)
        for name in named:
            dependents = set(graph.dependents(self.config, name)) - set(named)
            wanted |= dependents
            along = {d for d in dependents if self._is_up(d)}
            if along and names is not None:
                log.info(
                    "stopping %s too: they depend on %s", ", ".join(sorted(along)), name
                )
            with self._cond:
                self._stopped_with[name] = along
        with self._cond:
            self._held_down |= not self._closing
        for level in graph.stop_levels(self.config):
            self._stop_all([i for n in level if n in wanted for i in self._of(n)])

    def _is_up(self, name: str) -> bool:
        """Whether an instance of the service runs or is on its way up."""
        return any(
            i.status().state not in ("stopped", "failed") for i in self._of(name)
        )

    def restart(self, names: Iterable[str]) -> None:
        """Stop these services and start them again (auto ports are new)."""
        wanted = self._services(names)
        with self._cond:
            # Between the stop and the start nothing would run: without this
            # a restart of every service would look like the end of the run.
            self._pending.update(wanted)
        for name in wanted:
            self._stop_all(self._of(name))
            for inst in self._of(name):
                self._release_port(inst)
        self.start(wanted)

    def snapshot(self) -> list[InstanceStatus]:
        """The status of every instance, in file order."""
        return [inst.status() for inst in self.instances.values()]

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Wait until every started instance is ready, stopped or failed.

        Returns False on timeout.
        """
        with self._cond:
            return self._cond.wait_for(self._settled, timeout)

    def wait_idle(self) -> None:
        """Block until shutdown, or until every service ended by itself.

        Once services were stopped on request (`corral stop`), the run waits
        for shutdown, so that they can be started again.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._closing or self._idle())

    def shutdown(self) -> None:
        """Stop every instance (dependents first) and close the run."""
        with self._cond:
            already, self._closing = self._closing, True
            self._cond.notify_all()
        if already:
            self._closed.wait()
            return
        log.info("stopping all services")
        try:
            self.stop()
            # Whatever is still below the supervisor now escaped its
            # instance's tree and tag (a cleared environment, say).
            orphans.end_strays(None, "SIGTERM", LEFTOVER_GRACE)
            for log_file in self._logs:
                log_file.close()
            self._prune_once()
        finally:
            self._closed.set()

    def kill(self) -> None:
        """Kill every process tree now, grace periods cut short (a second
        Ctrl-C); a shutdown under way then ends promptly."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        log.warning("killing every service's processes")
        for inst in self.instances.values():
            inst.kill()
        orphans.end_strays(None, "SIGKILL", 0.0)

    def failed(self) -> list[InstanceStatus]:
        """The instances that failed for good."""
        return [s for s in self.snapshot() if s.state == "failed"]

    # -- building instances --------------------------------------------------

    def _make_instances(self) -> dict[str, Instance]:
        instances: dict[str, Instance] = {}
        logs_dir = self.config.state_dir / "logs"
        for service in self.config.enabled().values():
            for replica in range(1, service.replicas + 1):
                log_file = output.RotatingLog(
                    logs_dir / f"{service.name}-{replica}.log"
                )
                self._logs.append(log_file)
                hooks = Hooks(
                    prepare=self._prepare,
                    spawn=self.spawner.spawn,
                    registry=self.registry,
                    printer=self.printer,
                    log_file=log_file,
                    changed=self._changed,
                )
                inst = Instance(service, replica, hooks)
                instances[inst.id] = inst
        return instances

    def _services(self, names: Iterable[str] | None) -> list[str]:
        return check_services(self.config, names)

    def _of(self, service: str) -> list[Instance]:
        return [i for i in self.instances.values() if i.service.name == service]

    # -- starting -------------------------------------------------------------

    def _launch(self, name: str) -> None:
        """Wait for the service's dependencies, then start its instances."""
        service = self.config.services[name]
        try:
            problem = self._await_dependencies(service)
            if problem is not None:
                for inst in self._of(name):
                    inst.fail(problem)
                return
            with self._cond:
                # Checked and started under the lock that shutdown takes to
                # set _closing, so nothing starts behind a shutdown's back.
                for inst in self._of(name):
                    if self._closing:
                        inst.abandon()
                    else:
                        inst.start()
        finally:
            with self._cond:
                self._pending.discard(name)
            self._changed(None)

    def _show_waiting(self, name: str) -> None:
        """`ps` shows instances that wait for dependencies as starting."""
        enabled = self.config.enabled()
        needs = [d.service for d in self.config.services[name].depends_on]
        needs = [n for n in needs if n in enabled]
        if needs:
            for inst in self._of(name):
                inst.wait_for(needs)

    def _await_dependencies(self, service: ServiceConfig) -> str | None:
        """None when every dependency meets its condition; else why not."""
        enabled = self.config.enabled()
        needs = [d for d in service.depends_on if d.service in enabled]
        if needs:
            log.debug("%s waits for %s", service.name, [d.service for d in needs])
        with self._cond:
            result: list[str | None] = [None]

            def decided() -> bool:
                if self._closing:
                    return True
                for dep in needs:
                    verdict = self._condition(dep)
                    if isinstance(verdict, str):
                        result[0] = verdict
                        return True
                    if not verdict:
                        return False
                return True

            self._cond.wait_for(decided)
            return result[0]

    def _condition(self, dep: Dependency) -> bool | str:
        """True when met, False while not yet, a reason when it never will be."""
        statuses = [i.status() for i in self._of(dep.service)]
        for status in statuses:
            if status.state == "failed":
                why = status.reason or "failed"
                return f"dependency {dep.service!r} failed: {status.id} {why}"
        if dep.condition == "service_started":
            return all(s.runs > 0 or s.completed for s in statuses)
        if dep.condition == "service_healthy":
            return all(s.state == "ready" for s in statuses)
        return all(s.completed for s in statuses)

    def _prepare(self, inst: Instance) -> Launch:
        """Port, environment and rendered templates for one run of `inst`."""
        service = inst.service
        self._check_id_free(inst)
        port = self._port_for(inst)
        variables = {
            "CORRAL_SERVICE": service.name,
            "CORRAL_INSTANCE_ID": inst.id,
            "CORRAL_REGISTRY": self.config.registry,
            **self._dependency_endpoints(service),
        }
        if port is not None:
            variables["PORT"] = str(port)

        env = {k: render(v, variables) for k, v in service.environment.items()}
        endpoints = service.endpoints
        if endpoints is None:
            endpoints = ["tcp://127.0.0.1:${PORT}"] if port is not None else []
        return Launch(
            argv=[render(a, variables) for a in service.command],
            env={**os.environ, **env, **variables},
            cwd=str(service.working_dir),
            endpoints=[render(e, variables) for e in endpoints],
            metadata={k: render(v, variables) for k, v in service.metadata.items()},
            readiness=_rendered(service.readiness, variables),
            liveness=_rendered(service.liveness, variables),
            port=port,
        )

    def _dependency_endpoints(self, service: ServiceConfig) -> dict[str, str]:
        found = {}
        for dep in service.depends_on:
            ready = [
                e
                for s in (i.status() for i in self._of(dep.service))
                if s.state == "ready"
                for e in s.endpoints
            ]
            found[endpoints_variable(dep.service)] = ",".join(ready)
        return found

    def _check_id_free(self, inst: Instance) -> None:
        """Refuse an id that a live process of someone else has registered.

        Two environments sharing one registry with the same service names
        would otherwise overwrite each other's record every second.
        """
        try:
            found = self.registry.get_service(inst.service.name)
        except RegistryError:
            return  # the registry's own trouble is reported where it is used
        for record in found:
            if record.id != inst.id or record.pid is None or is_stale(record):
                continue
            if record.pid != inst.status().pid:
                raise IdTaken(self.config.registry, record)

    def _port_for(self, inst: Instance) -> int | None:
        """The instance's port: kept across restarts while it stays free."""
        port = inst.service.port
        if port is None:
            return None
        with self._port_lock:
            if port != "auto":
                fixed = port + inst.replica - 1
                if not _port_free(fixed):
                    raise PortInUse(inst.service.name, fixed)
                return fixed
            current = self._ports.get(inst.id)
            if current is None or not _port_free(current):
                current = self._free_port(set(self._ports.values()))
                self._ports[inst.id] = current
            return current

    def _free_port(self, taken: set[int]) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in taken:
                return port
        raise OSError("no free port found on 127.0.0.1")

    def _release_port(self, inst: Instance) -> None:
        with self._port_lock:
            self._ports.pop(inst.id, None)

    # -- stopping --------------------------------------------------------------

    def _stop_all(self, instances: list[Instance]) -> None:
        """Stop instances in parallel and return when all are down."""
        threads = [
            threading.Thread(target=i.stop, name=f"corral-stop-{i.id}")
            for i in instances
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # -- bookkeeping -------------------------------------------------------------

    def _changed(self, _inst: Instance | None) -> None:
        """An instance changed: wake waiters, record the children."""
        with self._cond:
            self._cond.notify_all()
        if self.state_file is not None:
            # Taking the list and handing it on under one lock keeps an older
            # list from another thread from landing after a newer one.
            with self._recording:
                self.state_file.set_children(self._children())

    def _children(self) -> list[dict[str, object]]:
        """The state file's record of the children that run now.

        Each run's creation time is read once and kept by (pid, spawn time):
        with every change asking, fifty starting children would otherwise
        cost thousands of process look-ups.
        """
        children: list[dict[str, object]] = []
        known: dict[tuple[int, float | None], float] = {}
        for status in self.snapshot():
            if status.pid is None:
                continue
            run = (status.pid, status.started_at)
            started = self._created.get(run) or state.process_started(status.pid)
            if started is None:
                continue
            known[run] = started
            children.append(
                {
                    "instance": status.id,
                    "service": status.service,
                    "pid": status.pid,
                    "started": started,
                    "pgid": status.pid,
                }
            )
        self._created = known  # only the runs that still go on
        return children

    def _settled(self) -> bool:
        """Nothing waits for a dependency, nothing is starting or restarting."""
        done = ("ready", "stopped", "failed")
        return not self._pending and all(s.state in done for s in self.snapshot())

    def _idle(self) -> bool:
        """Nothing waits, runs or restarts any more."""
        done = ("stopped", "failed")
        if self._held_down or self._pending:
            return False
        return all(s.state in done for s in self.snapshot())

    def _prune_loop(self) -> None:
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._closing, PRUNE_INTERVAL):
                    return
            self._prune_once()
            orphans.reap()
            self._record_strays()

    def _record_strays(self) -> None:
        """List adopted orphans in the state file, for the orphan guard.

        They live outside every recorded process group, so if this
        supervisor is killed outright only this list lets the guard (or the
        next `corral up`) find them.
        """
        if self.state_file is None:
            return
        found = []
        for proc in orphans.strays():
            with contextlib.suppress(psutil.Error):
                found.append({"pid": proc.pid, "started": proc.create_time()})
        if found != self._strays:
            self._strays = found
            self.state_file.set("strays", found)

    def _prune_once(self) -> None:
        try:
            self.registry.prune()
        except RegistryCorrupt as exc:
            self.recover_corrupt(exc)
        except RegistryError as exc:
            log.warning("cannot prune the registry: %s", exc)

    def recover_corrupt(self, exc: RegistryCorrupt) -> None:
        """Move a corrupt registry aside and write it again from live state."""
        move_aside(exc)
        for inst in self.instances.values():
            try:
                inst.reassert()
            except RegistryError as again:
                log.warning("%s could not register again: %s", inst.id, again)


def check_services(config: ProjectConfig, names: Iterable[str] | None) -> list[str]:
    """The services these names pick (None or empty: all enabled ones).

    Raises UsageError naming the unknown ones and the choices.
    """
    enabled = config.enabled()
    wanted = list(enabled) if not names else list(names)
    unknown = [n for n in wanted if n not in enabled]
    if unknown:
        raise UsageError(
            f"{config.path}: no enabled service named {', '.join(unknown)} "
            f"(services: {', '.join(enabled)})"
        )
    return wanted


def move_aside(exc: RegistryCorrupt) -> Path:
    """Rename the corrupt file to `<name>.corrupt-<unix time>`; warn."""
    path = Path(exc.path)
    aside = _keep_aside(path, f"{path.name}.corrupt-{int(time.time())}")
    log.warning(
        "registry %s is corrupt (%s); moved it to %s and rebuilt it from the "
        "running instances",
        path,
        exc.reason,
        aside,
    )
    return aside


def _keep_aside(path: Path, name: str) -> Path:
    # A link never replaces an existing name, so a second corruption within
    # the same second gets `-2` instead of destroying the first copy.
    for n in range(1, 1000):
        aside = path.with_name(name if n == 1 else f"{name}-{n}")
        try:
            os.link(path, aside)
        except FileExistsError:
            continue
        except FileNotFoundError:
            return aside
        except OSError:
            if aside.exists():
                continue
            os.replace(path, aside)  # no hard links here: rename instead
            return aside
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return aside
    raise RegistryWriteError(str(path), f"too many copies named {name}-N beside it")


def _rendered(
    probe: Probe | None, variables: dict[str, str]
) -> tuple[Probe, str] | None:
    if probe is None:
        return None
    return probe, render(probe.target, variables)


def _port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":
            # Servers set SO_REUSEADDR too; without it a port whose last
            # connections linger in TIME_WAIT would look taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def open_run_registry(config: ProjectConfig) -> Registry:
    """Open the configured registry; a corrupt file is moved aside first."""
    registry = open_registry(config.registry)
    try:
        registry.list_services()
    except RegistryCorrupt as exc:
        move_aside(exc)
        registry = open_registry(config.registry)
    return registry


def clean_previous_run(config: ProjectConfig, registry: Registry) -> None:
    """End what a previous supervisor of this config left, prune its entries."""
    path = config.state_dir / state.STATE_NAME
    data = state.read_state(path)
    if data is None:
        return
    running = state.previous_supervisor(data)
    if running is not None:
        raise StartFailed(
            f"{config.path}: corral up already runs for this config (pid {running})"
        )
    ended = state.end_leftovers(data)
    if ended:
        log.warning(
            "ended %s leftover processes of a previous run: %s",
            len(ended),
            ", ".join(map(str, ended)),
        )
    for instance in registry.prune():
        log.info("pruned %s/%s of the previous run", instance.name, instance.id)


def run_up(
    config: ProjectConfig, services: list[str] | None = None, detach: bool = False
) -> int:
    """`corral up` in the foreground; returns the exit code.

    Serves the control channel while it runs. Stops on SIGINT, SIGTERM or
    `corral down` (exit 0), or once every service ended by itself (exit 1
    if one failed, else 0). `detach` must be False: `corral up -d` starts
    this same foreground run in the background (supervisor.detach).
    """
    if detach:
        raise UsageError("run_up runs in the foreground; -d goes through detach")
    # A misspelt name is a usage error: nothing may start, stop or be logged.
    check_services(config, services)
    registry = open_run_registry(config)
    clean_previous_run(config, registry)
    orphans.become_subreaper()
    state_file = state.StateFile(config.state_dir, config.path, config.registry)
    guard = watchdog.start(state_file.path)
    orchestrator = Orchestrator(config, registry, state_file=state_file)

    stop_requested = threading.Event()
    restore = _install_signal_handlers(orchestrator, stop_requested)
    try:
        attachment = attach(config, orchestrator, registry)
        try:
            orchestrator.start(services or None)
            orchestrator.wait_idle()
        finally:
            orchestrator.shutdown()
            attachment.close()
    finally:
        orchestrator.shutdown()
        restore()
        state_file.remove()
        watchdog.release(guard)
        orchestrator.printer.close()
    if stop_requested.is_set():
        return 0
    return 1 if orchestrator.failed() else 0


def _install_signal_handlers(
    orchestrator: Orchestrator, stop_requested: threading.Event
) -> Callable[[], None]:
    """Turn SIGINT and SIGTERM into a clean stop, a second one into a kill of
    what is left; returns the undo."""
    names = ["SIGINT", "SIGTERM"] + (["SIGBREAK"] if sys.platform == "win32" else [])
    previous = {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop_requested.is_set():
            log.warning("received %s again while stopping", name)
            threading.Thread(target=orchestrator.kill, name="corral-kill").start()
            return
        log.info("received %s", name)
        stop_requested.set()
        threading.Thread(target=orchestrator.shutdown, name="corral-shutdown").start()

    for name in names:
        sig = signal.Signals[name]
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
