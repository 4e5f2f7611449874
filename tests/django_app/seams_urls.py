"""Routes for the issue 19 seams tests of the Django adapter (tests/test_seams_django_*.py)."""

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views import View
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dpop_middleware.django import dpop_optional, dpop_required
from dpop_middleware.django.drf import DPoPAuthentication, DPoPRequired


class ToyBearerAuthentication(BaseAuthentication):  # type: ignore[misc]
    """Accepts any Bearer token: the kind of class a project may keep after ours."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Bearer "):
            return "toy-user", "toy-token"
        return None


class BearerElsewhere(DPoPAuthentication):
    bearer_elsewhere = True


class DRFWithToyBearer(APIView):
    authentication_classes = [DPoPAuthentication, ToyBearerAuthentication]
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"user": str(request.user), "auth": str(request.auth)})


class DRFWithToyBearerOptIn(DRFWithToyBearer):
    authentication_classes = [BearerElsewhere, ToyBearerAuthentication]


class DRFDeclaresScopes(APIView):
    """Scopes declared, no DPoPRequired permission: DPoPAuthentication enforces them."""

    permission_classes = [AllowAny]
    dpop_scopes = ["write"]

    def get(self, request: Request) -> Response:
        return Response({"sub": getattr(request.auth, "subject", None)})


@dpop_required(scopes=["write"])
class DRFDecoratedScopes(DRFDeclaresScopes):
    dpop_scopes: list[str] = []


class DRFRequired(APIView):
    """DPoP authentication and DPoPRequired: the ordinary protected DRF view."""

    authentication_classes = [DPoPAuthentication]
    permission_classes = [DPoPRequired]

    def get(self, request: Request) -> Response:
        return Response({"secret": True})


class DRFPermissionOnly(APIView):
    """DPoPRequired as permission, but no DPoP authentication class."""

    authentication_classes: list[Any] = []
    permission_classes = [DPoPRequired]

    def get(self, request: Request) -> Response:
        return Response({"ran": True})


@dpop_required(scopes=["notes:write"])
def create_note(request: HttpRequest) -> JsonResponse:
    """The README's example, a plain Django view receiving POSTs."""
    return JsonResponse({"sub": request.dpop.subject, "jkt": request.dpop.jkt})  # type: ignore[attr-defined]


@dpop_required
def report(request: HttpRequest) -> JsonResponse:
    principal = request.dpop  # type: ignore[attr-defined]
    return JsonResponse({"anonymous": principal is None})


@dpop_required
async def async_report(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"anonymous": request.dpop is None})  # type: ignore[attr-defined]


@dpop_optional
def maybe(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"anonymous": request.dpop is None})  # type: ignore[attr-defined]


def undecorated(request: HttpRequest) -> JsonResponse:
    principal = getattr(request, "dpop", None)
    return JsonResponse({"anonymous": principal is None})


@dpop_required
class ClassNote(View):
    def post(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"sub": request.dpop.subject})  # type: ignore[attr-defined]


urlpatterns = [
    path("drf/required", DRFRequired.as_view()),
    path("drf/toy-bearer", DRFWithToyBearer.as_view()),
    path("drf/toy-bearer-opt-in", DRFWithToyBearerOptIn.as_view()),
    path("drf/declares-scopes", DRFDeclaresScopes.as_view()),
    path("drf/decorated-scopes", DRFDecoratedScopes.as_view()),
    path("drf/permission-only", DRFPermissionOnly.as_view()),
    path("notes", create_note),
    path("report", report),
    path("async-report", async_report),
    path("maybe", maybe),
    path("undecorated", undecorated),
    path("class-note", ClassNote.as_view()),
]
