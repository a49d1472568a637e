"""Configuration: one typed value per flag, from the command line, the environment or a TOML file.

Every flag of every command is declared once as an :class:`Option`. The same declaration gives
the ``--flag`` (with its ``--help`` text), the ``EWSGATE_<NAME>`` environment variable and the
config-file key ``name`` (at the top level of the TOML file, or under a table named after the
command, e.g. ``[relay]``, which wins over the top level). Precedence, highest first:

    command line  >  environment  >  config file ([command] table, then top level)  >  default

Values are parsed and validated once, at start-up, by :func:`resolve`; anything wrong raises
:class:`ConfigError` naming the flag, the variable, what was given and what is expected.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ConfigError",
    "HostPort",
    "Option",
    "env_name",
    "load_config_file",
    "parse_bool",
    "parse_duration",
    "parse_host_port",
    "parse_path",
    "parse_positive_int",
    "parse_url",
    "resolve",
]


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class HostPort:
    """A listen or dial address. ``host`` is a name or an IP literal without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str) -> HostPort:
    """Parse ``HOST:PORT`` or ``[IPv6]:PORT``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("expected [IPv6]:PORT, e.g. [::1]:8443")
        port_text = rest[1:]
        ipaddress.IPv6Address(host)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8443")
        if ":" in host:
            raise ValueError("an IPv6 address needs brackets: [::1]:8443")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return HostPort(host, int(port_text))


def parse_url(text: str) -> str:
    """An absolute http(s) URL, returned without a trailing slash."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an absolute http:// or https:// URL")
    return text.strip().rstrip("/")


def parse_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("expected a path")
    return Path(text).expanduser()


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds, from ``90``, ``90s``, ``1500ms``, ``30m`` or ``1h``."""
    text = text.strip().lower()
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * _DURATION_UNITS[unit]
    if text.replace(".", "", 1).isdigit():
        return float(text)
    raise ValueError("expected a duration such as 30s, 1500ms, 30m or 1h")


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: ``--name`` on the command line, ``EWSGATE_NAME`` in the environment."""

    name: str
    help: str
    parse: Callable[[str], Any] = str
    default: Any = None
    required: bool = False
    #: a switch (``--name`` with no value); its environment value is parsed as a boolean
    switch: bool = False
    metavar: str | None = None
    #: the environment variable, when it is not ``EWSGATE_<NAME>``
    env: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env_var(self) -> str:
        return self.env or env_name(self.name)


def env_name(name: str) -> str:
    return "EWSGATE_" + name.replace("-", "_").upper()


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; check --config / EWSGATE_CONFIG"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def resolve(
    options: list[Option],
    given: Mapping[str, Any],
    *,
    section: str,
    environ: Mapping[str, str] | None = None,
    file_data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge command line, environment, config file and defaults; parse and validate each value.

    ``given`` maps option keys to what the command line gave (``None`` when absent).
    ``section`` is the command's table name in the config file (e.g. ``"portal"``).
    """
    environ = os.environ if environ is None else environ
    file_data = file_data or {}
    table = file_data.get(section, {})
    if not isinstance(table, Mapping):
        table = {}
    known = {option.key for option in options}
    unknown = sorted(key for key in table if key.replace("-", "_") not in known)
    if unknown:
        raise ConfigError(
            f"config file table [{section}] has unknown keys {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(known))}"
        )

    values: dict[str, Any] = {}
    for option in options:
        raw: Any = given.get(option.key)
        source = option.flag
        if raw is None or (option.switch and raw is False):
            if option.env_var in environ and environ[option.env_var] != "":
                raw, source = environ[option.env_var], option.env_var
            elif option.key in table or option.name in table:
                raw = table.get(option.key, table.get(option.name))
                source = f"config key {section}.{option.key}"
            elif option.key in file_data or option.name in file_data:
                raw = file_data.get(option.key, file_data.get(option.name))
                source = f"config key {option.key}"
            else:
                raw = None
        if raw is None:
            if option.required:
                raise ConfigError(
                    f"{option.flag} is required: pass {option.flag}, set {option.env_var} "
                    f"or add '{option.key} = ...' to the config file ({option.help})"
                )
            values[option.key] = option.default
            continue
        values[option.key] = _parse_one(option, raw, source)
    return values


def _parse_one(option: Option, raw: Any, source: str) -> Any:
    if option.switch:
        if isinstance(raw, bool):
            return raw
        parser: Callable[[str], Any] = parse_bool
    else:
        parser = option.parse
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, bool | int | float):
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        text = ",".join(raw)
    else:
        raise ConfigError(f"{source}: {raw!r} has the wrong type for {option.flag}")
    try:
        return parser(text)
    except (ValueError, TypeError) as exc:
        hint = f" ({exc})" if str(exc) else ""
        raise ConfigError(
            f"{source}: {text!r} is not a valid value for {option.flag}{hint}"
        ) from None
