"""``python -m sample_projects.browser``: start the sample issuer and the FastAPI sample for the page.

* the issuer on ``--issuer-port`` (9000) with the DEMO-ONLY login on (``ISSUER_DEMO_LOGIN=on``),
  serving the page at ``/browser/`` and telling it where the API is (``BROWSER_API_URL``);
* the FastAPI sample on ``--api-port`` (8003), trusting the issuer, with CORS for the page's origin
  (``CORS_ALLOW_ORIGINS``: the page and the API are on different origins, on purpose);
* both with ``DPOP_NONCE=always`` (``--nonce``), so the page has to answer nonce challenges.

Prints the URL to open, then runs until Ctrl-C or SIGTERM, and stops both servers on the way out.
Both servers stay in this process's group, so stopping the group stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

import httpx

from ..demo.processes import ROOT

__all__ = ["main", "server_environments"]


class _Stopped(Exception):
    """SIGTERM: unwind so that both servers are stopped."""


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


def server_environments(issuer_port: int, api_port: int, nonce: str) -> dict[str, dict[str, str]]:
    """The settings of each server (module -> variables), on top of a clean environment."""
    issuer = f"http://127.0.0.1:{issuer_port}"
    api = f"http://127.0.0.1:{api_port}"
    common = {"HOST": "127.0.0.1", "DPOP_ISSUER": issuer, "DPOP_NONCE": nonce}
    return {
        "sample_projects.issuer": {
            **common,
            "PORT": str(issuer_port),
            "ISSUER_DEMO_LOGIN": "on",
            "BROWSER_API_URL": api,
        },
        "sample_projects.fastapi_api": {**common, "PORT": str(api_port), "CORS_ALLOW_ORIGINS": issuer},
    }


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    # This launcher decides every DPoP setting: ones left in the user's shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPOP_") and k not in ("PORT", "HOST")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _wait_ready(processes: Sequence[subprocess.Popen[bytes]], urls: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(urls)
    with httpx.Client(timeout=1.0) as http:
        while pending:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a server exited with code {process.returncode}")
            for url in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{url}/healthz").status_code == 200:
                        pending.remove(url)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
            time.sleep(0.1)


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sample_projects.browser", description=__doc__.splitlines()[0])
    parser.add_argument("--issuer-port", type=int, default=9000)
    parser.add_argument("--api-port", type=int, default=8003)
    parser.add_argument("--nonce", choices=("off", "always", "unsafe_methods"), default="always")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for module, env in server_environments(args.issuer_port, args.api_port, args.nonce).items():
            command = [sys.executable, "-m", module]
            processes.append(subprocess.Popen(command, env=_child_env(env), cwd=ROOT, stdin=subprocess.DEVNULL))
        urls = [f"http://127.0.0.1:{args.issuer_port}", f"http://127.0.0.1:{args.api_port}"]
        _wait_ready(processes, urls, timeout=20)
        print(f"issuer {urls[0]} (demo login on), API {urls[1]} (CORS for {urls[0]}), DPOP_NONCE={args.nonce}")
        print(f"open {urls[0]}/browser/ in a browser; Ctrl-C stops both servers", flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("a server exited: stopping", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stopped):
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop(processes)


if __name__ == "__main__":
    sys.exit(main())
