"""The WebSocket cores without an event loop: handshake checks and the frame bridge, playbook
style (two wsproto peers wired to the bridge in memory)."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from ewsgate.relay.ws_bridge import Side, WebSocketBridge
from ewsgate.relay.ws_handshake import (
    BrowserHandshake,
    DeviceSwitch,
    HandshakeRefused,
    accept_value,
    browser_switch_headers,
    check_browser_request,
    check_device_switch,
    device_handshake_lines,
)


def _request(key: bytes, version: bytes = b"13") -> list[tuple[bytes, bytes]]:
    return [(b"Host", b"x"), (b"Sec-WebSocket-Version", version), (b"Sec-WebSocket-Key", key)]


@given(st.binary(min_size=0, max_size=40))
def test_only_a_16_byte_key_is_accepted(raw: bytes) -> None:
    result = check_browser_request(b"GET", b"1.1", _request(base64.b64encode(raw)))
    if len(raw) == 16:
        assert isinstance(result, BrowserHandshake)
    else:
        assert isinstance(result, HandshakeRefused) and result.status == 400


def test_rfc_6455_sample_accept_and_the_device_handshake() -> None:
    assert accept_value(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    handshake = BrowserHandshake(key=b"dGhlIHNhbXBsZSBub25jZQ==", protocols=(b"a", b"b"))
    key, lines = device_handshake_lines(handshake)
    assert key != handshake.key and len(base64.b64decode(key)) == 16
    assert lines == (b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Protocol: a, b\r\n")
    ok = [(b"Upgrade", b"WebSocket"), (b"Connection", b"keep-alive, Upgrade"),
          (b"Sec-WebSocket-Accept", accept_value(key)), (b"Sec-WebSocket-Protocol", b"b")]
    switch = check_device_switch(ok, key, handshake.protocols)
    assert switch == DeviceSwitch(protocol=b"b")
    assert browser_switch_headers(handshake, switch) == [
        (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        (b"Sec-WebSocket-Protocol", b"b")]
    two = [*ok[:3], (b"Sec-WebSocket-Accept", accept_value(key))]
    assert isinstance(check_device_switch(two, key, ()), str)


class _Pair:
    """A browser (wsproto client) and a device (wsproto server) on either side of a bridge."""

    def __init__(self) -> None:
        self.bridge = WebSocketBridge()
        self.browser = Connection(ConnectionType.CLIENT)
        self.device = Connection(ConnectionType.SERVER)

    def from_browser(self, event: object) -> list[object]:
        """Send ``event`` from the browser; the device's events."""
        self.bridge.receive(Side.BROWSER, self.browser.send(event))  # type: ignore[arg-type]
        return self._deliver(Side.DEVICE, self.device)

    def from_device(self, event: object) -> list[object]:
        self.bridge.receive(Side.DEVICE, self.device.send(event))  # type: ignore[arg-type]
        return self._deliver(Side.BROWSER, self.browser)

    def _deliver(self, side: Side, peer: Connection) -> list[object]:
        data = self.bridge.data_to_send(side)
        if data:
            peer.receive_data(data)
        return list(peer.events())


def test_close_handshake_is_forwarded_both_ways_and_counted() -> None:
    pair = _Pair()
    [text] = pair.from_browser(Message(data="hi"))
    assert isinstance(text, TextMessage) and text.data == "hi"
    [ping] = pair.from_device(Ping(payload=b"1"))  # forwarded end to end, both ways
    assert isinstance(ping, Ping)
    [pong] = pair.from_browser(Pong(payload=b"1"))
    assert isinstance(pong, Pong) and pong.payload == b"1"
    [close] = pair.from_device(CloseConnection(code=4000, reason="done"))
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (4000, "done")
    assert not pair.bridge.done()
    [answer] = pair.from_browser(close.response())
    assert isinstance(answer, CloseConnection) and answer.code == 4000
    assert pair.bridge.done()
    stats = pair.bridge.stats
    assert (stats.messages_in, stats.bytes_in, stats.close_code, stats.closed_by) == (
        1, 2, 4000, "device")


def test_a_close_without_status_is_forwarded_without_status() -> None:
    pair = _Pair()
    [close] = pair.from_browser(CloseConnection(code=CloseReason.NO_STATUS_RCVD))
    assert isinstance(close, CloseConnection) and close.code == CloseReason.NO_STATUS_RCVD


def test_end_sends_1008_both_ways_and_drops_later_data() -> None:
    pair = _Pair()
    pair.bridge.end("the session was revoked")
    for side, peer in ((Side.BROWSER, pair.browser), (Side.DEVICE, pair.device)):
        peer.receive_data(pair.bridge.data_to_send(side))
        [close] = list(peer.events())
        assert isinstance(close, CloseConnection) and close.code == 1008
        assert close.reason == "the session was revoked"
    # the device still sends a message (a raw frame) before it answers: not forwarded
    pair.bridge.receive(Side.DEVICE, b"\x81\x04late")
    assert pair.bridge.data_to_send(Side.BROWSER) == b""
    pair.from_device(CloseConnection(code=1008))
    pair.from_browser(CloseConnection(code=1008))
    assert pair.bridge.done() and pair.bridge.stats.closed_by == "relay"


def test_a_vanished_device_is_1006_in_the_log_and_1001_to_the_browser() -> None:
    pair = _Pair()
    pair.bridge.receive(Side.DEVICE, None)
    pair.browser.receive_data(pair.bridge.data_to_send(Side.BROWSER))
    [close] = list(pair.browser.events())
    assert isinstance(close, CloseConnection) and close.code == 1001
    assert pair.bridge.stats.close_code == 1006 and not pair.bridge.reading(Side.DEVICE)


def test_garbage_from_the_browser_fails_its_leg_and_closes_the_device() -> None:
    pair = _Pair()
    pair.bridge.receive(Side.BROWSER, b"GET / HTTP/1.1\r\n\r\n")
    assert not pair.bridge.reading(Side.BROWSER)
    pair.device.receive_data(pair.bridge.data_to_send(Side.DEVICE))
    assert [type(e) for e in pair.device.events()] == [CloseConnection]
    assert pair.device.state is ConnectionState.REMOTE_CLOSING
    assert pair.bridge.stats.close_code == 1002 and "broke" in (pair.bridge.stats.error or "")


def test_a_side_that_fails_before_any_close_is_kept_with_its_cause() -> None:
    from ewsgate.relay.outcomes import websocket_outcome

    pair = _Pair()
    pair.bridge.receive(Side.DEVICE, None, cause="StreamResetError: the agent reset it")
    stats = pair.bridge.stats
    assert (stats.vanished, stats.cause) == ("device", "StreamResetError: the agent reset it")
    outcome, detail = websocket_outcome(stats, ended=False)
    assert outcome == "error" and detail.startswith("device_reset: websocket: close 1006")
    assert detail.endswith("failed mid-stream: StreamResetError: the agent reset it")
    # after a close handshake began, a side hanging up is not a failure of that side
    later = _Pair()
    later.from_browser(CloseConnection(code=1000))
    later.bridge.receive(Side.DEVICE, None)
    assert later.bridge.stats.vanished is None
    assert websocket_outcome(later.bridge.stats, ended=False)[0] == "ok"
    # the session's end wins, and says 1008
    ended = _Pair()
    ended.bridge.end("revoked")
    assert websocket_outcome(ended.bridge.stats, ended=True) == (
        "ended", "websocket: close 1008 by the relay; messages 0 in, 0 out")
