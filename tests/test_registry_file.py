"""The file backend: format compatibility, errors, modes, locks, watching."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from registry import (
    FileRegistry,
    RegistryCorrupt,
    RegistryLocationError,
    RegistryUnavailable,
    RegistryWriteError,
    ServiceInstance,
    liveness,
    open_registry,
)
from tests.support import corral_env

GO_FILE = """{
  "services": {
    "user-service": [
      {
        "id": "user-service-1",
        "name": "user-service",
        "version": "v1.0.0",
        "metadata": null,
        "endpoints": ["http://127.0.0.1:8080", "grpc://127.0.0.1:9090"],
        "timestamp": 1703980800
      }
    ]
  },
  "version": "1.0.0",
  "updated": 1703981200
}
"""

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def test_go_written_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text(GO_FILE)

    [got] = FileRegistry(path).get_service("user-service")

    assert got.metadata == {}
    assert got.endpoints == ["http://127.0.0.1:8080", "grpc://127.0.0.1:9090"]
    assert (got.version, got.timestamp, got.pid) == ("v1.0.0", 1703980800, None)


def test_rewrite_keeps_unknown_fields_and_integer_times(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    data = json.loads(GO_FILE)
    data["services"]["user-service"][0]["weight"] = 7
    data["cluster"] = {"zone": "a"}
    path.write_text(json.dumps(data))

    FileRegistry(path).register(ServiceInstance(id="x-1", name="x"))

    written = json.loads(path.read_text())
    assert written["cluster"] == {"zone": "a"}
    assert written["services"]["user-service"][0]["weight"] == 7
    assert written["services"]["user-service"][0]["metadata"] == {}
    assert isinstance(written["updated"], int)
    assert isinstance(written["services"]["x"][0]["timestamp"], int)
    assert written["version"] == "1.0.0"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{\n  "services": {\n    "a": [,]\n  }\n}', r"registry\.json:3:11: "),
        ('{"services": {"a": [{"id": 5, "name": "a"}]}}', r"services\.a\[0\].*'id'"),
        ('{"services": {"a": {"id": "a-1"}}}', r"services\.a must be a list"),
        ('{"services": [], "version": "1.0.0"}', r"'services' must be an object"),
        ('{"services": {}, "version": "2.0.0"}', r"unknown format version '2\.0\.0'"),
        ("[1, 2]", r"top level must be a JSON object"),
    ],
)
def test_corrupt_file_names_file_and_place(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "registry.json"
    path.write_text(text)

    with pytest.raises(RegistryCorrupt, match=match) as caught:
        FileRegistry(path).list_services()
    assert caught.value.path == str(path)


def test_corrupt_json_keeps_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text('{\n  "services": {\n    "a": [,]\n  }\n}')

    with pytest.raises(RegistryCorrupt) as caught:
        FileRegistry(path).register(ServiceInstance(id="b-1", name="b"))

    assert (caught.value.line, caught.value.column) == (3, 11)
    assert "[,]" in path.read_text(), "a corrupt file must not be overwritten"


@posix_only
def test_file_is_0600_and_created_folder_0700(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "registry.json"
    reg = FileRegistry(path)
    reg.register(ServiceInstance(id="a-1", name="a"))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should be")

    with pytest.raises(RegistryWriteError, match=r"blocker.*cannot create folder"):
        FileRegistry(blocker / "registry.json")


@posix_only
@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere"
)
def test_read_only_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    reg = FileRegistry(folder / "registry.json")
    folder.chmod(0o500)
    try:
        with pytest.raises(RegistryWriteError, match=r"folder .*ro is not writable"):
            reg.register(ServiceInstance(id="a-1", name="a"))
    finally:
        folder.chmod(0o700)


def test_open_registry_takes_paths_and_file_urls(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    open_registry(str(path)).register(ServiceInstance(id="a-1", name="a"))

    via_url = open_registry(path.as_uri())

    assert [i.id for i in via_url.get_service("a")] == ["a-1"]


@pytest.mark.parametrize("location", ["http://127.0.0.1/x", "consul://h/x", ""])
def test_open_registry_rejects_other_locations(location: str) -> None:
    with pytest.raises(RegistryLocationError, match=r"unsupported scheme|empty"):
        open_registry(location)


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    import filelock
    lock = filelock.FileLock(sys.argv[1], fallback_to_soft=False)
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_lock_held_elsewhere_times_out_then_frees_when_holder_dies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.json"
    reg = FileRegistry(path, lock_timeout=0.3)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, f"{path}.lock"],
        stdout=subprocess.PIPE,
        text=True,
        env=corral_env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(RegistryUnavailable, match=r"registry\.json\.lock.*0\.3"):
            reg.register(ServiceInstance(id="a-1", name="a"))
    finally:
        holder.kill()  # a crash: the holder never releases
        holder.wait(10)

    reg.register(ServiceInstance(id="a-1", name="a"))
    assert [i.id for i in reg.get_service("a")] == ["a-1"]


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "registry.json")
    for n in range(5):
        reg.register(ServiceInstance(id=f"a-{n}", name="a"))

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "registry.json",
        "registry.json.lock",
    ]


def test_watcher_sees_a_program_that_rewrites_in_place(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    reg = FileRegistry(path)
    watcher = reg.watch("user-service")
    assert watcher.next(timeout=5) == []

    with open(path, "r+", encoding="utf-8") as f:  # same inode, new content
        f.truncate(0)
        f.write(GO_FILE)

    got = watcher.next(timeout=5)
    assert got is not None and [i.id for i in got] == ["user-service-1"]
    watcher.stop()


def test_polling_watcher_sees_changes_and_ignores_others(tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path / "registry.json")
    watcher = reg.watch("a", polling=True, poll_interval=0.02)
    assert watcher.next(timeout=5) == []

    reg.register(ServiceInstance(id="b-1", name="b"))
    assert watcher.next(timeout=0.3) is None
    reg.register(ServiceInstance(id="a-1", name="a"))

    got = watcher.next(timeout=5)
    assert got is not None and [i.id for i in got] == ["a-1"]
    watcher.stop()


def test_process_that_cannot_be_inspected_counts_as_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def denied(self: psutil.Process) -> float:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "create_time", denied)

    assert liveness.process_alive(os.getpid(), started=0.0)


def test_pid_of_another_host_is_not_judged() -> None:
    record = ServiceInstance(id="a-1", name="a", pid=2**22 + 7, host="elsewhere")

    assert not liveness.owner_dead(record)
    assert liveness.owner_dead(record, host="elsewhere")


def test_watcher_ignores_a_rewrite_that_only_reorders(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    reg = FileRegistry(path)
    reg.register(ServiceInstance(id="a-1", name="a", endpoints=["tcp://h:1"]))
    reg.register(ServiceInstance(id="a-2", name="a", endpoints=["tcp://h:2"]))
    watcher = reg.watch("a")
    assert [i.id for i in watcher.next(timeout=5) or []] == ["a-1", "a-2"]

    data = json.loads(path.read_text())
    data["services"]["a"].reverse()
    temp = tmp_path / "replacement.json"
    temp.write_text(json.dumps(data))
    os.replace(temp, path)  # one atomic rewrite, as another program would

    assert watcher.next(timeout=0.5) is None
    reg.register(ServiceInstance(id="a-3", name="a"))
    got = watcher.next(timeout=5)
    assert got is not None and sorted(i.id for i in got) == ["a-1", "a-2", "a-3"]
    watcher.stop()
