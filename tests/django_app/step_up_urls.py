"""Routes for the step-up seams of the Django adapter (tests/test_step_up_seams.py)."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dpop_middleware.django import dpop_exempt, dpop_required


def no_wraps(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator that does not use functools.wraps: it hides whatever the view was marked with."""

    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return view(request, *args, **kwargs)

    return wrapper


def _identity(request: HttpRequest) -> JsonResponse:
    principal = getattr(request, "dpop", None)
    return JsonResponse({"sub": principal.subject if principal else None})


hidden_step_up = no_wraps(dpop_required(acr_values="urn:mfa")(_identity))
hidden_scopes = no_wraps(dpop_required(scopes="write")(_identity))
admin_bare = dpop_required(_identity)
admin_exempt = dpop_exempt(_identity)


class DRFUnmarked(APIView):
    def get(self, request: Request) -> Response:
        return Response({"sub": request.auth.subject if request.auth else None})


urlpatterns = [
    path("hidden-step-up", hidden_step_up),
    path("hidden-scopes", hidden_scopes),
    path("admin/bare", admin_bare),
    path("admin/exempt", admin_exempt),
    path("admin/drf", DRFUnmarked.as_view()),
    path("open/drf", DRFUnmarked.as_view()),
]
