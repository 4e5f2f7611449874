"""One catch-all view, so that only the route policy of ``settings.DPOP`` decides (tests/test_route_policy.py)."""

from django.http import HttpRequest, JsonResponse
from django.urls import re_path


def anything(request: HttpRequest) -> JsonResponse:
    principal = getattr(request, "dpop", None)
    return JsonResponse({"sub": principal.subject if principal else None})


urlpatterns = [re_path(r"^.*$", anything)]
