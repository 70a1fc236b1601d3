"""`corral up` with an etcd registry: the supervisor works unchanged.

The example configuration, pointed at a test etcd server, registers its
services in Kratos's layout, and a stop removes them again.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

from tests.etcd_server import EtcdServer, etcd_server
from tests.support import REPO, start_corral, wait_for

__all__ = ["etcd_server"]  # the fixture, imported for pytest to find

EXPECTED = [
    "/microservices/api/api-1",
    "/microservices/api/api-2",
    "/microservices/greeter/greeter-1",
    "/microservices/worker/worker-1",
]


def test_up_registers_the_example_in_etcd_and_down_removes_it(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    config = _example_config(tmp_path, etcd_server.url())
    up = start_corral("up", "-f", str(config), cwd=tmp_path)
    try:
        wait_for(lambda: _keys(etcd_server) == EXPECTED, timeout=60, what="4 keys")
        value = etcd_server.etcdctl(
            "get", "/microservices/greeter/greeter-1", "--print-value-only"
        )
        record = json.loads(value)
        assert record["name"] == "greeter"
        assert record["endpoints"][0].startswith("http://127.0.0.1:")

        up.send_signal(signal.SIGINT)
        up.wait(30)
    finally:
        if up.poll() is None:
            up.kill()
        output, _ = up.communicate(timeout=10)

    assert up.returncode == 0, output
    assert _keys(etcd_server) == []


def _example_config(folder: Path, url: str) -> Path:
    shutil.copytree(REPO / "configs" / "example", folder / "example")
    text = (REPO / "configs" / "example.yaml").read_text()
    config = folder / "corral.yaml"
    config.write_text(
        text.replace("registry: .corral/registry.json", f"registry: {url}")
    )
    return config


def _keys(server: EtcdServer) -> list[str]:
    out = server.etcdctl("get", "--prefix", "/microservices", "--keys-only")
    return sorted(line for line in out.splitlines() if line)
