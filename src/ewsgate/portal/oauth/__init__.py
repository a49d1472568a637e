"""The portal's OAuth 2.1 authorization server, for Remote Technician relays.

Relays are the only clients: a relay sends a browser here when it has no session cookie for a
session host, and redeems the code it gets back for a short-lived access token naming the user
and the session. Everything OAuth 2.1 and RFC 9700 leave optional is decided strictly:
authorization code + PKCE S256 only, exact redirect URIs registered per session, single-use
60-second codes bound to client, user, challenge and redirect URI, no refresh tokens, no
implicit or password grants, ``state`` required, no CORS, no framing.

Modules, from the pure rules up to HTTP:

- :mod:`.errors` — :class:`OAuthError` with RFC 6749 codes.
- :mod:`.pkce` — challenge and verifier rules (S256 only).
- :mod:`.redirects` — same-origin post-login paths, exact redirect URI comparison.
- :mod:`.keys` — the ES256 signing keys in the data directory (JWKS, rotation).
- :mod:`.tokens` — access tokens and tunnel tickets: signing and verification.
- :mod:`.client_auth` — relay authentication (``client_secret_basic``).
- :mod:`.models` — the ``oauth_codes`` table.
- :mod:`.server` — the authorize and token decisions over the database.
- :mod:`.routes` — the FastAPI routes, metadata (RFC 8414) and JWKS.
- :mod:`.admin` — ``ewsgate admin signing-keys`` (list, rotate, retire).

docs/oauth.md is the operator's and the relay author's view of the same.
"""

__all__: list[str] = []
