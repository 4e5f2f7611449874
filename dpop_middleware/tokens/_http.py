"""HTTP for the remote validators: sans-IO flows, driven by an httpx sync or async client.

A *flow* is a generator that yields :class:`HTTPRequest` objects and receives :class:`HTTPResponse`
objects back; its return value is the result. Every decision (which URL, what to send, how to read
the answer) lives in the flow and is written once; :func:`run_sync` and :func:`run_async` are the
only places that know whether the I/O blocks or awaits (the shape of httpx's own ``Auth.auth_flow``).

Transport failures (refused, reset, timed out, body too large, TLS) never reach the flow: the drivers
turn them into :class:`~dpop_middleware.TokenValidationUnavailable`, so an outage of the
authorization server is a 503 and never looks like a bad token.

httpx is an optional dependency (``pip install 'dpop-middleware[httpx]'``), imported on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
import weakref
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ..core.errors import TokenValidationUnavailable

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AsyncHTTP",
    "BodyReader",
    "Flow",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPSettings",
    "HTTPValidator",
    "SyncHTTP",
    "check_endpoint_url",
    "require_httpx",
    "run_async",
    "run_sync",
]

logger = logging.getLogger("dpop_middleware")

T = TypeVar("T")
Header = tuple[str, str]


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """One request a flow wants sent. ``form`` (if set) is sent as ``application/x-www-form-urlencoded``."""

    method: str
    url: str
    headers: tuple[Header, ...] = ()
    form: tuple[Header, ...] | None = None

    def with_headers(self, *headers: Header) -> HTTPRequest:
        return HTTPRequest(self.method, self.url, self.headers + headers, self.form)

    def with_form(self, *fields: Header) -> HTTPRequest:
        return HTTPRequest(self.method, self.url, self.headers, (self.form or ()) + fields)


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """What came back: status, headers (names lower-cased, last value wins) and the whole body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


Flow = Generator[HTTPRequest, HTTPResponse, T]


@dataclass(frozen=True)
class HTTPSettings:
    """Bounds on every call to the authorization server.

    ``timeout`` bounds each network operation (connect, each read, write) and, as a deadline, the
    whole exchange including the body; ``connect_timeout`` (default: ``timeout``) may be set lower
    so an unreachable host fails fast. ``max_body_bytes`` caps what we are willing to read.
    """

    timeout: float = 5.0
    connect_timeout: float | None = None
    max_body_bytes: int = 1 << 20
    user_agent: str = "dpop-middleware"

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 300:
            raise ValueError("timeout must be in (0, 300] seconds")
        if self.connect_timeout is not None and not 0 < self.connect_timeout <= self.timeout:
            raise ValueError("connect_timeout must be in (0, timeout]")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes is too small to be useful")

    def httpx_timeout(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(self.timeout, connect=self.connect_timeout or self.timeout)


def require_httpx() -> None:
    """Fail early, and say how to fix it, when the optional httpx dependency is missing."""
    try:
        import httpx  # noqa: F401
    except ImportError:  # pragma: no cover - httpx is installed in the test environment
        raise ImportError("remote token validation needs httpx: pip install 'dpop-middleware[httpx]'") from None


_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def check_endpoint_url(url: str, *, allow_insecure_http: bool) -> str:
    """Refuse endpoint URLs that an attacker on the path could answer for us.

    Keys and introspection answers decide who gets in, so they must come over TLS. Plain ``http``
    is accepted for loopback hosts (local development, tests) or when explicitly allowed.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise ValueError(f"refusing plain-http endpoint {url!r}; use https (or allow_insecure_http=True)")
    return url


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal) is this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unavailable(reason: str, request: HTTPRequest, exc: BaseException | None = None) -> TokenValidationUnavailable:
    where = urlsplit(request.url)
    detail = type(exc).__name__ if exc is not None else reason
    # Log the endpoint, never a token or a secret (those travel in the body and headers only).
    logger.warning(
        "dpop authorization server call failed: %s %s://%s%s (%s)",
        request.method,
        where.scheme,
        where.netloc,
        where.path,
        detail,
        extra={"dpop_reason": reason},
    )
    return TokenValidationUnavailable(reason, diagnostics={"endpoint": f"{where.netloc}{where.path}", "error": detail})


def _build_kwargs(request: HTTPRequest, settings: HTTPSettings) -> dict[str, Any]:
    headers = {"User-Agent": settings.user_agent}
    headers.update(request.headers)
    kwargs: dict[str, Any] = {"headers": headers, "timeout": settings.httpx_timeout()}
    if request.form is not None:
        kwargs["data"] = dict(request.form)
    return kwargs


class BodyReader:
    """Accumulates a response body within the size cap and the exchange's deadline (for any HTTP
    library that hands the body over in chunks)."""

    def __init__(self, request: HTTPRequest, settings: HTTPSettings) -> None:
        self._request = request
        self._limit = settings.max_body_bytes
        self._deadline = time.monotonic() + settings.timeout
        self._chunks: list[bytes] = []
        self._size = 0

    def start(self, headers: Mapping[str, str]) -> None:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            raise _unavailable("authorization_server_response_too_large", self._request)
        self.check_deadline()

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise _unavailable("authorization_server_response_too_large", self._request)
        self._chunks.append(chunk)
        self.check_deadline()

    def check_deadline(self) -> None:
        # A server that drips one byte per read-timeout would otherwise hold us forever.
        if time.monotonic() > self._deadline:
            raise _unavailable("authorization_server_timeout", self._request)

    def response(self, status: int, headers: Mapping[str, str]) -> HTTPResponse:
        return HTTPResponse(status, headers, b"".join(self._chunks))


@contextlib.contextmanager
def _failures_as_unavailable(request: HTTPRequest) -> Iterator[None]:
    """Turn the transport's failures (sync or async alike) into our 503."""
    import httpx

    try:
        yield
    except httpx.TimeoutException as exc:
        raise _unavailable("authorization_server_timeout", request, exc) from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
        raise _unavailable("authorization_server_unreachable", request, exc) from None


def _headers_of(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items()}


class SyncHTTP:
    """Sends flow requests with an :class:`httpx.Client` (yours, or one we create and own)."""

    def __init__(self, settings: HTTPSettings, client: httpx.Client | None = None) -> None:
        require_httpx()
        self.settings = settings
        self._client = client
        self._owned = client is None
        self._lock = threading.Lock()

    def _get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(timeout=self.settings.httpx_timeout(), follow_redirects=False)
            return self._client

    def send(self, request: HTTPRequest) -> HTTPResponse:
        reader = BodyReader(request, self.settings)
        kwargs = _build_kwargs(request, self.settings)
        with _failures_as_unavailable(request), self._get_client().stream(request.method, request.url, **kwargs) as r:
            headers = _headers_of(r)
            reader.start(headers)
            for chunk in r.iter_bytes():
                reader.add(chunk)
            return reader.response(r.status_code, headers)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._owned:
            client.close()


class AsyncHTTP:
    """Sends flow requests with an :class:`httpx.AsyncClient`.

    A client we create is tied to the event loop that first used it (its connections are), so we
    keep one per running loop; a client you pass in is used as is.
    """

    def __init__(self, settings: HTTPSettings, client: httpx.AsyncClient | None = None) -> None:
        require_httpx()
        self.settings = settings
        self._client = client
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        client = self._per_loop.get(loop)
        if client is None:
            import httpx

            client = httpx.AsyncClient(timeout=self.settings.httpx_timeout(), follow_redirects=False)
            self._per_loop[loop] = client
        return client

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        reader = BodyReader(request, self.settings)
        kwargs = _build_kwargs(request, self.settings)
        with _failures_as_unavailable(request):
            async with self._get_client().stream(request.method, request.url, **kwargs) as resp:
                headers = _headers_of(resp)
                reader.start(headers)
                async for chunk in resp.aiter_bytes():
                    reader.add(chunk)
                return reader.response(resp.status_code, headers)

    async def aclose(self) -> None:
        """Close the client this object created for the running loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - only called from async code
            return
        client = self._per_loop.pop(loop, None)
        if client is not None:
            await client.aclose()


class HTTPValidator:
    """Base of the validators that ask the authorization server: their two clients and closing them.

    The sync client serves ``validate``, the async one ``avalidate``; both obey the same settings.
    """

    def __init__(
        self, settings: HTTPSettings, http_client: httpx.Client | None, async_http_client: httpx.AsyncClient | None
    ) -> None:
        self._sync_http = SyncHTTP(settings, http_client)
        self._async_http = AsyncHTTP(settings, async_http_client)

    def close(self) -> None:
        """Close the HTTP client this validator created for sync use."""
        self._sync_http.close()

    async def aclose(self) -> None:
        """Close the HTTP client this validator created for the running event loop."""
        await self._async_http.aclose()


def run_sync(flow: Flow[T], http: SyncHTTP) -> T:
    """Drive ``flow`` to its result, blocking on each request."""
    try:
        request = next(flow)
        while True:
            request = flow.send(http.send(request))
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        flow.close()


async def run_async(flow: Flow[T], http: AsyncHTTP) -> T:
    """Drive ``flow`` to its result, awaiting each request: the twin of :func:`run_sync`."""
    try:
        request = next(flow)
        while True:
            request = flow.send(await http.send(request))
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        flow.close()
