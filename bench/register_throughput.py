"""Registration throughput and lost updates with 1, 2, 4 and 8 writer processes.

The writer processes share OPS registrations (so every row ends with a
file of the same size and rows differ only in concurrency), each
registering instances of its own into one registry file, all starting
together. Afterwards the file must
hold every one of them: an instance missing is a lost update. The same
workload then runs against a naive writer that reads the file, adds its
instance and writes the file back (atomically, but with no lock), to show
what corral's lock prevents.

    python bench/register_throughput.py [--ops 400] [--writers 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import median, print_table

from registry import FileRegistry, ServiceInstance

Writer = Callable[[Path, int, int], None]


def corral_writer(path: Path, writer: int, ops: int) -> None:
    """Register `ops` instances of writer `writer` through FileRegistry."""
    reg = FileRegistry(path)
    for op in range(ops):
        reg.register(_instance(writer, op))


def naive_writer(path: Path, writer: int, ops: int) -> None:
    """Read, add, write back: the same change with no lock around it.

    The write goes through a temporary file and a rename, so readers never
    see a torn file; only the lock is missing.
    """
    for op in range(ops):
        with open(path) as source:
            data = json.load(source)
        entries = data.setdefault("services", {}).setdefault("bench", [])
        entries.append(_instance(writer, op).to_dict())
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(data))
        os.replace(temp, path)


def _instance(writer: int, op: int) -> ServiceInstance:
    return ServiceInstance(
        id=f"w{writer}-{op}", name="bench", endpoints=[f"tcp://127.0.0.1:{op}"]
    )


def run(target: Writer, writers: int, ops: int, folder: Path) -> tuple[float, int]:
    """Run `writers` processes of `target`; (seconds, instances lost)."""
    path = folder / f"{target.__name__}-{writers}.json"
    path.unlink(missing_ok=True)
    FileRegistry(path)  # an empty, valid registry file
    gate = multiprocessing.Event()
    procs = [
        multiprocessing.Process(target=_gated, args=(gate, target, path, w, ops))
        for w in range(writers)
    ]
    for proc in procs:
        proc.start()
    try:
        time.sleep(0.2)  # let every writer import and reach the gate
        began = time.perf_counter()
        gate.set()
        for proc in procs:
            proc.join(120)
        took = time.perf_counter() - began
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()

    found = len(FileRegistry(path).get_service("bench"))
    return took, writers * ops - found


def _gated(
    gate: multiprocessing.synchronize.Event,
    target: Writer,
    path: Path,
    writer: int,
    ops: int,
) -> None:
    gate.wait()
    target(path, writer, ops)


def main() -> None:
    """Measure both writers at each writer count and print one table.

    Each case runs REPEAT times: ops/s is the median, lost the worst run.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=400, help="per row, shared")
    parser.add_argument("--writers", default="1,2,4,8")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for writers in (int(n) for n in args.writers.split(",")):
            per_writer = max(1, args.ops // writers)
            total = per_writer * writers
            row: list[object] = [writers, total]
            for target in (corral_writer, naive_writer):
                runs = [
                    run(target, writers, per_writer, Path(folder))
                    for _ in range(args.repeat)
                ]
                lost = max(r[1] for r in runs)
                row += [median([total / r[0] for r in runs]), lost]
            rows.append([*row, f"{lost / total:.0%}"])

    header = (
        "writers",
        "ops",
        "corral ops/s",
        "corral lost",
        "naive ops/s",
        "naive lost",
        "naive lost %",
    )
    title = (
        f"registration: N processes, one file, each op a new instance "
        f"(median of {args.repeat}, lost = worst run)"
    )
    print_table(title, header, rows)


if __name__ == "__main__":
    main()
