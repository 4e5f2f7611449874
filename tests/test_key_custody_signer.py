"""The signer process, started for real: proofs over a 0600 Unix socket, hostile input, signer down."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
from asgi_apps.apps import bare_app as asgi_bare_app
from wsgi_app_support import bare_app

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey, ProofKey, token_hash
from dpop_middleware.core.jose import b64url_decode
from dpop_middleware.core.request import RequestInfo
from dpop_middleware.httpx_auth import DPoPAuth
from dpop_middleware.requests_auth import DPoPAuth as RequestsDPoPAuth
from dpop_middleware.signer import SignerError, SignerKey, SignerUnavailableError, serve
from dpop_middleware.starlette import DPoPMiddleware
from dpop_middleware.testing import TestIssuer
from dpop_middleware.wsgi import DPoPWSGIMiddleware


@contextlib.contextmanager
def signer_process(
    sock: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dpop_middleware.signer", "--socket", str(sock), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the ready line, printed once the socket is bound
        assert line, proc.stderr.read() if proc.stderr else "signer exited"
        yield proc, json.loads(line)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Path, DPoPKey, subprocess.Popen[str]]]:
    yield from _started(tmp_path)


@pytest.fixture(scope="module")
def shared_signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, DPoPKey, subprocess.Popen[str]]]:
    yield from _started(tmp_path_factory.mktemp("signer"))


def _started(tmp_path: Path) -> Iterator[tuple[Path, DPoPKey, subprocess.Popen[str]]]:
    key = DPoPKey.generate("ES256")
    pem = tmp_path / "dpop.pem"
    pem.write_bytes(key.private_pem())
    sock = tmp_path / "dpop.sock"
    with signer_process(sock, "--key-file", str(pem)) as (proc, ready):
        assert ready == {"ready": str(sock), "jkt": key.jkt}
        yield sock, key, proc
    assert not sock.exists(), "a stopped signer removes its socket"


def _raw(sock: Path, data: bytes, *, shutdown: bool = True) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(sock))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(data)
        if shutdown:
            with contextlib.suppress(OSError):  # the signer may have hung up on an overlong request
                conn.shutdown(socket.SHUT_WR)
        reply = conn.makefile("rb").readline()
    return json.loads(reply)


def test_socket_is_owner_only_and_the_agent_holds_only_the_public_key(signer: tuple[Path, DPoPKey, object]) -> None:
    sock, key, _ = signer
    mode = sock.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    agent_key = SignerKey(str(sock))
    assert isinstance(agent_key, ProofKey)
    assert (agent_key.jkt, agent_key.alg, agent_key.public_jwk) == (key.jkt, "ES256", key.public_jwk)
    assert agent_key.public_jwk_dict() == key.public_jwk_dict() == {**key.public_jwk, "alg": "ES256"}
    assert agent_key.public_jwk_dict(include_alg=False) == key.public_jwk
    assert not hasattr(agent_key, "private_pem") and not hasattr(agent_key, "sign")
    assert set(_raw(sock, b"{\"op\":\"key\"}\n")["jwk"]) == {"kty", "crv", "x", "y"}  # type: ignore[arg-type]
    assert repr(agent_key) == f"SignerKey(path={str(sock)!r}, alg='ES256', jkt={key.jkt!r})"


def test_proofs_from_the_signer_verify_through_httpx_sync_async_and_requests(
    signer: tuple[Path, DPoPKey, object],
) -> None:
    sock, key, _ = signer
    agent_key = SignerKey(str(sock))
    issuer = TestIssuer(audience="https://api.test")
    token = issuer.token(agent_key.jkt)
    wsgi = DPoPWSGIMiddleware(bare_app, DPoPVerifier(issuer.validator()))
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://localhost") as client:
        first = client.get("/protected", auth=DPoPAuth(agent_key, token))
        assert first.status_code == 200 and first.json()["jkt"] == key.jkt
        second = client.post("/protected?x=1", auth=DPoPAuth(agent_key, token))
        assert second.status_code == 200  # a new jti each time: no replay refusal

    async def over_asgi() -> int:
        app = DPoPMiddleware(asgi_bare_app, verifier=DPoPVerifier(issuer.validator()))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return (await client.get("/protected", auth=DPoPAuth(agent_key, token))).status_code

    import asyncio

    assert asyncio.run(over_asgi()) == 200

    # requests: the prepared request's headers carry the signer's proof; the verifier accepts it.
    prepared = requests.Request("GET", "https://api.test/things?page=2").prepare()
    RequestsDPoPAuth(agent_key, token)(prepared)
    proof = prepared.headers["DPoP"]
    claims = json.loads(b64url_decode(proof.split(".")[1]))
    assert claims["htu"] == "https://api.test/things" and claims["ath"] == token_hash(token)
    principal = DPoPVerifier(issuer.validator()).verify(
        RequestInfo("GET", "https://api.test/things?page=2", list(prepared.headers.items()))
    )
    assert principal.jkt == key.jkt


def test_the_signer_chooses_jti_and_iat_and_refuses_other_claims(signer: tuple[Path, DPoPKey, object]) -> None:
    sock, _, _ = signer
    ask = {"op": "proof", "htm": "GET", "htu": "https://api.test/x", "ath": None, "nonce": "n-1"}
    reply = _raw(sock, json.dumps(ask).encode() + b"\n")
    claims = json.loads(b64url_decode(str(reply["proof"]).split(".")[1]))
    assert set(claims) == {"jti", "htm", "htu", "iat", "nonce"}
    assert abs(claims["iat"] - time.time()) < 30
    sneaky = dict(ask, iat=0, jti="mine")
    assert _raw(sock, json.dumps(sneaky).encode() + b"\n") == {"ok": False, "error": "unknown members: iat, jti"}


HOSTILE = [
    (b"garbage\n", "not JSON"),
    (b"\xff\xfe\xfd\n", "not JSON"),
    (b'{"op": "\xc3\x28"}\n', "not JSON"),  # invalid UTF-8
    (b'{"op": "proof", "htm": ' + b"9" * 5000 + b"}\n", ""),  # an error either way: int-size guard or htm check
    (b"[1, 2]\n", "a request is a JSON object"),
    (b'{"op": 7}\n', 'op must be "key" or "proof"'),
    (b'{"op": "proof", "htm": ["GET"], "htu": "https://a.test/"}\n', "htm must be an HTTP method"),
    (b'{"op": "proof", "htm": "GET", "htu": 5}\n', "htu must be an absolute"),
    (b'{"op": "proof", "htm": "GET", "htu": "file:///etc/passwd"}\n', "htu must be an absolute"),
    (b'{"op": "proof", "htm": "GET", "htu": "https://a.test/ x"}\n', "htu must be an absolute"),
    (b'{"op": "proof", "htm": "GET", "htu": "https://a.test/", "ath": "short"}\n', "ath must be"),
    (b'{"op": "proof", "htm": "GET", "htu": "https://a.test/", "nonce": "a b"}\n', "nonce must be"),
    (b'{"op": "proof", "htm": "G E T", "htu": "https://a.test/"}\n', "htm must be an HTTP method"),
    (b"[" * 9000 + b"\n", "request longer than"),  # not even parsed: longer than a request can be
    (b"[" * 3000 + b"\n", "too deep"),
    (b"x" * 2_000_000, "request longer than"),  # huge and without a newline
    (b'{"op": "key"', "request longer than"),  # cut off: the peer closed before the newline
]


@pytest.mark.parametrize(("data", "error"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_gets_an_error_reply_and_the_signer_keeps_serving(
    shared_signer: tuple[Path, DPoPKey, subprocess.Popen[str]], data: bytes, error: str
) -> None:
    sock, key, proc = shared_signer
    reply = _raw(sock, data)
    assert reply["ok"] is False and error in str(reply["error"]), reply
    assert proc.poll() is None
    assert SignerKey(str(sock)).jkt == key.jkt


def test_a_silent_connection_does_not_block_others(signer: tuple[Path, DPoPKey, object]) -> None:
    sock, key, _ = signer
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(str(sock))
        idle.sendall(b'{"op": "ke')  # half a request, then nothing
        started = time.monotonic()
        assert SignerKey(str(sock), timeout=2).jkt == key.jkt
        assert time.monotonic() - started < 2


def test_signer_down_is_a_clear_client_error(tmp_path: Path, signer: tuple[Path, DPoPKey, object]) -> None:
    with pytest.raises(SignerUnavailableError, match=r"signer at .*missing\.sock is not reachable \(FileNotFoundError\)"):
        SignerKey(str(tmp_path / "missing.sock"))
    sock, _, proc = signer
    agent_key = SignerKey(str(sock))
    os.killpg(proc.pid, signal.SIGTERM)  # type: ignore[attr-defined]
    proc.wait(timeout=10)  # type: ignore[attr-defined]
    with pytest.raises(SignerUnavailableError, match="is it running"):
        agent_key.proof("GET", "https://api.test/x", access_token="t")
    issuer = TestIssuer(audience="https://api.test")
    wsgi = DPoPWSGIMiddleware(bare_app, DPoPVerifier(issuer.validator()))
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://localhost") as client:
        with pytest.raises(SignerUnavailableError):
            client.get("/protected", auth=DPoPAuth(agent_key, issuer.token(agent_key.jkt)))


def test_a_peer_with_another_uid_is_refused(tmp_path: Path) -> None:
    sock = tmp_path / "uid.sock"
    with signer_process(sock, "--allow-uid", str(os.getuid() + 4242)):
        with pytest.raises(SignerError, match="peer not allowed"):
            SignerKey(str(sock))


def test_a_proof_for_another_key_is_refused_by_the_client(tmp_path: Path) -> None:
    honest, other = DPoPKey.generate(), DPoPKey.generate()

    class Switching:
        """Announces one key, then signs with another: a compromised or confused signer."""

        alg = "ES256"
        calls = 0

        @property
        def public_jwk(self) -> dict[str, str]:
            Switching.calls += 1
            return honest.public_jwk if Switching.calls == 1 else other.public_jwk

        @property
        def jkt(self) -> str:
            return honest.jkt

        def sign_bytes(self, signing_input: bytes) -> bytes:
            return other.sign_bytes(signing_input)

    sock = tmp_path / "switch.sock"
    server = serve(str(sock), Switching())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        agent_key = SignerKey(str(sock))
        assert agent_key.jkt == honest.jkt
        with pytest.raises(SignerError, match="another key or request"):
            agent_key.proof("GET", "https://api.test/x")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_serve_refuses_to_replace_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    with pytest.raises(ValueError, match="not a socket"):
        serve(str(target), DPoPKey.generate())
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key-file", "/nonexistent/key.pem"], "cannot load the key: FileNotFoundError"),
        (["--pkcs11-module", "/nonexistent/module.so"], "DPOP_PKCS11_PIN, which is not set"),
    ],
)
def test_start_up_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DPOP_PKCS11_PIN"}
    done = subprocess.run(
        [sys.executable, "-m", "dpop_middleware.signer", "--socket", str(tmp_path / "s.sock"), *args],
        capture_output=True, text=True, timeout=30, check=False, env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_socket_path_that_cannot_be_bound_is_one_clear_line(tmp_path: Path) -> None:
    sock = tmp_path / ("x" * 120) / "s.sock"  # longer than sun_path, in a directory that does not exist
    done = subprocess.run(
        [sys.executable, "-m", "dpop_middleware.signer", "--socket", str(sock)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "cannot listen on" in done.stderr and "Traceback" not in done.stderr, done.stderr


class SlowKey:
    """A key that signs elsewhere and slowly (a smart card, a busy signer): 0.3 s a proof."""

    def __init__(self) -> None:
        self.key = DPoPKey.generate()
        self.alg, self.jkt = self.key.alg, self.key.jkt

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None) -> str:
        time.sleep(0.3)
        return self.key.proof(method, url, access_token=access_token, nonce=nonce)


def test_async_client_signs_an_out_of_process_key_off_the_event_loop() -> None:
    import asyncio

    from dpop_middleware import NonceKeyring

    issuer = TestIssuer(audience="https://api.test")
    keyring = NonceKeyring({"k1": b"0123456789abcdef0123"})
    # nonce_policy="always": the first request is challenged, so the retry path is offloaded too.
    verifier = DPoPVerifier(issuer.validator(), nonce_policy="always", nonce_keyring=keyring)
    app = DPoPMiddleware(asgi_bare_app, verifier=verifier)
    key = SlowKey()

    async def run() -> tuple[int, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            response = await client.get("/protected", auth=DPoPAuth(key, issuer.token(key.jkt)))
        done.set()
        await task
        return response.status_code, ticks

    status, ticks = asyncio.run(run())
    assert status == 200
    # Two proofs of 0.3 s each: a loop blocked by signing would tick a couple of times at most.
    assert ticks >= 20, ticks


def test_more_connections_than_slots_get_busy_not_a_hang(signer: tuple[Path, DPoPKey, object]) -> None:
    from dpop_middleware.signer import _MAX_CONNECTIONS

    sock, key, _ = signer
    idle: list[socket.socket] = []
    try:
        for _ in range(_MAX_CONNECTIONS):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(sock))
            conn.sendall(b'{"op": "key"}\n')
            conn.settimeout(5)
            assert conn.makefile("rb").readline()  # served: the connection now holds a slot
            idle.append(conn)
        with pytest.raises(SignerError, match="busy"):
            SignerKey(str(sock))
    finally:
        for conn in idle:
            conn.close()
    deadline = time.monotonic() + 5
    while True:  # the slots come back as soon as the peers hang up
        try:
            assert SignerKey(str(sock)).jkt == key.jkt
            break
        except SignerError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def _proof_reply(sock: Path, htu: str) -> dict[str, object]:
    return _raw(sock, json.dumps({"op": "proof", "htm": "GET", "htu": htu}).encode() + b"\n")


def test_a_signer_with_allowed_origins_signs_for_those_origins_only(tmp_path: Path) -> None:
    key = DPoPKey.generate()
    pem = tmp_path / "dpop.pem"
    pem.write_bytes(key.private_pem())
    sock = tmp_path / "dpop.sock"
    origins = ("--allowed-origin", "https://api.test", "--allowed-origin", "http://127.0.0.1:8080/")
    with signer_process(sock, "--key-file", str(pem), *origins) as (proc, _):
        for htu in (
            "https://api.test/items",
            "https://API.test:443/items?q=1",  # the same origin, spelled otherwise
            "wss://api.test/stream",  # a WebSocket on that origin
            "https://api.test",
            "http://127.0.0.1:8080/x",
        ):
            assert _proof_reply(sock, htu)["ok"] is True, htu
        for htu in (
            "https://evil.test/items",
            "http://api.test/items",  # another scheme: another origin
            "https://api.test:8443/items",
            "https://api.test.evil.test/items",
            "https://api.test@evil.test/items",  # user info: which host would a parser pick?
            "https://evil.test\\@api.test/items",
            "https://api.test\\.evil.test/items",
            "http://127.0.0.1:8081/x",
        ):
            reply = _proof_reply(sock, htu)
            assert reply == {"ok": False, "error": "htu is not on an origin this signer signs for"}, htu
        assert SignerKey(str(sock)).proof("GET", "https://api.test/me")  # the client path too
        with pytest.raises(SignerError, match="not on an origin"):
            SignerKey(str(sock)).proof("GET", "https://evil.test/me")
    assert proc.stderr is not None and "no --allowed-origin" not in proc.stderr.read()


def test_a_signer_without_allowed_origins_says_it_signs_for_any(signer: tuple[Path, DPoPKey, subprocess.Popen[str]]) -> None:
    sock, _, proc = signer
    assert _proof_reply(sock, "https://anything.test/x")["ok"] is True
    proc.terminate()
    proc.wait(10)
    assert proc.stderr is not None and "no --allowed-origin" in proc.stderr.read()


@pytest.mark.parametrize("origin", ["https://api.test/path", "ftp://api.test", "https://user@api.test", "api.test"])
def test_an_allowed_origin_that_is_no_origin_is_one_clear_line(tmp_path: Path, origin: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dpop_middleware.signer", "--socket", str(tmp_path / "s.sock"), "--allowed-origin", origin],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--allowed-origin" in done.stderr and "scheme://host[:port]" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s.sock").exists()


def test_serve_names_an_allowed_origin_that_is_no_origin(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'https://api.test/x': expected scheme://host\[:port\]"):
        serve(str(tmp_path / "s.sock"), DPoPKey.generate(), allowed_origins=["https://api.test/x"])
    server = serve(str(tmp_path / "s.sock"), DPoPKey.generate(), allowed_origins="https://api.test")  # one, as text
    try:
        assert server.allowed_origins == frozenset({"https://api.test:443"})
    finally:
        server.server_close()
