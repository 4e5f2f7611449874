"""The client's side of the demo: the DPoP story, step by step, against one API.

Each step is written out with :meth:`dpop_middleware.client.DPoPKey.proof` and plain httpx, so
that what goes over the wire is visible: the ``DPoP`` header, ``Authorization: DPoP <token>``,
the ``DPoP-Nonce`` the server hands out and the retry it triggers.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from dpop_middleware.client import DPoPKey

__all__ = ["DPoPSession", "Exchange", "Row", "TokenClient", "run_story"]

_ERROR = re.compile(r'error="([^"]*)"')


@dataclass(frozen=True)
class Row:
    """One line of the demo's table."""

    step: str
    api: str
    expected: str
    got: str
    ok: bool


@dataclass(frozen=True)
class Exchange:
    """A request as sent (headers included) and the response that ended it."""

    method: str
    url: str
    headers: Mapping[str, str]
    response: httpx.Response
    nonce_challenged: bool = False  # the first attempt got use_dpop_nonce and was retried


def error_code(response: httpx.Response) -> str | None:
    """The OAuth error of a response: from ``WWW-Authenticate`` (resource servers) or the JSON body."""
    match = _ERROR.search(response.headers.get("www-authenticate", ""))
    if match:
        return match.group(1)
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class DPoPSession:
    """A client holding one DPoP key and the latest server nonce per origin (RFC 9449 §8, §9)."""

    http: httpx.Client
    key: DPoPKey
    nonces: dict[str, str] = field(default_factory=dict)

    def send(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        data: Mapping[str, str] | None = None,
        json_body: Any = None,
        auth: tuple[str, str] | None = None,
    ) -> Exchange:
        """Send with a fresh proof; on ``use_dpop_nonce``, retry once with the nonce just received."""
        challenged = False
        while True:
            proof = self.key.proof(method, url, access_token=token, nonce=self.nonces.get(_origin(url)))
            headers = {"DPoP": proof}
            if token is not None:
                headers["Authorization"] = f"DPoP {token}"
            response = self.http.request(method, url, headers=headers, data=data, json=json_body, auth=auth)
            nonce = response.headers.get("dpop-nonce")
            if nonce:
                self.nonces[_origin(url)] = nonce
            if error_code(response) == "use_dpop_nonce" and nonce and not challenged:
                challenged = True
                continue
            return Exchange(method, url, headers, response, challenged)

    def replay(self, exchange: Exchange) -> httpx.Response:
        """Send an earlier request again, byte for byte: the same proof."""
        return self.http.request(exchange.method, exchange.url, headers=dict(exchange.headers))


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, *unverified*: for display only (the API verifies it for real)."""
    payload = token.split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded if isinstance(decoded, dict) else {}


@dataclass(frozen=True)
class TokenClient:
    """Where and how to ask for tokens: the issuer's token endpoint and the client's credentials."""

    token_url: str
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"

    def request(self, session: DPoPSession, scope: str) -> Exchange:
        """Client credentials grant with a DPoP proof (RFC 9449 §5): the token comes back bound."""
        form = {"grant_type": "client_credentials", "scope": scope}
        return session.send("POST", self.token_url, data=form, auth=(self.client_id, self.client_secret))


def _short(jkt: object) -> str:
    return f"{jkt[:10]}…" if isinstance(jkt, str) else "none"


def _status(response: httpx.Response) -> str:
    code = error_code(response)
    return f"{response.status_code} {code}" if code else str(response.status_code)


Check = Callable[[], tuple[str, bool]]


def run_story(http: httpx.Client, api: str, base_url: str, tokens: TokenClient) -> list[Row]:
    """Every step of the story against the API at ``base_url``; one :class:`Row` per step."""
    rows: list[Row] = []
    key = DPoPKey.generate("ES256")
    client = DPoPSession(http, key)
    attacker = DPoPSession(http, DPoPKey.generate("ES256"))
    state: dict[str, Any] = {}

    def step(name: str, expected: str, check: Check) -> None:
        try:
            got, ok = check()
        except (httpx.HTTPError, KeyError, ValueError, IndexError) as exc:
            got, ok = f"error: {type(exc).__name__}", False
        rows.append(Row(name, api, expected, got, ok))

    def get_token() -> tuple[str, bool]:
        exchange = tokens.request(client, "notes:read notes:write")
        body = exchange.response.json()
        state["token"] = token = body["access_token"]
        jkt = token_claims(token).get("cnf", {}).get("jkt")
        ok = exchange.response.status_code == 200 and body.get("token_type") == "DPoP" and jkt == key.jkt
        return f"{exchange.response.status_code} {body.get('token_type')}, cnf.jkt={_short(jkt)}", ok

    def call_me() -> tuple[str, bool]:
        exchange = client.send("GET", f"{base_url}/api/me", token=state["token"])
        state["me"] = exchange
        response = exchange.response
        if response.status_code != 200:
            return _status(response), False
        who = response.json()
        ok = who.get("jkt") == key.jkt and who.get("sub") == "demo-client"
        after = " (after nonce)" if exchange.nonce_challenged else ""
        return f"200{after} sub={who.get('sub')} jkt={_short(who.get('jkt'))}", ok

    def replay() -> tuple[str, bool]:
        response = client.replay(state["me"])
        return _status(response), response.status_code == 401 and error_code(response) == "invalid_dpop_proof"

    def stolen() -> tuple[str, bool]:
        # The attacker has the token but not the key: its own, valid proof does not match cnf.jkt.
        response = attacker.send("GET", f"{base_url}/api/me", token=state["token"]).response
        return _status(response), response.status_code == 401 and error_code(response) == "invalid_token"

    def as_bearer() -> tuple[str, bool]:
        headers = {"Authorization": f"Bearer {state['token']}"}
        response = http.get(f"{base_url}/api/me", headers=headers)
        challenge = response.headers.get("www-authenticate", "")
        return f"{_status(response)} ({challenge.split(' ', 1)[0]} challenge)", (
            response.status_code == 401 and challenge.startswith("DPoP")
        )

    def nonce() -> tuple[str, bool]:
        client.nonces.clear()  # as on a first contact: the client holds no nonce yet
        exchange = client.send("POST", f"{base_url}/api/notes", token=state["token"], json_body={"text": "hello"})
        response = exchange.response
        got = f"401 use_dpop_nonce, then {_status(response)}" if exchange.nonce_challenged else _status(response)
        return got, exchange.nonce_challenged and response.status_code == 201

    def missing_scope() -> tuple[str, bool]:
        token = tokens.request(client, "notes:read").response.json()["access_token"]
        response = client.send("POST", f"{base_url}/api/notes", token=token, json_body={"text": "hi"}).response
        return _status(response), response.status_code == 403 and error_code(response) == "insufficient_scope"

    def health() -> tuple[str, bool]:
        response = http.get(f"{base_url}/healthz")
        return _status(response), response.status_code == 200

    step("token with a DPoP proof", "200 DPoP, cnf.jkt=client key", get_token)
    if "token" not in state:
        return rows  # nothing else can run without a token
    step("GET /api/me", "200, identity bound to the key", call_me)
    if "me" in state:
        step("same proof replayed", "401 invalid_dpop_proof", replay)
    step("stolen token, other key", "401 invalid_token", stolen)
    step("token sent as Bearer", "401 (DPoP challenge)", as_bearer)
    step("nonce challenge answered", "401 use_dpop_nonce, then 201", nonce)
    step("POST /api/notes w/o scope", "403 insufficient_scope", missing_scope)
    step("GET /healthz, no token", "200", health)
    return rows
