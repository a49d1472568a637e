"""The HELLO credential format (ticket + connection generation)."""

from __future__ import annotations

import pytest

from ewsgate.tunnel import ErrorCode, RemoteProtocolError
from ewsgate.tunnel.credential import decode_credential, encode_credential


def test_round_trip() -> None:
    assert decode_credential(encode_credential("a.b.c", 3)) == ("a.b.c", 3)


@pytest.mark.parametrize("raw", [b"", b"\xff", b"[]", b'{"ticket": "x"}',
                                 b'{"ticket": 1, "gen": 1}', b'{"ticket": "x", "gen": 0}',
                                 b'{"ticket": "x", "gen": true}'])
def test_malformed_credentials_are_refused_with_a_code(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_credential(raw)
    assert info.value.code is ErrorCode.TICKET_REFUSED
