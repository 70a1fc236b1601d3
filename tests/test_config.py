"""Loading corral.yaml: values, defaults, interpolation and error places."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from supervisor.config import load_config, render_config
from supervisor.envfile import EnvFileError, read_env_file
from supervisor.errors import ConfigError
from supervisor.fields import normalise_signal, parse_duration
from supervisor.model import Dependency, ProjectConfig
from tests.support import run_corral

PYTHON = sys.executable
ENV = {"PATH": str(Path(PYTHON).parent), "HOME": "/home/u"}


def write(folder: Path, text: str, name: str = "corral.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).replace("PYTHON", PYTHON))
    return path


def load(folder: Path, text: str, **env: str) -> ProjectConfig:
    return load_config(write(folder, text), environ={**ENV, **env})


def test_full_service_is_read_with_every_key(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    config = load(
        tmp_path,
        """
        registry: state/reg.json
        services:
          db:
            command: PYTHON -c pass
          api:
            command: PYTHON -m http.server ${PORT} --bind 127.0.0.1
            working_dir: app
            environment: {GREETING: hello}
            port: auto
            replicas: 2
            version: v1.0.0
            metadata: {team: web, build: 7, beta: true}
            endpoints: ["http://127.0.0.1:${PORT}"]
            readiness:
              http: http://127.0.0.1:${PORT}/
              interval: 250ms
              timeout: 2s
              retries: 10
              initial_delay: 1m30s
            liveness: {tcp: "127.0.0.1:${PORT}", interval: 5s, retries: 3}
            depends_on:
              db: {condition: service_healthy}
            restart: always
            max_restarts: 2
            backoff: {initial: 500ms, max: 1m}
            stop_signal: INT
            stop_grace_period: 3
            on_dependency_change: sighup
        """,
    )
    api = config.services["api"]

    assert config.registry == str(tmp_path / "state" / "reg.json")
    assert api.command == [
        PYTHON,
        "-m",
        "http.server",
        "${PORT}",
        "--bind",
        "127.0.0.1",
    ]
    assert api.working_dir == tmp_path / "app"
    assert api.environment == {"GREETING": "hello"}
    assert (api.port, api.replicas, api.version) == ("auto", 2, "v1.0.0")
    assert api.metadata == {"team": "web", "build": "7", "beta": "true"}
    assert api.endpoints == ["http://127.0.0.1:${PORT}"]
    assert api.readiness is not None and api.liveness is not None
    assert api.readiness.kind == "http"
    assert (api.readiness.interval, api.readiness.timeout) == (0.25, 2.0)
    assert (api.readiness.retries, api.readiness.initial_delay) == (10, 90.0)
    assert (api.liveness.kind, api.liveness.target) == ("tcp", "127.0.0.1:${PORT}")
    assert api.depends_on == [Dependency("db", "service_healthy")]
    assert (api.restart, api.max_restarts) == ("always", 2)
    assert (api.backoff.initial, api.backoff.max) == (0.5, 60.0)
    assert (api.stop_signal, api.stop_grace_period) == ("SIGINT", 3.0)
    assert api.on_dependency_change == "SIGHUP"
    assert api.instance_ids() == ["api-1", "api-2"]


def test_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        services:
          web: {command: PYTHON -c pass, port: 8080}
          worker: {command: [PYTHON, -c, pass]}
        """,
    )
    web, worker = config.services["web"], config.services["worker"]

    assert config.registry == str(tmp_path / ".corral" / "registry.json")
    assert web.endpoints == ["tcp://127.0.0.1:${PORT}"]
    assert worker.endpoints == []
    assert web.working_dir == tmp_path
    assert (web.restart, web.max_restarts, web.stop_signal) == (
        "on-failure",
        5,
        "SIGTERM",
    )
    assert (web.readiness, web.liveness, web.disabled) == (None, None, False)
    assert not (tmp_path / ".corral").exists()


def test_registry_url_is_kept(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "registry: etcd://127.0.0.1:2379/corral\nservices: {a: {command: PYTHON}}",
    )

    assert config.registry == "etcd://127.0.0.1:2379/corral"


def test_restart_no_is_accepted_although_yaml_reads_it_as_false(tmp_path: Path) -> None:
    config = load(tmp_path, "services: {a: {command: PYTHON, restart: no}}")

    assert config.services["a"].restart == "no"


def test_probe_defaults_differ_for_readiness_and_liveness(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        services:
          a:
            command: PYTHON
            readiness: {log_line: "listening on .*$"}
            liveness: {exec: "PYTHON -c 'import sys'"}
        """,
    )
    ready, alive = config.services["a"].readiness, config.services["a"].liveness

    assert ready is not None and alive is not None
    assert (ready.retries, alive.retries) == (30, 3)
    assert ready.target == "listening on .*$"
    assert alive.argv == (PYTHON, "-c", "import sys")


def test_environment_list_and_env_files_feed_interpolation(tmp_path: Path) -> None:
    (tmp_path / "base.env").write_text(
        "# shared\nexport HOST=127.0.0.1\nTOKEN='s3cr$t'\n"
    )
    (tmp_path / "more.env").write_text('GREETING="hi there" # comment\n')
    config = load(
        tmp_path,
        """
        services:
          a:
            command: PYTHON --host ${HOST} --greet "${GREETING}" $$HOME
            env_file: [base.env, more.env]
            environment: ["MODE=${MODE:-dev}", "URL=http://${HOST}:${PORT}", SHELLVAR]
            port: 9000
        """,
        SHELLVAR="from-shell",
    )
    a = config.services["a"]

    assert a.command == [PYTHON, "--host", "127.0.0.1", "--greet", "hi there", "$$HOME"]
    assert a.environment["TOKEN"] == "s3cr$$t"
    assert a.environment["MODE"] == "dev"
    assert a.environment["URL"] == "http://127.0.0.1:${PORT}"
    assert a.environment["SHELLVAR"] == "from-shell"
    assert a.secret_keys == frozenset({"HOST", "TOKEN", "GREETING"})


def test_dependency_endpoints_are_left_for_the_runtime(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        services:
          user-db: {command: PYTHON}
          api:
            command: PYTHON -c "print('${USER_DB_ENDPOINTS}')"
            depends_on: [user-db]
        """,
    )

    assert config.services["api"].command[-1] == "print('${USER_DB_ENDPOINTS}')"
    assert config.services["api"].depends_on == [Dependency("user-db")]


def test_typed_fields_are_resolved_from_the_environment(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        services:
          a:
            command: PYTHON
            port: ${API_PORT:-8001}
            replicas: "${N}"
            stop_grace_period: ${GRACE}
        """,
        N="1",
        GRACE="250ms",
    )

    a = config.services["a"]
    assert (a.port, a.replicas, a.stop_grace_period) == (8001, 1, 0.25)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "a: {command: PYTHON, comand: x}",
            "unknown key 'comand' (did you mean 'command'?)",
        ),
        ("a: {command: PYTHON, replicas: two}", "expected an integer, got 'two'"),
        ("a: {command: PYTHON, port: 70000}", "must be between 1 and 65535"),
        ("a: {command: PYTHON, stop_grace_period: -1s}", "invalid duration '-1s'"),
        ("a: {command: PYTHON, stop_signal: SIGFOO}", "unknown signal 'SIGFOO'"),
        ("a: {command: 'PYTHON ${NOPE}'}", "variable 'NOPE' is not set"),
        ("a: {command: 'echo ${PORT}'}", "add `port: auto`"),
        ("a: {command: PYTHON, port: 80, replicas: 2}", "use `port: auto`"),
        ("a: {command: PYTHON, depends_on: [a]}", "'a' depends on itself"),
        ("a: {command: PYTHON, readiness: {http: x, tcp: y}}", "found http and tcp"),
        (
            "a: {command: PYTHON, readiness: {log_line: '('}}",
            "invalid regular expression",
        ),
        ("a: {command: PYTHON, port: '${PORT}'}", "only known when an instance starts"),
    ],
)
def test_errors_name_the_file_line_column_and_key(
    tmp_path: Path, body: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "services:\n  " + body + "\n")

    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'corral.yaml'}: line 2, column ")
    assert "services.a" in message
    assert fragment in message
    assert "\n" not in message


def test_error_points_at_the_offending_value(tmp_path: Path) -> None:
    text = """\
        services:
          api:
            command: PYTHON
            replicas: two
        """
    with pytest.raises(
        ConfigError, match=r"line 4, column 15: services\.api\.replicas"
    ):
        load(tmp_path, text)


def test_secrets_are_masked_in_rendered_config(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_PASSWORD=hunter22\n")
    config = load(
        tmp_path,
        """
        services:
          a:
            command: PYTHON --password ${DB_PASSWORD}
            env_file: .env
            environment: {PLAIN: visible}
        """,
    )

    shown = render_config(config)
    assert "hunter22" not in shown
    assert "DB_PASSWORD: '***'" in shown
    assert "--password ***" in shown or "- '***'" in shown
    assert "PLAIN: visible" in shown


def test_rendered_config_loads_back_to_the_same_config(tmp_path: Path) -> None:
    first = load(
        tmp_path,
        """
        services:
          db: {command: PYTHON -c pass, port: 5432, version: "1.10"}
          api:
            command: [PYTHON, -c, "print('$$x ${DB_ENDPOINTS}')"]
            port: auto
            replicas: 3
            metadata: {n: 1}
            readiness: {tcp: "127.0.0.1:${PORT}", interval: 0.5}
            depends_on: {db: {condition: service_healthy}}
            backoff: {initial: 2s}
            restart: no
        """,
    )
    out = tmp_path / "out"
    out.mkdir()
    again = load_config(write(out, render_config(first)), environ=ENV)

    assert again.services == first.services
    assert again.registry == first.registry


def test_registry_path_may_use_environment_variables(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "registry: ${STATE:-st}/r.json\nservices: {a: {command: PYTHON}}",
        STATE="/srv/state",
    )

    assert config.registry == str(Path("/srv/state/r.json"))


GOOD_CONFIGS = {
    "minimal": "services: {a: {command: PYTHON -c pass}}",
    "web_and_worker": """
        services:
          web:
            command: PYTHON -m http.server ${PORT} --bind 127.0.0.1
            port: auto
            replicas: 2
            readiness: {http: "http://127.0.0.1:${PORT}/"}
          worker:
            command: [PYTHON, -c, "import os; print(os.environ['WEB_ENDPOINTS'])"]
            depends_on: {web: {condition: service_healthy}}
            restart: "no"
        """,
}


@pytest.mark.parametrize("name", sorted(GOOD_CONFIGS))
def test_corral_config_prints_a_config_that_loads_the_same(
    tmp_path: Path, name: str
) -> None:
    path = write(tmp_path, GOOD_CONFIGS[name])

    result = run_corral("config", "-f", str(path), cwd=tmp_path, PATH=ENV["PATH"])

    assert result.returncode == 0, result.stderr
    (tmp_path / "out").mkdir()
    printed = write(tmp_path / "out", result.stdout)
    expected = load_config(path, environ=ENV).services
    assert load_config(printed, environ=ENV).services == expected
    assert not (tmp_path / ".corral").exists()


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (3, 3.0),
        (0.5, 0.5),
        ("250ms", 0.25),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5", 1.5),
    ],
)
def test_durations(given: object, seconds: float) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["-1s", "10 seconds", "1x", "", "s", True, None, -2])
def test_bad_durations_are_refused(given: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(given)


@pytest.mark.parametrize(
    ("given", "name"),
    [("TERM", "SIGTERM"), ("sigint", "SIGINT"), ("SIGUSR2", "SIGUSR2")],
)
def test_signal_names_are_normalised(given: str, name: str) -> None:
    assert normalise_signal(given) == name


def test_env_file_syntax(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# comment\n\nexport A=1\nB = two words # note\nC='$x # kept'\n"
        'D="line\\nbreak \\"q\\""\nE=\n'
    )

    assert read_env_file(env) == {
        "A": "1",
        "B": "two words",
        "C": "$x # kept",
        "D": 'line\nbreak "q"',
        "E": "",
    }


def test_env_file_error_gives_the_line_without_its_content(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\nsupersecretvalue\n")

    with pytest.raises(EnvFileError, match="line 2: expected KEY=value") as info:
        read_env_file(env)
    assert "supersecret" not in str(info.value)
