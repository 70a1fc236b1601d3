"""Find the program a command names, the way the spawned process would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def find_executable(program: str, working_dir: Path, search_path: str) -> str | None:
    """The path of `program`, or None when it cannot be found.

    A name with a slash is taken relative to `working_dir`; a bare name is
    looked up on `search_path`, whose relative entries also count from
    `working_dir` (that is where the process will run).
    """
    separators = {"/", os.sep, os.altsep or "/"}
    if any(sep in program for sep in separators):
        return _runnable(working_dir / Path(program).expanduser())

    folders = [
        str(working_dir / entry) if entry and not os.path.isabs(entry) else entry
        for entry in search_path.split(os.pathsep)
    ]
    return shutil.which(program, path=os.pathsep.join(f for f in folders if f))


def _runnable(path: Path) -> str | None:
    if os.name == "nt":
        found = shutil.which(str(path))
        return found if found is not None or path.is_file() else None
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    return None
