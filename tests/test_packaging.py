"""The package as it is installed: one version, the license in its metadata, what verification imports."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import dpop_middleware

ROOT = Path(__file__).resolve().parent.parent


def project_table() -> str:
    """The text of pyproject.toml's ``[project]`` table (up to the next table)."""
    text = (ROOT / "pyproject.toml").read_text()
    start = text.index("\n[project]\n")
    return text[start : text.index("\n[", start + 1)]


def test_the_version_is_written_in_the_package_only() -> None:
    table = project_table()
    assert not any(line.startswith("version") for line in table.splitlines()), "pyproject.toml has its own version"
    assert 'dynamic = ["version"]' in table


def test_the_installed_metadata_has_the_package_version() -> None:
    # Fails after a version bump until the package is installed again (pip install -e .).
    assert importlib.metadata.version("dpop-middleware") == dpop_middleware.__version__


def test_the_installed_metadata_carries_the_apache_license_text() -> None:
    dist = importlib.metadata.distribution("dpop-middleware")
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    licenses = [file for file in dist.files or () if file.name == "LICENSE"]
    assert len(licenses) == 1, dist.files
    text = licenses[0].read_text()
    assert text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


# Verify a DPoP request end to end with every adapter and the remote validators imported, then
# report whether jwcrypto was ever imported; then export the key as a JWK (which uses jwcrypto) and
# report again, so the probe is shown to notice the import.
VERIFY_PROBE = """
import importlib, sys
from dpop_middleware import DPoPVerifier, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.tokens import IntrospectionValidator, RemoteJWKSValidator
for name in ("django", "django.drf", "flask", "starlette", "fastapi", "wsgi", "asgi", "stores.redis", "settings"):
    importlib.import_module("dpop_middleware." + name)

issuer, key = TestIssuer(), DPoPKey.generate()
url = "https://api.test/me"
headers = dpop_headers(key, "GET", url, issuer.token(key.jkt))
principal = DPoPVerifier(issuer.validator()).verify(RequestInfo("GET", url, list(headers.items())))
assert principal.jkt == key.jkt
print("jwcrypto" in sys.modules)
key.private_jwk()
print("jwcrypto" in sys.modules)
"""


def test_verification_does_not_import_jwcrypto() -> None:
    # docs/design.md: jwcrypto stays a required dependency for the key import and export of
    # DPoPKey (from_jwk, private_jwk); the verification path runs on cryptography alone.
    done = subprocess.run(
        [sys.executable, "-c", VERIFY_PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
