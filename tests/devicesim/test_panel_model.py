"""The front panel's menu state machine, without any socket."""

from __future__ import annotations

import pytest

from ewsgate.devicesim.panel_model import MENU, PanelModel, UnknownKey


def model() -> PanelModel:
    return PanelModel(lambda: {"ip": "10.0.0.5", "mac": "A0:D3:C1:4A:2B:3C", "host": "NPI1",
                               "name": "Copy room", "clock": "12:00:00"})


def test_home_screen_shows_ready_and_the_device_name() -> None:
    lines = model().lines()
    assert len(lines) == 4 and all(len(line) == 20 for line in lines)
    assert lines[0].strip() == "Ready" and lines[1].strip() == "Copy room"


def test_navigation_down_ok_shows_the_network_values() -> None:
    panel = model()
    for key in ("menu", "down", "down", "ok"):
        panel.press(key)
    assert panel.screen == "submenu"
    assert panel.lines()[0].strip() == "NETWORK"
    assert "> IPv4: 10.0.0.5" in panel.lines()[1]
    panel.press("down")
    panel.press("ok")
    assert panel.screen == "message"
    assert [line.strip() for line in panel.lines()[:2]] == ["MAC:", "A0:D3:C1:4A:2B:3C"]
    panel.press("back")
    assert panel.screen == "submenu"
    panel.press("home")
    assert panel.screen == "home"


def test_cursor_wraps_around_the_top_menu() -> None:
    panel = model()
    panel.press("menu")
    panel.press("up")
    assert panel.top == len(MENU) - 1
    assert any(line.startswith("> Service") for line in panel.lines())


def test_view_blinks_the_data_led_and_counts_presses() -> None:
    panel = model()
    panel.press("menu")
    a, b = panel.view(1), panel.view(2)
    assert a["leds"]["data"] != b["leds"]["data"]  # type: ignore[index]
    assert a["presses"] == 1 and a["screen"] == "menu"


def test_unknown_key_is_an_error_with_a_code() -> None:
    with pytest.raises(UnknownKey, match="keys are"):
        model().press("reboot")
