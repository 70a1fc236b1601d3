"""`corral registry ls|get|watch|prune`: read and follow the service registry.

These commands need no running supervisor: they open the registry itself,
found with --registry, CORRAL_REGISTRY, or the config file's `registry`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry import Registry, ServiceInstance, open_registry
from supervisor.errors import NotRunning, UsageError
from supervisor.output import reader_gone

log = logging.getLogger(__name__)

ENV_REGISTRY = "CORRAL_REGISTRY"
DEFAULT_CONFIG = "corral.yaml"
DEFAULT_REGISTRY = Path(".corral") / "registry.json"

_COLUMNS = ("SERVICE", "ID", "VERSION", "PID", "ENDPOINTS")

#: How often an idle `watch` looks whether its reader went away (seconds).
_IDLE_CHECK = 0.5


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options and the ls/get/watch/prune subcommands of `registry`."""
    _location_options(parser, argparse.SUPPRESS)
    parser.set_defaults(registry_action=None)
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    ls = actions.add_parser("ls", help="list every registered instance")
    get = actions.add_parser("get", help="the instances of one service")
    get.add_argument("name", metavar="NAME")
    watch = actions.add_parser("watch", help="print a service's instances on change")
    watch.add_argument("name", metavar="NAME")
    watch.add_argument(
        "--poll", action="store_true", help="poll the file instead of using events"
    )
    prune = actions.add_parser("prune", help="remove instances of dead processes")

    for action, sub in (("ls", ls), ("get", get), ("watch", watch), ("prune", prune)):
        _location_options(sub, argparse.SUPPRESS)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(registry_action=action)


def run_registry_command(args: argparse.Namespace) -> int:
    """Carry out `corral registry ACTION`; returns the exit code."""
    action: str | None = args.registry_action
    if action is None:
        print("usage: corral registry ls|get NAME|watch NAME|prune", file=sys.stderr)
        return 2

    if not getattr(args, "verbose", False):
        # watchfiles reports every file event at info; here that is noise
        # between the lines a script reads.
        logging.getLogger("watchfiles").setLevel(logging.WARNING)

    location = registry_location(args)
    _check_file_location(location, must_exist=action != "watch")
    registry = open_registry(location)
    try:
        return _ACTIONS[action](registry, args)
    finally:
        registry.close()


def registry_location(args: argparse.Namespace) -> str:
    """--registry, else $CORRAL_REGISTRY, else the config's registry."""
    given: str | None = getattr(args, "registry", None)
    if given:
        return given
    from_env = os.environ.get(ENV_REGISTRY)
    if from_env:
        return from_env

    config = Path(getattr(args, "file", None) or DEFAULT_CONFIG)
    if getattr(args, "file", None) or config.is_file():
        from supervisor.config import load_config

        return load_config(config.resolve()).registry
    return str(DEFAULT_REGISTRY.absolute())


def _check_file_location(location: str, must_exist: bool) -> None:
    # Reading commands must not create a registry at a mistyped path; only
    # `watch` may wait for one that corral up has yet to write.
    if "://" in location and not location.startswith("file://"):
        return
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(location).path))
    if not location.startswith("file://"):
        path = Path(location)

    if path.is_dir():
        raise UsageError(
            f"{path}: is a folder, not a registry file "
            f"(pass the file, e.g. {path / 'registry.json'})"
        )
    if must_exist and not path.exists():
        raise NotRunning(
            f"{path}: no registry file here (nothing has registered yet, "
            "or the path is mistyped; pass --registry)"
        )


def _location_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--registry",
        metavar="LOC",
        default=default,
        help=f"registry path or URL (default: ${ENV_REGISTRY}, else the config's)",
    )
    parser.add_argument(
        "-f",
        "--file",
        default=default,
        help="config file whose registry to use (default: corral.yaml)",
    )


def _ls(registry: Registry, args: argparse.Namespace) -> int:
    services = registry.list_services()
    if args.json:
        _print_json({name: _dicts(found) for name, found in sorted(services.items())})
        return 0
    rows = [i for name in sorted(services) for i in _sorted(services[name])]
    _print_table(rows)
    return 0


def _get(registry: Registry, args: argparse.Namespace) -> int:
    found = _sorted(registry.get_service(args.name))
    if args.json:
        _print_json(_dicts(found))
        return 0
    if not found:
        print(f"no instances of {args.name}")
        return 0
    _print_table(found)
    return 0


def _watch(registry: Registry, args: argparse.Namespace) -> int:
    watch_options: dict[str, Any] = {"polling": True} if args.poll else {}
    watcher = registry.watch(args.name, **watch_options)
    try:
        while not reader_gone(sys.stdout):
            instances = watcher.next(timeout=_IDLE_CHECK)
            if instances is None:
                continue
            line = (
                json.dumps(_dicts(_sorted(instances)))
                if args.json
                else _describe_change(args.name, instances)
            )
            print(line, flush=True)
    except BrokenPipeError:
        # The reader went away: a normal end for a pipeline such as `| head`.
        _silence_stdout()
    finally:
        watcher.stop()
    return 0


def _prune(registry: Registry, args: argparse.Namespace) -> int:
    removed = _sorted(registry.prune())
    if args.json:
        _print_json(_dicts(removed))
        return 0
    for instance in removed:
        print(f"pruned {instance.name}/{instance.id} (pid {instance.pid or '-'})")
    if not removed:
        print("nothing to prune")
    return 0


_ACTIONS: dict[str, Callable[[Registry, argparse.Namespace], int]] = {
    "ls": _ls,
    "get": _get,
    "watch": _watch,
    "prune": _prune,
}


def _sorted(instances: list[ServiceInstance]) -> list[ServiceInstance]:
    return sorted(instances, key=lambda i: (i.name, i.id))


def _dicts(instances: list[ServiceInstance]) -> list[dict[str, Any]]:
    return [i.to_dict() for i in instances]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _print_table(instances: list[ServiceInstance]) -> None:
    rows = [_COLUMNS] + [
        (
            i.name,
            i.id,
            i.version or "-",
            str(i.pid) if i.pid is not None else "-",
            ",".join(i.endpoints) or "-",
        )
        for i in instances
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(_COLUMNS) - 1)]
    for row in rows:
        padded = zip(row[:-1], widths, strict=True)
        print("  ".join([*(cell.ljust(width) for cell, width in padded), row[-1]]))


def _describe_change(name: str, instances: list[ServiceInstance]) -> str:
    stamp = time.strftime("%H:%M:%S")
    if not instances:
        return f"{stamp} {name}: no instances"
    parts = [f"{i.id} {','.join(i.endpoints) or '-'}" for i in _sorted(instances)]
    return f"{stamp} {name}: {len(instances)} up: " + "; ".join(parts)


def _silence_stdout() -> None:
    # Python flushes stdout at exit; on a closed pipe that would print a
    # second error, so point the descriptor at the null device first.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
