"""DPoP for Flask: the :class:`DPoP` extension.

::

    from flask import Flask
    from dpop_middleware.flask import DPoP, current_dpop

    app = Flask(__name__)
    app.config.update(DPOP_ISSUER="https://issuer.example", DPOP_AUDIENCE="https://api.example",
                      DPOP_JWKS=jwks_dict)
    dpop = DPoP(app)                      # or: dpop = DPoP(); dpop.init_app(app)

    @app.get("/me")
    @dpop.required                        # or @dpop.required(scopes=["read"])
    def me():
        return {"sub": current_dpop.subject, "jkt": current_dpop.jkt}

Per view: ``@dpop.required`` / ``@dpop.required(scopes=...)``, ``@dpop.optional`` (anonymous
requests pass with ``g.dpop = None``; credentials, when sent, must be valid) and ``@dpop.exempt``.
The decorators only mark the view, so their order relative to ``@app.route`` does not matter.
With ``DPOP_ENFORCE_ALL = True`` every view without a decorator is ``required``, except paths in
``DPOP_EXEMPT_PATHS``; a view's own decorator always wins over the path rules.

Class-based views (``flask.views.View`` / ``MethodView``): decorate the class, or its handler
methods (``get``, ``post``, ... or ``dispatch_request``), or the function ``as_view()`` returns.
The most specific mark wins: the handler for the request's method (``get`` also serves ``HEAD``
when there is no ``head``), then ``dispatch_request``, then the view function, then the class::

    @dpop.required(scopes=["items:read"])
    class Items(MethodView):
        def get(self): ...

        @dpop.required(scopes=["items:write"])
        def post(self): ...

The principal (:class:`~dpop_middleware.DPoPPrincipal`) is in ``g.dpop`` and behind the
``current_dpop`` proxy (falsy when there is none). Rejections are the core's exact challenge
responses; a fresh ``DPoP-Nonce`` is added to successful responses.

Configuration (read once, in :meth:`DPoP.init_app`)
---------------------------------------------------
``DPOP_VERIFIER``            a ready :class:`~dpop_middleware.DPoPVerifier` (then no other verifier key)
``DPOP_TOKEN_VALIDATOR``     any token validator; or the three keys below for JWT access tokens
``DPOP_ISSUER``, ``DPOP_AUDIENCE``, ``DPOP_JWKS``   issuer, audience(s), JWKS (dict or JSON)
``DPOP_REPLAY_STORE``        replay store (default: in-memory, per process)
``DPOP_ON_OUTCOME``          metrics hook, see :class:`~dpop_middleware.verifier.Outcome`
``DPOP_<OPTION>``            every :class:`~dpop_middleware.VerifierConfig` option: ``DPOP_MODE``,
                             ``DPOP_NONCE_POLICY``, ``DPOP_NONCE_KEYRING`` (a keyring or a
                             ``{kid: secret}`` dict), ``DPOP_ALGORITHMS``, ``DPOP_MAX_AGE``, ...
``DPOP_TRUSTED_PROXIES``     addresses / CIDR blocks whose forwarded headers count (default none)
``DPOP_TRUSTED_HEADERS``     forwarding headers believed from those proxies (default
                             ``["X-Forwarded-For", "X-Forwarded-Proto"]``); add ``X-Forwarded-Host``,
                             ``-Port``, ``-Prefix`` or ``Forwarded`` only if your proxy sets them
``DPOP_PUBLIC_URL``          the public base URL, overriding Host and forwarded headers
``DPOP_ENFORCE_ALL``         require DPoP on every view without a decorator (default ``False``)
``DPOP_EXEMPT_PATHS``        paths (and everything below them, by whole segments) left alone by
                             ``DPOP_ENFORCE_ALL``; add ``/static`` there if the app serves public files

An unknown ``DPOP_*`` key is an error: a typo in a security setting must not pass silently.

Proxies: ProxyFix or ``DPOP_TRUSTED_PROXIES``, not both
-------------------------------------------------------
If the app is wrapped in werkzeug's ``ProxyFix``, Flask's environ already holds the client's scheme,
host and prefix, and the extension uses them as they are: ``DPOP_TRUSTED_PROXIES`` is then ignored
(with a warning), because applying the forwarded headers a second time would double the prefix.
Either keeps the proxy trust decision in one place; prefer ``DPOP_TRUSTED_PROXIES`` (it checks the
peer address against a CIDR list and walks multi-hop chains from the right) unless the rest of the
app needs ProxyFix anyway. Like ProxyFix's defaults, only ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are believed unless ``DPOP_TRUSTED_HEADERS`` says otherwise: a header your
proxy passes through unchanged is whatever the client put there. See :mod:`dpop_middleware.wsgi`
for how the URL is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from flask import Flask, Request, Response, after_this_request, current_app, g, request
from werkzeug.local import LocalProxy

from .core.binding import DPoPPrincipal
from .core.challenge import ErrorResponse
from .core.config import VerifierConfig
from .core.nonce import NonceKeyring
from .core.origin import ProxySettings
from .core.paths import PathRules
from .tokens.jwt import JWTAccessTokenValidator
from .verifier import DPoPVerifier
from .wsgi import authenticate_environ

__all__ = ["DPoP", "current_dpop"]

F = TypeVar("F", bound=Callable[..., Any])

EXTENSION_KEY = "dpop"
_POLICY_ATTR = "_dpop_policy"

_ADAPTER_DEFAULTS: dict[str, Any] = {
    "DPOP_TRUSTED_PROXIES": (),
    "DPOP_TRUSTED_HEADERS": None,
    "DPOP_PUBLIC_URL": None,
    "DPOP_ENFORCE_ALL": False,
    "DPOP_EXEMPT_PATHS": (),
}
_VERIFIER_KEYS = frozenset(
    {
        "DPOP_VERIFIER",
        "DPOP_TOKEN_VALIDATOR",
        "DPOP_ISSUER",
        "DPOP_AUDIENCE",
        "DPOP_JWKS",
        "DPOP_REPLAY_STORE",
        "DPOP_ON_OUTCOME",
    }
)
_OPTION_KEYS = {f"DPOP_{name.upper()}": name for name in VerifierConfig.__dataclass_fields__}


def _current_principal() -> DPoPPrincipal | None:
    principal = g.get("dpop")
    return principal if isinstance(principal, DPoPPrincipal) else None


#: The request's :class:`~dpop_middleware.DPoPPrincipal`; falsy when the request has none.
current_dpop: LocalProxy[DPoPPrincipal | None] = LocalProxy(_current_principal)


@dataclass(frozen=True)
class _ViewPolicy:
    required: bool
    exempt: bool = False
    scopes: tuple[str, ...] = ()


_ENFORCED = _ViewPolicy(required=True)  # DPOP_ENFORCE_ALL on a view without its own decorator


@dataclass(frozen=True)
class _AppState:
    verifier: DPoPVerifier
    proxy_settings: ProxySettings
    enforce_all: bool
    path_rules: PathRules


def _scope_tuple(scopes: Iterable[str] | str) -> tuple[str, ...]:
    return tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes)


def _mark(view: F, policy: _ViewPolicy) -> F:
    if isinstance(view, str) or not callable(view):
        raise TypeError("decorate a view function; pass scopes by keyword: @dpop.required(scopes=[...])")
    setattr(view, _POLICY_ATTR, policy)
    return view


def _verifier_options(config: Mapping[str, Any]) -> dict[str, Any]:
    options = {name: config[key] for key, name in _OPTION_KEYS.items() if key in config}
    keyring = options.get("nonce_keyring")
    if isinstance(keyring, Mapping):
        options["nonce_keyring"] = NonceKeyring(keyring)
    return options


def _token_validator(config: Mapping[str, Any]) -> Any:
    validator = config.get("DPOP_TOKEN_VALIDATOR")
    if validator is not None:
        return validator
    issuer, audience, jwks = (config.get(k) for k in ("DPOP_ISSUER", "DPOP_AUDIENCE", "DPOP_JWKS"))
    if not (issuer and audience and jwks):
        raise ValueError("configure DPOP_TOKEN_VALIDATOR, or DPOP_ISSUER, DPOP_AUDIENCE and DPOP_JWKS")
    if isinstance(jwks, str) and jwks.lstrip().startswith("http"):
        raise ValueError("DPOP_JWKS holds keys (dict or JSON); for a JWKS URL set DPOP_TOKEN_VALIDATOR instead")
    return JWTAccessTokenValidator(issuer=issuer, audience=audience, jwks=jwks)


def _build_verifier(config: Mapping[str, Any], given: DPoPVerifier | None) -> DPoPVerifier:
    verifier = given or config.get("DPOP_VERIFIER")
    options = _verifier_options(config)
    if verifier is not None:
        clashing = sorted(k for k in config if k in _OPTION_KEYS or (k in _VERIFIER_KEYS and k != "DPOP_VERIFIER"))
        if clashing:
            raise ValueError(f"a DPoPVerifier is given; configure it directly instead of {clashing}")
        if not isinstance(verifier, DPoPVerifier):
            raise TypeError("DPOP_VERIFIER must be a DPoPVerifier")
        return verifier
    return DPoPVerifier(
        _token_validator(config),
        replay_store=config.get("DPOP_REPLAY_STORE"),
        on_outcome=config.get("DPOP_ON_OUTCOME"),
        config=VerifierConfig.from_mapping(options),
    )


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
        """Read the ``DPOP_*`` configuration of ``app``, build its verifier, install the hooks."""
        for key, value in _ADAPTER_DEFAULTS.items():
            app.config.setdefault(key, value)
        known = _VERIFIER_KEYS | _OPTION_KEYS.keys() | _ADAPTER_DEFAULTS.keys()
        unknown = sorted(k for k in app.config if k.startswith("DPOP_") and k not in known)
        if unknown:
            raise ValueError(f"unknown DPoP settings: {unknown}")
        # ``None`` means "not set", so a config template may list every key.
        config = {
            k: v
            for k, v in app.config.items()
            if k.startswith("DPOP_") and k not in _ADAPTER_DEFAULTS and v is not None
        }
        first_time = EXTENSION_KEY not in app.extensions
        app.extensions[EXTENSION_KEY] = _AppState(
            verifier=_build_verifier(config, verifier or self._verifier),
            proxy_settings=ProxySettings.create(
                app.config["DPOP_TRUSTED_PROXIES"], app.config["DPOP_PUBLIC_URL"], app.config["DPOP_TRUSTED_HEADERS"]
            ),
            enforce_all=bool(app.config["DPOP_ENFORCE_ALL"]),
            path_rules=PathRules.create(exempt_paths=app.config["DPOP_EXEMPT_PATHS"]),
        )
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
    def required(self, view: None = None, /, *, scopes: Iterable[str] | str = ()) -> Callable[[F], F]: ...

    def required(self, view: F | None = None, /, *, scopes: Iterable[str] | str = ()) -> F | Callable[[F], F]:
        """The view needs a valid DPoP request (and every scope in ``scopes``, if given).

        Use bare (``@dpop.required``) or called (``@dpop.required(scopes=["write"])``).
        """
        policy = _ViewPolicy(required=True, scopes=_scope_tuple(scopes))
        if view is not None:
            return _mark(view, policy)
        return lambda fn: _mark(fn, policy)

    def optional(self, view: F) -> F:
        """Anonymous requests pass (``g.dpop`` is ``None``); sent credentials must still be valid."""
        return _mark(view, _ViewPolicy(required=False))

    def exempt(self, view: F) -> F:
        """Never check this view, even under ``DPOP_ENFORCE_ALL``."""
        return _mark(view, _ViewPolicy(required=False, exempt=True))


def _state(app: Flask | None = None) -> _AppState:
    state = (app or current_app).extensions.get(EXTENSION_KEY)
    if not isinstance(state, _AppState):
        raise RuntimeError("DPoP is not initialized for this app: call DPoP(app) or dpop.init_app(app)")
    return state


def _marked(target: object) -> _ViewPolicy | None:
    policy = getattr(target, _POLICY_ATTR, None)
    return policy if isinstance(policy, _ViewPolicy) else None


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


_UNMARKED = _ViewPolicy(required=False)  # memo value: the view carries no decorator of ours
_MARKS_MEMO: dict[tuple[object, str], _ViewPolicy] = {}
_MARKS_MEMO_SIZE = 4096


def _view_policy(view: object, method: str) -> _ViewPolicy:
    """The decorator's policy for ``view`` under ``method`` (or ``_UNMARKED``), memoized.

    Decorators run when views are defined, so the answer for a view object never changes; looking
    it up through the class-based-view chain on every request cost microseconds.
    """
    key = (view, method)
    policy = _MARKS_MEMO.get(key)
    if policy is None:
        policy = next((p for p in map(_marked, _view_marks(view, method)) if p is not None), _UNMARKED)
        if len(_MARKS_MEMO) >= _MARKS_MEMO_SIZE:
            _MARKS_MEMO.clear()
        _MARKS_MEMO[key] = policy
    return policy


def _policy(state: _AppState, app: Flask, req: Request) -> _ViewPolicy | None:
    endpoint = req.endpoint
    view = app.view_functions.get(endpoint) if endpoint else None
    if view is not None:
        policy = _view_policy(view, req.method)
        if policy is not _UNMARKED:
            return policy
    # The literal decoded path, as Flask routes it; PathRules also weighs its normalized form.
    if state.enforce_all and not state.path_rules.decide(req.path)[0]:
        return _ENFORCED
    return None


def _before_request() -> Response | None:
    # Resolve the context-local proxies once: each proxy access costs a lookup.
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    request_g = g._get_current_object()
    request_g.dpop = None
    state = _state(app)
    policy = _policy(state, app, req)
    if policy is None or policy.exempt:
        return None
    result = authenticate_environ(
        state.verifier, req.environ, state.proxy_settings, required=policy.required, scopes=policy.scopes
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
