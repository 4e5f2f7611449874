"""The Redis replay stores on a real three-master Redis Cluster (``redis+cluster://``).

Keys land on every shard, each request is one ``SET`` on one shard, and each sample under several
workers accepts a proof raced by 16 clients exactly once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis_topologies import redis_cluster, require_redis_binaries

from dpop_middleware.client import DPoPKey
from dpop_middleware.stores.redis import DEFAULT_PREFIX, AsyncRedisReplayStore, RedisReplayStore
from sample_projects.demo.processes import ROOT, ServerGroup, free_port
from sample_projects.demo.story import DPoPSession, TokenClient

THREADS = 16
ROUNDS = 3
COMMANDS = {
    "django": ["-m", "gunicorn", "-w", "3", "sample_projects.django_api.wsgi:application"],
    "flask": ["-m", "gunicorn", "-w", "3", "sample_projects.flask_api.app:create_app()"],
    "fastapi": ["-m", "uvicorn", "--workers", "3", "--factory", "sample_projects.fastapi_api.app:create_app"],
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    require_redis_binaries()
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as ports:
        yield ports


def _url(ports: list[int]) -> str:
    return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports[:2])  # the third is learnt


def _shards(ports: list[int]) -> list[redis.Redis]:
    return [redis.Redis(port=p, socket_timeout=2) for p in ports]


def _set_calls(nodes: list[redis.Redis]) -> int:
    return sum(int(n.info("commandstats").get("cmdstat_set", {}).get("calls", 0)) for n in nodes)


def _other_calls(nodes: list[redis.Redis]) -> dict[str, int]:
    calls: dict[str, int] = {}
    for node in nodes:
        for name, stats in node.info("commandstats").items():
            if name not in ("cmdstat_set", "cmdstat_info", "cmdstat_config|resetstat"):
                calls[name] = calls.get(name, 0) + int(stats["calls"])
    return calls


def test_keys_land_on_every_shard_one_set_each(cluster: list[int]) -> None:
    nodes = _shards(cluster)
    store = RedisReplayStore(_url(cluster), prefix="shards:")
    for _ in range(30):  # connects to each shard once (CLUSTER SLOTS, HELLO...): not per request
        assert store.add_if_absent(os.urandom(16), 30) is True
    for node in nodes:
        node.config_resetstat()
    keys = [os.urandom(16) for _ in range(60)]
    assert [store.add_if_absent(k, 30) for k in keys] == [True] * 60
    assert [store.add_if_absent(k, 30) for k in keys] == [False] * 60
    assert _set_calls(nodes) == 120  # one command a request, sent to the shard that owns the key
    assert _other_calls(nodes) == {}
    per_shard = [len(node.keys("shards:*")) for node in nodes]
    assert all(count > 0 for count in per_shard), per_shard
    assert sum(per_shard) == 90
    store.close()
    for node in nodes:
        node.close()


def test_async_store_on_the_cluster_races_to_one_winner(cluster: list[int]) -> None:
    async def race() -> list[bool]:
        store = AsyncRedisReplayStore(_url(cluster))
        try:
            keys = [os.urandom(16) for _ in range(20)]
            answers = await asyncio.gather(*(store.add_if_absent(k, 30) for k in keys * 4))
        finally:
            await store.aclose()
        return answers

    answers = asyncio.run(race())
    assert answers.count(True) == 20 and answers.count(False) == 60


def test_wait_for_replicas_is_refused_on_a_cluster(cluster: list[int]) -> None:
    with pytest.raises(ValueError, match="not supported with Redis Cluster"):
        RedisReplayStore(_url(cluster), wait_replicas=1)


# -- each sample, several workers, one cluster ------------------------------------------------------


@pytest.fixture(scope="module")
def issuer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ServerGroup(tmp_path_factory.mktemp("issuer")) as group:
        server = group.start("issuer", "sample_projects.issuer", {})
        group.wait_ready(30)
        yield server.url


def _serve(name: str, port: int, env_extra: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, *COMMANDS[name]]
    argv += ["-b", f"127.0.0.1:{port}"] if "gunicorn" in argv else ["--host", "127.0.0.1", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPOP_")}
    env.update(env_extra, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="sample_projects.django_api.settings")
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                time.sleep(1.0)  # let the other workers finish importing the app too
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def race(url: str, headers: dict[str, str], threads: int = THREADS) -> list[int]:
    """``threads`` clients send the same request at the same instant; their statuses."""
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with httpx.Client(timeout=20) as http:
            barrier.wait()
            status = http.get(url, headers=headers).status_code
        with lock:
            statuses.append(status)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(30)
    return statuses


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_sample_workers_on_the_cluster_accept_a_raced_proof_exactly_once(
    name: str, cluster: list[int], issuer_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / f"{name}.log"
    process = _serve(name, port, {"DPOP_ISSUER": issuer_url, "DPOP_REPLAY_STORE": _url(cluster)}, log)
    nodes = _shards(cluster)
    before = {k for n in nodes for k in n.keys(DEFAULT_PREFIX + b"*")}
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, process)
        key = DPoPKey.generate("ES256")
        with httpx.Client(timeout=10) as http:
            token = TokenClient(f"{issuer_url}/token").request(DPoPSession(http, key), "notes:read").response.json()
        for _ in range(ROUNDS):
            proof = key.proof("GET", f"{base}/api/me", access_token=token["access_token"])
            statuses = race(f"{base}/api/me", {"Authorization": f"DPoP {token['access_token']}", "DPoP": proof})
            assert sorted(statuses) == [200] + [401] * (THREADS - 1), (
                statuses,
                log.read_text(errors="replace")[-2000:],
            )
    finally:
        os.killpg(process.pid, 15)
        process.wait(10)
    written = {k for n in nodes for k in n.keys(DEFAULT_PREFIX + b"*")} - before
    assert len(written) == ROUNDS  # one entry a proof, whichever worker won
    for node in nodes:
        node.close()
