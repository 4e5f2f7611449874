"""Real gateways for the forward-auth tests: the shipped nginx.conf, Caddyfile and gateway.toml,
templated only for their ports and paths, in front of a static nginx upstream.

Every process is started on a free loopback port and killed when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from servers import ROOT, free_port, python_argv, running

from dpop_middleware.testing import TestIssuer

SHIPPED = ROOT / "sample_projects" / "gateway"
UPSTREAM_CONF = Path(__file__).parent / "gateway" / "upstream.conf"
# The addresses the shipped files are written with, which the tests replace by free ports.
GATEWAY_ADDRESS, API_ADDRESS, LISTEN_PORT = "127.0.0.1:9100", "127.0.0.1:8080", "8000"


def need_binary(name: str) -> str:
    """The path of ``name``; a skip when it is missing locally, a failure under ``CI``."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (scripts/run-tests.sh installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def templated(path: Path, replacements: Mapping[str, str]) -> str:
    """The shipped file at ``path`` with each address replaced; every one must occur in it."""
    text = path.read_text()
    for old, new in replacements.items():
        assert old in text, f"{path.name} no longer holds {old!r}"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def nginx(conf: str, port: int, directory: Path, name: str = "nginx") -> Iterator[int]:
    """nginx, not daemonized, with ``conf`` and its own prefix ``directory``; yields ``port``."""
    binary = need_binary("nginx")
    directory.mkdir(parents=True, exist_ok=True)  # nginx makes its temp directories in it itself
    (directory / f"{name}.conf").write_text(conf)
    argv = [binary, "-p", str(directory), "-e", "stderr", "-c", str(directory / f"{name}.conf")]
    with running(argv, port, log_path=directory / f"{name}.log"):
        yield port


@contextlib.contextmanager
def upstream(directory: Path) -> Iterator[int]:
    """The static JSON API (nginx) that the gateways protect; yields its port."""
    port = free_port()
    conf = templated(UPSTREAM_CONF, {"127.0.0.1:8080": f"127.0.0.1:{port}"})
    with nginx(conf, port, directory / "upstream", "upstream"):
        yield port


@contextlib.contextmanager
def caddy(caddyfile: str, port: int, directory: Path) -> Iterator[int]:
    """Caddy running ``caddyfile`` (admin endpoint off, no automatic HTTPS); yields ``port``."""
    binary = need_binary("caddy")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "Caddyfile"
    path.write_text(caddyfile)
    env = {"HOME": str(directory), "XDG_DATA_HOME": str(directory), "XDG_CONFIG_HOME": str(directory)}
    argv = [binary, "run", "--config", str(path), "--adapter", "caddyfile"]
    with running(argv, port, env=env, log_path=directory / "caddy.log"):
        yield port


def gateway_config(public_url: str, directory: Path, extra: str = "") -> Path:
    """The shipped gateway.toml with ``public_url`` (and ``extra`` TOML lines before its tables)."""
    text = templated(SHIPPED / "gateway.toml", {'public_url = "http://127.0.0.1:8000"': f'public_url = "{public_url}"'})
    if extra:
        text = text.replace("[path_scopes]", f"{extra}\n\n[path_scopes]")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.toml"
    path.write_text(text)
    return path


def gateway_env(issuer: TestIssuer, style: str, **extra: str) -> dict[str, str]:
    return {
        "DPOP_GATEWAY": style,
        "DPOP_ISSUER": issuer.issuer,
        "DPOP_AUDIENCE": issuer.audience,
        "DPOP_JWKS": json.dumps(issuer.jwks),
        **extra,
    }


@contextlib.contextmanager
def gateway(config: Path, env: Mapping[str, str], directory: Path, name: str = "gateway") -> Iterator[int]:
    """``python -m dpop_middleware.gateway`` under uvicorn; yields its port."""
    port = free_port()
    argv = python_argv("-m", "dpop_middleware.gateway", "--config", str(config), "--port", str(port))
    with running(argv, port, env=env, log_path=directory / f"{name}.log"):
        yield port


def nginx_conf(gateway_port: int, api_port: int, port: int) -> str:
    """The shipped nginx.conf, for these ports."""
    return templated(
        SHIPPED / "nginx.conf",
        {
            GATEWAY_ADDRESS: f"127.0.0.1:{gateway_port}",
            API_ADDRESS: f"127.0.0.1:{api_port}",
            f"listen 127.0.0.1:{LISTEN_PORT};": f"listen 127.0.0.1:{port};",
        },
    )


def caddyfile(gateway_port: int, api_port: int, port: int) -> str:
    """The shipped Caddyfile, for these ports."""
    return templated(
        SHIPPED / "Caddyfile",
        {
            f"forward_auth {GATEWAY_ADDRESS}": f"forward_auth 127.0.0.1:{gateway_port}",
            f"reverse_proxy {API_ADDRESS}": f"reverse_proxy 127.0.0.1:{api_port}",
            f":{LISTEN_PORT} {{": f":{port} {{",
        },
    )


def front_nginx(gateway_port: int, api_port: int, port: int, directory: Path) -> contextlib.AbstractContextManager[int]:
    return nginx(nginx_conf(gateway_port, api_port, port), port, directory / "front")


def front_caddy(gateway_port: int, api_port: int, port: int, directory: Path) -> contextlib.AbstractContextManager[int]:
    return caddy(caddyfile(gateway_port, api_port, port), port, directory / "caddy")
