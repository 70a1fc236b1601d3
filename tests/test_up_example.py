"""`corral up` on the shipped example: it comes up, answers, and goes away clean."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, wait_for
from tests.up_support import Up, elapsed_until, gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

EXAMPLE_IDS = ("api-1", "api-2", "greeter-1", "worker-1")


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Up]:
    """The example environment, copied into a temporary folder and started."""
    shutil.copytree(REPO / "configs" / "example", tmp_path / "example")
    text = (REPO / "configs" / "example.yaml").read_text()
    run = Up(tmp_path, text)
    try:
        yield run
    finally:
        run.close()


def _get(url: str) -> dict[str, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        data: dict[str, str] = json.load(response)
        return data


def test_example_registers_every_instance_and_they_answer(example: Up) -> None:
    instances = example.wait_registered(*EXAMPLE_IDS)

    api_ports = {instances[i]["endpoints"][0] for i in ("api-1", "api-2")}
    assert len(api_ports) == 2
    for ident in ("api-1", "api-2"):
        assert _get(instances[ident]["endpoints"][0] + "/hello")["instance"] == ident
    greeting = _get(instances["greeter-1"]["endpoints"][0] + "/greet")
    assert greeting["greeting"].startswith("hello via api-")
    assert instances["worker-1"]["endpoints"] == []
    wait_for(lambda: example.has_line("worker-1 ", '"message": "hello"'), what="call")
    wait_for(
        lambda: example.has_line(
            "greeter-1 | api instances changed: http://127.0.0.1:"
        ),
        what="greeter's watcher to report api's instances",
    )


def test_kill_9_of_an_instance_removes_its_entry_within_1_s(example: Up) -> None:
    instances = example.wait_registered(*EXAMPLE_IDS)
    pid = instances["api-2"]["pid"]

    os.kill(pid, signal.SIGKILL)
    took = elapsed_until(
        lambda: "api-2" not in example.instances(), 1.0, "api-2 deregistered"
    )

    print(f"kill -9 to entry removed: {took * 1000:.0f} ms")
    assert "api-1" in example.instances()
    only_api_1 = f"api instances changed: {instances['api-1']['endpoints'][0]}"
    wait_for(
        lambda: any(line.endswith(only_api_1) for line in example.output().split("\n")),
        what="the greeter's watcher to see api-2 go",
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_up_ends_every_process_and_entry(example: Up, sig: int) -> None:
    example.wait_registered(*EXAMPLE_IDS)
    pids = example.remember()

    code = example.signal(sig)

    assert code == 0, example.output()
    assert gone(pids)
    assert example.instances() == {}
    assert not (example.folder / ".corral" / "state.json").exists()
