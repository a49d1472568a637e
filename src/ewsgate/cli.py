"""``ewsgate <command>``: the one entry point.

Each command declares its flags as :class:`ewsgate.config.Option` lists in a light ``options``
module of its part, and names its handler as ``"module:function"`` so that ``--help`` never
imports the heavy parts. A handler takes the resolved, validated values and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewsgate import __version__
from ewsgate.agent import options as agent_options
from ewsgate.config import ConfigError, Option, load_config_file, resolve
from ewsgate.devicesim import options as devicesim_options
from ewsgate.fsmode import private_umask
from ewsgate.portal import options as portal_options
from ewsgate.relay import options as relay_options

__all__ = ["COMMANDS", "Command", "main"]


@dataclass(frozen=True)
class Command:
    """A leaf command: ``path`` words after ``ewsgate``, its flags and its handler."""

    path: tuple[str, ...]
    help: str
    options: list[Option] = field(default_factory=list)
    handler: str | None = None
    description: str | None = None

    @property
    def section(self) -> str:
        return "-".join(self.path)


COMMANDS: list[Command] = [
    Command(("portal",), "run the portal: web UI, REST API, OAuth 2.1 server, CA, gRPC control",
            portal_options.PORTAL, "ewsgate.portal.main:run"),
    Command(("relay",), "run a Remote Technician relay: agent tunnels, per-session HTTPS origins",
            relay_options.RELAY, "ewsgate.relay.main:run"),
    Command(("agent", "enroll"), "enrol this installation with the portal using a one-time token",
            agent_options.ENROLL, "ewsgate.agent.main:enroll"),
    Command(("agent", "run"), "run the installation: control stream, identity checks, tunnels",
            agent_options.RUN, "ewsgate.agent.main:run"),
    Command(("devicesim",), "run a simulated printer: EWS over HTTP/HTTPS and an SNMP agent",
            devicesim_options.DEVICESIM, "ewsgate.devicesim.main:run"),
    Command(("demo",), "run the whole system on one machine with embedded defaults",
            portal_options.DEMO, "ewsgate.demo:run"),
    Command(("admin", "create-user"), "create a user (or add a role to an existing one)",
            portal_options.CREATE_USER, "ewsgate.portal.admin_cli:create_user"),
    Command(("admin", "create-token"), "create a personal API token and print it",
            portal_options.CREATE_TOKEN, "ewsgate.portal.admin_cli:create_token"),
    Command(("admin", "create-relay"), "register a relay node and print its credentials",
            portal_options.CREATE_RELAY, "ewsgate.portal.admin_cli:create_relay"),
    Command(("admin", "signing-keys"), "list, rotate or retire the portal's token signing keys",
            portal_options.SIGNING_KEYS, "ewsgate.portal.oauth.admin:signing_keys"),
    Command(("admin", "rotate-kek"), "add a new key-encryption key for stored SNMP secrets and "
            "re-seal them all with it", portal_options.DB, "ewsgate.portal.admin_cli:rotate_kek"),
    Command(("db", "upgrade"), "apply the database migrations (Alembic) up to the newest",
            portal_options.DB, "ewsgate.portal.admin_cli:db_upgrade"),
]

_CONFIG = Option("config", "TOML config file; keys are flag names, per command in a [command] "
                 "table (e.g. [portal]) or at the top level", parse=Path, metavar="FILE")


def _add_options(parser: argparse.ArgumentParser, options: list[Option]) -> None:
    for option in [_CONFIG, *options]:
        help_text = f"{option.help} [env {option.env_var}"
        if option.default is not None and not option.switch:
            help_text += f"; default {option.default}"
        help_text += "]"
        if option.switch:
            parser.add_argument(option.flag, dest=option.key, action="store_true", default=None,
                                help=help_text)
        else:
            parser.add_argument(option.flag, dest=option.key, default=None,
                                metavar=option.metavar or option.key.upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ewsgate",
        description="Remote Technician: open a device's embedded web server from anywhere, "
        "through an outbound-only on-site agent. Every flag also reads EWSGATE_<FLAG> and a "
        "key of the TOML file given by --config / EWSGATE_CONFIG.",
    )
    parser.add_argument("--version", action="version", version=f"ewsgate {__version__}")
    groups: dict[tuple[str, ...], argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups[()] = top
    for command in COMMANDS:
        for depth in range(1, len(command.path)):
            prefix = command.path[:depth]
            if prefix not in groups:
                group_parser = groups[prefix[:-1]].add_parser(
                    prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = group_parser.add_subparsers(
                    dest="_".join(prefix), metavar="COMMAND", required=True)
        leaf = groups[command.path[:-1]].add_parser(
            command.path[-1], help=command.help, description=command.description or command.help)
        _add_options(leaf, command.options)
        leaf.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args._command
    given = {key: value for key, value in vars(args).items() if not key.startswith("_")}
    try:
        config_path = given.get("config")
        if config_path is None and os.environ.get("EWSGATE_CONFIG"):
            config_path = os.environ["EWSGATE_CONFIG"]
        file_data = load_config_file(Path(config_path)) if config_path else {}
        values = resolve(command.options, given, section=command.section, file_data=file_data)
    except ConfigError as exc:
        print(f"ewsgate {' '.join(command.path)}: configuration error: {exc}", file=sys.stderr)
        return 2
    if command.handler is None:
        print(f"ewsgate {' '.join(command.path)}: not implemented yet", file=sys.stderr)
        return 2
    module_name, _, function_name = command.handler.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            print(f"ewsgate {' '.join(command.path)}: not implemented yet", file=sys.stderr)
            return 2
        raise
    handler: Any = getattr(module, function_name, None)
    if handler is None:
        print(f"ewsgate {' '.join(command.path)}: not implemented yet", file=sys.stderr)
        return 2
    # keys, databases, logs, demo.json: everything ewsgate writes is its user's only
    earlier = private_umask()
    try:
        return int(handler(values) or 0)
    except ConfigError as exc:
        print(f"ewsgate {' '.join(command.path)}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(earlier)  # main() called in-process (tests) leaves the caller's umask alone


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
