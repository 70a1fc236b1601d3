"""The local control channel of a running supervisor, and the run claim.

A supervisor listens on a Unix socket in `.corral/` (a named pipe on
Windows). Every connection must prove it knows the secret in
`.corral/control.key`, a file only the owner can read, so only the same
user can control the run. Requests and replies are small JSON objects;
JSON rather than pickle so that even an authenticated peer cannot make the
supervisor run code.

One supervisor per configuration: `claim_run` takes an exclusive lock that
the operating system drops when the holder dies, so a crashed supervisor
never blocks the next `corral up`, and whatever socket or key it left is
known to be stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout

from supervisor.errors import CorralError, NotRunning

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
KEY_NAME = "control.key"
LOCK_NAME = "control.lock"

#: Seconds a client waits for a supervisor to begin the handshake.
HANDSHAKE_TIMEOUT = 10.0

#: Upper bound of one request or reply, in bytes.
MAX_MESSAGE = 1 << 20

# Linux allows 107 bytes in a socket path, macOS 103; leave some room.
_MAX_SOCKET_PATH = 100

# Seconds claim_run waits for the lock before it calls the config taken.
_CLAIM_PATIENCE = 1.0

# State directories whose run claim this process holds (see claim_run).
_held: set[Path] = set()


class Channel(Protocol):
    """The part of a multiprocessing connection the client uses (socket or pipe)."""

    def send_bytes(self, buf: bytes, /) -> None: ...

    def recv_bytes(self, maxlength: int | None = None, /) -> bytes: ...

    def close(self) -> None: ...


class AlreadyRunning(CorralError):
    """A supervisor already runs for this configuration."""

    exit_code = 1

    def __init__(self, config: Path, pid: int | None, running: Path | None = None):
        self.config = config
        self.pid = pid
        self.running = running or config
        who = f" (pid {pid})" if pid else ""
        if self.running.resolve() == config.resolve():
            what = f"corral is already running for this config{who}"
        else:
            # `.corral/` belongs to the folder, so two configs there share it.
            what = f"{self.running} already runs in this folder{who}"
        super().__init__(
            f"{config}: {what}; stop it with `corral down -f {self.running}`"
        )


class ControlError(CorralError):
    """The control channel answered with an error, or broke mid-request."""

    exit_code = 1


def state_dir_of(config_path: Path) -> Path:
    """`.corral/` beside a config file."""
    return config_path.parent / ".corral"


def secure_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it private to the user (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "win32" and path.stat().st_uid == os.getuid():
        path.chmod(0o700)
    return path


def control_address(state_dir: Path) -> str:
    """Where the supervisor of `state_dir` listens: a socket path or pipe name.

    The only platform branch of the channel: Windows has named pipes where
    POSIX has Unix sockets, and `multiprocessing.connection` picks the
    family from the form of the address.
    """
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:24]
    if sys.platform == "win32":
        return rf"\\.\pipe\corral-{digest}"
    path = state_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return str(path)
    return str(_short_socket_dir() / f"{digest}.sock")


def _short_socket_dir() -> Path:
    """A private folder in the temp dir for sockets whose path is too long."""
    base = Path(tempfile.gettempdir()) / f"corral-{_user_tag()}"
    secure_dir(base)
    if sys.platform != "win32":
        info = base.stat()
        # Someone else could have made this folder first to catch our socket.
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ControlError(f"{base}: not a private folder of this user")
    return base


def _user_tag() -> str:
    if sys.platform == "win32":
        return os.environ.get("USERNAME", "user")
    return str(os.getuid())


def write_key(state_dir: Path) -> bytes:
    """Create a fresh secret in `.corral/control.key`, readable only by us.

    The file is created with O_EXCL and mode 0600 in one call, so there is
    no moment when it exists with wider permissions or as someone's link.
    """
    path = secure_dir(state_dir) / KEY_NAME
    path.unlink(missing_ok=True)
    key = secrets.token_hex(32).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def read_key(state_dir: Path) -> bytes | None:
    """The secret of a running supervisor, or None when there is none."""
    try:
        return (state_dir / KEY_NAME).read_bytes().strip()
    except FileNotFoundError:
        return None


def remove_endpoint(state_dir: Path) -> None:
    """Delete the socket and key of a supervisor that is gone."""
    address = control_address(state_dir)
    if sys.platform != "win32":
        Path(address).unlink(missing_ok=True)
    (state_dir / KEY_NAME).unlink(missing_ok=True)


@contextmanager
def claim_run(config_path: Path) -> Iterator[None]:
    """Hold the one-supervisor-per-config claim for the life of the block.

    Raises AlreadyRunning (naming the live supervisor's pid when it answers)
    if another process holds it. Leftover socket and key files are removed:
    with the claim held, nobody else can be serving them.
    """
    state_dir = secure_dir(state_dir_of(config_path))
    lock = FileLock(str(state_dir / LOCK_NAME))
    try:
        # A moment's patience: a client checking for a dead run holds the
        # lock briefly (see claim_is_free).
        lock.acquire(timeout=_CLAIM_PATIENCE)
    except Timeout:
        raise AlreadyRunning(config_path, *whoever_runs(config_path)) from None

    _held.add(state_dir.resolve())
    remove_endpoint(state_dir)
    try:
        yield
    finally:
        _held.discard(state_dir.resolve())
        lock.release()


def holds_claim(state_dir: Path) -> bool:
    """Whether this process holds the run claim of `state_dir`."""
    return state_dir.resolve() in _held


def claim_is_free(state_dir: Path) -> bool:
    """Whether no live process holds the run claim of `state_dir`."""
    if holds_claim(state_dir):
        return False
    lock = FileLock(str(state_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def running_pid(config_path: Path) -> int | None:
    """The pid of the supervisor of this config, or None if none answers."""
    return whoever_runs(config_path)[0]


def whoever_runs(config_path: Path) -> tuple[int | None, Path | None]:
    """The pid and config of the supervisor serving this config's folder.

    (None, None) when none answers.
    """
    try:
        with ControlClient.connect(config_path, check_config=False) as client:
            reply = client.request("ping")
    except CorralError:
        return None, None
    pid, config = reply.get("pid"), reply.get("config")
    return (
        pid if isinstance(pid, int) else None,
        Path(config) if isinstance(config, str) else None,
    )


class ControlClient:
    """A connection to the supervisor of one configuration."""

    def __init__(self, config_path: Path, conn: Channel):
        self.config_path = config_path
        self._conn = conn

    @classmethod
    def connect(cls, config_path: Path, check_config: bool = True) -> ControlClient:
        """Connect and authenticate; NotRunning when no supervisor answers.

        A socket or key left by a supervisor that died is removed on the
        way, so the next command finds a clean folder. With `check_config`,
        a supervisor of another config in the same folder is NotRunning too.
        """
        client = cls(config_path, cls._open(config_path))
        if check_config:
            client._check_config()
        return client

    def _check_config(self) -> None:
        reply = self.request("ping")
        running = Path(str(reply.get("config")))
        if running.resolve() != self.config_path.resolve():
            self.close()
            raise NotRunning(
                f"{self.config_path}: nothing is running for this config; "
                f"{running} runs in this folder (pid {reply.get('pid')})"
            )

    @staticmethod
    def _open(config_path: Path) -> Channel:
        """The authenticated connection to the supervisor of this folder."""
        state_dir = state_dir_of(config_path)
        key = read_key(state_dir)
        if key is None:
            raise _not_running(config_path, stale=False)

        try:
            conn = Client(control_address(state_dir))
        except (FileNotFoundError, ConnectionRefusedError):
            stale = claim_is_free(state_dir)
            if stale:
                remove_endpoint(state_dir)
            raise _not_running(config_path, stale) from None
        except OSError as exc:
            raise ControlError(f"{config_path}: control channel: {exc}") from exc

        # The handshake by hand, to bound the wait for the first message: a
        # supervisor that is stopped (SIGSTOP) or wedged must not hang us.
        try:
            if not conn.poll(HANDSHAKE_TIMEOUT):
                raise ControlError(
                    f"{config_path}: the supervisor accepted the connection but "
                    f"did not answer within {HANDSHAKE_TIMEOUT:g} s"
                )
            answer_challenge(conn, key)
            deliver_challenge(conn, key)
        except (AuthenticationError, EOFError, OSError) as exc:
            conn.close()
            raise ControlError(
                f"{config_path}: the supervisor refused this client ({exc}); "
                f"is {state_dir / KEY_NAME} from another run?"
            ) from exc
        except ControlError:
            conn.close()
            raise
        return conn

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply; ControlError if it failed."""
        message = json.dumps({"op": op, **fields}).encode()
        try:
            self._conn.send_bytes(message)
            reply = json.loads(self._conn.recv_bytes(MAX_MESSAGE))
        except (EOFError, OSError) as exc:
            raise ControlError(
                f"{self.config_path}: the supervisor closed the control channel "
                f"during {op!r} (see .corral/logs/corral.log)"
            ) from exc

        if not isinstance(reply, dict):
            raise ControlError(f"{self.config_path}: malformed reply to {op!r}")
        if not reply.get("ok"):
            error = ControlError(f"{self.config_path}: {reply.get('error')}")
            error.exit_code = int(reply.get("exit_code", 1))
            raise error
        return reply

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _not_running(config_path: Path, stale: bool) -> NotRunning:
    extra = " (removed the control socket of a supervisor that died)" if stale else ""
    return NotRunning(
        f"{config_path}: nothing is running for this config{extra}; "
        f"start it with `corral up -d -f {config_path}`"
    )
