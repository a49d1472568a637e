"""The configuration layer: flags, EWSGATE_* variables and TOML keys resolve in one order."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewsgate import cli
from ewsgate.config import (
    ConfigError,
    HostPort,
    Option,
    load_config_file,
    parse_duration,
    parse_host_port,
    resolve,
)

OPTIONS = [
    Option("listen", "where", parse=parse_host_port, default=HostPort("127.0.0.1", 1)),
    Option("domain", "the domain", required=True),
    Option("verbose", "talk", switch=True, default=False),
]


def test_flag_beats_environment_beats_file_beats_default() -> None:
    file_data = {"listen": "10.0.0.1:3", "relay": {"listen": "10.0.0.2:4", "domain": "f"}}
    env = {"EWSGATE_LISTEN": "10.0.0.3:5"}
    assert resolve(OPTIONS, {"listen": "10.0.0.4:6"}, section="relay", environ=env,
                   file_data=file_data)["listen"] == HostPort("10.0.0.4", 6)
    assert resolve(OPTIONS, {}, section="relay", environ=env,
                   file_data=file_data)["listen"] == HostPort("10.0.0.3", 5)
    assert resolve(OPTIONS, {}, section="relay", environ={},
                   file_data=file_data)["listen"] == HostPort("10.0.0.2", 4)
    assert resolve(OPTIONS, {}, section="portal", environ={},
                   file_data={"domain": "x", **file_data})["listen"] == HostPort("10.0.0.1", 3)
    assert resolve(OPTIONS, {"domain": "d"}, section="relay", environ={})["listen"] == HostPort(
        "127.0.0.1", 1)


def test_missing_required_value_names_flag_variable_and_key() -> None:
    with pytest.raises(ConfigError) as excinfo:
        resolve(OPTIONS, {}, section="relay", environ={})
    message = str(excinfo.value)
    assert "--domain" in message and "EWSGATE_DOMAIN" in message and "domain = " in message


def test_malformed_value_names_its_source() -> None:
    with pytest.raises(ConfigError, match="EWSGATE_LISTEN: 'nope'"):
        resolve(OPTIONS, {"domain": "d"}, section="relay", environ={"EWSGATE_LISTEN": "nope"})


def test_unknown_key_in_command_table_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown keys lisen"):
        resolve(OPTIONS, {"domain": "d"}, section="relay", environ={},
                file_data={"relay": {"lisen": "x"}})


def test_switch_reads_boolean_environment() -> None:
    values = resolve(OPTIONS, {"domain": "d"}, section="relay", environ={"EWSGATE_VERBOSE": "yes"})
    assert values["verbose"] is True
    with pytest.raises(ConfigError, match="expected true or false"):
        resolve(OPTIONS, {"domain": "d"}, section="relay", environ={"EWSGATE_VERBOSE": "maybe"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:80", HostPort("127.0.0.1", 80)), ("[::1]:443", HostPort("::1", 443)),
     ("printer.lan:8080", HostPort("printer.lan", 8080))],
)
def test_host_port_forms(text: str, expected: HostPort) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":80", "::1:80", "[::1]80", "host:70000", "h:x"])
def test_host_port_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)


def test_durations() -> None:
    assert parse_duration("30m") == 1800
    assert parse_duration("1500ms") == 1.5
    assert parse_duration("2") == 2
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_config_file_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_every_command_flag_has_help_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    for command in cli.COMMANDS:
        for option in command.options:
            assert option.help, f"{command.path} {option.flag} has no help"
            assert option.env_var.startswith("EWSGATE_")
        with pytest.raises(SystemExit) as excinfo:
            cli.main([*command.path, "--help"])
        assert excinfo.value.code == 0
        out = capsys.readouterr().out
        for option in command.options:
            assert option.flag in out and option.env_var in out


def test_cli_reports_configuration_errors(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EWSGATE_PORTAL_URL", raising=False)
    assert cli.main(["relay"]) == 2
    assert "--portal-url is required" in capsys.readouterr().err


def test_cli_reads_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EWSGATE_LISTEN", raising=False)
    config = tmp_path / "ewsgate.toml"
    config.write_text('[relay]\nportal-url = "https://portal.example"\nlisten = "bad"\n')
    assert cli.main(["relay", "--config", str(config)]) == 2
    assert "config key relay.listen: 'bad'" in capsys.readouterr().err
