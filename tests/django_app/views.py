"""Views of the test project: the four routes of tests/adapter_cases.py, plain Django and DRF."""

from typing import Any

from adapter_cases import STEP_UP, identity
from django.http import HttpRequest, JsonResponse
from django.views import View
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dpop_middleware.django import dpop_exempt, dpop_optional, dpop_required
from dpop_middleware.django.drf import DPoPNonceMixin


def protected(request: HttpRequest) -> JsonResponse:
    return JsonResponse(identity(request.dpop))  # type: ignore[attr-defined]


@dpop_optional
def optional(request: HttpRequest) -> JsonResponse:
    return JsonResponse(identity(request.dpop))  # type: ignore[attr-defined]


@dpop_required(scopes=["write"])
def scoped(request: HttpRequest) -> JsonResponse:
    return JsonResponse(identity(request.dpop))  # type: ignore[attr-defined]


@dpop_required(**STEP_UP)  # type: ignore[arg-type]
def stepped(request: HttpRequest) -> JsonResponse:
    return JsonResponse(identity(request.dpop))  # type: ignore[attr-defined]


@dpop_exempt
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True, "dpop": request.dpop is not None})  # type: ignore[attr-defined]


@dpop_required
async def async_protected(request: HttpRequest) -> JsonResponse:
    return JsonResponse(identity(request.dpop))  # type: ignore[attr-defined]


@dpop_required(scopes="write")
class ScopedClassView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse(identity(request.dpop))  # type: ignore[attr-defined]


def unmarked(request: HttpRequest) -> JsonResponse:
    """No decorator: the path rules and DPOP["DEFAULT"] decide."""
    return JsonResponse(identity(request.dpop))  # type: ignore[attr-defined]


# -- Django REST Framework ------------------------------------------------------------------


class DRFProtected(DPoPNonceMixin, APIView):
    def get(self, request: Request) -> Response:
        return Response(identity(request.auth))

    post = get


@dpop_optional  # for DPoPMiddleware, when installed too; DRF's permission says the same
class DRFOptional(APIView):
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(identity(request.auth))


@dpop_required(scopes=["write"])
class DRFScoped(APIView):
    def get(self, request: Request) -> Response:
        return Response(identity(request.auth))


@dpop_required(**STEP_UP)  # type: ignore[arg-type]
class DRFStepped(APIView):
    def get(self, request: Request) -> Response:
        return Response(identity(request.auth))


@dpop_exempt
class DRFHealth(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class DRFWhoAmI(APIView):
    def get(self, request: Request) -> Response:
        return Response({"user": str(request.user), "authenticated": request.user.is_authenticated})
