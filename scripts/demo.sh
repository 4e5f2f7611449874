#!/usr/bin/env bash
# The demo on a fresh machine: an issuer and three APIs (Django+DRF, Flask, FastAPI) on loopback,
# a client walking through the DPoP story, a table of what happened. Exit 0 only if every step behaved.
#   bash scripts/demo.sh [--keep-running]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  PY=.venv/bin/python
fi
"$PY" -m pip install -q --upgrade pip >/dev/null
"$PY" -m pip install -q -e . --group demo
exec "$PY" -m sample_projects.demo "$@"
