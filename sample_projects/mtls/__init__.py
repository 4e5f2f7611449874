"""nginx terminating mutual TLS in front of the samples: the configuration the tests run, as a template.

``nginx.conf`` holds the process settings and ``server.conf`` one proxied sample; :func:`render_config`
fills their ``{{NAME}}`` placeholders (ports and paths only). See docs/mtls.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CERT_HEADER", "JS_MODULE", "Proxied", "render_config"]

HERE = Path(__file__).resolve().parent
#: The header in which this configuration passes the client certificate as URL-escaped PEM; it
#: passes it in RFC 9440 ``Client-Cert`` too (``client_cert.js``).
CERT_HEADER = "X-SSL-Client-Cert"
#: Where Debian's libnginx-mod-http-js puts the njs module that writes ``Client-Cert``.
JS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")


@dataclass(frozen=True)
class Proxied:
    """One sample behind nginx: ``listen`` (``127.0.0.1:8443``) is proxied to ``upstream`` (``127.0.0.1:8001``)."""

    name: str
    listen: str
    upstream: str


def _fill(template: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        if any(ch in value for ch in ";{}\n\"'"):
            raise ValueError(f"{name} must not hold nginx syntax: {value!r}")
        template = template.replace("{{" + name + "}}", value)
    if "{{" in template:
        raise ValueError(f"unfilled placeholder in: {template[template.index('{{') :][:40]!r}")
    return template


def render_config(
    prefix: Path,
    proxied: Iterable[Proxied],
    *,
    server_cert: Path,
    server_key: Path,
    client_ca: Path,
    proxy_address: str = "127.0.0.1",
    js_module: Path = JS_MODULE,
) -> str:
    """The full ``nginx.conf`` text for ``proxied`` samples, with nginx's files under ``prefix``."""
    block = (HERE / "server.conf").read_text()
    servers = "\n".join(
        _fill(
            block,
            {
                "NAME": item.name,
                "LISTEN": item.listen,
                "UPSTREAM": item.upstream,
                "SERVER_CERT": str(server_cert),
                "SERVER_KEY": str(server_key),
                "CLIENT_CA": str(client_ca),
                "PROXY_ADDRESS": proxy_address,
                "CERT_HEADER": CERT_HEADER,
            },
        )
        for item in proxied
    )
    main = (HERE / "nginx.conf").read_text().replace("{{SERVERS}}", servers)
    return _fill(main, {"PREFIX": str(prefix), "JS_MODULE": str(js_module), "SAMPLE_DIR": str(HERE)})
