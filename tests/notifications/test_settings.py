"""``--smtp-url`` / ``--smtp-from``: what is accepted, and the clear errors for the rest."""

from __future__ import annotations

import pytest

from ewsgate.config import ConfigError
from ewsgate.portal.notifications.settings import parse_smtp_url


def test_smtps_is_implicit_tls_on_465_with_decoded_credentials() -> None:
    s = parse_smtp_url("smtps://alerts%40acme.example:p%40ss@mail.acme.example", "rt@acme.example")
    assert (s.host, s.port, s.implicit_tls, s.starttls) == ("mail.acme.example", 465, True, False)
    assert (s.username, s.password) == ("alerts@acme.example", "p@ss")
    assert "p@ss" not in repr(s)


def test_smtp_requires_starttls_on_587_unless_switched_off_without_credentials() -> None:
    s = parse_smtp_url("smtp://u:p@mail.example", "rt@example.com")
    assert (s.port, s.starttls, s.implicit_tls) == (587, True, False)
    plain = parse_smtp_url("smtp://127.0.0.1:25?starttls=off", "rt@example.com")
    assert (plain.port, plain.starttls, plain.username) == (25, False, None)


@pytest.mark.parametrize(("url", "sender", "why"), [
    ("http://mail.example", "rt@example.com", "must look like"),
    ("smtp://u:p@mail.example?starttls=off", "rt@example.com", "in clear"),
    ("smtp://mail.example?tls=1", "rt@example.com", "unknown option"),
    ("smtp://mail.example?starttls=maybe", "rt@example.com", "on or off"),
    ("smtp://mail.example", None, "--smtp-from is needed"),
    ("smtp://mail.example", "not an address", "is not an e-mail address"),
    ("smtp://mail.example:99999", "rt@example.com", "not a URL"),
])
def test_bad_settings_are_refused_at_start_with_the_reason(url: str, sender: str | None,
                                                           why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_smtp_url(url, sender)


def test_the_portal_flags_carry_smtp_settings_from_the_environment() -> None:
    from ewsgate.config import resolve
    from ewsgate.portal.notifications.runtime import smtp_settings
    from ewsgate.portal.options import PORTAL

    values = resolve(PORTAL, {}, section="portal", environ={"EWSGATE_SMTP_URL": "smtps://u:p@mx.example:2465",
                                          "EWSGATE_SMTP_FROM": "rt@example.com"})
    settings = smtp_settings(values)
    assert settings is not None and (settings.host, settings.port) == ("mx.example", 2465)
    assert smtp_settings(resolve(PORTAL, {}, section="portal", environ={})) is None
