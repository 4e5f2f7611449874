"""Django integration: ``DPoPMiddleware``, per-view decorators, system checks, DRF support.

Configured by one dict, ``settings.DPOP``, validated when the app is ready; views read
``request.dpop`` (the :class:`~dpop_middleware.DPoPPrincipal`, or ``None``). The guide, with every
setting, the decorators, DRF, proxies and ``htu``, CSRF and the checks, is ``docs/django.md``.
"""

from ..extras import require_extra

require_extra("django", "the Django adapter needs Django (and [drf] Django REST framework)", "django")

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
