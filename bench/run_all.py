"""Run every benchmark and write ``docs/performance.md`` and ``docs/performance.png``: one command.

    python bench/run_all.py                 # full run (about 20 minutes), refreshes docs/
    python bench/run_all.py --smoke         # every part in smoke mode, output in a temporary directory
    python bench/run_all.py --seconds 10 --out /tmp/perf --chart matplotlib

Parts, each in a process of its own, one after the other:

1. ``bench/verify.py``: the core ``verify()`` against the raw ``cryptography`` verify, per algorithm;
2. ``bench/e2e.py``: every adapter under its real server, with and without DPoP, memory and Redis stores;
   then a short second run of the Redis rows with ``redis-server`` on the load generator's core
   (``--redis-core client``), published beside the first so the effect of where Redis runs is visible;
3. ``bench/layers.py``: the same apps called in process, no server: what the layer adds, split into the
   verifier, the framework's price for a hook, our adapter's code and what is left (the framework's
   own code slowed by ours);
4. ``bench/replay_store.py`` (when present): the Redis store against the memory store, round trips;
5. ``bench/memory.py``: bytes per live replay entry and a worker's peak RSS after 100,000 proofs;
6. ``bench/gateway.py``: the forward-auth gateway behind nginx and Caddy, each against the same
   gateway without its auth subrequest.

A smoke run exercises everything with tiny sizes and makes no timing claim; it writes to a fresh
temporary directory unless ``--out`` is given, so it never overwrites the published figures.
``--chart matplotlib`` draws the chart with matplotlib and installs it with ``pip`` if it is missing;
the default uses matplotlib only when it is already installed, else the built-in PNG writer.
The exit status is 1 when a part failed to run (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from chart import Panel, bar_charts, has_matplotlib  # noqa: E402
from e2e import ALGS, SERVERS, VARIANTS, case_label  # noqa: E402
from layers import split as layer_split  # noqa: E402

PACKAGES = ("dpop-middleware", "cryptography", "jwcrypto", "cachetools", "Django", "Flask", "starlette", "fastapi",
            "uvicorn", "gunicorn", "h11", "httptools", "uvloop", "redis", "hiredis")  # fmt: skip


@dataclass
class Part:
    """One benchmark's outcome: its printed tables, its JSON figures when it writes some."""

    name: str
    command: list[str]
    returncode: int
    stdout: str
    seconds: float
    data: dict[str, Any] | None = None
    stolen: float | None = None  # share of the machine's CPU time the hypervisor took during the part

    @property
    def ok(self) -> bool:
        """Ran to completion. ``verify.py`` exits 1 after printing its tables when a target is missed."""
        missed_only = self.name == "core verify" and self.returncode == 1 and "| ES256 |" in self.stdout
        return self.returncode == 0 or missed_only


def run_part(name: str, script: str, args: list[str], json_path: Path | None, timeout: float) -> Part:
    command = [sys.executable, str(HERE / script), *args]
    if json_path is not None:
        command += ["--json", str(json_path)]
    print(f"== {name}: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    ticks_before = cpu_ticks()
    try:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
        code, out = done.returncode, done.stdout
    except subprocess.TimeoutExpired as exc:
        code, out = -1, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        out += f"\n(timed out after {timeout:.0f} s)"
    data = json.loads(json_path.read_text()) if json_path is not None and json_path.exists() else None
    part = Part(name, command, code, out.strip(), time.monotonic() - started, data, stolen_share(ticks_before))
    print(out, file=sys.stderr, flush=True)
    return part


# -- machine -----------------------------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) clock ticks of all CPUs so far, from ``/proc/stat``; ``None`` where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already in user.
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def stolen_share(before: tuple[int, int] | None) -> float | None:
    """Share of CPU time stolen by the hypervisor since ``before`` (another guest ran on our cores)."""
    after = cpu_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kib = int(fh.readline().split()[1])
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def _tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "unknown"


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=False).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{rev}{' + local changes' if dirty else ''}" if rev else "unknown"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            if name in ("httptools", "uvloop"):
                versions.append(f"{name} not installed")
    load = os.getloadavg()
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical CPUs (nproc {len(os.sched_getaffinity(0))})",
        "memory": _mem_total(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(versions),
        "tools": f"{_tool_version(['wrk', '-v'])}; {_tool_version(['redis-server', '--version'])}",
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "revision": _git_revision(),
    }


_SPEED_ROWS = {"ECDSA P-256": r"256 bits ecdsa \(nistp256\)", "Ed25519": r"253 bits EdDSA \(Ed25519\)",
               "RSA-2048": r"rsa 2048 bits"}  # fmt: skip


def openssl_speed(*, smoke: bool) -> dict[str, float]:
    """Verifications per second of the system's ``openssl speed`` (1 s per measurement), by algorithm.

    A reference for the signature cost on this machine that owes nothing to Python; empty when
    ``openssl`` is missing or in a smoke run.
    """
    if smoke or shutil.which("openssl") is None:
        return {}
    try:
        done = subprocess.run(["openssl", "speed", "-seconds", "1", "ecdsap256", "ed25519", "rsa2048"],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    rates = {}
    for name, pattern in _SPEED_ROWS.items():
        match = re.search(pattern + r"\s+\S+s\s+\S+s\s+[\d.]+\s+([\d.]+)", done.stdout)
        if match:
            rates[name] = float(match.group(1))
    return rates


# -- report ------------------------------------------------------------------------------------------


def _core_floor_us(verify_out: str) -> tuple[float, float, float | None] | None:
    """(ours, raw, own work) µs for ES256 with a known key, read from verify.py's tables, if present."""
    match = re.search(r"^\|\s*ES256\s*\|\s*known key\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", verify_out, re.MULTILINE)
    if not match:
        return None
    own = re.search(r"^\|[^|]*our own work alone[^|]*\|\s*([\d.]+)\s*\|", verify_out, re.MULTILINE)
    return float(match.group(1)), float(match.group(2)), float(own.group(1)) if own else None


def _cpu_added(row: dict[str, Any], yardstick: dict[str, Any]) -> float:
    """Server CPU µs per request of ``row`` above ``yardstick``'s: the paired figure when the run has it."""
    paired = row.get("cpu_us_over", {}).get(yardstick["variant"])
    return float(paired) if paired is not None else row["cpu_us_per_req"] - yardstick["cpu_us_per_req"]


def cost_table(e2e: dict[str, Any]) -> list[str]:
    """Per adapter and proof algorithm: what DPoP adds to a request, split into the signature and the rest."""
    rows = [r for r in e2e["rows"] if not r["failure"]]
    by = {(r["server"], r["variant"], r["alg"]): r for r in rows}
    targets = {spec.key: spec.rps_target for spec in SERVERS}
    checks = {c["check"]: c["measured"] for c in e2e.get("checks", [])}
    out = [
        "| adapter | proofs | DPoP adds, server CPU µs/req | the raw signature check alone | ours above it "
        "| the floor's req/s vs unprotected | protected | target | the Redis store adds |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        base = by.get((r["server"], "none", r["alg"]))
        if r["variant"] != "memory" or base is None:
            continue
        label = case_label(r["adapter"], r["runner"], r["alg"])
        added = _cpu_added(r, base)
        floor = by.get((r["server"], "floor", r["alg"]))
        signature = f"{_cpu_added(floor, base):+.0f}" if floor else ""
        above = f"{_cpu_added(r, floor):+.0f}" if floor else ""
        ceiling = checks.get(f"{label}: the floor (raw signature check only) req/s vs unprotected", "")
        protected = checks.get(f"{label}: protected req/s vs unprotected", "")
        target = targets.get(r["server"])
        redis_row = by.get((r["server"], "redis", r["alg"]))
        redis_text = f"{_cpu_added(redis_row, r):+.0f} µs" if redis_row else ""
        out.append(
            f"| {r['adapter']}/{r['runner']} | {r['alg']} | {added:+.0f} | {signature} | {above} | {ceiling} "
            f"| {protected} | {f'>= {target:.0%}' if target else ''} | {redis_text} |"
        )
    return out if len(out) > 2 else []


def cost_paragraph(
    e2e: dict[str, Any] | None, verify_out: str, speed: dict[str, float], layers: dict[str, Any] | None = None
) -> str:
    """Where the protected request's extra CPU goes, from this run's figures: the floor, then the rest."""
    if not e2e:
        return "_The end-to-end benchmark did not run._"
    lines = cost_table(e2e)
    if lines:
        lines.append("")
    text = (
        "The signature check dominates, and it costs more in a server than in a tight loop: between two "
        "requests the interpreter, the framework and the kernel's network path evict OpenSSL's code and "
        "tables from the CPU caches, so the `floor` variant (that one `verify` call in a minimal hook, "
        "nothing else) already pays more per request than `bench/verify.py`'s raw figure. Wherever the "
        "floor's request rate is below a target, no DPoP implementation on `cryptography` can meet that "
        "target on this machine with that algorithm: it would have to check the signature for less than "
        "OpenSSL does."
    )
    if speed:
        text += (
            " OpenSSL's own figures here (`openssl speed`, one core): "
            + ", ".join(f"{alg} {rate:,.0f} verifies/s ({1e6 / rate:.0f} µs each)" for alg, rate in speed.items())
            + "."
        )
    text += (
        " An RSA verification (e = 65537) is several times cheaper than an ECDSA one, so the RS256 rows show "
        "how close the layer itself comes to its floor with a cheap signature; what we control is the gap "
        "between the floor and the protected rows (`ours above it`)."
    )
    core = _core_floor_us(verify_out)
    if core:
        ours, raw, own = core
        text += (
            f" In the core benchmark our whole `verify()` costs {ours:.0f} µs per ES256 request with a known key, "
            f"against {raw:.0f} µs for the raw check of the same proof (decode the signature, re-encode it as DER, "
            f"one `verify` with a key already loaded and used): {ours - raw:.0f} µs more."
        )
        if own is not None:
            text += f" Our own work measured alone (the same `verify()` without the signature call) is {own:.0f} µs"
            if ours - raw - own >= 1:
                text += (
                    f"; the other {ours - raw - own:.0f} µs is what running the two in turn costs beyond running "
                    "each alone (OpenSSL's P-256 code and tables and the interpreter's evict each other from the CPU "
                    "caches)."
                )
            else:
                text += ", the whole difference."
    text += layers_sentence(layers)
    text += (
        " Our work is many small steps, none above a few microseconds: credential extraction, the payload's "
        "base64url and JSON decoding, `ath` (SHA-256 of the token), the claim checks, the replay key and store "
        "write, the principal, and the adapter's translation of the request (headers, the URL rebuilt for "
        "`htu`). With the Redis store: one `SET NX PX` round trip per request, sent with redis-py's public "
        "API: the sync store's `set(..., nx=True, px=...)` on one connection per thread, the asyncio store's "
        "`send_packed_command` / `read_response` on one connection it holds per event loop (requests that "
        "arrive while a round trip is in flight share the next write), so the store's CPU per request is "
        "redis-py's command packing and reply parsing plus the round trip. A gunicorn sync worker can do "
        "nothing else while it waits: each request pays a send, a receive and the core going idle and waking "
        "up again (dear on a virtual machine; bench/replay_store.py and a bare loop of the store alone "
        "measure ~35-40 µs, in the server it is more). An asyncio worker serves other requests meanwhile but "
        "pays on every round trip for the event loop's extra steps (the request's task suspended and resumed, "
        "the socket polled and read), and its requests being cheaper, the same microseconds are a larger "
        "share of them. CPU figures come from `/proc` "
        "clock ticks (10 ms) summed over each 2 s round; compare variants of the same server, not servers "
        "with each other (gunicorn's sync worker closes the connection after every response, uvicorn keeps "
        "it alive)."
    )
    lines.append(text)
    return "\n".join(lines)


def layers_sentence(layers: dict[str, Any] | None) -> str:
    """What ``bench/layers.py`` found, in words: the layer without its signature, and its parts."""
    rows = (layers or {}).get("rows") or []
    parts = []
    for r in rows:
        s = layer_split(r)
        if s["verifier"] is None or s["tight_loop"] is None or s["left"] is None:
            continue
        parts.append(
            f"{r['label']} {s['layer']:.0f} µs (the verifier {s['verifier']:.0f}, {s['tight_loop']:.0f} in a tight "
            f"loop; the framework's price for an empty hook in its place {s['hook']:.0f}; our adapter's code "
            f"{s['adapter']:.0f}; the rest {s['left']:.0f})"
        )
    if not parts:
        return ""
    return (
        " In process, with no server in the way (`bench/layers.py`), the layer without its signature call costs "
        + "; ".join(parts)
        + ". The same verifier code takes longer inside a request than in a loop of its own, and the "
        "framework's own code runs slower after ours: they share the CPU's caches and branch predictors, so "
        "every step we take costs more in a server than it does alone. Any hook costs what the framework "
        "charges for it (a FastAPI dependency most: the floor's check pays it too); our adapter's code "
        "includes the framework calls that rebuilding the URL for `htu` must go through (Django's "
        "`get_host()`, which checks the Host against `ALLOWED_HOSTS`, and `request.scheme`)."
    )


def _panel_values(
    rows: list[dict[str, Any]], servers: list[str], variants: list[str], metric: str
) -> list[list[float | None]]:
    """``metric`` of each server's row for each variant (``None`` where it is missing or failed)."""
    out: list[list[float | None]] = []
    for key in servers:
        row_values: list[float | None] = []
        for v in variants:
            match = next((r for r in rows if r["server"] == key and r["variant"] == v and not r["failure"]), None)
            row_values.append(float(match[metric]) if match else None)
        out.append(row_values)
    return out


def e2e_panels(e2e: dict[str, Any]) -> list[Panel]:
    """Two panels (requests/s, server CPU per request) per proof algorithm, one group per adapter."""
    rows = e2e["rows"]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    names = {
        "none": "no DPoP",
        "floor": "raw signature check only",
        "memory": "DPoP + memory store",
        "redis": "DPoP + Redis store",
    }
    series = [names[v] for v in variants]
    panels = []
    for alg in (a for a in ALGS if any(r["alg"] == a for r in rows)):
        mine = [r for r in rows if r["alg"] == alg]
        labels = {r["server"]: f"{r['adapter']}/{r['runner']}" for r in mine}  # first-seen order
        servers, groups = list(labels), list(labels.values())
        panels += [
            Panel(f"{alg} proofs: requests per second (1 worker, higher is better)", groups, series,
                  _panel_values(mine, servers, variants, "rps")),
            Panel(f"{alg} proofs: server CPU per request, microseconds (lower is better)", groups, series,
                  _panel_values(mine, servers, variants, "cpu_us_per_req")),
        ]  # fmt: skip
    return panels


def _section(part: Part | None, missing: str) -> str:
    if part is None:
        return missing
    text = part.stdout or "(no output)"
    if not part.ok:
        text += f"\n\n**This part failed (exit status {part.returncode}); its figures are incomplete.**"
    return text


def _redis_core_text(core: str) -> str:
    return "server's core" if core == "server" else "load generator's core"


GATEWAY_TEXT = (
    "`bench/gateway.py`: `dpop-middleware gateway` (one uvicorn worker, memory replay store, the shipped "
    "`gateway.toml`) behind Debian's nginx (`auth_request`) and Caddy (`forward_auth`), with the shipped "
    "configurations, in front of an upstream that is not Python (nginx serving static JSON). Each gateway "
    "runs beside the same configuration without its auth subrequest, rounds alternating; every request "
    "carries a fresh proof in both, so requests are the same size. Added latency is the DPoP round's p50 "
    "and p99 minus the other's. The load generator is pinned to the second core; the gateway, the proxies "
    "and the upstream are not pinned, so they compete with it for that core too."
)

REDIS_PLACEMENT_TEXT = (
    "Where `redis-server` runs changes what a sync worker's Redis request costs on this virtual machine. The "
    "end-to-end rows above pin it to the server's core (`bench/e2e.py --redis-core server`, the default): "
    "the worker's `SET NX PX` wakes Redis on the core that is about to wait for the answer. The table below "
    "repeats the Redis rows of three adapters with Redis on the load generator's core (`--redis-core "
    "client`): each command then wakes a process sleeping on the other virtual CPU, and the sender pays for "
    "that cross-CPU wake-up (an inter-processor interrupt, a VM exit) inside `send()`: `perf record -g` "
    "on a gunicorn worker puts it in the kernel's `sock_def_readable` → `_raw_spin_unlock_irqrestore`, about "
    "40 µs per wake-up on the 2-vCPU Firecracker machine where we traced it (`bench/README.md`). The memory "
    "variant pays one such wake-up per request (for the load generator), the Redis variant two; under "
    "uvicorn one pipelined write serves a batch of requests, so the placement matters less. In production "
    "Redis runs on another host, reached through a network card, which neither placement reproduces exactly; "
    "both are shown."
)


def report(parts: dict[str, Part], info: dict[str, str], args: argparse.Namespace, chart_note: str | None) -> str:
    e2e = parts.get("e2e")
    e2e_meta = (e2e.data or {}).get("meta", {}) if e2e else {}
    layers_part = parts.get("layers")
    layers_meta = (layers_part.data or {}).get("meta", {}) if layers_part else {}
    loadgen = e2e_meta.get("loadgen", "?")
    if loadgen == "wrk":
        load_text = (
            f"`wrk` ({e2e_meta.get('connections')} connections, 1 thread, {e2e_meta.get('seconds')} s per run; "
            f"{e2e_meta.get('repeat', 1)} rounds of every variant in turn)"
        )
    else:
        load_text = (
            f"the Python load generator ({e2e_meta.get('connections')} processes, one keep-alive connection each; "
            f"{e2e_meta.get('seconds')} s or {e2e_meta.get('max_requests')} requests per case)"
        )
    command = "python bench/run_all.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    out = [
        "# Performance",
        "",
        "_Generated by `bench/run_all.py`; do not edit by hand, rerun it._",
        "",
        f"Produced by `{command}`. A full run (`python bench/run_all.py`) takes about 20 minutes on a 2-core machine; "
        "see `bench/README.md`.",
        "",
        "Why the hot path is written as it is (each measured choice, its figure, the file it concerns): "
        "[performance-notes.md](performance-notes.md).",
    ]
    if args.smoke:
        out += ["", "**Smoke run: tiny sizes, the figures below mean nothing.**"]
    out += ["", "## Machine", ""]
    out += [f"- {key}: {value}" for key, value in info.items()]
    out.append(f"- measured: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    stolen = [f"{p.name} {p.stolen:.1%}" for p in parts.values() if p.stolen is not None]
    if stolen:
        out.append(
            "- CPU time stolen by the hypervisor (`/proc/stat` steal; other guests running on our cores) during "
            f"each part: {', '.join(stolen)}"
        )
    out += [
        "",
        "The machine may be shared: treat absolute figures as indicative and compare the ratios, which "
        "each benchmark measures within one run.",
        "",
        "## Method",
        "",
        "- **Core** (`bench/verify.py`): the same proofs checked by our whole `verify()` and by the raw "
        "`cryptography` verify with the key already loaded and used once (OpenSSL finishes setting a key up on "
        "its first verify), alternating in blocks of 25 requests, in rounds, in one process; medians over the pairs of "
        "adjacent blocks.",
        "- **End to end** (`bench/e2e.py`): each adapter under its real server on 127.0.0.1 with one worker "
        "(Starlette and FastAPI under uvicorn, Flask and Django under gunicorn sync workers, Django under uvicorn "
        "as ASGI), serving `GET /items` (a small JSON body) four ways: without the DPoP layer (`none`); with only "
        "the raw signature check of the request's proof in a minimal framework hook, key already loaded "
        "(`floor`: the cryptographic floor that any DPoP layer pays, measured in situ; `bench/e2e_apps/floor.py`); "
        "with the DPoP layer and the memory replay store; and with it and the Redis store (a local "
        f"`redis-server`). Load: {load_text}, in its own process. Every request carries a distinct, freshly "
        f"signed proof ({', '.join(e2e_meta.get('algs', ['ES256']))}: each algorithm is a run of its own; 4 client "
        "keys, each with its own bound JWT access token), in all four variants. The four servers of an adapter "
        "are started once and measured in turn, round after round, so a slow spell of this shared machine "
        "falls on one round of every variant rather than on every round of one; each row is the variant's "
        "median round, and each ratio (and each CPU difference in the cost table) is the median over rounds of "
        "that round's figure (the paired figure). "
        "The server is pinned to one core with `taskset`, the load generator to the other; `redis-server` "
        f"runs on the {_redis_core_text(e2e_meta.get('redis_core', 'client'))} (see the Redis section). "
        "Server CPU per request is the user+system time of the "
        "server's processes (from `/proc/<pid>/stat`, before and after the run) over the requests served; for the "
        "Redis variant the `redis-server` CPU and command count (`INFO commandstats`, connection set-up excluded) "
        "are shown too. A run with any non-2xx response is reported as failed, not as a figure.",
        "- **In process** (`bench/layers.py`): the same benchmark apps called directly, as their server would "
        "call them (a WSGI environ or an ASGI scope, one after the other, no sockets), each variant in a fresh "
        f"process, the fastest of {layers_meta.get('rounds', '?')} rounds of {layers_meta.get('requests', '?')} "
        f"requests, the median of {layers_meta.get('repeat', '?')} passes: bare, with the raw signature check "
        "only, with the DPoP layer; then the layer with the signature call replaced by a no-op (timing the "
        "verifier's calls inside each request, and the same calls again in a tight loop), the layer with "
        "the verifier's answer memoized (the adapter alone), and an empty framework hook in the layer's place "
        "(what the framework charges for any hook).",
        "- **Replay store** (`bench/replay_store.py`): the Redis store against the memory store, same server, "
        "same load; Redis commands per request.",
        "- **Memory** (`bench/memory.py`): `tracemalloc` over distinct `MemoryReplayStore.add_if_absent` calls "
        "(keys included), and the RSS of a fresh worker process verifying 100,000 distinct Ed25519 proofs "
        "(signed in that process in batches of 1,000) through `DPoPVerifier` with the memory store.",
        "",
        "## Core: `verify()` against the raw signature check",
        "",
        _section(parts.get("verify"), "_Not run._"),
        "",
        "## End to end, per adapter",
        "",
        _section(e2e, "_Not run._"),
        "",
        (
            f"![Requests per second and server CPU per request, per adapter and variant](performance.png)  \n"
            f"_{chart_note}_"
            if chart_note
            else "_No chart: the end-to-end benchmark produced no figures._"
        ),
        "",
        "## In process: what the layer adds, part by part",
        "",
        _section(parts.get("layers"), "_Not run._"),
        "",
        "## Redis replay store against the memory store",
        "",
        REDIS_PLACEMENT_TEXT,
        "",
        _section(parts.get("e2e_redis_client"), "_Not run._"),
        "",
        _section(parts.get("replay_store"), "_`bench/replay_store.py` is not present._"),
        "",
        "## Memory",
        "",
        _section(parts.get("memory"), "_Not run._"),
        "",
        "## DPoP at the edge: the forward-auth gateway",
        "",
        GATEWAY_TEXT,
        "",
        _section(parts.get("gateway"), "_Not run._"),
        "",
        "## What the remaining cost is",
        "",
        cost_paragraph(
            e2e.data if e2e else None,
            parts["verify"].stdout if "verify" in parts else "",
            openssl_speed(smoke=args.smoke),
            parts["layers"].data if "layers" in parts else None,
        ),
        "",
    ]
    return "\n".join(out)


def draw_chart(parts: dict[str, Part], path: Path, engine: str) -> str | None:
    """Draw the end-to-end chart into ``path``; a note on how, or ``None`` when there is nothing to draw."""
    e2e = parts.get("e2e")
    if e2e is None or not e2e.data or not e2e.data.get("rows"):
        return None
    if engine == "matplotlib" and not has_matplotlib():
        # Only on explicit request: the harness itself needs nothing beyond the standard library.
        subprocess.run([sys.executable, "-m", "pip", "install", "matplotlib"], check=True)
    used = bar_charts(path, e2e_panels(e2e.data), engine=engine)
    return f"Chart drawn with the {used}."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every part in smoke mode, no timing claims")
    parser.add_argument("--out", type=Path, default=None, help="where to write performance.md/.png (default docs/)")
    parser.add_argument("--seconds", type=int, default=2, help="end-to-end run length per case (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="end-to-end rounds per case, median reported (default 5)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--algs", default="ES256,RS256", help="end-to-end proof algorithms, comma-separated (default ES256,RS256)"
    )
    parser.add_argument(
        "--chart",
        choices=["auto", "builtin", "matplotlib"],
        default="auto",
        help="matplotlib: use it, installing it with pip if missing",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to skip: verify,e2e,e2e_redis_client,layers,replay_store,memory,gateway",
    )
    args = parser.parse_args()
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="dpop-perf-")) if args.smoke else ROOT / "docs")
    out_dir.mkdir(parents=True, exist_ok=True)
    skip = {s for s in args.skip.split(",") if s}
    smoke = ["--smoke"] if args.smoke else []
    info = machine()
    parts: dict[str, Part] = {}
    with tempfile.TemporaryDirectory(prefix="dpop-perf-json-") as tmp:
        if "verify" not in skip:
            parts["verify"] = run_part("core verify", "verify.py", smoke, None, 900)
        if "e2e" not in skip:
            load = [*smoke, "--loadgen", args.loadgen, "--seconds", str(args.seconds), "--repeat", str(args.repeat)]
            parts["e2e"] = run_part("end to end", "e2e.py", [*load, "--algs", args.algs], Path(tmp) / "e2e.json", 1800)
            if "e2e_redis_client" not in skip:
                diagnostic = [*load, "--algs", "ES256", "--only", "starlette,flask,django-wsgi", "--variants",
                              "memory,redis", "--redis-core", "client"]  # fmt: skip
                parts["e2e_redis_client"] = run_part("end to end, Redis on the client core", "e2e.py", diagnostic,
                                                     None, 900)  # fmt: skip
        if "layers" not in skip:
            parts["layers"] = run_part("in process", "layers.py", smoke, Path(tmp) / "layers.json", 900)
        if "replay_store" not in skip and (HERE / "replay_store.py").exists():
            parts["replay_store"] = run_part("replay store", "replay_store.py", smoke, None, 900)
        if "memory" not in skip:
            parts["memory"] = run_part("memory", "memory.py", smoke, Path(tmp) / "memory.json", 900)
        if "gateway" not in skip:
            parts["gateway"] = run_part("gateway", "gateway.py", smoke, None, 900)
    chart_note = draw_chart(parts, out_dir / "performance.png", args.chart)
    (out_dir / "performance.md").write_text(report(parts, info, args, chart_note), encoding="utf-8")
    written = [out_dir / "performance.md"] + ([out_dir / "performance.png"] if chart_note else [])
    print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    failed = [p.name for p in parts.values() if not p.ok]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
