"""The apps ``bench/e2e.py`` runs under real servers: one tiny JSON endpoint per framework.

Every app answers ``GET /items`` with the same small JSON body and is configured from environment
variables (see :mod:`.common`): ``BENCH_MODE=none`` leaves the DPoP layer out entirely, ``protected``
puts the framework's adapter in front of the endpoint with the replay store named by ``BENCH_STORE``
(``memory`` or a ``redis://`` URL). The apps are imported by ``uvicorn``/``gunicorn`` with ``bench/``
on ``PYTHONPATH``.
"""
