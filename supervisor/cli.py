"""The `corral` command line, and the one boundary that turns errors into
a single stderr line and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from registry.errors import RegistryError, RegistryLocationError
from supervisor.errors import CorralError, UsageError

log = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `corral` console script; returns the exit code."""
    _fill_closed_std_streams()
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)

    try:
        command: Command = args.command
        return command(args)
    except KeyboardInterrupt:
        return 130
    except RegistryLocationError as exc:
        _report(exc, args.verbose)
        return 2
    except CorralError as exc:
        _report(exc, args.verbose)
        return exc.exit_code
    except RegistryError as exc:
        _report(exc, args.verbose)
        return 1
    except BrokenPipeError:
        # The reader of our output went away (`corral ... | head`): not an
        # error of the command, and nothing is left to tell it.
        _silence_stdout()
        return 0
    except OSError as exc:
        # The machine refused something (a read-only folder, a file where a
        # folder should be, too many open files): one line that names it.
        _report(_describe_os_error(exc), args.verbose)
        return 1


def config_path(args: argparse.Namespace) -> Path:
    """The config file a command names with -f, or corral.yaml here."""
    path = Path(args.file or "corral.yaml")
    if not path.is_file():
        fix = "pass -f FILE" if not args.file else "check the path"
        raise UsageError(f"{path}: no such config file ({fix})")
    return path.resolve()


def _cmd_config(args: argparse.Namespace) -> int:
    from supervisor.config import load_config, render_config

    print(render_config(load_config(config_path(args))), end="")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from supervisor.config import load_config
    from supervisor.control import claim_run
    from supervisor.run import check_services, run_up

    config = load_config(config_path(args))
    check_services(config, args.services)
    if args.detach:
        from supervisor.detach import up_detached

        return up_detached(config, args.services)

    # One supervisor per config, checked before anything starts (the claim
    # dies with this process, so a crashed run never blocks the next).
    with claim_run(config.path):
        return run_up(config, services=args.services, detach=False)


def _cmd_registry(args: argparse.Namespace) -> int:
    from supervisor.registry_commands import run_registry_command

    return run_registry_command(args)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Bring up a local multi-service environment from one YAML file.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging and tracebacks"
    )
    parser.set_defaults(command=lambda _args: _usage(parser))
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    up = _with_file(sub.add_parser("up", help="start the services (foreground)"))
    up.add_argument("-d", "--detach", action="store_true", help="run in background")
    up.add_argument("services", nargs="*", metavar="SERVICE")
    up.set_defaults(command=_cmd_up)

    from supervisor.control_commands import add_control_parsers

    add_control_parsers(sub, _with_file)

    config = _with_file(sub.add_parser("config", help="validate and print config"))
    config.set_defaults(command=_cmd_config)

    reg = sub.add_parser("registry", help="read and watch the service registry")
    from supervisor.registry_commands import add_registry_arguments

    add_registry_arguments(reg)
    reg.set_defaults(command=_cmd_registry)

    return parser


def _with_file(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("-f", "--file", help="config file (default: corral.yaml)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    return 2


def _configure_logging(verbose: bool | None) -> None:
    from supervisor.output import LogHandler

    level = logging.DEBUG if verbose or os.environ.get("CORRAL_DEBUG") else logging.INFO
    # A stderr nobody reads (a paused pager) must not stall supervision:
    # messages go through a writer thread, and logging.shutdown at exit
    # flushes them with a bounded wait.
    logging.basicConfig(level=level, format="%(message)s", handlers=[LogHandler()])

    # watchfiles reports every batch of file events at info level; those are
    # corral's own plumbing, not something a user asked to see.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def _fill_closed_std_streams() -> None:
    # Started with stdout or stderr closed (`corral up >&-`), the next file
    # corral opens would get descriptor 1 or 2, and output meant for the
    # terminal would land in it: give those descriptors the null device.
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is None:
        return exc.strerror or str(exc)
    misplaced = isinstance(exc, FileExistsError) and os.path.isfile(exc.filename)
    if misplaced or isinstance(exc, NotADirectoryError):
        return (
            f"{exc.filename}: a file stands where corral needs a folder (move it away)"
        )
    return f"{exc.filename}: {exc.strerror or exc}"


def _silence_stdout() -> None:
    # Python flushes stdout at exit, which on a closed pipe would report a
    # second error; point the descriptor at the null device first.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _report(exc: BaseException | str, verbose: bool | None) -> None:
    if verbose:
        log.exception("corral failed")
    print(f"corral: {exc}", file=sys.stderr)
