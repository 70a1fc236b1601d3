"""The corpus of bad configurations under tests/bad_configs/.

Each file starts with `# expect: FRAGMENT`. Run through the real CLI, each
must exit 2 with exactly one stderr line that names the file, carries the
fragment, shows no traceback, and leaves nothing behind: no `.corral/`
folder and no registry file.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from supervisor.config import load_config
from supervisor.errors import ConfigError
from tests.support import run_corral

CORPUS = Path(__file__).parent / "bad_configs"
FILES = sorted(CORPUS.glob("*.yaml"))
PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def expected_fragment(file: Path) -> str:
    first = file.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# expect: "
    if not first.startswith(prefix):
        raise ValueError(f"{file} does not start with '{prefix}'")
    return first[len(prefix) :]


@pytest.fixture(params=FILES, ids=[f.stem for f in FILES])
def bad_config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of one corpus file in a fresh folder, so nothing leaks back."""
    source: Path = request.param
    copy = tmp_path / source.name
    shutil.copyfile(source, copy)
    return copy


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 30


def test_load_config_reports_the_expected_place(bad_config: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(bad_config, environ={"PATH": PATH})

    message = str(info.value)
    assert message.startswith(str(bad_config))
    assert expected_fragment(bad_config) in message
    assert "\n" not in message


@pytest.mark.parametrize("command", ["up", "config"])
def test_cli_exits_2_with_one_line_and_starts_nothing(
    bad_config: Path, command: str
) -> None:
    result = run_corral(
        command, "-f", str(bad_config), cwd=bad_config.parent, PATH=PATH
    )

    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert bad_config.name in lines[0]
    assert expected_fragment(bad_config) in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in bad_config.parent.iterdir()) == [bad_config.name]
