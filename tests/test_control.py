"""The control channel: same-user only, requests reach the orchestrator,
stale endpoints are cleaned, one supervisor per config."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.control import (
    AlreadyRunning,
    ControlClient,
    ControlError,
    claim_run,
    control_address,
    read_key,
)
from supervisor.control_server import ControlServer
from supervisor.errors import NotRunning
from tests.control_fake import FakeOrchestrator
from tests.support import REPO, wait_for

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "corral.yaml"
    path.write_text("services: {}\n")
    return path


@pytest.fixture
def served(config: Path):  # type: ignore[no-untyped-def]
    fake = FakeOrchestrator(["db", "api"])
    with ControlServer(config, fake) as server:
        yield fake, server


def test_requests_reach_the_orchestrator(config: Path, served) -> None:  # type: ignore[no-untyped-def]
    fake, _server = served
    with ControlClient.connect(config) as client:
        client.request("restart", services=["api"])
        client.request("stop", services=["db"])
        states = {i["id"]: i for i in client.request("ps")["instances"]}

    assert fake.calls == [("restart", ("api",)), ("stop", ("db",))]
    assert states["api-1"]["restarts"] == 1
    assert states["db-1"]["state"] == "stopped"


def test_orchestrator_errors_come_back_with_their_exit_code(
    config: Path,
    served,  # type: ignore[no-untyped-def]
) -> None:
    with (
        ControlClient.connect(config) as client,
        pytest.raises(ControlError, match="no such service: web") as caught,
    ):
        client.request("start", services=["web"])
    assert caught.value.exit_code == 2


@posix_only
def test_key_and_folder_are_private(config: Path, served) -> None:  # type: ignore[no-untyped-def]
    state = config.parent / ".corral"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "control.key").stat().st_mode) == 0o600


def test_client_with_a_wrong_key_is_refused(config: Path, served) -> None:  # type: ignore[no-untyped-def]
    address = control_address(config.parent / ".corral")
    guesser = (
        "import sys\n"
        "from multiprocessing.connection import Client\n"
        "try:\n"
        "    c = Client(sys.argv[1], authkey=b'not-the-key')\n"
        '    c.send_bytes(b\'{"op": "ps"}\')\n'
        "    print('GOT', c.recv_bytes())\n"
        "except Exception as exc:\n"
        "    print('REFUSED', type(exc).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", guesser, address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.startswith("REFUSED AuthenticationError"), result.stdout


def test_client_without_a_key_gets_no_answer(config: Path, served) -> None:  # type: ignore[no-untyped-def]
    # From another process, as an intruder would: it connects, skips the
    # handshake and asks for the instance list.
    address = control_address(config.parent / ".corral")
    intruder = (
        "import sys\n"
        "from multiprocessing.connection import Client\n"
        "c = Client(sys.argv[1])\n"
        'c.send_bytes(b\'{"op": "ps"}\')\n'
        "try:\n"
        "    while True:\n"
        "        print('GOT', c.recv_bytes())\n"
        "except (EOFError, OSError) as exc:\n"
        "    print('REFUSED', type(exc).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", intruder, address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "REFUSED" in result.stdout, result.stdout + result.stderr
    assert '"ok"' not in result.stdout
    assert "instances" not in result.stdout

    with ControlClient.connect(config) as client:
        assert client.request("ping")["ok"]


def test_nothing_running_names_the_config(config: Path) -> None:
    with pytest.raises(NotRunning, match=r"corral\.yaml: nothing is running"):
        ControlClient.connect(config)


def test_a_dead_supervisors_socket_is_detected_and_removed(config: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "control_fake.py"), str(config), "api"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "serving"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    state = config.parent / ".corral"
    assert read_key(state) is not None

    with pytest.raises(NotRunning, match="supervisor that died"):
        ControlClient.connect(config)
    assert read_key(state) is None
    if sys.platform != "win32":
        assert not Path(control_address(state)).exists()


def test_one_supervisor_per_config(config: Path, served) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AlreadyRunning, match=r"already running.*pid \d+"):
        ControlServer(config, FakeOrchestrator(["api"])).start()

    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "control_fake.py"), str(config), "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "already running" in proc.stderr


def test_claim_is_released_when_the_block_ends(config: Path) -> None:
    with claim_run(config):
        pass
    with claim_run(config), ControlServer(config, FakeOrchestrator(["a"])):
        wait_for(lambda: read_key(config.parent / ".corral"), what="a key")


def test_long_state_paths_still_get_a_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    config = deep / "corral.yaml"
    config.write_text("services: {}\n")
    with (
        ControlServer(config, FakeOrchestrator(["api"])),
        ControlClient.connect(config) as client,
    ):
        assert client.request("ping")["pid"]


@posix_only
def test_a_stopped_supervisor_does_not_hang_a_client(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    monkeypatch.setattr("supervisor.control.HANDSHAKE_TIMEOUT", 0.5)
    script = str(REPO / "tests" / "control_fake.py")
    proc = subprocess.Popen(
        [sys.executable, script, str(config), "api"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "serving"
        proc.send_signal(signal.SIGSTOP)
        with pytest.raises(ControlError, match=r"did not answer within 0\.5 s"):
            ControlClient.connect(config)
    finally:
        proc.kill()
        proc.wait(timeout=30)
