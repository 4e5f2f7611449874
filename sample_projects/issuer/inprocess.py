"""The sample issuer inside the test process: tokens and key fetches without any network.

::

    issuer = InProcessIssuer()
    key = DPoPKey.generate()
    token = issuer.token(key, "notes:read")                       # a real token endpoint exchange
    app = create_app(settings, validator=issuer.validator(settings))  # keys fetched in process

Requests go through Starlette's ``TestClient`` (sync) and ``httpx.ASGITransport`` (asyncio), so
the resource server runs its real :class:`~dpop_middleware.tokens.remote.RemoteJWKSValidator`,
discovery included.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.testclient import TestClient

from dpop_middleware.client import DPoPKey
from dpop_middleware.tokens.remote import RemoteJWKSValidator

from ..common import SampleSettings
from .app import create_app, issuer_settings

__all__ = ["InProcessIssuer"]

#: Framing the test client already undid (its ``content`` is decoded): not passed on.
_FRAMING = {"content-encoding", "content-length", "transfer-encoding"}


class _TestClientTransport(httpx.BaseTransport):
    """A synchronous ``httpx`` transport over Starlette's TestClient, so that the validator gets
    the ``httpx.Client`` it takes. (Starlette builds its TestClient on httpx2 when httpx2 is
    installed, e.g. by the ``mcp`` SDK; a TestClient is then no ``httpx.Client``.)"""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.request(
            request.method, str(request.url), headers=list(request.headers.multi_items()), content=request.read()
        )
        headers = [(name, value) for name, value in answer.headers.multi_items() if name.lower() not in _FRAMING]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content, request=request)


class InProcessIssuer:
    """The sample issuer app with clients wired to it. ``settings`` default: ``http://127.0.0.1:9000``."""

    def __init__(self, settings: SampleSettings | None = None, **app_options: Any) -> None:
        self.settings = settings or issuer_settings({})
        self.app = create_app(self.settings, **app_options)
        origin = urlsplit(self.settings.issuer)
        self.http = TestClient(self.app, base_url=f"{origin.scheme}://{origin.netloc}")

    @property
    def token_url(self) -> str:
        return f"{self.settings.issuer.rstrip('/')}/token"

    def token_response(
        self,
        key: DPoPKey,
        scope: str | None = "notes:read notes:write",
        *,
        client: tuple[str, str] = ("demo-client", "demo-secret"),
        nonce: str | None = None,
        **form: str,
    ) -> httpx.Response:
        """POST a client credentials request with a proof signed by ``key``; the raw response."""
        data = {"grant_type": "client_credentials", **form}
        if scope is not None:
            data["scope"] = scope
        proof = key.proof("POST", self.token_url, nonce=nonce)
        response: httpx.Response = self.http.post("/token", data=data, auth=client, headers={"DPoP": proof})
        return response

    def token(self, key: DPoPKey, scope: str | None = "notes:read notes:write", **options: Any) -> str:
        """An access token bound to ``key``; raises if the issuer refuses."""
        response = self.token_response(key, scope, **options)
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def validator(self, api_settings: SampleSettings) -> RemoteJWKSValidator:
        """The API's remote JWKS validator, fetching from this in-process issuer (sync and async)."""
        async_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))
        return RemoteJWKSValidator(
            issuer=api_settings.issuer,
            audience=api_settings.audience,
            jwks_uri=api_settings.jwks_uri,
            http_client=httpx.Client(transport=_TestClientTransport(self.http)),
            async_http_client=async_client,
        )
