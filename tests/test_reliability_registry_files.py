"""Bad registry files: the library says RegistryCorrupt with the file and the
place and never overwrites them; `corral up` moves them aside and rebuilds
the registry from what runs (SPEC 2.2, 3.2).

The corpus is built here rather than kept as files: most of its members are
generated (every prefix of a real file, megabytes of nesting), and each
names what it is in its test id.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from registry import FileRegistry, RegistryCorrupt, ServiceInstance
from tests.support import run_corral, wait_for
from tests.up_support import Up


def _good_file(tmp_path: Path) -> bytes:
    """A registry file as corral writes it: three services, four instances."""
    path = tmp_path / "good" / "registry.json"
    registry = FileRegistry(path)
    for ident, name in [("api-1", "api"), ("api-2", "api"), ("db-1", "db")]:
        registry.register(
            ServiceInstance(
                id=ident,
                name=name,
                version="v1.0.0",
                metadata={"env": "dev"},
                endpoints=["http://127.0.0.1:8080"],
                pid=1,
            )
        )
    registry.register(ServiceInstance(id="web-1", name="web"), ttl=30)
    return path.read_bytes()


def _instance(**fields: object) -> bytes:
    record = {"id": "a-1", "name": "a", **fields}
    return json.dumps({"services": {"a": [record]}, "version": "1.0.0"}).encode()


# name -> (file content, what the message must contain: a JSON place
# "line:column" or a phrase of the reason).
CORPUS: dict[str, tuple[bytes, str]] = {
    "truncated-object": (b'{"services": {"a": [', "1:21"),
    "truncated-string": (b'{"services": {"a": [{"id": "a-', "1:28"),
    "not-json-yaml": (b"services:\n  a: []\n", "1:1"),
    "not-json-text": (b"hello\n", "1:1"),
    "zero-filled": (b"\0" * 4096, "1:1"),
    "utf8-bom": (b'\xef\xbb\xbf{"services": {}}', "BOM"),
    "utf16": ('{"services": {}}'.encode("utf-16"), "not UTF-8"),
    "binary": (bytes(range(256)) * 4, "not UTF-8"),
    "trailing-garbage": (b'{"services": {}}\n}', "2:1"),
    "two-documents": (b'{"services": {}}\n{"services": {}}', "2:1"),
    "top-level-list": (b"[1, 2]", "top level must be a JSON object"),
    "top-level-string": (b'"services"', "top level must be a JSON object"),
    "services-list": (b'{"services": []}', "'services' must be an object"),
    "services-number": (b'{"services": 7}', "'services' must be an object"),
    "entries-object": (b'{"services": {"a": {"id": "a-1"}}}', "must be a list"),
    "entry-string": (b'{"services": {"a": ["a-1"]}}', "must be an object"),
    "id-number": (_instance(id=5), "'id' must be a str"),
    "name-missing": (b'{"services": {"a": [{"id": "a-1"}]}}', "'name'"),
    "endpoints-string": (_instance(endpoints="http://x"), "endpoints must be"),
    "endpoints-numbers": (_instance(endpoints=[80]), "endpoints must be"),
    "metadata-list": (_instance(metadata=["env"]), "metadata must be an object"),
    "timestamp-string": (_instance(timestamp="today"), "'timestamp'"),
    "pid-string": (_instance(pid="42"), "'pid'"),
    "pid-bool": (_instance(pid=True), "'pid'"),
    "ttl-string": (_instance(ttl="10s"), "'ttl'"),
    "version-2": (b'{"services": {}, "version": "2.0.0"}', "unknown format version"),
    "version-number": (b'{"services": {}, "version": 1}', "unknown format version"),
    "version-empty": (b'{"services": {}, "version": ""}', "unknown format version"),
    "huge-truncated": (
        b'{"services": {"a": ['
        + b",".join([b'{"id": "a-1", "name": "a", "endpoints": []}'] * 150_000),
        "1:",
    ),
    "huge-string-unterminated": (b'{"services": {"a": "' + b"x" * 8_000_000, "1:20"),
}

# Files that Python's json module rejects with errors other than a decode
# error (deep nesting, huge integers): they must still be RegistryCorrupt.
ESCAPING = {
    "deep-arrays": (b'{"services": ' + b"[" * 200_000, "nested"),
    "deep-objects": (b'{"services": ' + b'{"a": ' * 100_000, "nested"),
    "integer-of-5000-digits": (
        b'{"services": {"a": [{"id": "a-1", "name": "a", "pid": '
        + b"9" * 5000
        + b"}]}}",
        "integer of 5000 digits",
    ),
}


def _ops(registry: FileRegistry) -> dict[str, Callable[[], object]]:
    """Every call that reads the file; each must raise RegistryCorrupt."""
    inst = ServiceInstance(id="b-1", name="b", endpoints=["tcp://127.0.0.1:1"])
    return {
        "list_services": registry.list_services,
        "get_service": lambda: registry.get_service("a"),
        "register": lambda: registry.register(inst),
        "renew": lambda: registry.renew(inst),
        "deregister": lambda: registry.deregister(inst),
        "prune": registry.prune,
    }


def _assert_refused(path: Path, content: bytes, phrase: str) -> None:
    """Every operation raises RegistryCorrupt naming the file; none writes."""
    path.write_bytes(content)
    registry = FileRegistry(path)
    for op, call in _ops(registry).items():
        with pytest.raises(RegistryCorrupt) as caught:
            call()
        message = str(caught.value)
        assert caught.value.path == str(path), op
        assert message.startswith(str(path)), (op, message)
        assert phrase in message, (op, message)
        if caught.value.line:
            assert f"{path}:{caught.value.line}:{caught.value.column}:" in message
        assert path.read_bytes() == content, f"{op} rewrote a corrupt file"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_registry_file_is_reported_with_its_place_and_kept(
    tmp_path: Path, name: str
) -> None:
    content, phrase = CORPUS[name]

    _assert_refused(tmp_path / "registry.json", content, phrase)


@pytest.mark.parametrize("name", sorted(ESCAPING))
def test_pathological_registry_file_is_reported_as_corrupt(
    tmp_path: Path, name: str
) -> None:
    content, phrase = ESCAPING[name]

    _assert_refused(tmp_path / "registry.json", content, phrase)


def test_every_truncation_of_a_real_file_is_reported_with_its_place(
    tmp_path: Path,
) -> None:
    good = _good_file(tmp_path)
    path = tmp_path / "registry.json"
    cuts = [n for n in range(1, len(good)) if good[:n].strip()]
    tried = 0

    for n in cuts:
        prefix = good[:n]
        try:
            json.loads(prefix)
            continue  # the prefix that only lacks the final newline is whole
        except ValueError:
            pass
        path.write_bytes(prefix)
        registry = FileRegistry(path)
        with pytest.raises(RegistryCorrupt) as caught:
            registry.register(ServiceInstance(id="b-1", name="b"))
        assert caught.value.line >= 1 and caught.value.column >= 1, n
        assert f"{path}:{caught.value.line}:" in str(caught.value)
        assert path.read_bytes() == prefix
        tried += 1

    print(f"{tried} truncations of a {len(good)}-byte registry refused")
    assert tried >= len(good) - 5


def test_cli_reports_a_corrupt_registry_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_bytes(CORPUS["truncated-object"][0])

    done = run_corral("registry", "--registry", str(path), "ls")

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"corral: {path}:1:21: corrupt registry: Expecting value"
    ]


# -- the supervisor's recovery ---------------------------------------------------

CONFIG = "services:\n  idle:\n    command: sleep 1000\n    replicas: 2\n"

#: Corpus members that `corral up` meets at start, one run each.
AT_START = [
    "truncated-object",
    "zero-filled",
    "binary",
    "endpoints-string",
    "version-2",
    "huge-truncated",
]


def _aside(folder: Path) -> list[Path]:
    return sorted(folder.glob("registry.json.corrupt-*"))


def _assert_recovered(run: Up, content: bytes, asides_before: int) -> None:
    """Moved aside with its bytes, rebuilt 0600 from live state, both named."""
    registry = run.registry_path
    now = run.wait_registered("idle-1", "idle-2", timeout=20)
    aside = _aside(registry.parent)
    assert len(aside) == asides_before + 1, [p.name for p in aside]
    kept = [p for p in aside if p.read_bytes() == content]
    assert kept, "the corrupt bytes were not kept aside"
    assert run.has_line(str(registry), str(kept[0]))
    assert set(now) == {"idle-1", "idle-2"}
    assert registry.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_up_moves_each_kind_of_bad_file_aside_and_rebuilds(
    tmp_path: Path, runs: list[Up]
) -> None:
    registry = tmp_path / ".corral" / "registry.json"
    registry.parent.mkdir(mode=0o700)

    for count, name in enumerate(AT_START):
        content = CORPUS[name][0]
        registry.write_bytes(content)
        run = Up(tmp_path, CONFIG)
        runs.append(run)
        _assert_recovered(run, content, count)
        assert run.signal(signal.SIGTERM) == 0, run.output()
        assert run.instances() == {}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_up_repairs_a_registry_corrupted_while_it_runs(
    tmp_path: Path, runs: list[Up]
) -> None:
    run = Up(tmp_path, CONFIG)
    runs.append(run)
    run.wait_registered("idle-1", "idle-2")
    registry = run.registry_path

    # Rewritten in place, as a careless program would, one after another.
    # Each waits for the next second: two corruptions in one second meet
    # the bug of test_an_earlier_corrupt_copy_is_never_overwritten.
    for count, name in enumerate(["zero-filled", "id-number", "not-json-text"]):
        content = CORPUS[name][0]
        latest = max(
            [0, *(int(p.name.rsplit("-", 1)[1]) for p in _aside(registry.parent))]
        )
        wait_for(lambda t=latest: time.time() >= t + 1, what="the next second")
        with open(registry, "r+b") as handle:
            handle.truncate(0)
            handle.write(content)
        wait_for(
            lambda n=count: (
                len(_aside(registry.parent)) > n and len(run.instances()) == 2
            ),
            timeout=10,
            what=f"{name} repaired",
        )
        _assert_recovered(run, content, count)

    assert run.signal(signal.SIGTERM) == 0
    assert run.instances() == {}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_earlier_corrupt_copy_is_never_overwritten(
    tmp_path: Path, runs: list[Up]
) -> None:
    registry = tmp_path / ".corral" / "registry.json"
    registry.parent.mkdir(mode=0o700)
    # Copies of earlier corruptions under every name the next minute can give.
    now = int(time.time())
    earlier = {
        registry.with_name(f"registry.json.corrupt-{t}"): f"earlier {t}".encode()
        for t in range(now - 1, now + 60)
    }
    for path, content in earlier.items():
        path.write_bytes(content)
    content = CORPUS["truncated-object"][0]
    registry.write_bytes(content)

    run = Up(tmp_path, CONFIG)
    runs.append(run)
    run.wait_registered("idle-1", "idle-2", timeout=20)

    assert {p: p.read_bytes() for p in earlier} == earlier
    assert any(p.read_bytes() == content for p in _aside(registry.parent))
