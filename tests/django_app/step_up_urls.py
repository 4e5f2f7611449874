"""Routes for the step-up seams of the Django adapter (tests/test_step_up_seams.py)."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views import View
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from dpop_middleware.django import dpop_exempt, dpop_optional, dpop_required


def no_wraps(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator that does not use functools.wraps: it hides whatever the view was marked with."""

    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return view(request, *args, **kwargs)

    return wrapper


def _identity(request: HttpRequest) -> JsonResponse:
    principal = getattr(request, "dpop", None)
    return JsonResponse({"sub": principal.subject if principal else None})


def _view() -> Callable[..., Any]:
    """A view function of its own: a mark is an attribute of the function it decorates."""

    def view(request: HttpRequest) -> JsonResponse:
        return _identity(request)

    return view


hidden_step_up = no_wraps(dpop_required(acr_values="urn:mfa")(_view()))
hidden_scopes = no_wraps(dpop_required(scopes="write")(_view()))
admin_bare = dpop_required(_view())
admin_exempt = dpop_exempt(_view())


class DRFUnmarked(APIView):
    def get(self, request: Request) -> Response:
        return Response({"sub": request.auth.subject if request.auth else None})


# A subclass's mark, and a second mark on a marked function, supersede the first (no wiring error).
@dpop_required(scopes="admin")
class AdminOnly(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return _identity(request)


@dpop_optional
class AnyoneChild(AdminOnly):
    pass


@dpop_required(scopes="other")
class OtherChild(AdminOnly):
    pass


def _library_view() -> Any:
    return dpop_required(scopes="admin")(_view())


remarked_optional = dpop_optional(_library_view())
remarked_other = dpop_required(scopes="other")(_library_view())


@dpop_exempt
class PublicBase(APIView):
    def get(self, request: Request) -> Response:
        return Response({"sub": request.auth.subject if request.auth else None})


@dpop_required
class DRFRequired(APIView):
    def get(self, request: Request) -> Response:
        return Response({"sub": request.auth.subject if request.auth else None})


class SecretChild(PublicBase):
    dpop_scopes = ["admin"]  # demands, whatever the inherited exempt mark says


@dpop_optional
class OptionalViewSet(ViewSet):
    authentication_classes: list[Any] = []  # the middleware alone decides
    permission_classes: list[Any] = []

    def list(self, request: Request) -> Response:
        return Response({"sub": request.auth.subject if request.auth else None})


@dpop_required(scopes="write")
class WriteViewSet(OptionalViewSet):
    pass


router = SimpleRouter()
router.register("vs-optional", OptionalViewSet, basename="vs-optional")
router.register("vs-write", WriteViewSet, basename="vs-write")

urlpatterns = [
    path("cbv/anyone", AnyoneChild.as_view()),
    path("cbv/other", OtherChild.as_view()),
    path("fn/optional", remarked_optional),
    path("fn/other", remarked_other),
    path("drf/secret", SecretChild.as_view()),
    path("drf/required", DRFRequired.as_view()),
    path("", include(router.urls)),
    path("hidden-step-up", hidden_step_up),
    path("hidden-scopes", hidden_scopes),
    path("admin/bare", admin_bare),
    path("admin/exempt", admin_exempt),
    path("admin/drf", DRFUnmarked.as_view()),
    path("open/drf", DRFUnmarked.as_view()),
]
