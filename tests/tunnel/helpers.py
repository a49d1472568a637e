"""Two protocol ends wired together in memory, no event loop (after h11's ConnectionPair)."""

from __future__ import annotations

from ewsgate.tunnel import Connection, Event, HelloReceived, ProtocolConfig, Role


class Pair:
    """A relay end (LISTENER) and an agent end (DIALER), shuttled by hand."""

    def __init__(self, relay_config: ProtocolConfig | None = None,
                 agent_config: ProtocolConfig | None = None,
                 ticket: bytes = b"ticket") -> None:
        self.relay = Connection(Role.LISTENER, relay_config)
        self.agent = Connection(Role.DIALER, agent_config, credential=ticket)

    def to_relay(self) -> list[Event]:
        return self.relay.receive_data(self.agent.data_to_send())

    def to_agent(self) -> list[Event]:
        return self.agent.receive_data(self.relay.data_to_send())

    def handshake(self) -> None:
        events = self.to_relay()
        assert isinstance(events[0], HelloReceived)
        self.relay.accept_peer()
        events = self.to_agent()
        assert isinstance(events[0], HelloReceived)

    def open(self, port_index: int = 0) -> int:
        sid = self.relay.open_stream(port_index)
        self.to_agent()
        self.agent.accept_stream(sid)
        self.to_relay()
        return sid
