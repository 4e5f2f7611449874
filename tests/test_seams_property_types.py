"""Every member of every input replaced by every JSON type: only documented rejections come out of the core.

Issue 19 §4, first bullet. The inputs: the proof's protected header, its ``jwk`` (EC, OKP and RSA
keys), the proof's claims (at a resource server, at one that requires nonces, at a token endpoint),
the access token's header and claims, JWKS entries (a static JWKS, the ``KeySet`` the remote
validator builds from a fetched one) and introspection answers (:class:`IntrospectionValidator` on
a fake endpoint: an httpx ``MockTransport``). Proofs and tokens are signed with real keys, so each
check reaches the member that was replaced.

Each member is replaced by each value of :data:`ODD` (or removed), one test id per mutation so a
failure names its input; hypothesis then throws random nested JSON at the same members. A mutation
must end as its expectation says:

* ``reject``: a :class:`DPoPError` whose reason code is one the package's source spells out;
* ``accept``: the request passes (the good key of a JWKS that also holds an odd entry);
* ``either``: accepted, or a documented rejection.

Never another exception, and never ``token_validator_error`` (the verifier's name for a validator
that crashed). :mod:`test_seams_property_adapters` sends the same mutations through every adapter.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from core_support import b64
from fakes import NOW, TestClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dpop_middleware
from dpop_middleware import DPoPError, DPoPVerifier, MemoryReplayStore, NonceKeyring, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.access_token import KeySet
from dpop_middleware.core.config import VerifierConfig
from dpop_middleware.core.token_endpoint import check_token_request
from dpop_middleware.testing import TestIssuer
from dpop_middleware.tokens import IntrospectionValidator, JWTAccessTokenValidator, RemoteJWKSValidator

# -- the documented rejections -------------------------------------------------------------------

PACKAGE = Path(dpop_middleware.__file__).parent
# Reason codes are string literals handed to an exception (or NonceCheck) constructor, to the
# helpers that build one, or assigned to a ``reason``; f-string placeholders become wildcards.
_REASON_SOURCES = (
    re.compile(r'(?:Error|Unavailable|Required|Rejected|_bad|_unavailable|NonceCheck)\(\s*(?:[\w.]+,\s*)?f?"([a-z0-9_{}]+)"'),
    re.compile(r'reason\s*=\s*"([a-z0-9_]+)"'),
    re.compile(r'json_object\(\s*\w+,\s*"([a-z0-9_]+)"'),
)
#: The verifier's answer to a validator that raised something other than a DPoPError: a crash.
CRASH_REASONS = frozenset({"token_validator_error", "rejected"})


@cache
def documented_reasons() -> re.Pattern[str]:
    """Every reason code the package raises, read from its source (so fixes may add their own)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for pattern in _REASON_SOURCES:
            found.update(pattern.findall(text))
    found -= CRASH_REASONS
    alternatives = sorted(re.sub(r"\\\{\w+\\\}", "[a-z_]+", re.escape(code)) for code in found)
    return re.compile("|".join(alternatives))


def test_reason_list_is_read_from_the_source() -> None:
    pattern = documented_reasons()
    for code in ("bad_signature", "jwk_unsupported_curve", "token_wrong_audience", "introspection_malformed",
                 "jwks_malformed", "nonce_missing", "iat_too_old", "bad_base64url", "token_exp_invalid"):
        assert pattern.fullmatch(code), code
    assert not pattern.fullmatch("token_validator_error")


# -- the odd values ------------------------------------------------------------------------------

ABSENT: Any = object()
SAME: Any = object()  # leaves the member as it is: the baseline
ODD: dict[str, Any] = {
    "list": ["x"],
    "empty_list": [],
    "object": {"k": "v"},
    "empty_object": {},
    "int": 7,
    "zero": 0,
    "negative": -1,
    "float": 1.5,
    "true": True,
    "false": False,
    "null": None,
    "empty_string": "",
    "lone_surrogate": "\ud800",  # what json.loads makes of "\\ud800"
    "surrogate_in_text": "ab\udc00cd",
    "int40": 10**39,  # 40 digits
    "neg_int40": -(10**39),
    "long_string": "A" * 2000,  # fits in a proof
    "huge_string": "A" * 100_000,  # does not
    "absent": ABSENT,
}
KINDS = tuple(ODD)
ALL = frozenset(KINDS)
PRESENT = ALL - {"absent"}
NOT_STR = frozenset(k for k, v in ODD.items() if v is not ABSENT and not isinstance(v, str))
BAD_TEXT = frozenset({"lone_surrogate", "surrogate_in_text"})
# Not a NumericDate (null aside: an optional time claim may be null).
NOT_NUMBER = frozenset(k for k, v in ODD.items() if v is not ABSENT and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))))
PAST = frozenset({"int", "zero", "negative", "float", "neg_int40"})
NONE: frozenset[str] = frozenset()

REJECT, EITHER, ACCEPT = "reject", "either", "accept"

#: member path -> the kinds that must be rejected (other kinds: either), per surface.
RULES: dict[str, dict[tuple[str, ...], frozenset[str]]] = {
    "proof_header": {("typ",): ALL, ("alg",): ALL, ("jwk",): ALL, ("crit",): PRESENT, ("kid",): NONE, ("x-extra",): NONE},
    "jwk_EC": {("kty",): ALL, ("crv",): ALL, ("x",): ALL, ("y",): ALL, ("use",): PRESENT, ("key_ops",): PRESENT,
               ("alg",): PRESENT, ("d",): PRESENT, ("n",): NONE, ("e",): NONE, ("kid",): NONE, ("ext",): NONE,
               ("x5c",): NONE},
    "jwk_OKP": {("kty",): ALL, ("crv",): ALL, ("x",): ALL, ("use",): PRESENT, ("key_ops",): PRESENT, ("alg",): PRESENT,
                ("d",): PRESENT, ("y",): NONE, ("kid",): NONE},
    "jwk_RSA": {("kty",): ALL, ("n",): ALL, ("e",): ALL, ("use",): PRESENT, ("key_ops",): PRESENT, ("alg",): PRESENT,
                ("d",): PRESENT, ("crv",): NONE, ("x",): NONE, ("kid",): NONE},
    "payload": {("jti",): ALL, ("htm",): ALL, ("htu",): ALL, ("iat",): ALL, ("ath",): ALL, ("nonce",): NONE,
                ("x-extra",): NONE},
    "payload_nonce": {("nonce",): ALL},
    "token_endpoint": {("jti",): ALL, ("htm",): ALL, ("htu",): ALL, ("iat",): ALL, ("ath",): NONE, ("x-extra",): NONE},
    "token_header": {("alg",): ALL, ("typ",): ALL, ("kid",): PRESENT - {"null"}, ("crit",): PRESENT, ("x-extra",): NONE},
    "token_claims": {("iss",): ALL, ("aud",): ALL, ("exp",): ALL - {"int40"}, ("nbf",): NOT_NUMBER | {"int40"},
                     ("iat",): NOT_NUMBER | {"int40"}, ("sub",): BAD_TEXT, ("scope",): NOT_STR | BAD_TEXT,
                     ("client_id",): BAD_TEXT, ("cnf",): ALL, ("cnf", "jkt"): ALL, ("jti",): NONE, ("x-extra",): NONE},
    "introspection": {("active",): ALL - {"true"}, ("token_type",): (NOT_STR - {"null"}) | BAD_TEXT,
                      ("exp",): NOT_NUMBER | PAST, ("nbf",): NOT_NUMBER | {"int40"}, ("iat",): NOT_NUMBER | {"int40"},
                      ("iss",): PRESENT, ("aud",): ALL, ("cnf",): ALL, ("cnf", "jkt"): ALL,
                      ("scope",): NOT_STR | BAD_TEXT, ("client_id",): NOT_STR | BAD_TEXT, ("sub",): NOT_STR | BAD_TEXT,
                      ("username",): NOT_STR | BAD_TEXT, ("x-extra",): NONE},
}
# JWKS: the rule is for a token signed by the key of the odd entry; a token signed by the good key
# beside it must pass whatever the odd entry holds (one odd key must not take the others down).
# An entry ``alg`` that is not a string is ignored today (the key then serves every algorithm of its
# type), so only string values that name no algorithm must make the odd key's token fail.
_ENTRY_RULES = {(): ALL, ("kty",): ALL, ("crv",): ALL, ("x",): ALL, ("y",): ALL, ("kid",): ALL, ("use",): PRESENT,
                ("key_ops",): PRESENT, ("d",): PRESENT, ("alg",): BAD_TEXT | {"empty_string", "long_string", "huge_string"},
                ("x-extra",): NONE}
RULES["jwks_static"] = _ENTRY_RULES
RULES["jwks_remote"] = _ENTRY_RULES
RULES["jwks_document"] = {("keys",): ALL, (): PRESENT}

PROOF_SURFACES = ("proof_header", "jwk_EC", "jwk_OKP", "jwk_RSA", "payload", "payload_nonce", "token_endpoint")
TOKEN_SURFACES = ("token_header", "token_claims")
# Members present in each surface's unmutated input (removing a member not there changes nothing).
BASELINE_MEMBERS = {
    "proof_header": {"typ", "alg", "jwk", "kid"},
    "jwk_EC": {"kty", "crv", "x", "y"},
    "jwk_OKP": {"kty", "crv", "x"},
    "jwk_RSA": {"kty", "n", "e"},
    "payload": {"jti", "htm", "htu", "iat", "ath"},
    "payload_nonce": {"nonce"},
    "token_endpoint": {"jti", "htm", "htu", "iat"},
    "token_header": {"alg", "typ", "kid"},
    "token_claims": {"iss", "aud", "exp", "nbf", "iat", "sub", "scope", "client_id", "cnf", "jti"},
    "introspection": {"active", "token_type", "exp", "nbf", "iat", "iss", "aud", "cnf", "scope", "client_id", "sub",
                      "username"},
    "jwks_static": {"", "kty", "crv", "x", "y", "kid", "use", "alg"},
    "jwks_remote": {"", "kty", "crv", "x", "y", "kid", "use", "alg"},
    "jwks_document": {"keys"},
}


@dataclass(frozen=True)
class Mutation:
    surface: str
    path: tuple[str, ...]
    kind: str
    value: Any = field(compare=False, repr=False)
    expect: str = EITHER

    @property
    def name(self) -> str:
        return f"{self.surface}:{'.'.join(self.path) or '<whole>'}={self.kind}"


def expectation(surface: str, path: tuple[str, ...], kind: str) -> str:
    if kind == "huge_string" and surface in PROOF_SURFACES + TOKEN_SURFACES:
        return REJECT  # the size caps
    return REJECT if kind in RULES[surface][path] else EITHER


def _in_baseline(surface: str, path: tuple[str, ...]) -> bool:
    return (path[0] if path else "") in BASELINE_MEMBERS[surface]


def mutations(surfaces: Iterable[str] = tuple(RULES)) -> list[Mutation]:
    """Every (surface, member, kind); removing a member the baseline lacks is no mutation."""
    out = []
    for surface in surfaces:
        for path in RULES[surface]:
            for kind in KINDS:
                if kind == "absent" and not _in_baseline(surface, path):
                    continue
                out.append(Mutation(surface, path, kind, ODD[kind], expectation(surface, path, kind)))
    return out


def mutate(obj: Any, path: tuple[str, ...], value: Any) -> Any:
    """A copy of ``obj`` with the member at ``path`` set to ``value`` (removed for ABSENT)."""
    if value is SAME:
        return copy.deepcopy(obj)
    if not path:
        return value
    out = copy.deepcopy(obj)
    target = out
    for name in path[:-1]:
        target = target[name]
    if value is ABSENT:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return out


# -- the world the mutations are sent into ---------------------------------------------------------

KEYS = {"EC": DPoPKey.generate("ES256"), "OKP": DPoPKey.generate("EdDSA"), "RSA": DPoPKey.generate("PS256")}
ODD_JWKS_KEY = DPoPKey.generate("ES256")  # the key behind the JWKS entry that gets mutated
KEYRING = NonceKeyring({"k1": b"0123456789abcdef0123"})
AS_URL = "https://as.test"
INTROSPECTION_URL = AS_URL + "/introspect"
JWKS_URL = AS_URL + "/jwks"


@dataclass
class Check:
    """One request of a mutation: sent through the verifier (or adapter) of ``route``."""

    label: str
    expect: str
    route: str  # "jwt", "nonce", "introspection", "jwks" (dispatch), "token_endpoint" or "direct"
    method: str
    url: str
    headers: list[tuple[str, str]]
    direct: Callable[[], object] | None = None  # the validator (or KeySet) called without the verifier
    direct_expect: str | None = None  # what the validator alone must do (default: as ``expect``)

    def request(self) -> RequestInfo:
        return RequestInfo(self.method, self.url, self.headers)


class KeyLost(Exception):
    """The good key of a JWKS with an odd entry did not survive the import."""


class DispatchValidator:
    """Routes each token to the validator made for it (one RemoteJWKSValidator per mutated JWKS)."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}

    def validate(self, token: str) -> Any:
        return self.routes[token].validate(token)

    async def avalidate(self, token: str) -> Any:
        return await self.routes[token].avalidate(token)


class World:
    """Keys, an issuer, the fake authorization server and the mutated inputs for one URL and clock."""

    def __init__(self, url: str, clock: Callable[[], float], token_url: str = "https://as.test/token") -> None:
        self.url = url
        self.token_url = token_url
        self.clock = clock
        self.issuer = TestIssuer(clock=clock)
        self.answers: dict[str, Any] = {}
        transport = httpx.MockTransport(self._introspect)
        self.introspection = IntrospectionValidator(
            endpoint=INTROSPECTION_URL,
            issuer=self.issuer.issuer,
            audience=self.issuer.audience,
            client_id="rs",
            client_secret="s3cret",
            cache_size=0,
            clock=clock,
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport),
        )
        self.jwks = DispatchValidator()

    def _introspect(self, request: httpx.Request) -> httpx.Response:
        token = parse_qs(request.content.decode())["token"][0]
        return httpx.Response(200, content=json.dumps(self.answers[token]).encode())

    # -- pieces ------------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def proof_claims(self, token: str | None, htm: str = "GET", htu: str | None = None) -> dict[str, Any]:
        claims: dict[str, Any] = {"jti": secrets.token_urlsafe(12), "htm": htm, "htu": htu or self.url, "iat": self.now()}
        if token is not None:
            claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
        return claims

    def proof_header(self, key: DPoPKey) -> dict[str, Any]:
        return {"typ": "dpop+jwt", "alg": key.alg, "jwk": dict(key.public_jwk), "kid": "client-key"}

    def token_parts(self, jkt: str) -> tuple[dict[str, Any], dict[str, Any]]:
        now = self.now()
        header = {"alg": self.issuer.signing_key.alg, "typ": "at+jwt", "kid": self.issuer.kid}
        body = {"iss": self.issuer.issuer, "aud": self.issuer.audience, "sub": "alice", "client_id": "app",
                "iat": now, "nbf": now - 10, "exp": now + 600, "jti": secrets.token_urlsafe(8), "scope": "read",
                "cnf": {"jkt": jkt}}
        return header, body

    def answer(self, jkt: str) -> dict[str, Any]:
        now = self.now()
        return {"active": True, "token_type": "DPoP", "exp": now + 600, "nbf": now - 10, "iat": now,
                "iss": self.issuer.issuer, "aud": self.issuer.audience, "cnf": {"jkt": jkt}, "scope": "read",
                "client_id": "app", "sub": "alice", "username": "alice"}

    def dpop(self, token: str, key: DPoPKey) -> list[tuple[str, str]]:
        proof = key.sign(self.proof_header(key), self.proof_claims(token))
        return [("Authorization", f"DPoP {token}"), ("DPoP", proof)]

    def jwks_entries(self) -> tuple[dict[str, Any], dict[str, Any]]:
        odd = dict(ODD_JWKS_KEY.public_jwk, kid="odd", use="sig", alg="ES256")
        good = dict(self.issuer.signing_key.public_jwk, kid="good", use="sig", alg=self.issuer.signing_key.alg)
        return odd, good

    def jwks_token(self, key: DPoPKey, kid: str, client: DPoPKey) -> str:
        header, body = self.token_parts(client.jkt)
        return key.sign(dict(header, kid=kid), body)

    # -- a mutation as requests --------------------------------------------------------------

    def checks(self, m: Mutation) -> list[Check]:
        s, value = m.surface, m.value
        client = KEYS[s[4:]] if s.startswith("jwk_") else KEYS["EC"]
        if s in PROOF_SURFACES:
            header = self.proof_header(client)
            if s == "token_endpoint":
                claims = self.proof_claims(None, "POST", self.token_url)
                proof = client.sign(header, mutate(claims, m.path, value))
                return [Check("proof", m.expect, "token_endpoint", "POST", self.token_url, [("DPoP", proof)])]
            token = self.issuer.token(client.jkt)
            claims = self.proof_claims(token)
            route = "jwt"
            if s == "payload_nonce":
                claims["nonce"] = KEYRING.issue(self.clock())
                route = "nonce"
            if s == "proof_header":
                header = mutate(header, m.path, value)
            elif s.startswith("jwk_"):
                header["jwk"] = mutate(header["jwk"], m.path, value)
            else:
                claims = mutate(claims, m.path, value)
            proof = client.sign(header, claims)
            return [Check("proof", m.expect, route, "GET", self.url, [("Authorization", f"DPoP {token}"), ("DPoP", proof)])]
        if s in TOKEN_SURFACES:
            header, body = self.token_parts(client.jkt)
            if s == "token_header":
                header = mutate(header, m.path, value)
            else:
                body = mutate(body, m.path, value)
            token = self.issuer.signing_key.sign(header, body)
            return [Check("token", m.expect, "jwt", "GET", self.url, self.dpop(token, client))]
        if s == "introspection":
            token = "op_" + secrets.token_urlsafe(16)
            self.answers[token] = mutate(self.answer(client.jkt), m.path, value)
            return [Check("introspected", m.expect, "introspection", "GET", self.url, self.dpop(token, client),
                          direct=lambda: self.introspection.validate(token),
                          # the validator may leave a mismatch (cnf.jkt, say) to the verifier
                          direct_expect=EITHER)]
        return self._jwks_checks(m, client)

    def _jwks_checks(self, m: Mutation, client: DPoPKey) -> list[Check]:
        odd, good = self.jwks_entries()
        if m.surface == "jwks_document":
            document: Any = mutate({"keys": [odd, good]}, m.path, m.value)
        else:
            entry = mutate(odd, m.path, m.value)
            document = {"keys": ([] if entry is ABSENT else [entry]) + [good]}
        good_token = self.jwks_token(self.issuer.signing_key, "good", client)
        odd_token = self.jwks_token(ODD_JWKS_KEY, "odd", client)
        good_expect = REJECT if m.surface == "jwks_document" else ACCEPT
        if m.surface == "jwks_static":
            def static(token: str) -> Callable[[], object]:
                return lambda: JWTAccessTokenValidator(issuer=self.issuer.issuer, audience=self.issuer.audience,
                                                       jwks=document, clock=self.clock).validate(token)

            def keyset() -> object:
                kids = [kid for kid, _, _ in KeySet(document).keys]
                if "good" not in kids:
                    raise KeyLost(f"KeySet kept {kids}")
                return kids

            return [Check("keyset", ACCEPT, "direct", "GET", self.url, [], direct=keyset),
                    Check("good_key", ACCEPT, "direct", "GET", self.url, [], direct=static(good_token)),
                    Check("odd_key", m.expect, "direct", "GET", self.url, [], direct=static(odd_token))]
        body = json.dumps(document).encode()
        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
        validator = RemoteJWKSValidator(issuer=self.issuer.issuer, audience=self.issuer.audience, jwks_uri=JWKS_URL,
                                        clock=self.clock, http_client=httpx.Client(transport=transport),
                                        async_http_client=httpx.AsyncClient(transport=transport))
        checks = []
        for label, token, expect in (("good_key", good_token, good_expect), ("odd_key", odd_token, m.expect)):
            self.jwks.routes[token] = validator
            checks.append(Check(label, expect, "jwks", "GET", self.url, self.dpop(token, client),
                                direct=lambda token=token: validator.validate(token)))
        return checks


# -- judging -------------------------------------------------------------------------------------


def where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "dpop_middleware" in f.filename] or frames
    frame = ours[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def judge(name: str, expect: str, call: Callable[[], object]) -> str | None:
    """What is wrong with the outcome of ``call`` (``None``: nothing)."""
    try:
        call()
    except DPoPError as exc:
        if exc.reason in CRASH_REASONS or not documented_reasons().fullmatch(exc.reason):
            return f"{name}: undocumented reason {exc.reason!r} ({type(exc).__name__})"
        if not type(exc).__module__.startswith("dpop_middleware.core"):
            return f"{name}: {type(exc).__name__} is not a core error"
        if expect == ACCEPT:
            return f"{name}: must be accepted, rejected with {exc.reason!r}"
        return None
    except Exception as exc:
        return f"{name}: raised {type(exc).__name__}: {str(exc)[:120]} at {where(exc)}"
    if expect == REJECT:
        return f"{name}: accepted, must be rejected"
    return None


def verifiers(world: World, clock: Callable[[], float]) -> dict[str, DPoPVerifier]:
    store = MemoryReplayStore(clock=clock)
    jwt = world.issuer.validator()
    return {
        "jwt": DPoPVerifier(jwt, replay_store=store, clock=clock),
        "nonce": DPoPVerifier(jwt, replay_store=store, clock=clock, nonce_policy="always", nonce_keyring=KEYRING),
        "introspection": DPoPVerifier(world.introspection, replay_store=store, clock=clock),
        "jwks": DPoPVerifier(world.jwks, replay_store=store, clock=clock),
    }


CLOCK = TestClock(NOW)
WORLD = World("https://api.example.com/v1/items", CLOCK)
VERIFIERS = verifiers(WORLD, CLOCK)
CONFIG = VerifierConfig()


def problems(m: Mutation, world: World = WORLD, expect: str | None = None) -> list[str]:
    """What goes wrong with mutation ``m`` (every check expected ``expect``, when given)."""
    out = []
    for check in world.checks(m):
        if expect is not None:
            check.expect = expect
        name = f"{m.name} [{check.label}]"
        if check.direct is not None:
            direct_expect = check.direct_expect if check.direct_expect and expect is None else check.expect
            out.append(judge(name + " direct", direct_expect, check.direct))
        if check.route == "token_endpoint":
            request = check.request()
            out.append(judge(name, check.expect, lambda: check_token_request(request, config=CONFIG, now=CLOCK.now)))
        elif check.route != "direct":
            out.append(judge(name, check.expect, lambda check=check: VERIFIERS[check.route].verify(check.request())))
    return [p for p in out if p]


# -- the tests -----------------------------------------------------------------------------------


def test_unmutated_inputs_are_accepted() -> None:
    """Every surface's baseline passes, so each mutation below is what makes the difference."""
    for surface, rules in RULES.items():
        if surface == "jwks_document":
            continue
        m = Mutation(surface, next(iter(rules)), "baseline", SAME, ACCEPT)
        assert not problems(m, expect=ACCEPT), surface


MUTATIONS = mutations()


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_every_member_with_every_json_type(mutation: Mutation) -> None:
    found = problems(mutation)
    assert not found, "\n".join(found)


# -- hypothesis: random JSON in the same places ----------------------------------------------------

_text = st.text(st.characters() | st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(10**30, 10**50) | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=8,
)
# Members whose value must be a string: anything else is refused, whatever it is.
MUST_BE_TEXT = {
    "proof_header": {("typ",), ("alg",)},
    "jwk_EC": {("kty",), ("crv",), ("x",), ("y",)},
    "jwk_OKP": {("kty",), ("crv",), ("x",)},
    "jwk_RSA": {("kty",), ("n",), ("e",)},
    "payload": {("jti",), ("htm",), ("htu",), ("ath",)},
    "payload_nonce": {("nonce",)},
    "token_endpoint": {("jti",), ("htm",), ("htu",)},
    "token_header": {("alg",), ("typ",)},
    "token_claims": {("iss",), ("cnf", "jkt")},
    "introspection": {("cnf", "jkt")},
    "jwks_static": {("kty",), ("crv",), ("x",), ("y",)},
    "jwks_remote": {("kty",), ("crv",), ("x",), ("y",)},
    "jwks_document": set(),
}
HYPOTHESIS = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None)


def random_mutation(surface: str, path: tuple[str, ...], value: Any) -> Mutation:
    must = path in MUST_BE_TEXT[surface] and not isinstance(value, str)
    return Mutation(surface, path, "random", value, REJECT if must else EITHER)


@pytest.mark.parametrize("surface", list(RULES))
@HYPOTHESIS
@given(data=st.data())
def test_random_json_in_every_member(surface: str, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(list(RULES[surface])), label="member")
    value = data.draw(json_values, label="value")
    m = random_mutation(surface, path, value)
    found = problems(m)
    assert not found, "\n".join(found) + f"\nvalue: {value!r}"
