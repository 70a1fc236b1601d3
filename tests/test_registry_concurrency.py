"""Many writers in many processes and threads lose no update (SPEC 2.3)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from registry import FileRegistry, ServiceInstance
from tests.support import corral_env

WORKERS = 8
PER_WORKER = 200

# Registers PER_WORKER instances of its own and deregisters each one again
# ten registrations later, except every twentieth: those and the last ten
# must remain. The window keeps the file small and the writes fast.
WRITER = textwrap.dedent(
    """
    import sys
    from registry import FileRegistry, ServiceInstance
    path, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reg = FileRegistry(path)
    for n in range(count):
        inst = ServiceInstance(id=f"{worker}-{n}", name=f"svc-{n % 3}",
                               endpoints=[f"tcp://127.0.0.1:{n}"])
        reg.register(inst)
        old = n - 10
        if old >= 0 and old % 20:
            reg.deregister(ServiceInstance(id=f"{worker}-{old}", name=f"svc-{old % 3}"))
    """
)

# Parses the file as fast as it can until told to stop; reports how many
# reads it made and every one that failed.
READER = textwrap.dedent(
    """
    import json, sys, time
    path = sys.argv[1]
    reads, failures = 0, []
    import select
    while not select.select([sys.stdin], [], [], 0)[0]:
        try:
            with open(path, "rb") as f:
                raw = f.read()
            json.loads(raw)
            reads += 1
        except FileNotFoundError:
            pass
        except ValueError as exc:
            failures.append(f"{exc} in {raw[:80]!r}")
        time.sleep(0.002)
    print(json.dumps({"reads": reads, "failures": failures[:5]}))
    """
)


def test_eight_processes_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    FileRegistry(path)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{k}", str(PER_WORKER)],
            env=corral_env(),
        )
        for k in range(WORKERS)
    ]
    codes = [w.wait(120) for w in writers]
    report, _ = reader.communicate("stop\n", timeout=30)

    assert codes == [0] * WORKERS
    result = json.loads(report)
    assert result["failures"] == []
    assert result["reads"] > 100

    data = json.loads(path.read_text())
    found = [i["id"] for entries in data["services"].values() for i in entries]
    kept = [n for n in range(PER_WORKER) if n % 20 == 0 or n >= PER_WORKER - 10]
    expected = {f"w{k}-{n}" for k in range(WORKERS) for n in kept}
    assert len(found) == len(set(found))
    assert set(found) == expected


def test_threads_of_one_process_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"

    def write(worker: int) -> None:
        reg = FileRegistry(path)  # one object per thread, and one shared below
        for n in range(50):
            target = reg if n % 2 else shared
            target.register(ServiceInstance(id=f"t{worker}-{n}", name="svc"))

    shared = FileRegistry(path)
    threads = [threading.Thread(target=write, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    found = sorted(i.id for i in shared.get_service("svc"))
    assert found == sorted(f"t{k}-{n}" for k in range(6) for n in range(50))
