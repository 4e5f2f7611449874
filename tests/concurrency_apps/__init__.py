"""Small real-server apps and helpers for the multi-worker, concurrency and fault tests.

Each app module exposes ``app`` (WSGI or ASGI) built from ``DPOP_TEST_*`` environment variables
(see :mod:`concurrency_apps.config`), answers ``/protected`` through the verifier and ``/health``
without it, and stamps every response with ``X-Worker-Pid`` so a test can see which worker served it.
"""
