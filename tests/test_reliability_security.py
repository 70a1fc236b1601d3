"""Other users: what a real run leaves readable, where its secrets show, and
whether a path planted by someone else can redirect the registry.

The planted-symlink cases need root (to give the link to uid 65534 with
os.lchown, as another user would own it) and are skipped otherwise.
"""

from __future__ import annotations

import os
import signal
import stat
import textwrap
from pathlib import Path

import pytest

from registry import FileRegistry, RegistryError, ServiceInstance
from tests.reliability_support import TaggedUp, new_tag, tagged
from tests.support import run_corral
from tests.up_support import Up

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX modes and users")

SECRET = "tok-4f9c2b-s3cr3t-value"
OTHER_UID = 65534  # nobody

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a file to another user needs root",
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


CONFIG = """
services:
  api:
    command: sleep 1000
    env_file: .env
    environment: {AUTH_HEADER: "Bearer ${API_TOKEN}"}
    port: auto
    replicas: 2
  worker:
    command: sh -c "sleep 1000 & sleep 1000"
    env_file: .env
    depends_on: [api]
"""


def test_a_run_keeps_its_files_private_and_its_secrets_out_of_sight(
    tmp_path: Path, runs: list[Up]
) -> None:
    (tmp_path / ".env").write_text(f"API_TOKEN={SECRET}\n")
    # Debug logging: the most corral itself ever says about a run.
    run = TaggedUp(tmp_path, textwrap.dedent(CONFIG), new_tag(), "-v")
    runs.append(run)
    run.wait_registered("api-1", "api-2", "worker-1")
    state = tmp_path / ".corral"
    config = str(run.config)

    assert _mode(state) == 0o700
    assert _mode(state / "registry.json") == 0o600
    assert _mode(state / "control.key") == 0o600
    assert _mode(state / "state.json") & 0o077 == 0
    logs = list((state / "logs").iterdir())
    assert len(logs) == 3
    for path in [state / "logs", *logs]:
        assert _mode(path) & 0o007 == 0, f"{path} is readable by others"

    shown = {
        "ps": run_corral("ps", "-f", config),
        "ps --json": run_corral("ps", "-f", config, "--json"),
        "config": run_corral("config", "-f", config),
        "registry ls": run_corral("registry", "-f", config, "ls", "--json"),
    }
    for what, done in shown.items():
        assert done.returncode == 0, (what, done.stderr)
        assert SECRET not in done.stdout + done.stderr, what
    assert "api-1" in shown["ps"].stdout
    for path in [state / "registry.json", state / "state.json", *logs]:
        assert SECRET not in path.read_text(errors="replace"), path

    # The secret reaches the children's environment, never a command line.
    procs = tagged(run.tag)
    assert any(p.environ().get("API_TOKEN") == SECRET for p in procs)
    for proc in procs:
        assert not any(SECRET in arg for arg in proc.cmdline()), proc.cmdline()

    assert run.signal(signal.SIGTERM) == 0
    assert SECRET not in run.output(), "corral's own output shows the secret"
    assert "api-1 started with pid" in run.output()


def _plant_link(link: Path, target: Path) -> None:
    """A symlink as another user would leave it: owned by OTHER_UID."""
    link.symlink_to(target)
    os.lchown(link, OTHER_UID, OTHER_UID)
    assert link.lstat().st_uid == OTHER_UID


def _shared_folder(tmp_path: Path) -> Path:
    """A folder every user may write to, like /tmp (mode 1777)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


@needs_root
def test_a_registry_file_symlinked_by_another_user_is_refused(tmp_path: Path) -> None:
    shared = _shared_folder(tmp_path)
    theirs = tmp_path / "theirs.json"
    theirs.write_text(
        '{"services": {"api": [{"id": "api-1", "name": "api", '
        '"endpoints": ["http://evil.invalid"]}]}}'
    )
    os.chown(theirs, OTHER_UID, OTHER_UID)
    path = shared / "registry.json"
    _plant_link(path, theirs)

    with pytest.raises(RegistryError, match=r"registry\.json.*symlink"):
        FileRegistry(path).get_service("api")


@needs_root
def test_a_registry_folder_symlinked_by_another_user_is_refused(
    tmp_path: Path,
) -> None:
    shared = _shared_folder(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    _plant_link(shared / ".corral", theirs)
    path = shared / ".corral" / "registry.json"

    try:
        registry = FileRegistry(path)
        registry.register(ServiceInstance(id="api-1", name="api", metadata={}))
    except RegistryError as exc:
        assert "symlink" in str(exc) and ".corral" in str(exc)
    finally:
        written = sorted(p.name for p in theirs.iterdir())
    assert written == [], f"the registry was written into their folder: {written}"
