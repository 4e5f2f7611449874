"""Django integration: ``DPoPMiddleware``, per-view decorators, system checks, DRF support.

Quick start::

    INSTALLED_APPS = [..., "dpop_middleware.django"]          # system checks
    MIDDLEWARE = [..., "dpop_middleware.django.DPoPMiddleware"]  # after CorsMiddleware (preflights)
    DPOP = {
        "ISSUER": "https://as.example.com",
        "AUDIENCE": "https://api.example.com",
        "JWKS": {...},                      # or "TOKEN_VALIDATOR": "myproject.auth.validator"
        "REPLAY_STORE": "django-cache",     # the project's cache (Redis/memcached) across workers
        "EXEMPT_PATHS": [r"^/health$"],
    }

Views read ``request.dpop``: the :class:`~dpop_middleware.DPoPPrincipal`, or ``None``.

Settings: one dict, ``settings.DPOP`` (read through :mod:`.conf`, so ``override_settings`` works).

==================== ===================================================================================
Key                  Meaning (default)
==================== ===================================================================================
``VERIFIER``         a ready :class:`~dpop_middleware.DPoPVerifier` or a dotted path to one; then none of
                     the token, store and verifier keys below may be given
``TOKEN_VALIDATOR``  validator object, or dotted path to one (a class is instantiated without arguments)
``ISSUER``           with ``AUDIENCE`` and ``JWKS`` (a dict or JSON string): build a
``AUDIENCE``         :class:`~dpop_middleware.JWTAccessTokenValidator` instead of ``TOKEN_VALIDATOR``
``JWKS``
``REPLAY_STORE``     ``"memory"`` (default; per process), ``"django-cache"`` (``cache.add`` on the cache
                     ``REPLAY_CACHE_ALIAS``, default ``"default"``; keys prefixed ``REPLAY_KEY_PREFIX``,
                     default ``"dpop:jti:"``), or a store object / dotted path (a class is instantiated)
``ON_OUTCOME``       metrics hook (callable or dotted path) called with each ``Outcome``
``TRUSTED_PROXIES``  addresses/CIDR blocks of reverse proxies whose forwarding headers count (``[]``)
``TRUSTED_HEADERS``  the forwarding headers believed from them (``["X-Forwarded-For",
                     "X-Forwarded-Proto"]``); add ``X-Forwarded-Host``/``-Port``/``-Prefix`` or
                     ``Forwarded`` only if your proxies set them on every request
``PUBLIC_URL``       the public base URL (``https://api.example.com/prefix``); overrides everything else
``DEFAULT``          policy of routes without a decorator or path rule: ``"required"`` (default:
                     app-wide enforcement), ``"optional"`` or ``"exempt"`` (opt-in: only views marked
                     ``@dpop_required`` and ``REQUIRED_PATHS`` are checked)
``REQUIRED_PATHS``   regexes matched (``re.match``) against ``request.path_info`` (below the mount
``OPTIONAL_PATHS``   point); the first matching rule wins, strictest list first: required, optional,
``EXEMPT_PATHS``     exempt. A path with dot segments gets the stricter policy of its literal and
                     normalized readings. A view decorator wins over every path rule.
``DRF_USER``         DRF only: callable / dotted path turning a principal into ``request.user``
``ALGORITHMS``,      every :class:`~dpop_middleware.VerifierConfig` option, upper-cased: ``MODE``
``MODE``, ...        (``"required"``, ``"allow_bearer"``, ``"report_only"``), ``MAX_AGE``,
                     ``CLOCK_SKEW``, ``MAX_PROOF_BYTES``, ``MAX_TOKEN_BYTES``, ``MAX_JTI_LENGTH``,
                     ``MIN_RSA_BITS``, ``NONCE_POLICY``, ``NONCE_KEYRING`` (a ``NonceKeyring`` or a dict
                     ``{kid: secret}``), ``TOKEN_CACHE_SIZE``, ``TOKEN_CACHE_MAX_TTL``
==================== ===================================================================================

Policies per view: ``@dpop_required(scopes=[...])``, ``@dpop_optional`` and ``@dpop_exempt``
(:mod:`.decorators`). A rejection is the core's response verbatim (status, ``WWW-Authenticate``,
``DPoP-Nonce``, ``Cache-Control: no-store``); Django keeps one value per header, so several
challenges share one comma-separated ``WWW-Authenticate`` line (RFC 9110 §11.6.1).

The URL the client used (``htu``), and how Django's settings meet ``TRUSTED_PROXIES``:

1. Django's own view comes first. ``request.scheme`` honours ``SECURE_PROXY_SSL_HEADER`` and
   ``request.get_host()`` honours ``USE_X_FORWARDED_HOST``/``USE_X_FORWARDED_PORT`` (and rejects
   hosts outside ``ALLOWED_HOSTS``: 400 ``invalid_request`` with a challenge). Those settings tell
   Django to believe the headers from *any* peer: enable them only when every request passes
   through a proxy that overwrites them. The mount prefix is Django's script name
   (``SCRIPT_NAME`` / ASGI ``root_path``, or ``FORCE_SCRIPT_NAME``).
2. Then ``TRUSTED_PROXIES``: only when the immediate peer (``REMOTE_ADDR``) is in the list do
   forwarding headers count, and only those in ``TRUSTED_HEADERS`` (by default
   ``X-Forwarded-For`` and ``X-Forwarded-Proto``; ``Forwarded`` and ``X-Forwarded-Host/Port/Prefix``
   must be listed), read right to left past the trusted hops (:mod:`dpop_middleware.core.origin`).
   What they say overrides step 1. List a header only if your proxy *sets* it: one it merely
   passes through is whatever the client sent.
3. ``PUBLIC_URL`` set: it overrides both (``PUBLIC_URL`` + path below the mount point).

Prefer one mechanism: ``TRUSTED_PROXIES`` (peer-checked) or ``PUBLIC_URL``. Your server may also
rewrite these values before Django sees them: gunicorn believes ``X-Forwarded-Proto`` from
``--forwarded-allow-ips`` (default ``127.0.0.1``), uvicorn rewrites the client address and scheme
unless run with ``--no-proxy-headers``; configure them consistently with ``TRUSTED_PROXIES``.

DPoP APIs are not cookie-authenticated: exempt their views from CSRF (``csrf_exempt``; DRF views
already are). For DRF, see :mod:`dpop_middleware.django.drf`; for the Django-cache replay store,
:mod:`dpop_middleware.django.cache_store`; for the system checks, :mod:`dpop_middleware.django.checks`.
"""

from . import checks as _checks  # registers the system checks
from .cache_store import DjangoCacheReplayStore
from .conf import get_verifier
from .decorators import dpop_exempt, dpop_optional, dpop_required
from .middleware import DPoPMiddleware

__all__ = [
    "DPoPMiddleware",
    "DjangoCacheReplayStore",
    "dpop_exempt",
    "dpop_optional",
    "dpop_required",
    "get_verifier",
]

del _checks
