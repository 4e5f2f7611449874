"""PKCS11Key against a real SoftHSM2 token: non-extractable keys, stable thumbprints, proofs that verify.

The token lives in a private directory named by a temporary ``SOFTHSM2_CONF``; the library reads it
once per process (at ``C_Initialize``), so every test here shares one token and uses its own label.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pkcs11 = pytest.importorskip("pkcs11") if not os.environ.get("CI") else __import__("pkcs11")

from pkcs11 import Attribute, ObjectClass  # noqa: E402
from wsgi_app_support import bare_app  # noqa: E402

from dpop_middleware import DPoPVerifier  # noqa: E402
from dpop_middleware.client import DPoPKey, JWSSigner, ProofKey  # noqa: E402
from dpop_middleware.core.request import RequestInfo  # noqa: E402
from dpop_middleware.httpx_auth import DPoPAuth  # noqa: E402
from dpop_middleware.pkcs11_key import PKCS11Key, PKCS11KeyError  # noqa: E402
from dpop_middleware.testing import TestIssuer  # noqa: E402
from dpop_middleware.wsgi import DPoPWSGIMiddleware  # noqa: E402

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "dpop-test"
PIN = "123456"


def _softhsm_missing() -> str | None:
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util not found"
    if not Path(MODULE).exists():
        return f"{MODULE} not found"
    return None


@pytest.fixture(scope="module")
def token_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    missing = _softhsm_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must install softhsm2 (scripts/run-tests.sh)")
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "654321"],
        env=env,
        check=True,
        capture_output=True,
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    yield env
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def _generate(label: str, alg: str = "ES256") -> PKCS11Key:
    return PKCS11Key.generate(MODULE, token_label=TOKEN, pin=PIN, label=label, alg=alg)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_token_key_is_a_signer_and_its_proof_verifies_through_an_adapter(token_env: dict[str, str], alg: str) -> None:
    with _generate(f"e2e-{alg}", alg) as key:
        assert isinstance(key, JWSSigner) and isinstance(key, ProofKey)
        issuer = TestIssuer(audience="https://api.test")
        app = DPoPWSGIMiddleware(bare_app, DPoPVerifier(issuer.validator()))
        token = issuer.token(key.jkt)
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost") as client:
            ok = client.get("/protected", auth=DPoPAuth(key, token))
            assert ok.status_code == 200, ok.text
            assert ok.json()["jkt"] == key.jkt
            # The same token with a proof from another key is refused: the binding is to the token's key.
            stolen = client.get("/protected", auth=DPoPAuth(DPoPKey.generate(), token))
            assert stolen.status_code == 401
        header = json.loads(_b64json(key.proof("GET", "https://a.test/x").split(".")[0]))
        assert header["alg"] == alg and header["jwk"] == key.public_jwk
        assert key.public_jwk_dict() == {**key.public_jwk, "alg": alg}


def _b64json(part: str) -> str:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_private_key_cannot_be_read_out_of_the_token(token_env: dict[str, str]) -> None:
    with _generate("sealed") as key:
        # The login is the process's (the key's session did it): a second session shares it.
        session = pkcs11.lib(MODULE).get_token(token_label=TOKEN).open()
        with session:
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="sealed")
            assert private[Attribute.SENSITIVE] is True
            assert private[Attribute.EXTRACTABLE] is False
            assert private[Attribute.NEVER_EXTRACTABLE] is True
            with pytest.raises(pkcs11.AttributeSensitive):
                private[Attribute.VALUE]
        assert "sealed" in repr(key) and key.jkt in repr(key)
        with pytest.raises(TypeError):
            __import__("pickle").dumps(key)


def test_an_extractable_key_with_the_label_is_refused(token_env: dict[str, str]) -> None:
    from pkcs11 import KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    session = pkcs11.lib(MODULE).get_token(token_label=TOKEN).open(user_pin=PIN, rw=True)
    with session:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        params.generate_keypair(
            store=True, label="leaky", private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
        )
    with pytest.raises(PKCS11KeyError, match="extractable"):
        PKCS11Key.open(MODULE, token_label=TOKEN, pin=PIN, label="leaky")


def test_thumbprint_is_stable_across_a_new_process(token_env: dict[str, str]) -> None:
    with _generate("restart") as key:
        jkt = key.jkt
    issuer = TestIssuer(audience="https://api.test")
    token = issuer.token(jkt)
    script = (
        "import sys\n"
        "from dpop_middleware.pkcs11_key import PKCS11Key\n"
        f"k = PKCS11Key.open({MODULE!r}, token_label={TOKEN!r}, pin={PIN!r}, label='restart')\n"
        "print(k.jkt, k.alg, k.proof('GET', 'https://api.test/protected', access_token=sys.argv[1]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, token], check=False, env=token_env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    other_jkt, alg, proof = out.stdout.split()
    assert (other_jkt, alg) == (jkt, "ES256")
    # The proof signed in the other process verifies here, bound to the key generated in this one.
    verifier = DPoPVerifier(issuer.validator())
    headers = [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
    principal = verifier.verify(RequestInfo("GET", "https://api.test/protected", headers))
    assert principal.jkt == jkt


def test_open_errors_are_clear(token_env: dict[str, str]) -> None:
    with pytest.raises(PKCS11KeyError, match="no single key pair labelled 'absent'"):
        PKCS11Key.open(MODULE, token_label=TOKEN, pin=PIN, label="absent")
    with pytest.raises(PKCS11KeyError, match="cannot open PKCS#11 token"):
        PKCS11Key.open(MODULE, token_label=TOKEN, pin="wrong-pin", label="sealed")
    with pytest.raises(PKCS11KeyError, match="unsupported algorithm"):
        _generate("rsa", "RS256")
    with _generate("twice"), pytest.raises(PKCS11KeyError, match="already holds"):
        _generate("twice")


def test_a_closed_key_fails_closed(token_env: dict[str, str]) -> None:
    key = _generate("closed")
    key.close()
    with pytest.raises(PKCS11KeyError, match="the token refused to sign"):
        key.proof("GET", "https://api.test/x")


def test_the_signer_process_signs_with_the_token_key(token_env: dict[str, str], tmp_path: Path) -> None:
    from test_key_custody_signer import signer_process

    from dpop_middleware.signer import SignerKey

    with _generate("for-signer", "EdDSA") as key:
        jkt = key.jkt
    sock = tmp_path / "hsm.sock"
    env = dict(token_env, DPOP_PKCS11_PIN=PIN)
    argv = ["--pkcs11-module", MODULE, "--token-label", TOKEN, "--key-label", "for-signer"]
    with signer_process(sock, *argv, env=env) as (_, ready):
        assert ready["jkt"] == jkt
        agent_key = SignerKey(str(sock))
        assert (agent_key.jkt, agent_key.alg) == (jkt, "EdDSA")
        issuer = TestIssuer(audience="https://api.test")
        token = issuer.token(jkt)
        headers = [("Authorization", f"DPoP {token}"), ("DPoP", agent_key.proof("GET", "https://api.test/p", access_token=token))]
        assert DPoPVerifier(issuer.validator()).verify(RequestInfo("GET", "https://api.test/p", headers)).jkt == jkt
