"""``INSTALLED_APPS`` entry ``"dpop_middleware.django"``: makes ``manage.py check`` run our checks."""

from __future__ import annotations

from django.apps import AppConfig


class DPoPConfig(AppConfig):  # type: ignore[misc]
    """The app config; its label is ``dpop_middleware`` (the prefix of the check ids)."""

    name = "dpop_middleware.django"
    label = "dpop_middleware"
    verbose_name = "DPoP"
    default = True

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registering is the import's side effect
