"""Two-stage interpolation: `substitute` at load, `render` at spawn."""

from __future__ import annotations

import pytest

from supervisor.interpolate import (
    InterpolationError,
    endpoints_variable,
    escape,
    render,
    substitute,
    variables_in,
)

KNOWN = {"NAME": "api", "EMPTY": "", "PRICE": escape("5$")}


def load(text: str, deferred: tuple[str, ...] = ("PORT",)) -> str:
    return substitute(text, KNOWN.get, deferred)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${NAME}", "api"),
        ("$NAME-x", "api-x"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${MISSING-fallback}", "fallback"),
        ("${NAME:+set}", "set"),
        ("${EMPTY:+set}", ""),
        ("${EMPTY+set}", "set"),
        ("${MISSING:-${NAME}}", "api"),
        ("a $$ b", "a $ b"),
        ("ready$", "ready$"),
        ("cost: 5$ each", "cost: 5$ each"),
        ("${PRICE}", "5$"),
    ],
)
def test_substitute_then_render_gives_compose_results(text: str, expected: str) -> None:
    assert render(load(text), {}) == expected


def test_runtime_variables_are_left_for_render() -> None:
    template = load("serve --port ${PORT} --name $NAME")

    assert template == "serve --port ${PORT} --name api"
    assert render(template, {"PORT": "8123"}) == "serve --port 8123 --name api"


def test_dollar_escapes_survive_until_render() -> None:
    template = load("echo $$HOME ${PORT}")

    assert template == "echo $$HOME ${PORT}"
    assert render(template, {"PORT": "1"}) == "echo $HOME 1"


def test_inserted_values_are_never_read_as_variables_again() -> None:
    template = substitute("${SECRET}", {"SECRET": escape("pa${PORT}ss")}.get)

    assert render(template, {"PORT": "9"}) == "pa${PORT}ss"


def test_unset_variable_without_default_names_it() -> None:
    with pytest.raises(InterpolationError, match="'MISSING' is not set") as info:
        load("x ${MISSING} y")
    assert info.value.variable == "MISSING"


def test_required_variable_message_is_used() -> None:
    with pytest.raises(InterpolationError, match="TOKEN': give a token"):
        load("${TOKEN:?give a token}")


@pytest.mark.parametrize("text", ["${", "${NAME", "${}", "${1X}", "${NAME!}"])
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(InterpolationError, match=r"interpolation|unclosed"):
        load(text)


def test_render_refuses_a_variable_the_runtime_did_not_give() -> None:
    with pytest.raises(InterpolationError, match="'PORT' is not set"):
        render("${PORT}", {})


def test_render_applies_defaults_of_runtime_variables() -> None:
    assert render("${DB_ENDPOINTS:-none}", {"DB_ENDPOINTS": ""}) == "none"


def test_variables_in_lists_what_a_template_still_needs() -> None:
    assert variables_in("a ${PORT} $$NOT $CORRAL_SERVICE") == [
        "PORT",
        "CORRAL_SERVICE",
    ]
    assert variables_in("plain $$ text") == []


@pytest.mark.parametrize(
    ("service", "variable"),
    [
        ("db", "DB_ENDPOINTS"),
        ("user-api", "USER_API_ENDPOINTS"),
        ("a.b", "A_B_ENDPOINTS"),
    ],
)
def test_endpoints_variable_names(service: str, variable: str) -> None:
    assert endpoints_variable(service) == variable
