"""``ewsgate agent run --site-subnets``: flag, EWSGATE_SITE_SUBNETS and config key; and no
setting of any kind turns the test-only loopback allowance on."""

from __future__ import annotations

import inspect
import ipaddress
from pathlib import Path

import pytest

from ewsgate import cli
from ewsgate.agent import main as agent_main
from ewsgate.agent import options as agent_options
from ewsgate.config import ConfigError, resolve

SITE = (ipaddress.ip_network("10.20.0.0/24"), ipaddress.ip_network("2001:db8:5::/64"))


def test_site_subnets_from_the_flag_the_environment_or_the_config_file() -> None:
    flag = resolve(agent_options.RUN, {"site_subnets": "10.20.0.0/24,2001:db8:5::/64"},
                   section="agent-run", environ={})
    assert flag["site_subnets"] == SITE
    env = resolve(agent_options.RUN, {}, section="agent-run",
                  environ={"EWSGATE_SITE_SUBNETS": "10.20.0.0/24, 2001:db8:5::/64"})
    assert env["site_subnets"] == SITE
    listed = resolve(agent_options.RUN, {}, section="agent-run", environ={},
                     file_data={"agent-run": {"site_subnets": ["10.20.0.0/24", "2001:db8:5::/64"]}})
    assert listed["site_subnets"] == SITE
    assert resolve(agent_options.RUN, {}, section="agent-run", environ={})["site_subnets"] is None


def test_a_bad_site_subnet_is_a_configuration_error_that_says_what_to_write() -> None:
    with pytest.raises(ConfigError, match=r"--site-subnets.*did you mean 10\.20\.0\.0/24"):
        resolve(agent_options.RUN, {"site_subnets": "10.20.0.5/24"}, section="agent-run",
                environ={})
    with pytest.raises(ConfigError, match=r"EWSGATE_SITE_SUBNETS.*loopback"):
        resolve(agent_options.RUN, {}, section="agent-run",
                environ={"EWSGATE_SITE_SUBNETS": "127.0.0.0/8"})


def test_no_flag_variable_or_config_key_allows_loopback(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    names = [option.name for option in agent_options.RUN + agent_options.ENROLL]
    assert not [name for name in names if "loopback" in name or "test" in name]
    with pytest.raises(SystemExit):
        cli.main(["agent", "run", "--allow-loopback-devices"])
    config = tmp_path / "agent.toml"
    config.write_text("[agent-run]\nallow_loopback_devices = true\n")
    assert cli.main(["agent", "run", "--config", str(config),
                     "--data-dir", str(tmp_path)]) == 2
    assert "unknown keys allow_loopback_devices" in capsys.readouterr().err
    # the one way in is a keyword of run() that the CLI never passes (it calls run(values))
    parameter = inspect.signature(agent_main.run).parameters["allow_loopback_devices"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is False


def test_the_help_names_the_flag_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["agent", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--site-subnets CIDR,..." in text and "EWSGATE_SITE_SUBNETS" in text
