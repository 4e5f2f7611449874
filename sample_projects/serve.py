"""Run a sample with a production server: gunicorn for WSGI apps, uvicorn for ASGI apps.

One process, one worker: the default replay store and nonce key live in the process's memory, so
a second worker would neither see the first one's proofs nor accept its nonces. To run several
workers, set ``DPOP_REPLAY_STORE=redis://...`` and ``DPOP_NONCE_SECRET`` (see
:mod:`sample_projects.common`) and start the server yourself, e.g.
``gunicorn -w 4 'sample_projects.flask_api.app:create_app()'``.

Without gunicorn (Windows, or a minimal install) WSGI apps fall back to the standard library's
threaded ``wsgiref`` server, which is fine for a demo and nothing else.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["serve_asgi", "serve_wsgi"]

WSGIApp = Callable[..., Any]


def serve_wsgi(app: WSGIApp, host: str, port: int) -> None:
    """Serve ``app`` until the process is stopped (SIGTERM / Ctrl-C)."""
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        _serve_wsgiref(app, host, port)
        return

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        # gunicorn's documented way to embed it: options in code, no command line parsing.
        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "workers": 1,
                "threads": 4,
                "accesslog": None,
                "loglevel": "warning",
                "graceful_timeout": 2,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> WSGIApp:
            return app

    _Gunicorn().run()


def _serve_wsgiref(app: WSGIApp, host: str, port: int) -> None:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class _Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    print(f"gunicorn not installed: serving on http://{host}:{port} with wsgiref (demo only)", file=sys.stderr)
    server = make_server(host, port, app, server_class=_Threading, handler_class=_Quiet)
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def serve_asgi(app: Any, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn until the process is stopped."""
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("the ASGI samples need uvicorn: pip install uvicorn") from None
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
