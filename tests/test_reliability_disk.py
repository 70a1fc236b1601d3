"""Writes that fail for real: a full disk, a read-only file system, and a
file size limit. The registry on disk must stay exactly as it was, and the
error must name the registry file and the cause.

The full and read-only cases mount a 64 KiB tmpfs on a folder the test
creates (root on Linux only; skipped elsewhere) and unmount it in a
finalizer. The size-limit case needs no privilege: a child process with a
small RLIMIT_FSIZE gets EFBIG from the kernel when the temporary file grows.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import FileRegistry, RegistryError, RegistryWriteError, ServiceInstance
from tests.support import corral_env

#: How many writes are tried against the full or read-only file system.
ATTEMPTS = 50


def _can_mount() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted on a fresh folder, unmounted afterwards."""
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root on Linux")
    folder = tmp_path / "mnt"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)]).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def _instance(n: int, padding: int = 0) -> ServiceInstance:
    return ServiceInstance(
        id=f"api-{n}",
        name="api",
        version="v1",
        metadata={"pad": "p" * padding},
        endpoints=[f"http://127.0.0.1:{8000 + n}"],
    )


def _fill(folder: Path) -> Path:
    """Write a file until the file system is full; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (4096, 1):
            while True:
                try:
                    handle.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return filler


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_keeps_the_registry_and_names_file_and_cause(
    small_mount: Path,
) -> None:
    path = small_mount / "registry.json"
    registry = FileRegistry(path)
    for n in range(10):
        registry.register(_instance(n))
    before = path.read_bytes()
    filler = _fill(small_mount)

    for n in range(ATTEMPTS):
        with pytest.raises(RegistryWriteError) as caught:
            if n % 2:
                registry.deregister(_instance(n % 10))
            else:
                registry.register(_instance(100 + n, padding=2000))
        assert caught.value.path == str(path)
        assert "No space left on device" in str(caught.value)
        assert str(path) in str(caught.value)
        assert path.read_bytes() == before
        assert _temporaries(small_mount) == []

    filler.unlink()
    registry.register(_instance(999))
    assert len(json.loads(path.read_bytes())["services"]["api"]) == 11


def test_read_only_file_system_keeps_the_registry_and_names_file_and_cause(
    small_mount: Path,
) -> None:
    path = small_mount / "registry.json"
    registry = FileRegistry(path)
    for n in range(10):
        registry.register(_instance(n))
    before = path.read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)

    for n in range(ATTEMPTS):
        with pytest.raises(RegistryError) as caught:
            registry.register(_instance(100 + n))
        message = str(caught.value)
        assert "Read-only file system" in message, message
        assert str(path) in message, message
        assert path.read_bytes() == before
    ids = [i.id for i in registry.get_service("api")]
    assert ids == [f"api-{n}" for n in range(10)]

    subprocess.run(["mount", "-o", "remount,rw", str(small_mount)], check=True)
    registry.register(_instance(999))
    assert len(registry.get_service("api")) == 11


# A child limited to FILE_LIMIT bytes per file: registering a big instance
# makes the temporary file pass the limit, so write() fails with EFBIG.
SIZE_LIMITED = textwrap.dedent(
    """
    import json, resource, signal, sys
    from registry import FileRegistry, RegistryWriteError, ServiceInstance
    path, limit = sys.argv[1], int(sys.argv[2])
    registry = FileRegistry(path)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    outcomes = []
    for n in range(int(sys.argv[3])):
        big = ServiceInstance(id=f"big-{n}", name="big", metadata={"pad": "x" * limit})
        try:
            registry.register(big)
            outcomes.append("written")
        except RegistryWriteError as exc:
            outcomes.append(str(exc))
    print(json.dumps(outcomes))
    """
)


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX")
def test_a_write_cut_by_a_file_size_limit_keeps_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    registry = FileRegistry(path)
    for n in range(10):
        registry.register(_instance(n))
    before = path.read_bytes()

    child = subprocess.run(
        [sys.executable, "-c", SIZE_LIMITED, str(path), "16384", str(ATTEMPTS)],
        capture_output=True,
        text=True,
        env=corral_env(),
        timeout=60,
    )

    assert child.returncode == 0, child.stderr
    outcomes = json.loads(child.stdout)
    assert len(outcomes) == ATTEMPTS
    for outcome in outcomes:
        assert str(path) in outcome and "File too large" in outcome, outcome
    assert path.read_bytes() == before
    assert _temporaries(tmp_path) == []
