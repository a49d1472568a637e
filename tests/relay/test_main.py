"""``ewsgate relay`` start-up checks: credentials, certificate files, the 30-minute ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ewsgate.cli import main


def _files(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    for name in ("browser-cert.pem", "browser-key.pem", "tunnel-cert.pem", "tunnel-key.pem",
                 "ca.pem"):
        (data / name).write_text("placeholder-never-loaded")


def test_missing_credentials_say_where_to_get_them(tmp_path: Path, capsys) -> None:
    _files(tmp_path)
    code = main(["relay", "--portal-url", "https://portal.example", "--data-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--relay-id" in err and "ewsgate admin create-relay" in err


def test_missing_certificate_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "relay.json").write_text(json.dumps({"relay_id": "1", "relay_secret": "s"}))
    code = main(["relay", "--portal-url", "https://portal.example", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "--tls-cert" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["31m", "1h", "1801"])
def test_a_session_maximum_above_30_minutes_is_refused(tmp_path: Path, capsys,
                                                       value: str) -> None:
    _files(tmp_path)
    code = main(["relay", "--portal-url", "https://portal.example", "--data-dir", str(tmp_path),
                 "--relay-id", "1", "--relay-secret", "s", "--max-session", value])
    assert code == 2
    assert "30-minute ceiling" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["http://portal.example", "http://10.0.0.8:8000",
                                 "http://[2001:db8::1]:8000", "http://127.0.0.1.example.com"])
def test_a_plain_http_portal_url_off_this_host_is_refused_at_start(tmp_path, capsys, url):
    code = main(["relay", "--portal-url", url, "--data-dir", str(tmp_path),
                 "--relay-id", "1", "--relay-secret", "s"])
    assert code == 2
    err = capsys.readouterr().err
    assert "in the clear" in err and "https://" in err and "loopback" in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://[::1]:8000",
                                 "http://localhost:8000", "https://portal.example"])
def test_https_or_loopback_http_portal_urls_pass_the_check(url):
    from ewsgate.relay.portal_url import require_secure_portal_url

    assert require_secure_portal_url(url) == url


def test_the_response_timeout_and_fsync_policy_are_settings(tmp_path: Path) -> None:
    """Flag, environment variable and config key, checked once (default 60 s / 200 ms)."""
    from ewsgate.config import resolve
    from ewsgate.relay.main import RelaySettings
    from ewsgate.relay.options import RELAY

    _files(tmp_path)
    base = {"portal_url": "https://portal.example", "data_dir": str(tmp_path),
            "relay_id": "1", "relay_secret": "s"}

    def settings(given: dict[str, str], environ: dict[str, str] | None = None,
                 file_data: dict[str, object] | None = None) -> RelaySettings:
        return RelaySettings.from_values(resolve(RELAY, {**base, **given}, section="relay",
                                                 environ=environ or {}, file_data=file_data))

    default = settings({})
    assert (default.response_timeout, default.log_fsync_interval) == (60.0, 0.2)
    flagged = settings({"response_timeout": "90s", "log_fsync_interval": "0"})
    assert (flagged.response_timeout, flagged.log_fsync_interval) == (90.0, 0.0)
    other = settings({}, {"EWSGATE_RESPONSE_TIMEOUT": "15s"},
                     {"relay": {"log-fsync-interval": "1s"}})
    assert (other.response_timeout, other.log_fsync_interval) == (15.0, 1.0)
