"""Django integration: ``DPoPMiddleware``, per-view decorators, system checks, DRF support.

Quick start::

    INSTALLED_APPS = [..., "dpop_middleware.django"]          # system checks
    MIDDLEWARE = [..., "dpop_middleware.django.DPoPMiddleware", ...]  # after Cors, before Csrf
    DPOP = {
        "ISSUER": "https://as.example.com",
        "AUDIENCE": "https://api.example.com",
        "JWKS": {...},                      # or "TOKEN_VALIDATOR": "myproject.auth.validator"
        "REPLAY_STORE": "django-cache",     # the project's cache (Redis/memcached) across workers
        "EXEMPT_PATHS": [r"^/health$"],
    }

Views read ``request.dpop``: the :class:`~dpop_middleware.DPoPPrincipal`, or ``None``.

Settings: one dict, ``settings.DPOP`` (read through :mod:`.conf`, so ``override_settings`` works),
validated when the app is ready: every key is type-checked (:mod:`dpop_middleware.settings`), and a
bad one stops the server at start-up with ``ImproperlyConfigured`` naming the key, the expected
type and the valid choices. The table of every key, with types and defaults, is in
``docs/django.md``. The main ones: ``VERIFIER``, or ``TOKEN_VALIDATOR``, or ``ISSUER`` +
``AUDIENCE`` + ``JWKS``; ``REPLAY_STORE`` (``"memory"``, ``"django-cache"``, an object or a dotted
path); ``MODE``; ``TRUSTED_PROXIES``/``TRUSTED_HEADERS``/``PUBLIC_URL``; ``DEFAULT`` and
``REQUIRED_PATHS``/``OPTIONAL_PATHS``/``EXEMPT_PATHS``; ``DEBUG`` (default: Django's ``DEBUG``).

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

CSRF: a request whose DPoP proof verified is exempt from ``CsrfViewMiddleware`` (a browser never
attaches a proof, so it cannot be forged cross-site); any other request is still checked. Put
``DPoPMiddleware`` before ``CsrfViewMiddleware``; ``@dpop_required``/``@dpop_optional`` views work in
either order. For DRF, see :mod:`dpop_middleware.django.drf`; for the Django-cache replay store,
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
