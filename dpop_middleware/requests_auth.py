"""DPoP for requests: :class:`DPoPAuth`, a ``requests.auth.AuthBase``.

::

    session = requests.Session()
    session.auth = DPoPAuth(key, access_token)           # or requests.get(url, auth=DPoPAuth(...))
    session.get("https://api.example/me")

Every request gets a fresh proof (``htm``, ``htu`` without query and fragment, ``ath``) and
``Authorization: DPoP <token>``. A response hook retries once on a nonce challenge (401
``use_dpop_nonce``, or 400 ``use_dpop_nonce`` from a token endpoint when no token is set) and
remembers the latest ``DPoP-Nonce`` per origin for the next proofs.

Limits: a request whose body is a generator or file cannot be replayed, so its retry is not
attempted; requests does not re-run custom auth on redirects, so a redirected request carries a
proof for the first URL (and is refused): point the client at the final URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    import requests
    import urllib3
    from requests.auth import AuthBase
    from requests.cookies import extract_cookies_to_jar
except ModuleNotFoundError as exc:  # name the extra to install
    from .extras import missing_extra

    missing_extra(exc, "requests", "the requests plugin needs requests", "requests")

from .client import NonceCache, ProofKey, nonce_to_retry, proof_headers
from .core.errors import TokenValidationUnavailable
from .discovery import Discovery, DiscoveryError, discovery_failure, discovery_flow, discovery_http
from .tokens._http import BodyReader, HTTPRequest, HTTPResponse, HTTPSettings

__all__ = ["DPoPAuth", "discover"]


def _replayable(request: requests.PreparedRequest) -> bool:
    return request.body is None or isinstance(request.body, (bytes, str))


class DPoPAuth(AuthBase):
    """requests authentication with DPoP; ``token=None`` signs token requests (no ``ath``)."""

    def __init__(self, key: ProofKey, token: str | None = None, *, nonces: NonceCache | None = None) -> None:
        self.key = key
        self.token = token
        self.nonces = nonces if nonces is not None else NonceCache()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        self._sign(request, self.nonces.get(url))
        hooks = request.hooks.setdefault("response", [])
        if self._on_response not in hooks:  # a re-prepared request must not retry twice
            request.register_hook("response", self._on_response)  # type: ignore[no-untyped-call]
        return request

    def _sign(self, request: requests.PreparedRequest, nonce: str | None) -> None:
        method = request.method or "GET"
        request.headers.update(proof_headers(self.key, method, request.url or "", self.token, nonce=nonce))

    def _observe(self, response: requests.Response) -> str | None:
        url = response.request.url or ""
        header = response.headers.get("DPoP-Nonce")
        if header is not None:
            self.nonces.remember(url, header)
        # Only a token endpoint says use_dpop_nonce with a 400 (§8); a resource server uses 401.
        body = response.content if response.status_code == 400 and self.token is None else None
        challenges = [response.headers["WWW-Authenticate"]] if "WWW-Authenticate" in response.headers else []
        return nonce_to_retry(response.status_code, challenges, header, body)

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        retry = self._observe(response)
        connection = getattr(response, "connection", None)
        if retry is None or connection is None or not _replayable(response.request):
            return response
        # Release the connection before reusing it, as requests' own digest auth does.
        _ = response.content
        response.close()
        again = response.request.copy()
        cookies = getattr(again, "_cookies", None)
        if cookies is not None:
            extract_cookies_to_jar(cookies, response.request, response.raw)  # type: ignore[no-untyped-call]
            again.prepare_cookies(cookies)
        again.hooks = {"response": []}  # the retry is final: no second round
        self._sign(again, retry)
        retried: requests.Response = connection.send(again, **kwargs)
        retried.history.append(response)
        retried.request = again
        self._observe(retried)
        return retried

    def __repr__(self) -> str:
        return f"DPoPAuth(key={self.key!r}, token={'set' if self.token else None})"


def _send(session: requests.Session, request: HTTPRequest, settings: HTTPSettings) -> HTTPResponse:
    """One discovery request: no redirects, the body read within the cap and the deadline that the
    httpx clients keep too (``requests``' own timeout bounds each read, not the exchange)."""
    reader = BodyReader(request, settings)
    headers = {"User-Agent": settings.user_agent, **dict(request.headers)}
    try:
        with session.request(
            request.method, request.url, headers=headers, timeout=settings.timeout, stream=True,
            allow_redirects=False,
        ) as response:  # fmt: skip
            # requests joins repeated fields with ", ", as the challenge parser expects.
            found = {name.lower(): value for name, value in response.headers.items()}
            reader.start(found)
            # read1, not iter_content: urllib3's read(n) waits for all n bytes, so a server sending
            # one byte a second would hold a chunk (and the deadline check) for hours.
            while chunk := response.raw.read1(8192, decode_content=True):
                reader.add(chunk)
            return reader.response(response.status_code, found)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:  # read1 raises urllib3's own
        raise DiscoveryError("unreachable", f"a discovery request failed ({type(exc).__name__})") from None
    except TokenValidationUnavailable as exc:
        raise discovery_failure(exc) from None


def discover(
    resource: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 5.0,
    allow_insecure_http: bool = False,
    trusted_issuers: Iterable[str] | None = None,
) -> Discovery:
    """Find ``resource``'s authorization server (RFC 9728, then RFC 8414) with ``session`` (default: a
    fresh one). Raises :class:`~dpop_middleware.discovery.DiscoveryError`; see
    :func:`dpop_middleware.httpx_auth.discover`."""
    own, settings = session is None, discovery_http(timeout)
    http = requests.Session() if session is None else session
    flow = discovery_flow(resource, allow_insecure_http=allow_insecure_http, trusted_issuers=trusted_issuers)
    try:
        request = next(flow)
        while True:
            request = flow.send(_send(http, request, settings))
    except StopIteration as stop:
        result: Discovery = stop.value
        return result
    finally:
        flow.close()
        if own:
            http.close()
