"""A registry file that parses but holds wrong types is reported at the line
and column of the offending value, not only by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import FileRegistry, RegistryCorrupt
from registry.jsonplace import locate

GO_STYLE = """{
  "services": {
    "api": [
      {"id": "api-1", "name": "api", "metadata": null, "endpoints": []},
      {"id": "api-2", "name": "api", "pid": "not a number"}
    ],
    "db": "not a list"
  },
  "version": "1.0.0"
}
"""


@pytest.mark.parametrize(
    ("path", "place"),
    [
        (["services"], (2, 15)),
        (["services", "api", 1], (5, 7)),
        (["services", "db"], (7, 11)),
        (["version"], (9, 14)),
        (["services", "api", 2], (0, 0)),
        (["services", "nope"], (0, 0)),
        (["services", "db", 0], (0, 0)),
    ],
)
def test_locate_finds_the_value(path: list[str | int], place: tuple[int, int]) -> None:
    assert locate(GO_STYLE, path) == place


def test_locate_takes_the_last_of_repeated_keys() -> None:
    assert locate('{"a": 1,\n "a": 2}', ["a"]) == (2, 7)


def test_wrong_type_in_an_instance_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text(GO_STYLE.replace('    "db": "not a list"\n', '    "db": []\n'))

    with pytest.raises(RegistryCorrupt, match=r"registry\.json:5:45: .*api\[1\].*pid"):
        FileRegistry(path).get_service("api")


def test_a_service_that_is_not_a_list_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    text = GO_STYLE.replace('"pid": "not a number"', '"pid": 7')
    path.write_text(text)

    with pytest.raises(RegistryCorrupt) as caught:
        FileRegistry(path).list_services()

    assert (caught.value.line, caught.value.column) == (7, 11)
    assert "services.db must be a list" in str(caught.value)
