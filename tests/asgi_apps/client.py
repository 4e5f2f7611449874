"""Starlette's TestClient, imported once with its "use httpx2" deprecation notice silenced.

httpx2 is not part of our test environment; the notice says nothing about the code under test.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from starlette.testclient import TestClient, WebSocketDenialResponse

__all__ = ["TestClient", "WebSocketDenialResponse"]
