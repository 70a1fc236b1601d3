"""The commands that talk to a running environment: `ps`, `logs`, `start`,
`stop`, `restart` and `down`, with their argument parsers."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from supervisor.control import ControlClient, ControlError, state_dir_of
from supervisor.control_server import InstanceStatus
from supervisor.errors import UsageError
from supervisor.model import ProjectConfig

log = logging.getLogger(__name__)

AddFile = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
Command = Callable[[argparse.Namespace], int]

# Time `down` allows the supervisor beyond the stop grace periods, seconds.
_DOWN_SLACK = 30.0


def add_control_parsers(sub: Any, with_file: AddFile) -> None:
    """Add ps, logs, start, stop, restart and down to the `corral` parser."""
    ps = with_file(sub.add_parser("ps", help="list instances and their state"))
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.set_defaults(command=cmd_ps)

    logs = with_file(sub.add_parser("logs", help="show the services' output"))
    logs.add_argument("--follow", action="store_true", help="keep printing")
    logs.add_argument("--tail", type=_count, metavar="N", help="last N lines each")
    logs.add_argument("services", nargs="*", metavar="SERVICE")
    logs.set_defaults(command=cmd_logs)

    for name, what in (
        ("start", "start services"),
        ("stop", "stop services"),
        ("restart", "restart services"),
    ):
        step = with_file(sub.add_parser(name, help=what))
        step.add_argument("services", nargs="+", metavar="SERVICE")
        step.set_defaults(command=cmd_step, step=name)

    down = with_file(sub.add_parser("down", help="stop the running environment"))
    down.set_defaults(command=cmd_down)


def cmd_ps(args: argparse.Namespace) -> int:
    """Print the instances of the running environment."""
    path = _config_path(args)
    with ControlClient.connect(path) as client:
        reply = client.request("ps")
    statuses = [InstanceStatus.from_dict(d) for d in reply["instances"]]

    now = time.time()
    if args.json:
        rows = [dict(s.to_dict(), uptime=_uptime(s, now)) for s in statuses]
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(statuses, now), end="")
    return 0


def format_table(statuses: list[InstanceStatus], now: float) -> str:
    """`ps` as aligned columns, one instance a row."""
    header: tuple[str, ...] = (
        "SERVICE",
        "ID",
        "STATE",
        "PID",
        "RESTARTS",
        "UPTIME",
        "ENDPOINTS",
    )
    with_reasons = any(s.reason for s in statuses)
    if with_reasons:
        header += ("REASON",)

    rows = [header]
    for s in statuses:
        uptime = _uptime(s, now)
        row: tuple[str, ...] = (
            s.service,
            s.id,
            s.state,
            str(s.pid) if s.pid else "-",
            str(s.restarts),
            format_duration(uptime) if uptime is not None else "-",
            ",".join(s.endpoints) or "-",
        )
        rows.append((*row, s.reason or "-") if with_reasons else row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`, `3d04h`: short and readable."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the log files, merged in time order; works with nothing running."""
    from supervisor import logs

    path = _config_path(args)
    instances = None
    if args.services:
        config = _load(path)
        _check_services(config, args.services)
        instances = [
            i for n in args.services for i in config.services[n].instance_ids()
        ]

    logs.show(state_dir_of(path) / "logs", instances, args.tail, args.follow)
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    """start / stop / restart: returns once the supervisor finished the step."""
    path = _config_path(args)
    _check_services(_load(path), args.services)
    with ControlClient.connect(path) as client:
        client.request(args.step, services=list(args.services))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop everything; return once the supervisor process has exited."""
    path = _config_path(args)
    config = _load(path)
    with ControlClient.connect(path) as client:
        pid = int(client.request("down")["pid"])

    budget = _DOWN_SLACK + sum(s.stop_grace_period for s in config.services.values())
    if not wait_gone(pid, budget):
        raise ControlError(
            f"{path}: the supervisor (pid {pid}) is still running after "
            f"{budget:g} s; see {state_dir_of(path) / 'logs' / 'corral.log'}"
        )
    return 0


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process `pid` has exited (a zombie counts as exited)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return False


def _uptime(status: InstanceStatus, now: float) -> float | None:
    if status.started_at is None or status.state in ("stopped", "failed"):
        return None
    return max(0.0, now - status.started_at)


def _config_path(args: argparse.Namespace) -> Path:
    from supervisor.cli import config_path

    return config_path(args)


def _load(path: Path) -> ProjectConfig:
    from supervisor.config import load_config

    return load_config(path)


def _check_services(config: ProjectConfig, names: list[str]) -> None:
    unknown = [n for n in names if n not in config.services]
    if unknown:
        known = ", ".join(config.services) or "none"
        raise UsageError(
            f"{config.path}: no service named {', '.join(unknown)} (services: {known})"
        )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of lines, not {text!r}")
    return value
