"""The replay store the Django project loads by dotted path (``DPOP["REPLAY_STORE"]``).

``BENCH_DJANGO_ASYNC=1`` (set for the ASGI server) picks the asyncio Redis client, so the async
middleware never blocks the event loop on a store call.
"""

from __future__ import annotations

import os

from e2e_apps.common import replay_store

store = replay_store(asynchronous=os.environ.get("BENCH_DJANGO_ASYNC") == "1")
