"""DPoP for Flask: the :class:`DPoP` extension.

::

    app.config.update(DPOP_ISSUER=..., DPOP_AUDIENCE=..., DPOP_JWKS=..., DPOP_ALLOWED_HOSTS=["api.example.com"])
    dpop = DPoP(app)                      # or: dpop = DPoP(); dpop.init_app(app)

    @app.get("/me")
    @dpop.required                        # or @dpop.required(scopes=["read"]), @dpop.optional, @dpop.exempt
    def me():
        return {"sub": current_dpop.subject}

:meth:`DPoP.init_app` reads and type-checks every ``DPOP_*`` key (through
:mod:`dpop_middleware.settings`) and installs one ``before_request`` hook that verifies every
request by the route policy (docs/routes.md): a view's decorator, else the path rules
(``DPOP_EXEMPT_PATHS``...), else ``DPOP_DEFAULT`` (``required``). ``@dpop.required``/``@dpop.optional``
also guard the view itself: a request the hook did not check (the extension not registered on the
app serving the view) is refused with 503, never served. The user guide, with every setting, is
``docs/flask.md``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

try:
    from flask import Flask, Request, Response, after_this_request, current_app, g, has_app_context, has_request_context
    from flask import request as current_request
    from werkzeug.local import LocalProxy
    from werkzeug.utils import import_string
except ModuleNotFoundError as exc:  # name the extra to install
    from .extras import missing_extra

    missing_extra(exc, "flask", "the Flask adapter needs Flask", "flask")

from .core.binding import DPoPPrincipal
from .core.challenge import ErrorResponse
from .core.client_cert import client_cert_settings_problem
from .core.origin import ProxySettings
from .core.resource_metadata import PublishedMetadata
from .core.routes import Route, RouteDemands, RoutePolicy, mark_hidden, required_route, route_of
from .route_settings import build_route_policy
from .settings import ADAPTER_NAMES, BUILDER_NAMES, CONFIG_NAMES, SettingsError, build_verifier, read_settings
from .verifier import DPoPVerifier, hidden_mark_rejection, unverified_rejection
from .wsgi import authenticate_environ
from .wsgi_environ import is_cors_preflight_environ

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DPoP", "current_dpop"]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("dpop_middleware")

EXTENSION_KEY = "dpop"
_POLICY_ATTR = "_dpop_policy"
_CHECKED_ATTR = "_dpop_checked"  # on ``g``: our before_request hook has dealt with this request
_ROUTE_ATTR = "_dpop_route"  # on ``g``: the Route it applied (a guarded view checks it covers its mark)
_MARKS_ATTR = "_dpop_marks_seen"  # on ``g``: the marks it found on the view (and chose among)

#: Written into ``app.config`` by :meth:`DPoP.init_app`, so the effective values can be read back.
_ADAPTER_DEFAULTS: dict[str, Any] = {
    "DPOP_TRUSTED_PROXIES": (),
    "DPOP_TRUSTED_HEADERS": None,
    "DPOP_PUBLIC_URL": None,
    "DPOP_ALLOWED_HOSTS": None,
    "DPOP_EXEMPT_PATHS": (),
}
_VERIFIER_NAMES = CONFIG_NAMES | BUILDER_NAMES
_ACCEPTED = _VERIFIER_NAMES | ADAPTER_NAMES | {"enforce_all"}
# Headers that move the host the URL is rebuilt with away from the Host header Flask checks.
_HOST_FORWARDING = frozenset({"x-forwarded-host", "forwarded"})


def _spell(name: str) -> str:
    return f"DPOP_{name.upper()}"


def _current_principal() -> DPoPPrincipal | None:
    principal = g.get("dpop")
    return principal if isinstance(principal, DPoPPrincipal) else None


#: The request's :class:`~dpop_middleware.DPoPPrincipal`; falsy when the request has none.
current_dpop: LocalProxy[DPoPPrincipal | None] = LocalProxy(_current_principal)


@dataclass(frozen=True)
class _AppState:
    verifier: DPoPVerifier
    proxy_settings: ProxySettings
    routes: RoutePolicy
    metadata: PublishedMetadata | None = None  # RFC 9728, served by the hook before any check


# -- the guard: a decorated view never runs for a request our hook did not check ------------------


def _unchecked_response(view_name: str, policy: Route) -> Response:
    """503 for a request that reached a decorated view without our hook: the extension is not on this app."""
    app_name = current_app.name if has_app_context() else "<no app>"
    rejection = unverified_rejection(
        "extension_not_registered",
        f"view {view_name} is decorated with @dpop.{policy.mode}, but the DPoP extension is not registered "
        f"on the app serving it ({app_name}), so nothing verified this request: call DPoP.init_app(app) "
        "(or DPoP(app)) on that app",
    )
    response_class = current_app.response_class if has_app_context() else Response
    response: Response = response_class(
        rejection.body, status=rejection.status, headers=list(rejection.headers), content_type=rejection.content_type
    )
    return response


def _checked() -> bool:
    return has_request_context() and g.get(_CHECKED_ATTR) is True


def _refusal(name: str, policy: Route, *, of_class: bool = False) -> Response | None:
    """Why the guarded view must not run: no hook saw the request, or it never saw the guard's mark
    (a decorator above it hid it) and applied less. ``of_class``: a class's guard, which a subclass
    inherits; the hook's choice among the marks it saw (the subclass's, a method's) stands."""
    if not _checked():
        return _unchecked_response(name, policy)
    if mark_hidden(policy, g.get(_ROUTE_ATTR), g.get(_MARKS_ATTR, ()), inherited=of_class):
        return _flask_response(hidden_mark_rejection(name, f"@dpop.{policy.mode}"))
    return None


def _guard(view: Callable[..., Any], policy: Route, *, of_class: bool = False) -> Callable[..., Any]:
    """``view`` wrapped so that it runs only for a request our ``before_request`` hook dealt with.

    Which policy applies stays the hook's decision (the most specific mark wins, see
    :func:`_view_marks`); the guard only makes sure there was a hook, so a decorator can never be
    the one thing standing between a request and a view while doing nothing.
    """
    name = getattr(view, "__qualname__", repr(view))
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            refusal = _refusal(name, _marked(guarded_async) or policy, of_class=of_class)
            if refusal is not None:
                return refusal
            return await view(*args, **kwargs)

        return guarded_async

    # The mark the guard carries now: marking the view again supersedes the one it was made for.
    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        refusal = _refusal(name, _marked(guarded) or policy, of_class=of_class)
        if refusal is not None:
            return refusal
        return view(*args, **kwargs)

    return guarded


def _mark(view: F, policy: Route) -> F:
    if isinstance(view, str) or not callable(view):
        raise TypeError("decorate a view function; pass scopes by keyword: @dpop.required(scopes=[...])")
    if policy.exempt:
        setattr(view, _POLICY_ATTR, policy)
        return view
    if isinstance(view, type):
        setattr(view, _POLICY_ATTR, policy)
        decorators = getattr(view, "decorators", None)
        if isinstance(decorators, list):
            # flask.views.View: as_view() applies ``decorators``, outermost last.
            view.decorators = [*decorators, lambda fn: _guard(fn, policy, of_class=True)]  # type: ignore[attr-defined]
        return view
    guarded = _guard(view, policy)
    setattr(guarded, _POLICY_ATTR, policy)
    # Marked as well: with ``@dpop.required`` above ``@app.route`` the original is what is registered.
    setattr(view, _POLICY_ATTR, policy)
    return guarded  # type: ignore[return-value]


# -- configuration -------------------------------------------------------------------------------


def _read_config(app: Flask) -> dict[str, Any]:
    """Every ``DPOP_*`` key of ``app.config``, type-checked and coerced, under canonical names."""
    raw: dict[str, Any] = {}
    for key, value in app.config.items():
        if not key.startswith("DPOP_"):
            continue
        name = key[len("DPOP_") :].lower()
        if _spell(name) != key:  # Flask config keys are upper-case; a near miss must not pass silently
            raise SettingsError(key, f"is not a setting; did you mean {_spell(name)}?", name=name)
        raw[name] = value
    return read_settings(raw, spell=_spell, accepted=_ACCEPTED)


def _verifier(app: Flask, values: Mapping[str, Any], given: DPoPVerifier | None) -> DPoPVerifier:
    verifier_values = {name: value for name, value in values.items() if name in _VERIFIER_NAMES}
    if given is not None:
        if not isinstance(given, DPoPVerifier):
            raise TypeError(f"DPoP(verifier=...) must be a DPoPVerifier, not {type(given).__name__}")
        clashing = sorted(_spell(name) for name in verifier_values)
        if clashing:
            raise SettingsError(
                clashing[0], f"would be ignored: a verifier is given to DPoP(); remove {', '.join(clashing)}"
            )
        return given
    if "verifier" not in verifier_values and "debug" not in verifier_values and app.debug:
        # Flask's debug mode (FLASK_DEBUG / --debug) explains rejections; DPOP_DEBUG overrides it.
        verifier_values["debug"] = True
    if "public_url" in values and "verifier" not in verifier_values:
        verifier_values["public_url"] = values["public_url"]  # the metadata's default resource
    return build_verifier(verifier_values, spell=_spell, load=import_string)


def _trusted_hosts(app: Flask, values: Mapping[str, Any]) -> list[str] | None:
    """Flask's own ``TRUSTED_HOSTS`` (Flask >= 3.1), when it checks the host our URL is built with.

    Flask refuses a request whose Host is not trusted; reusing the list pins our URL the same way.
    It does not fit when our host comes from ``DPOP_PUBLIC_URL`` or from a forwarded host header
    (Flask checks the Host the proxy sent, not the public one): then ``DPOP_ALLOWED_HOSTS`` decides.
    """
    trusted = app.config.get("TRUSTED_HOSTS")
    if trusted is None or "public_url" in values:
        return None
    if values.get("trusted_proxies") and _HOST_FORWARDING & {h.lower() for h in values.get("trusted_headers", ())}:
        return None
    if isinstance(trusted, str):
        trusted = [trusted]
    if not isinstance(trusted, (list, tuple)) or not all(isinstance(host, str) and host for host in trusted):
        raise SettingsError("TRUSTED_HOSTS", f"must be a list of host names, not {trusted!r}")
    # werkzeug ignores the port of an entry (any port matches); allowed_hosts does that for a bare name.
    return [h.rsplit(":", 1)[0] if h.rfind(":") > h.rfind("]") else h for h in trusted]


def _proxy_settings(app: Flask, values: Mapping[str, Any]) -> ProxySettings:
    allowed = values.get("allowed_hosts")
    if allowed is None:
        allowed = _trusted_hosts(app, values)
    return ProxySettings.create(
        values.get("trusted_proxies"), values.get("public_url"), values.get("trusted_headers"), allowed,
        client_cert_header=values.get("client_cert_header"), client_cert_format=values.get("client_cert_format"),
    )  # fmt: skip


def _routes(app: Flask, values: dict[str, Any]) -> RoutePolicy:
    """The app's route policy; ``DPOP_ENFORCE_ALL``, its former switch, still read (deprecated)."""
    if "enforce_all" in values:
        enforce_all = values.pop("enforce_all")
        if "default" in values:
            raise SettingsError(
                _spell("enforce_all"), f"is deprecated and clashes with {_spell('default')}: keep only the latter"
            )
        # False meant "decorated views only": every other route left alone, as DPOP_DEFAULT = "exempt".
        replacement = "'required' (the default: remove it)" if enforce_all else "'exempt'"
        warnings.warn(
            f"{_spell('enforce_all')} is deprecated: every route now needs DPoP unless a decorator or a path "
            f"rule says otherwise; set {_spell('default')} = {replacement}",
            DeprecationWarning,
            stacklevel=4,
        )
        values["default"] = "required" if enforce_all else "exempt"
    else:
        app.config.setdefault(_spell("default"), values.setdefault("default", "required"))
    return build_route_policy(values, spell=_spell)


def _flask_response(rejection: ErrorResponse) -> Response:
    response: Response = current_app.response_class(
        rejection.body, status=rejection.status, headers=list(rejection.headers), content_type=rejection.content_type
    )
    return response


class DPoP:
    """The Flask extension. ``DPoP(app)``, or ``DPoP()`` then :meth:`init_app` (app factories).

    ``verifier`` (optional) is used instead of building one from ``app.config``; the proxy and
    enforcement settings still come from the config. One ``DPoP`` object may serve several apps;
    each app's state lives in ``app.extensions["dpop"]``.
    """

    def __init__(self, app: Flask | None = None, *, verifier: DPoPVerifier | None = None) -> None:
        self._verifier = verifier
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, verifier: DPoPVerifier | None = None) -> None:
        """Check the ``DPOP_*`` configuration of ``app``, build its verifier, install the hook.

        Every mistake is raised here, at start-up, as a
        :class:`~dpop_middleware.settings.SettingsError` naming the key.
        """
        for key, value in _ADAPTER_DEFAULTS.items():
            app.config.setdefault(key, value)
        values = _read_config(app)  # ``None`` means "not set", so a config template may list every key
        built = _verifier(app, values, verifier or self._verifier)
        try:
            proxy_settings = _proxy_settings(app, values)
        except ValueError as exc:  # combinations the table cannot see (the client certificate's header)
            raise SettingsError(
                "DPOP_CLIENT_CERT_HEADER", f"cannot be used: {exc}", name="client_cert_header"
            ) from None
        problem = client_cert_settings_problem(built.config.certificate_bound_tokens, proxy_settings.client_cert_header)
        if problem is not None:
            raise SettingsError("DPOP_CLIENT_CERT_HEADER", f"cannot be used: {problem}", name="client_cert_header")
        proxy_settings.warn_if_host_unchecked(
            debug=bool(values.get("debug", app.debug)), names="DPOP_PUBLIC_URL or DPOP_ALLOWED_HOSTS"
        )
        first_time = EXTENSION_KEY not in app.extensions
        routes = _routes(app, values)
        metadata = built.published_metadata(routes.path_scopes)
        app.extensions[EXTENSION_KEY] = _AppState(built, proxy_settings, routes, metadata)
        if first_time:  # calling init_app again reconfigures; it must not verify each request twice
            app.before_request(_before_request)

    @property
    def verifier(self) -> DPoPVerifier:
        """The current app's verifier."""
        return _state().verifier

    # -- per-view policy ------------------------------------------------------------------------

    @overload
    def required(self, view: F, /) -> F: ...

    @overload
    def required(self, view: None = None, /, **demands: Unpack[RouteDemands]) -> Callable[[F], F]: ...

    def required(self, view: F | None = None, /, **demands: Unpack[RouteDemands]) -> F | Callable[[F], F]:
        """The view needs a valid DPoP request (and every scope in ``scopes``, if given).

        Use bare (``@dpop.required``) or called (``@dpop.required(scopes=["write"])``).
        ``acr_values``/``max_age``: a step-up demand (RFC 9470), else 401
        ``insufficient_user_authentication``.
        """
        policy = required_route("dpop.required", demands)
        if view is not None:
            return _mark(view, policy)
        return lambda fn: _mark(fn, policy)

    def optional(self, view: F) -> F:
        """Anonymous requests pass (``g.dpop`` is ``None``); sent credentials must still be valid."""
        return _mark(view, Route("optional"))

    def exempt(self, view: F) -> F:
        """Never check this view, whatever the path rules and ``DPOP_DEFAULT`` say."""
        return _mark(view, Route("exempt"))


def _state(app: Flask | None = None) -> _AppState:
    state = (app or current_app).extensions.get(EXTENSION_KEY)
    if not isinstance(state, _AppState):
        raise RuntimeError("DPoP is not initialized for this app: call DPoP(app) or dpop.init_app(app)")
    return state


def _marked(target: object) -> Route | None:
    policy = getattr(target, _POLICY_ATTR, None)
    return policy if isinstance(policy, Route) else None


def _view_marks(view: object, method: str) -> Iterable[object]:
    """Where a policy for ``view`` may be marked, most specific first.

    ``as_view()`` returns a fresh function that only points at its class (``view_class``); the
    class dispatches to ``dispatch_request``, which a ``MethodView`` sends on to the handler named
    after the method (``get`` also serving ``HEAD``). Each of those may carry the decorator.
    """
    view_class = getattr(view, "view_class", None)
    if isinstance(view_class, type):
        name = method.lower()
        handler = getattr(view_class, name, None)
        if handler is None and name == "head":
            handler = getattr(view_class, "get", None)
        yield handler
        yield getattr(view_class, "dispatch_request", None)
    yield view
    yield view_class


@functools.lru_cache(maxsize=4096)
def _view_policies(view: object, method: str) -> tuple[Route, ...]:
    """Every decorator's policy for ``view`` under ``method``, the one that applies first; memoized.

    Decorators run when views are defined, so the answer for a view object never changes; looking
    it up through the class-based-view chain on every request cost microseconds.
    """
    return tuple(p for p in map(_marked, _view_marks(view, method)) if p is not None)


def _policy(state: _AppState, app: Flask, req: Request, request_g: Any) -> Route:
    """The view's decorator (with the path rules' scopes and step-up added), else the route policy for
    the path (its rules, else ``DPOP_DEFAULT``)."""
    # The literal decoded path, as Flask routes it; the route policy also weighs its normalized form.
    by_path = state.routes.decide(req.path)
    endpoint = req.endpoint
    view = app.view_functions.get(endpoint) if endpoint else None
    marks = _view_policies(view, req.method) if view is not None else ()
    setattr(request_g, _MARKS_ATTR, marks)
    return route_of(marks, by_path)


def _before_request() -> Response | None:
    # Resolve the context-local proxies once: each proxy access costs a lookup.
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    req: Request = current_request._get_current_object()  # type: ignore[attr-defined]
    request_g = g._get_current_object()
    request_g.dpop = None
    setattr(request_g, _CHECKED_ATTR, True)
    state = _state(app)
    if state.metadata is not None and state.metadata.serves(req.script_root + req.path):
        # HEAD: werkzeug drops the body itself and keeps the length of the GET answer.
        answer = state.metadata.answer("GET" if req.method == "HEAD" else req.method)
        return app.response_class(answer.body, status=answer.status, headers=list(answer.headers))
    policy = _policy(state, app, req, request_g)
    setattr(request_g, _ROUTE_ATTR, policy)
    if policy.exempt:
        return None
    # A CORS preflight never carries credentials, so it is not challenged; but the view must not run
    # for it either: Flask's own OPTIONS answer (flask-cors adds its headers to it after the request).
    if is_cors_preflight_environ(req.environ):
        return app.make_default_options_response()
    result = authenticate_environ(
        state.verifier,
        req.environ,
        state.proxy_settings,
        required=policy.required,
        scopes=policy.scopes,
        step_up=policy.step_up,
    )
    if result.rejection is not None:
        return _flask_response(result.rejection)
    request_g.dpop = result.principal
    headers = result.response_headers
    if headers:  # a fresh DPoP-Nonce: only then does the response need a hook of its own

        @after_this_request
        def add_headers(response: Response) -> Response:
            for name, value in headers:
                response.headers.add(name, value)
            return response

    return None
