"""Everything the running system wrote is its user's only: after a real portal, relay, agent
and simulated printers started (the demo), every directory under the data directory is 0700
and every file 0600 or stricter — the SQLite database and its WAL, the key-encryption keys,
the CA key, the relay's keys and spool, the logs and ``demo.json`` (which lists logins). The
only exception is a public certificate (a PEM file holding certificates and nothing else),
which may be 0644 inside its 0700 directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ewsgate.demo import DemoInfo

pytestmark = [pytest.mark.integration]


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def _public_certificate(path: Path) -> bool:
    if path.suffix != ".pem":
        return False
    text = path.read_text("ascii", errors="replace")
    return "PRIVATE KEY" not in text and "-----BEGIN CERTIFICATE-----" in text


def test_every_directory_is_0700_and_every_file_private(demo: DemoInfo) -> None:
    root = Path(demo.data_dir)
    modes = _modes(root)
    for must in ("demo.json", "portal/portal.sqlite3", "portal/ca/ca.key",
                 "portal/keys/kek-0001.key", "relay/cookie.key", "logs/portal.log"):
        assert must in modes, sorted(modes)
    directories = {name: mode for name, mode in modes.items() if (root / name).is_dir()}
    files = {name: mode for name, mode in modes.items()
             if (root / name).is_file() and not _public_certificate(root / name)}
    assert "agent/key.pem" in files and "relay/tunnel-key.pem" in files
    assert {name: oct(mode) for name, mode in directories.items() if mode != 0o700} == {}
    assert {name: oct(mode) for name, mode in files.items() if mode & 0o077} == {}
