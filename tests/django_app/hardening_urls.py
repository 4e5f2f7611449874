"""A URLconf with catch-all routes, for the path-rule regressions in ``test_django_hardening``.

Django routes the literal ``path_info``: ``/admin/../public`` reaches ``admin`` and
``/public/../admin`` reaches ``public_tree``, whatever a normalizing proxy would make of them.
"""

from adapter_cases import identity
from django.http import HttpRequest, JsonResponse
from django.urls import path

from dpop_middleware.django import dpop_required


def public(request: HttpRequest, rest: str = "") -> JsonResponse:
    return JsonResponse({"public": True, **identity(request.dpop)})  # type: ignore[attr-defined]


def admin(request: HttpRequest, rest: str) -> JsonResponse:
    return JsonResponse({"admin": True, **identity(request.dpop)})  # type: ignore[attr-defined]


@dpop_required(scopes=["admin"])
def scoped_admin(request: HttpRequest, rest: str) -> JsonResponse:
    return JsonResponse({"admin": True, **identity(request.dpop)})  # type: ignore[attr-defined]


urlpatterns = [
    path("public", public),
    path("public/<path:rest>", public),
    path("admin/<path:rest>", admin),
    path("scoped-admin/<path:rest>", scoped_admin),
]
