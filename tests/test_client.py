"""Client units: keys, proof shape against RFC 9449's examples, nonce memory, retry rules, token responses."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from dpop_middleware import VerifierConfig
from dpop_middleware.client import (
    DPoPKey,
    NonceCache,
    TokenRequestError,
    nonce_to_retry,
    origin_of,
    parse_token_response,
    proof_headers,
)
from dpop_middleware.core.jose import b64url_decode
from dpop_middleware.core.proof import access_token_hash, verify_proof
from dpop_middleware.httpx_auth import DPoPAuth, fetch_token

VECTORS = json.loads((Path(__file__).parent / "rfc9449_vectors.json").read_text())
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}
ALGS = ["ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256"]


def decode(jws: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = jws.split(".")
    return json.loads(b64url_decode(head)), json.loads(b64url_decode(body))


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_keys_round_trip_through_pem_and_jwk(alg: str) -> None:
    key = DPoPKey.generate(alg)
    from_pem = DPoPKey.from_pem(key.private_pem(), alg)
    from_jwk = DPoPKey.from_jwk(key.private_jwk())
    from_json = DPoPKey.from_jwk(json.dumps(key.private_jwk()))
    assert from_pem.jkt == from_jwk.jkt == from_json.jkt == key.jkt
    assert from_jwk.alg == alg
    public = key.public_jwk_dict()
    assert public["alg"] == alg and not PRIVATE_MEMBERS & set(public)
    assert "alg" not in key.public_jwk_dict(include_alg=False)
    public["x"] = "tampered"
    assert key.public_jwk.get("x") != "tampered"  # a copy, not the key's own


def test_algorithm_inference_and_encrypted_pem() -> None:
    assert DPoPKey.from_pem(DPoPKey.generate("ES384").private_pem()).alg == "ES384"
    assert DPoPKey.from_pem(DPoPKey.generate("EdDSA").private_pem()).alg == "EdDSA"
    rsa = DPoPKey.generate("RS256")
    assert DPoPKey.from_pem(rsa.private_pem()).alg == "PS256"
    jwk = rsa.private_jwk()
    del jwk["alg"]
    assert DPoPKey.from_jwk(jwk).alg == "PS256"
    assert DPoPKey.from_jwk(jwk, "RS256").alg == "RS256"
    loaded = serialization.load_pem_private_key(rsa.private_pem(), None)
    encrypted = loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    assert DPoPKey.from_pem(encrypted.decode(), password=b"pw").jkt == rsa.jkt


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="private"):
        DPoPKey.from_jwk(VECTORS["proof_public_jwk"])
    with pytest.raises(ValueError):
        DPoPKey.from_jwk({"kty": "oct", "k": "c2VjcmV0", "d": "x"})
    with pytest.raises(ValueError):
        DPoPKey.generate("HS256")
    with pytest.raises(ValueError):
        DPoPKey.generate("none")
    with pytest.raises(ValueError, match="2048"):
        DPoPKey.generate("RS256", rsa_bits=1024)
    with pytest.raises(ValueError):
        DPoPKey.from_pem(DPoPKey.generate("ES256").private_pem(), "RS256")  # key and alg disagree
    ec_jwk = DPoPKey.generate().private_jwk()
    # jwcrypto's "generate" member would make a new key instead of loading this one: ignored.
    assert DPoPKey.from_jwk({**ec_jwk, "generate": "EC"}).jkt == DPoPKey.from_jwk(ec_jwk).jkt


def test_private_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    key = DPoPKey.generate()
    secret = key.private_jwk()["d"]
    logging.getLogger("test").warning("key=%s %r", key, key)
    assert secret not in caplog.text and secret not in repr(key) and secret not in str(key)
    assert "jkt=" in repr(key)
    for attempt in (lambda: pickle.dumps(key), lambda: copy.copy(key), lambda: copy.deepcopy(key)):
        with pytest.raises(TypeError, match="not picklable"):
            attempt()
    assert not hasattr(key, "__dict__")  # slots: vars() cannot spill it either
    auth = DPoPAuth(key, "secret-access-token")
    assert "secret-access-token" not in repr(auth) and secret not in repr(auth)


# -- proof shape, against RFC 9449 -------------------------------------------------------------


def test_proof_shape_matches_the_rfc_examples() -> None:
    rfc_header, rfc_claims = decode(VECTORS["resource_request_proof"]["jws"])
    key = DPoPKey.generate()
    token = VECTORS["resource_request_proof"]["access_token"]
    url = VECTORS["resource_request_proof"]["url"]
    header, claims = decode(key.proof("GET", url + "?q=1#frag", access_token=token))
    assert set(header) == set(rfc_header) == {"typ", "alg", "jwk"}
    assert header["typ"] == rfc_header["typ"] == "dpop+jwt"
    assert header["jwk"] == key.public_jwk and set(header["jwk"]) == set(rfc_header["jwk"])
    assert set(claims) == set(rfc_claims) == {"jti", "htm", "htu", "iat", "ath"}
    assert claims["htu"] == rfc_claims["htu"] == url
    assert claims["ath"] == rfc_claims["ath"] == VECTORS["resource_request_proof"]["ath"]
    assert isinstance(claims["iat"], int) and isinstance(claims["jti"], str) and len(claims["jti"]) >= 16

    token_header, token_claims = decode(VECTORS["token_request_proof"]["jws"])
    header, claims = decode(key.proof("POST", VECTORS["token_request_proof"]["url"]))
    assert set(claims) == set(token_claims) == {"jti", "htm", "htu", "iat"}  # no token, no ath
    assert set(header) == set(token_header)


@pytest.mark.parametrize("alg", ALGS)
def test_proofs_verify_with_the_core(alg: str) -> None:
    key = DPoPKey.generate(alg)
    headers = proof_headers(key, "PATCH", "https://api.test/items/1?x=y", "tok.en", nonce="n-1")
    assert headers["Authorization"] == "DPoP tok.en"
    config = VerifierConfig(nonce_policy="off")
    proof = verify_proof(
        headers["DPoP"], method="PATCH", url="https://api.test/items/1", token_hash=access_token_hash("tok.en"),
        now=decode(headers["DPoP"])[1]["iat"], config=config,
    )  # fmt: skip
    assert proof.key.jkt == key.jkt and proof.nonce == "n-1"
    assert set(proof_headers(key, "POST", "https://as.test/token")) == {"DPoP"}


# -- nonce memory and the retry rule ------------------------------------------------------------


def test_origin_of() -> None:
    assert origin_of("HTTPS://API.Example/a?b#c") == "https://api.example:443"
    assert origin_of("http://api.example:80/") == "http://api.example:80"
    assert origin_of("http://api.example:8080/x") == "http://api.example:8080"
    assert origin_of("http://[::1]:9/") == "http://[::1]:9"


def test_nonce_cache_is_per_origin_and_bounded() -> None:
    cache = NonceCache(max_origins=2)
    assert cache.remember("https://a.example/x", "n1") == "n1"
    assert cache.get("https://A.example:443/other") == "n1"
    assert cache.get("http://a.example/x") is None  # another scheme is another origin
    assert cache.get("https://a.example:8443/") is None
    assert cache.remember("https://a.example/", 'bad"nonce') is None  # not NQCHAR: ignored
    assert cache.remember("https://a.example/", "") is None
    assert cache.get("https://a.example/") == "n1"
    cache.remember("https://b.example/", "n2")
    cache.remember("https://c.example/", "n3")
    assert cache.get("https://a.example/") is None  # least recently set origin evicted
    assert "origins=2" in repr(cache)


@pytest.mark.parametrize(
    ("status", "challenges", "nonce", "body", "expected"),
    [
        (401, ['DPoP error="use_dpop_nonce", error_description="x", algs="ES256"'], "n", None, "n"),
        (401, ['Bearer realm="x", DPoP error="use_dpop_nonce"'], "n", None, "n"),  # Django: one merged line
        (401, ["DPoP error=use_dpop_nonce"], "n", None, "n"),
        (401, ['DPoP error="invalid_token"'], "n", None, None),
        (401, ['DPoP error="use_dpop_nonce"'], None, None, None),  # nothing to retry with
        (401, ['DPoP error="use_dpop_nonce"'], "bad nonce", None, None),
        (400, [], "n", b'{"error":"use_dpop_nonce"}', "n"),
        (400, [], "n", b'{"error":"invalid_dpop_proof"}', None),
        (400, [], "n", b"not json", None),
        (400, [], "n", b"[]", None),
        (400, [], "n", None, None),
        (200, [], "n", b'{"error":"use_dpop_nonce"}', None),
    ],
)
def test_nonce_to_retry(
    status: int, challenges: list[str], nonce: str | None, body: bytes | None, expected: str | None
) -> None:
    assert nonce_to_retry(status, challenges, nonce, body) == expected


# -- token responses --------------------------------------------------------------------------


def test_parse_token_response() -> None:
    ok = parse_token_response(200, b'{"access_token":"a.b.c","token_type":"dpop","expires_in":60,"scope":"r"}')
    assert (ok.access_token, ok.token_type, ok.expires_in, ok.scope) == ("a.b.c", "DPoP", 60.0, "r")
    assert "a.b.c" not in repr(ok)
    refusals = [
        (400, b'{"error":"invalid_dpop_proof","error_description":"bad"}', "invalid_dpop_proof"),
        (200, b'{"access_token":"a","token_type":"Bearer"}', "not_dpop_bound"),
        (200, b'{"token_type":"DPoP"}', "invalid_response"),
        (502, b"<html>", "invalid_response"),
        (500, b'{"error": 5}', "error"),
    ]
    for status, body, error in refusals:
        with pytest.raises(TokenRequestError) as info:
            parse_token_response(status, body)
        assert info.value.error == error and info.value.status == status


# -- the httpx flow against a scripted transport (edge cases a real server will not produce) -----


class Script:
    """A MockTransport handler answering from a list, recording each request's headers."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(httpx.Headers(request.headers))
        return self.answers.pop(0)


def challenge(nonce: str) -> httpx.Response:
    return httpx.Response(401, headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": nonce})


def test_httpx_retries_once_only() -> None:
    script = Script(challenge("n1"), challenge("n2"))
    auth = DPoPAuth(DPoPKey.generate(), "tok")
    with httpx.Client(transport=httpx.MockTransport(script)) as client:
        resp = client.get("https://api.test/a", auth=auth)
    assert resp.status_code == 401 and len(script.seen) == 2
    assert decode(script.seen[1]["dpop"])[1]["nonce"] == "n1"
    assert auth.nonces.get("https://api.test/") == "n2"  # the latest nonce is kept for next time


async def test_httpx_async_uses_the_same_flow() -> None:
    script = Script(challenge("n1"), httpx.Response(200, headers={"DPoP-Nonce": "n3"}), httpx.Response(200))

    async def handler(request: httpx.Request) -> httpx.Response:
        return script(request)

    auth = DPoPAuth(DPoPKey.generate(), "tok")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert (await client.get("https://api.test/a", auth=auth)).status_code == 200
        assert (await client.get("https://api.test/b", auth=auth)).status_code == 200
    assert "nonce" not in decode(script.seen[0]["dpop"])[1]
    assert decode(script.seen[2]["dpop"])[1]["nonce"] == "n3"  # remembered from a success response


def test_httpx_resource_mode_ignores_a_400_and_token_mode_reads_it() -> None:
    as_challenge = httpx.Response(400, headers={"DPoP-Nonce": "n1"}, json={"error": "use_dpop_nonce"})
    script = Script(as_challenge)
    with httpx.Client(transport=httpx.MockTransport(script)) as client:
        assert client.get("https://api.test/a", auth=DPoPAuth(DPoPKey.generate(), "tok")).status_code == 400
        assert len(script.seen) == 1
        script.answers = [as_challenge, httpx.Response(200, json={"access_token": "t", "token_type": "DPoP"})]
        token = fetch_token("https://as.test/token", DPoPKey.generate(), client_id="pub", client=client)
    assert token.access_token == "t"
    assert "authorization" not in script.seen[-1]  # public client: client_id in the body, no Authorization
    assert decode(script.seen[-1]["dpop"])[1]["nonce"] == "n1" and "ath" not in decode(script.seen[-1]["dpop"])[1]
