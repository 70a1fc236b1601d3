"""The supervisor's side of the control channel: accept, check, dispatch.

The server talks to the running environment through the `Orchestrator`
protocol only, so it works the same against the real runtime and against
a small fake in the tests.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import (
    Client,
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)
from pathlib import Path
from typing import Any, Protocol

from supervisor.control import (
    MAX_MESSAGE,
    AlreadyRunning,
    ControlError,
    claim_run,
    control_address,
    holds_claim,
    remove_endpoint,
    state_dir_of,
    write_key,
)
from supervisor.errors import CorralError

log = logging.getLogger(__name__)

STATES = ("starting", "ready", "restarting", "stopped", "failed")

# State folders this process serves, so that a second server for the same
# config in this process is refused like one in another process.
_serving: set[Path] = set()


@dataclass
class InstanceStatus:
    """What `corral ps` shows of one instance.

    `started_at` is the Unix time (seconds) the current run began, None
    when the instance is not running; `pid` is None likewise.
    """

    service: str
    id: str
    state: str
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None
    endpoints: list[str] = field(default_factory=list)
    #: Why the instance is in its state, where that is not plain: what a
    #: starting one waits for, why a failed one failed.
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object sent over the channel and printed by `ps --json`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceStatus:
        """The inverse of to_dict, ignoring fields it does not know."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class Orchestrator(Protocol):
    """What the control server needs from a running environment.

    The mutating calls return once the step is done (instances stopped,
    or started and ready or failed) so a command's caller sees the result.
    """

    def start(self, names: Sequence[str]) -> None:
        """Start these services (and what they depend on)."""

    def stop(self, names: Sequence[str]) -> None:
        """Stop these services."""

    def restart(self, names: Sequence[str]) -> None:
        """Stop, then start these services."""

    def snapshot(self) -> list[InstanceStatus]:
        """The current status of every instance."""

    def wait_ready(self, timeout: float | None = None) -> dict[str, str]:
        """Wait until every service is ready or failed; failed name -> reason."""

    def shutdown(self) -> None:
        """Stop everything and let the supervisor exit."""


Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Serves one configuration's control channel from background threads.

    Mutating requests run one at a time on a single long-lived worker
    thread: they never race each other, and a process the runtime spawns
    from that thread is not tied to a short-lived connection thread (a
    Linux parent-death signal follows the spawning thread).
    """

    def __init__(self, config_path: Path, orchestrator: Orchestrator):
        self.config_path = config_path
        self.state_dir = state_dir_of(config_path)
        self.orchestrator = orchestrator
        self._listener: Listener | None = None
        self._key = b""
        self._closing = threading.Event()
        self._claim = ExitStack()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="corral-control")
        self._handlers: dict[str, Handler] = {
            "ping": self._ping,
            "ps": self._ps,
            "wait_ready": self._wait_ready,
            "start": self._mutating(orchestrator.start),
            "stop": self._mutating(orchestrator.stop),
            "restart": self._mutating(orchestrator.restart),
            "down": self._down,
        }

    def start(self) -> ControlServer:
        """Write a fresh key, listen, and serve from a daemon thread.

        Raises AlreadyRunning unless this process holds the run claim (see
        `claim_run`) or can take it.
        """
        if self.state_dir.resolve() in _serving:
            raise AlreadyRunning(self.config_path, os.getpid())
        if not holds_claim(self.state_dir):
            self._claim.enter_context(claim_run(self.config_path))
        _serving.add(self.state_dir.resolve())

        remove_endpoint(self.state_dir)
        self._key = write_key(self.state_dir)
        address = control_address(self.state_dir)
        self._listener = Listener(address, backlog=16)
        threading.Thread(
            target=self._accept_loop, name="corral-control-accept", daemon=True
        ).start()
        log.debug("control channel listening on %s", address)
        return self

    def close(self) -> None:
        """Stop accepting, remove the socket and key; idempotent."""
        if self._closing.is_set() or self._listener is None:
            return
        self._closing.set()
        self._wake_accept()
        self._listener.close()
        remove_endpoint(self.state_dir)
        self._worker.shutdown(wait=False)
        _serving.discard(self.state_dir.resolve())
        self._claim.close()
        log.debug("control channel closed")

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wake_accept(self) -> None:
        # Closing a listening socket does not wake a thread blocked in
        # accept() on Linux, so connect once to let the loop see the flag.
        if self._listener is None:
            return
        try:
            Client(self._listener.address).close()
        except OSError:
            log.debug("control listener already gone")

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._closing.is_set():
            try:
                conn = listener.accept()
            except OSError as exc:
                if not self._closing.is_set():
                    log.warning("control channel: accept failed: %s", exc)
                continue
            if self._closing.is_set():
                conn.close()
                return
            threading.Thread(
                target=self._serve, args=(conn,), name="corral-control", daemon=True
            ).start()

    def _serve(self, conn: Connection) -> None:
        """Authenticate one client, then answer its requests until it leaves."""
        with conn:
            # The handshake runs here, not in accept(), so a client that
            # stalls in it holds up only its own thread.
            try:
                deliver_challenge(conn, self._key)
                answer_challenge(conn, self._key)
            except (AuthenticationError, EOFError, OSError) as exc:
                level = logging.DEBUG if self._closing.is_set() else logging.WARNING
                log.log(level, "control channel: refused a client: %s", exc)
                return

            while not self._closing.is_set():
                try:
                    raw = conn.recv_bytes(MAX_MESSAGE)
                except (EOFError, OSError):
                    return
                reply = self._dispatch(raw)
                try:
                    conn.send_bytes(json.dumps(reply).encode())
                except OSError:
                    return

    def _dispatch(self, raw: bytes) -> dict[str, Any]:
        try:
            request = json.loads(raw)
            handler = self._handlers.get(request.get("op", ""))
        except (ValueError, AttributeError):
            return _error("malformed request")
        if handler is None:
            return _error(f"unknown request {request.get('op')!r}")

        try:
            return handler(request)
        except CorralError as exc:
            return _error(str(exc), exc.exit_code)
        except Exception as exc:
            log.exception("control request %r failed", request.get("op"))
            return _error(f"internal error in the supervisor: {exc}")

    def _ping(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "config": str(self.config_path)}

    def _ps(self, _request: dict[str, Any]) -> dict[str, Any]:
        instances = [s.to_dict() for s in self.orchestrator.snapshot()]
        return {"ok": True, "instances": instances}

    def _wait_ready(self, request: dict[str, Any]) -> dict[str, Any]:
        timeout = request.get("timeout")
        failed = self.orchestrator.wait_ready(
            float(timeout) if timeout is not None else None
        )
        return {"ok": True, "failed": dict(failed)}

    def _mutating(self, action: Callable[[Sequence[str]], None]) -> Handler:
        def handle(request: dict[str, Any]) -> dict[str, Any]:
            names = request.get("services")
            if not isinstance(names, list) or not all(
                isinstance(n, str) for n in names
            ):
                raise ControlError("expected a list of service names")
            self._worker.submit(action, names).result()
            return {"ok": True}

        return handle

    def _down(self, _request: dict[str, Any]) -> dict[str, Any]:
        # Reply first; the caller then waits for this process to exit.
        self._worker.submit(self.orchestrator.shutdown)
        return {"ok": True, "pid": os.getpid()}


def _error(message: str, exit_code: int = 1) -> dict[str, Any]:
    return {"ok": False, "error": message, "exit_code": exit_code}
