"""The API's views (Django REST framework); DPoP is enforced by the middleware and DRF's classes."""

from __future__ import annotations

import itertools
import threading
from typing import Any, ClassVar

from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dpop_middleware.django import dpop_exempt, dpop_required

from ..common import identity

_notes: list[dict[str, Any]] = []
_lock = threading.Lock()
_ids = itertools.count(1)


class NoteSerializer(serializers.Serializer):  # type: ignore[misc]
    text = serializers.CharField(min_length=1, max_length=1000)


class MeView(APIView):  # type: ignore[misc]
    """``GET /api/me``: the identity the DPoP-bound token carries."""

    def get(self, request: Request) -> Response:
        return Response(identity(request.auth))  # request.auth is the DPoPPrincipal


@dpop_required(scopes=["notes:write"])
class NotesView(APIView):  # type: ignore[misc]
    """``POST /api/notes``: needs the ``notes:write`` scope (403 ``insufficient_scope`` otherwise)."""

    def post(self, request: Request) -> Response:
        serializer = NoteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with _lock:
            note = {"id": next(_ids), "text": serializer.validated_data["text"], "author": request.auth.subject}
            _notes.append(note)
        return Response(note, status=status.HTTP_201_CREATED)


@dpop_exempt
class HealthView(APIView):  # type: ignore[misc]
    """``GET /healthz``: open, for load balancers."""

    authentication_classes: ClassVar[list[Any]] = []
    permission_classes: ClassVar[list[Any]] = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})
