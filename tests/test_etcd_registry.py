"""What is specific to the etcd backend: Kratos layout, URLs, leases, outages.

The behaviour shared with the file backend is in test_backend_contract.py,
which runs on etcd too (tests/backends.py).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from registry import (
    Registry,
    RegistryLocationError,
    RegistryUnavailable,
    ServiceInstance,
    open_registry,
)
from registry.etcd_client import parse_etcd_url
from tests.etcd_server import EtcdServer, etcd_server, free_port
from tests.support import corral_env, wait_for

__all__ = ["etcd_server"]  # the fixture, imported for pytest to find


@pytest.fixture
def reg(etcd_server: EtcdServer) -> Iterator[Registry]:
    registry = open_registry(etcd_server.url())
    yield registry
    registry.close()


def api(ident: str = "api-1", **fields: object) -> ServiceInstance:
    base: dict[str, object] = {
        "id": ident,
        "name": "api",
        "version": "v1",
        "metadata": {"env": "dev"},
        "endpoints": ["http://127.0.0.1:8000"],
    }
    base.update(fields)
    return ServiceInstance(**base)  # type: ignore[arg-type]


def ids(instances: list[ServiceInstance] | None) -> list[str]:
    assert instances is not None, "watcher returned no change"
    return sorted(i.id for i in instances)


# -- layout ----------------------------------------------------------------


def test_keys_and_values_follow_the_kratos_layout(
    reg: Registry, etcd_server: EtcdServer
) -> None:
    reg.register(api("api-1"))

    lines = etcd_server.etcdctl("get", "--prefix", "/microservices").splitlines()

    assert lines[0] == "/microservices/api/api-1"
    value = json.loads(lines[1])
    assert list(value)[:5] == ["id", "name", "version", "metadata", "endpoints"]
    assert value["metadata"] == {"env": "dev"}
    assert value["endpoints"] == ["http://127.0.0.1:8000"]


def test_reads_an_instance_written_as_go_kratos_writes_it(
    reg: Registry, etcd_server: EtcdServer
) -> None:
    go_value = (
        '{"id":"go-1","name":"user","version":"v2","metadata":null,'
        '"endpoints":["grpc://127.0.0.1:9000"]}'
    )
    etcd_server.etcdctl("put", "/microservices/user/go-1", go_value)
    etcd_server.etcdctl("put", "/microservices/user/junk", "not json")

    [got] = reg.get_service("user")

    assert (got.id, got.version, got.metadata) == ("go-1", "v2", {})
    assert got.endpoints == ["grpc://127.0.0.1:9000"]
    assert list(reg.list_services()) == ["user"]


def test_service_prefix_does_not_match_longer_names(reg: Registry) -> None:
    reg.register(api("api-1"))
    reg.register(ServiceInstance(id="gw-1", name="api-gateway"))

    assert ids(reg.get_service("api")) == ["api-1"]


def test_renewals_add_no_revisions_unless_the_record_changed(
    reg: Registry, etcd_server: EtcdServer
) -> None:
    mine = api("api-1")
    reg.register(mine)
    before = _revision(etcd_server)

    for _ in range(3):
        reg.renew(mine)
    assert _revision(etcd_server) == before

    etcd_server.etcdctl(
        "put", "/microservices/api/api-1", '{"id":"api-1","name":"api"}'
    )
    reg.renew(mine)
    [got] = reg.get_service("api")
    assert got.endpoints == ["http://127.0.0.1:8000"]


def _revision(server: EtcdServer) -> int:
    status = json.loads(server.etcdctl("endpoint", "status", "-w", "json"))
    return int(status[0]["Status"]["header"]["revision"])


# -- locations -------------------------------------------------------------


def test_url_path_is_the_namespace_with_kratos_default() -> None:
    assert parse_etcd_url("etcd://127.0.0.1:2379").namespace == "/microservices"
    assert parse_etcd_url("etcd://127.0.0.1:2379/").namespace == "/microservices"
    assert parse_etcd_url("etcd://h:2379/a/b/").namespace == "/a/b"
    assert parse_etcd_url("etcd://h:2379/x?timeout=0.5").timeout == 0.5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd://127.0.0.1/microservices", "missing port"),
        ("etcd://:2379/microservices", "missing host"),
        ("etcd://127.0.0.1:port/microservices", "bad port"),
        ("etcd://127.0.0.1:99999/microservices", "bad port"),
        ("etcd://127.0.0.1:2379/x?timeout=soon", "timeout must be seconds"),
        ("etcd://127.0.0.1:2379/x?tls=1", "unknown option 'tls'"),
        ("etcd://user:pw@127.0.0.1:2379/x", "user names"),
    ],
)
def test_bad_url_names_the_url_and_the_fault(url: str, message: str) -> None:
    with pytest.raises(RegistryLocationError, match=message) as caught:
        open_registry(url)

    assert url in str(caught.value)


def test_unreachable_server_fails_within_the_timeout_naming_it() -> None:
    pytest.importorskip("etcd3gw")
    port = free_port()
    started = time.monotonic()

    with pytest.raises(RegistryUnavailable, match=f"127.0.0.1:{port}") as caught:
        open_registry(f"etcd://127.0.0.1:{port}/microservices?timeout=1")

    assert time.monotonic() - started < 3
    assert "after 1 s" in str(caught.value)


# -- leases ----------------------------------------------------------------

REGISTRANT = textwrap.dedent(
    """
    import sys, time
    import registry.etcd_keepalive as keepalive
    from registry import ServiceInstance, open_registry

    keepalive.DEFAULT_KEPT_TTL = 2  # kept leases as short as etcd allows
    reg = open_registry(sys.argv[1])
    ttl = float(sys.argv[2]) if len(sys.argv) > 2 else None
    inst = ServiceInstance(id="api-1", name="api", endpoints=["tcp://x:1"])
    if ttl is None:
        reg.register(inst)
    else:
        reg.lease(inst, ttl=ttl)
    print("ready", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("ttl", [None, "2"], ids=["kept", "ttl"])
def test_killed_registrant_disappears_when_its_lease_runs_out(
    reg: Registry, etcd_server: EtcdServer, ttl: str | None
) -> None:
    argv = [sys.executable, "-c", REGISTRANT, etcd_server.url()]
    child = subprocess.Popen(
        argv + ([ttl] if ttl else []),
        stdout=subprocess.PIPE,
        text=True,
        env=corral_env(),
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        _stays_for(reg, seconds=4.5)  # two lease lengths: renewal keeps it
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()

        wait_for(lambda: reg.get_service("api") == [], timeout=8, what="expiry")
        assert time.monotonic() - killed < 5  # a 2 s lease, checked each 0.5 s
    finally:
        child.kill()
        child.wait(10)


def _stays_for(reg: Registry, seconds: float) -> None:
    """Assert the instance stays registered for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert ids(reg.get_service("api")) == ["api-1"]
        time.sleep(0.25)


def test_kept_lease_lost_on_the_server_is_registered_again(
    reg: Registry,
    etcd_server: EtcdServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("registry.etcd_keepalive.DEFAULT_KEPT_TTL", 2)
    caplog.set_level(logging.WARNING, logger="registry.etcd_keepalive")
    reg.register(api("api-1"))
    lease = etcd_server.etcdctl("get", "/microservices/api/api-1", "-w", "json")
    lease_id = format(json.loads(lease)["kvs"][0]["lease"], "x")

    etcd_server.etcdctl("lease", "revoke", lease_id)
    assert reg.get_service("api") == []

    wait_for(lambda: reg.get_service("api"), timeout=5, what="re-registration")
    assert "ran out" in caplog.text


def test_kept_lease_survives_a_server_outage_logging_each_failure(
    etcd_server: EtcdServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("registry.etcd_keepalive.DEFAULT_KEPT_TTL", 2)
    caplog.set_level(logging.WARNING, logger="registry.etcd_keepalive")
    reg = open_registry(etcd_server.url() + "?timeout=0.5")
    reg.register(api("api-1"))

    etcd_server.stop()
    wait_for(lambda: "(attempt 3)" in caplog.text, timeout=10, what="3 failures")
    etcd_server.start()

    _stays_for(reg, seconds=4.5)
    reg.close()
    assert reg_of(etcd_server).get_service("api") == []


def reg_of(server: EtcdServer) -> Registry:
    return open_registry(server.url())


# -- watching through outages ----------------------------------------------


def test_watch_resumes_after_a_server_restart_yielding_each_change_once(
    reg: Registry, etcd_server: EtcdServer
) -> None:
    reg.register(api("api-1"))
    with reg.watch("api") as watcher:
        assert ids(watcher.next(timeout=5)) == ["api-1"]

        etcd_server.stop()
        etcd_server.start()
        reg.register(api("api-2"))

        assert ids(watcher.next(timeout=10)) == ["api-1", "api-2"]
        assert watcher.next(timeout=1) is None
        reg.deregister(api("api-1"))
        assert ids(watcher.next(timeout=5)) == ["api-2"]
        assert watcher.next(timeout=0.5) is None
