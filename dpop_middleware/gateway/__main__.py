"""``python -m dpop_middleware.gateway``: the same as ``dpop-middleware gateway``."""

from __future__ import annotations

import sys

from .cli import main

raise SystemExit(main(["gateway", *sys.argv[1:]]))
