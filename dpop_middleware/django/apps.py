"""``INSTALLED_APPS`` entry ``"dpop_middleware.django"``: runs our checks, validates ``DPOP`` at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class DPoPConfig(AppConfig):  # type: ignore[misc]
    """The app config; its label is ``dpop_middleware`` (the prefix of the check ids)."""

    name = "dpop_middleware.django"
    label = "dpop_middleware"
    verbose_name = "DPoP"
    default = True

    def ready(self) -> None:
        """Build the state from ``settings.DPOP`` now, so a bad setting stops the server at start-up.

        Raises ``ImproperlyConfigured`` naming the key (gunicorn then fails to boot instead of
        answering 500 per request); building also says once what the verifier warns about
        (``report_only``, a random nonce key). An empty or absent ``DPOP`` is left to the system
        check ``dpop_middleware.E002``, so that ``settings.DPOP`` may be filled in later (tests).
        """
        from . import checks  # noqa: F401 - registering is the import's side effect
        from .conf import get_state, raw_settings

        if raw_settings():
            get_state()
