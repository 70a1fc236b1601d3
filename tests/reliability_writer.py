"""A registry writer for the kill -9 test: registers, then reports each call.

Usage: python reliability_writer.py REGISTRY FIRST_SEQ SLOTS

Registers instance `slot-<seq % SLOTS>` with metadata {"seq": "<seq>"} for
seq = FIRST_SEQ, FIRST_SEQ + 1, ... forever, and writes each seq to stdout
(flushed) only after register() returned. So every seq the test has read
was acknowledged by the library before the next call started, and at most
one further call (the one the kill interrupted, or whose report was lost)
may or may not be in the file.
"""

from __future__ import annotations

import itertools
import sys

from registry import FileRegistry, ServiceInstance


def main() -> None:
    """Register and report until killed."""
    path, first, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    registry = FileRegistry(path)
    for seq in itertools.count(first):
        slot = seq % slots
        registry.register(
            ServiceInstance(
                id=f"slot-{slot}",
                name=f"svc-{slot % 7}",
                metadata={"seq": str(seq)},
                endpoints=[f"tcp://127.0.0.1:{10000 + slot}"],
            )
        )
        sys.stdout.write(f"{seq}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
