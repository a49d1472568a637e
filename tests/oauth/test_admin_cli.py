"""``ewsgate admin signing-keys``: list, rotate, retire — what an operator runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewsgate.cli import main
from ewsgate.portal.oauth.keys import SigningKeys


def test_rotate_then_retire_the_old_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    data = str(tmp_path)
    assert main(["admin", "signing-keys", "--data-dir", data]) == 0
    first = SigningKeys.open(tmp_path).active.kid
    assert main(["admin", "signing-keys", "--data-dir", data, "--rotate"]) == 0
    ring = SigningKeys.open(tmp_path)
    assert ring.active.kid != first
    assert {k["kid"] for k in ring.jwks()["keys"]} == {first, ring.active.kid}
    assert main(["admin", "signing-keys", "--data-dir", data, f"--retire={first}"]) == 0
    assert [k["kid"] for k in SigningKeys.open(tmp_path).jwks()["keys"]] == [ring.active.kid]
    assert "retired" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--retire", "no-such-kid"], ["--rotate", "--retire", "x"]])
def test_bad_requests_are_configuration_errors(tmp_path: Path, args: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "signing-keys", "--data-dir", str(tmp_path), *args]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_the_active_key_cannot_be_retired(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    active = SigningKeys.open(tmp_path).active.kid
    assert main(["admin", "signing-keys", "--data-dir", str(tmp_path), f"--retire={active}"]) == 2
    assert "rotate first" in capsys.readouterr().err


def test_a_key_id_that_begins_with_a_dash_is_retired_with_the_equals_form(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A base64url thumbprint begins with '-' about once in 64; ``--retire=KID`` still parses."""
    ring = SigningKeys.open(tmp_path)
    first = ring.active.kid
    for _ in range(2000):
        if ring.rotate().kid.startswith("-"):
            break
    dashed = ring.active.kid
    assert dashed.startswith("-"), "no key id with a leading '-' in 2000 rotations"
    ring.rotate()
    assert main(["admin", "signing-keys", "--data-dir", str(tmp_path),
                 f"--retire={dashed}"]) == 0
    published = {k["kid"] for k in SigningKeys.open(tmp_path).jwks()["keys"]}
    assert dashed not in published and first in published
    assert f"signing key {dashed} is retired" in capsys.readouterr().out
