"""How register() and get_service() cost grows with the registry file's size.

For each size the file is filled with that many instances (services of
ten instances each, written in one go), then this process times register()
of one more instance, its deregister(), and get_service() of one ten-
instance service, REPEAT times each, and prints the medians with the
growth against the smallest size.

    python bench/scale.py [--sizes 10,100,1000,10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import median, print_table

from registry import FileRegistry, ServiceInstance

PER_SERVICE = 10


def fill(path: Path, size: int) -> FileRegistry:
    """A registry at `path` holding `size` instances, written in one update."""
    reg = FileRegistry(path)
    with reg._store.update() as document:  # one write, not `size` of them
        for index in range(size):
            document.put(_instance(f"svc-{index // PER_SERVICE}", index))
    return reg


def _instance(name: str, index: int) -> ServiceInstance:
    return ServiceInstance(
        id=f"{name}-{index}",
        name=name,
        version="v1.0.0",
        metadata={"env": "bench"},
        endpoints=[f"http://127.0.0.1:{10000 + index % 50000}"],
        timestamp=int(time.time()),
    )


def timed(action: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` calls of `action`."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return median(times)


def measure(folder: Path, size: int, repeat: int) -> tuple[float, float, float, int]:
    """(register s, deregister s, get_service s, file bytes) at `size`."""
    path = folder / f"registry-{size}.json"
    reg = fill(path, size)
    extra = _instance("svc-extra", 0)
    register = timed(lambda: reg.register(extra), repeat)
    deregister = timed(lambda: reg.deregister(extra), repeat)
    get = timed(lambda: reg.get_service("svc-0"), repeat)
    return register, deregister, get, path.stat().st_size


def main() -> None:
    """Measure every size and print absolute times and growth factors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for size in (int(s) for s in args.sizes.split(",")):
            results.append((size, *measure(Path(folder), size, args.repeat)))

    base = results[0]
    rows = [
        (
            size,
            f"{nbytes / 1024:.0f}",
            reg * 1e3,
            dereg * 1e3,
            get * 1e3,
            reg / base[1],
            get / base[3],
        )
        for size, reg, dereg, get, nbytes in results
    ]
    header = (
        "instances",
        "file KiB",
        "register ms",
        "deregister ms",
        "get_service ms",
        "register x",
        "get x",
    )
    print_table(f"cost against file size (median of {args.repeat})", header, rows)


if __name__ == "__main__":
    main()
