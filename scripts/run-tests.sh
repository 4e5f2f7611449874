#!/usr/bin/env bash
# The one command that runs every check of dpop-middleware on a fresh machine:
#   bash scripts/run-tests.sh [extra pytest arguments]
# It installs what it needs (system packages when run as root, Python packages into .venv),
# then runs ruff, mypy --strict, the strict documentation build and the whole pytest suite (real
# redis-server, uvicorn, gunicorn).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)         # the browser sample's end-to-end test
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)               # mTLS and gateway stories
[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || need_apt+=(libnginx-mod-http-js)  # nginx writing RFC 9440 Client-Cert
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)               # the gateway story
command -v softhsm2-util >/dev/null 2>&1 || need_apt+=(softhsm2)    # PKCS#11 key custody
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing system packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    # The tests start their own servers on loopback ports; keep the packages' services from starting
    # (nginx would take port 80), the usual policy-rc.d for containers, removed afterwards.
    added_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
  else
    echo "missing system packages: ${need_apt[*]} (install them, e.g. apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  PY=.venv/bin/python
fi
echo "== installing Python packages"
"$PY" -m pip install -q --upgrade pip >/dev/null
"$PY" -m pip install -q -e . --group test --group lint --group docs    # --group (PEP 735): pip >= 25.1, upgraded above

echo "== ruff"
lint_paths=()
for d in dpop_middleware tests bench sample_projects; do [ -d "$d" ] && lint_paths+=("$d"); done
"$PY" -m ruff check "${lint_paths[@]}"
# The package's layout is ruff format's (tests and bench keep hand-aligned tables, marked fmt: skip).
"$PY" -m ruff format --check dpop_middleware
echo "== mypy --strict"
"$PY" -m mypy
echo "== mkdocs build --strict"
# The documentation site (mkdocs.yml): a broken link, anchor or API reference fails the build.
site_dir=$(mktemp -d)
# (the two variables silence the theme's and plugins' banners about a future MkDocs 2.0, not our warnings)
# No --quiet: it hides the warnings from the counter that --strict fails on.
NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true "$PY" -m mkdocs build --strict --site-dir "$site_dir"
rm -rf "$site_dir"
echo "== pytest"
"$PY" -m pytest "$@"
