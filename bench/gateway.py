"""What the DPoP gateway adds: each gateway (nginx, Caddy) with and without the auth subrequest.

    python bench/gateway.py                  # 5 rounds of 3 s per case, Markdown table
    python bench/gateway.py --smoke          # a few hundred requests per case, no timing claims
    python bench/gateway.py --only nginx --seconds 10 --json out.json

Per gateway, two fronts run side by side in front of the same upstream (nginx answering static JSON,
``tests/gateway/upstream.conf``): the shipped config (``sample_projects/gateway/nginx.conf`` or
``Caddyfile``, templated only for ports), and the same file without its auth subrequest (the
``auth_request`` line or the ``forward_auth`` block removed): ``none``. The gateway is
``python -m dpop_middleware.gateway`` (one uvicorn worker, memory replay store) with the shipped
``gateway.toml``. Rounds alternate none, dpop, none, dpop...; a row is its case's median round.

Every request carries ``Authorization: DPoP`` and a proof of its own (signed before the round for
the exact URL), in both cases, so requests are the same size; a round with any non-2xx answer is an
invalid run, never a figure. Load comes from ``bench/loadgen.py`` (wrk when installed, else Python
processes), pinned away from the servers' core as in ``bench/e2e.py``. Added latency is the dpop
round's p50/p99 minus the none round's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(BENCH)]

from gateway_servers import caddy, caddyfile, gateway, gateway_config, gateway_env, nginx, nginx_conf, upstream  # noqa: E402
from loadgen import LoadResult, run_python, run_wrk, wrk_available  # noqa: E402
from servers import free_port  # noqa: E402

from dpop_middleware.client import DPoPKey  # noqa: E402
from dpop_middleware.testing import TestIssuer  # noqa: E402

PATH = "/api/items"


def _without_auth(kind: str, text: str) -> str:
    """The shipped config without its auth subrequest: the ``none`` case."""
    if kind == "nginx":
        assert "auth_request /_dpop_check;" in text
        return text.replace("auth_request /_dpop_check;", "")
    start = text.index("\t\tforward_auth")
    end = text.index("\t\t}\n", start) + len("\t\t}\n")
    return text[:start] + text[end:]


def _proofs(issuer: TestIssuer, keys: list[tuple[DPoPKey, str]], url: str, count: int, path: Path) -> Path:
    with path.open("w") as out:
        for i in range(count):
            key, token = keys[i % len(keys)]
            out.write(f"DPoP {token}\t{key.proof('GET', url, access_token=token)}\n")
    return path


def _load(port: int, proofs: Path, args: argparse.Namespace) -> LoadResult:
    if wrk_available() and not args.smoke:
        return run_wrk(port, PATH, proofs, seconds=int(args.seconds), connections=args.connections)
    return run_python(port, PATH, proofs, seconds=args.seconds, processes=args.processes,
                      max_requests=args.requests if args.smoke else None)  # fmt: skip


def measure(kind: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    issuer = TestIssuer()
    keys = [(key, issuer.token(key.jkt, lifetime=3600)) for key in (DPoPKey.generate() for _ in range(4))]
    style = "nginx" if kind == "nginx" else "forwarded"
    per_round = args.requests if args.smoke else int(args.max_rps * args.seconds)
    rounds: dict[str, list[LoadResult]] = {"none": [], "dpop": []}
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(upstream(directory / kind))
        dpop_port = free_port()
        base = f"http://127.0.0.1:{dpop_port}"
        env = gateway_env(issuer, style)
        config = gateway_config(base, directory / kind)
        gateway_port = stack.enter_context(gateway(config, env, directory / kind))
        # The dpop front listens where the gateway's public_url says.
        stack.enter_context(_front(kind, gateway_port, api, dpop_port, directory, auth=True))
        none_port = stack.enter_context(_front(kind, gateway_port, api, free_port(), directory, auth=False))
        for index in range(args.repeat):
            for case, port in (("none", none_port), ("dpop", dpop_port)):
                url = f"http://127.0.0.1:{port}{PATH}"
                proofs = _proofs(issuer, keys, url if case == "dpop" else base + PATH, per_round,
                                 directory / f"{kind}-{case}-{index}.txt")  # fmt: skip
                result = _load(port, proofs, args)
                if result.errors:
                    raise RuntimeError(f"{kind} {case}: {result.errors} non-2xx answers or socket errors: invalid run")
                rounds[case].append(result)
    return {case: _median(results) for case, results in rounds.items()}


@contextlib.contextmanager
def _front(kind: str, gateway_port: int, api_port: int, port: int, directory: Path, *, auth: bool) -> Iterator[int]:
    sub = directory / f"{kind}-{'dpop' if auth else 'none'}-{port}"
    text = (nginx_conf if kind == "nginx" else caddyfile)(gateway_port, api_port, port)
    with (nginx if kind == "nginx" else caddy)(text if auth else _without_auth(kind, text), port, sub):
        yield port


def _median(results: list[LoadResult]) -> dict[str, Any]:
    by_rps = sorted(results, key=lambda r: r.rps)
    middle = by_rps[len(by_rps) // 2]
    return {"rps": middle.rps, "p50_ms": middle.p50_ms, "p99_ms": middle.p99_ms,
            "p50_all": statistics.median(r.p50_ms for r in results), "generator": middle.generator}  # fmt: skip


def table(figures: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| gateway | req/s without auth | req/s with DPoP | p50 without / with (ms) | p99 without / with (ms) "
        "| added p50 / p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, cases in figures.items():
        none, dpop = cases["none"], cases["dpop"]
        lines.append(
            f"| {kind} | {none['rps']:.0f} | {dpop['rps']:.0f} | {none['p50_ms']:.2f} / {dpop['p50_ms']:.2f} | "
            f"{none['p99_ms']:.2f} / {dpop['p99_ms']:.2f} | {dpop['p50_ms'] - none['p50_ms']:.2f} / "
            f"{dpop['p99_ms'] - none['p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="nginx,caddy", help="comma-separated: nginx, caddy")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--processes", type=int, default=2, help="Python load processes (no wrk)")
    parser.add_argument("--max-rps", type=float, default=6000, help="proofs signed per second of a round")
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests per case, one round")
    parser.add_argument("--requests", type=int, default=300, help="requests per case with --smoke")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.seconds = 1, 30.0
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="dpop-gateway-bench-") as tmp:
        for kind in args.only.split(","):
            figures[kind] = measure(kind.strip(), args, Path(tmp))
    print(table(figures))
    if args.smoke:
        print("\n(smoke run: a few hundred requests, no timing claims)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
