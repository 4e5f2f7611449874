"""Scale-out settings: Redis Sentinel and Cluster URLs, a redis-py client as the store, nonce secrets
rotated across instances, and the store's one command a request (``INFO commandstats``)."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from concurrency_apps.support import redis_process

from dpop_middleware import NonceKeyring
from dpop_middleware.settings import (
    BUILDER_NAMES,
    CONFIG_NAMES,
    SettingsError,
    build_replay_store,
    build_verifier,
    environ_settings,
    environ_spell,
    read_settings,
)
from dpop_middleware.stores.redis import AsyncRedisReplayStore, RedisReplayStore
from dpop_middleware.stores.redis_urls import RedisURLError, parse_redis_url
from dpop_middleware.testing import TestIssuer
from sample_projects.common import SampleSettings

# -- URLs -----------------------------------------------------------------------------------------


def test_sentinel_and_cluster_urls_are_parsed() -> None:
    sentinel = parse_redis_url("redis+sentinel://:s3cret@10.0.0.1:26379,[::1]:26380/api-replay/2")
    assert sentinel.kind == "sentinel" and sentinel.service == "api-replay" and sentinel.db == 2
    assert sentinel.nodes == (("10.0.0.1", 26379), ("::1", 26380)) and sentinel.password == "s3cret"
    assert "s3cret" not in repr(sentinel)
    cluster = parse_redis_url("REDIS+CLUSTER://user:pw@a:7000,b:7001")
    assert cluster.kind == "cluster" and cluster.nodes == (("a", 7000), ("b", 7001)) and cluster.username == "user"
    assert parse_redis_url("rediss://h:6380/0").kind == "direct"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://a:26379", "service name"),
        ("redis+sentinel://a:26379/svc/x", "service name"),
        ("redis+sentinel://a:26379/svc/1/2", "service name"),
        ("redis+sentinel://a/svc", "host:port"),
        ("redis+sentinel://a:99999/svc", "host:port"),
        ("redis+sentinel://a:1,,b:2/svc", "host:port"),
        ("redis+cluster://a:7000/0", "no path"),
        ("redis+cluster://a:7000?ssl=1", "no query"),
        ("redis+cluster://:pw@", "host:port"),
        ("memcached://a:1", "scheme"),
    ],
)
def test_malformed_urls_name_the_expected_form_never_the_url(url: str, says: str) -> None:
    with pytest.raises(RedisURLError, match=says) as info:
        parse_redis_url(url)
    assert url not in str(info.value)


@pytest.mark.parametrize("url", ["redis+sentinel://:hunter2hunter2@a:26379", "redis+cluster://:hunter2hunter2@a"])
def test_settings_refuse_a_malformed_url_naming_the_key_and_the_forms(url: str) -> None:
    with pytest.raises(SettingsError) as info:
        build_replay_store({"replay_store": url}, spell=environ_spell)
    text = str(info.value)
    assert text.startswith("DPOP_REPLAY_STORE ")
    assert "redis+sentinel://host:port[,host:port]/service_name[/db]" in text
    assert "redis+cluster://host:port[,host:port]" in text
    assert "hunter2" not in text


def test_settings_build_sentinel_and_cluster_stores_sync_and_async() -> None:
    # Built without connecting: the first request connects.
    sentinel = build_replay_store(
        {"replay_store": "redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/3"}, spell=environ_spell
    )
    assert isinstance(sentinel, RedisReplayStore)
    assert sentinel.client.connection_pool.service_name == "svc"
    assert sentinel.client.connection_pool.connection_kwargs["db"] == 3
    assert sentinel.client.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    cluster = build_replay_store(
        {"replay_store": "redis+cluster://127.0.0.1:1"}, spell=environ_spell, asynchronous=True
    )
    assert isinstance(cluster, AsyncRedisReplayStore)


def test_a_redis_py_client_given_as_the_setting_becomes_its_store() -> None:
    client = redis.Redis(port=1, socket_timeout=0.5)
    store = build_replay_store({"replay_store": client}, spell=environ_spell)
    assert isinstance(store, RedisReplayStore) and store.client is client
    aclient = redis.asyncio.Redis(port=1, socket_timeout=0.5)
    astore = build_replay_store({"replay_store": aclient}, spell=environ_spell, asynchronous=True)
    assert isinstance(astore, AsyncRedisReplayStore) and astore.client is aclient


def test_samples_accept_sentinel_and_cluster_urls_and_refuse_others() -> None:
    for url in ("redis+sentinel://s1:26379,s2:26379/api", "redis+cluster://n1:7000,n2:7000"):
        settings = SampleSettings.from_env({"DPOP_REPLAY_STORE": url}, default_port=8001)
        assert settings.replay_store == url
    with pytest.raises(ValueError, match="DPOP_REPLAY_STORE must be 'memory' or a Redis URL") as info:
        SampleSettings.from_env({"DPOP_REPLAY_STORE": "http://user:pw@x"}, default_port=8001)
    assert "pw" not in str(info.value)


def test_a_client_of_the_wrong_kind_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="AsyncRedisReplayStore"):
        RedisReplayStore(redis.asyncio.Redis(port=1, socket_timeout=0.5))
    with pytest.raises(TypeError, match=r"redis\.asyncio client"):
        AsyncRedisReplayStore(redis.Redis(port=1, socket_timeout=0.5))


def test_wait_options_are_checked() -> None:
    with pytest.raises(ValueError, match="wait_replicas"):
        RedisReplayStore("redis://127.0.0.1:1/0", wait_replicas=-1)
    with pytest.raises(ValueError, match="wait_timeout_ms"):
        RedisReplayStore("redis://127.0.0.1:1/0", wait_replicas=1, wait_timeout_ms=0)


# -- nonce secrets --------------------------------------------------------------------------------


ACCEPTED = BUILDER_NAMES | CONFIG_NAMES


def _instance(issuer: TestIssuer, secrets: str) -> NonceKeyring:
    environ = {"DPOP_NONCE_SECRET": secrets, "DPOP_NONCE": "always"}
    values = environ_settings(environ, accepted=ACCEPTED)
    values["token_validator"] = issuer.validator()
    return build_verifier(values, spell=environ_spell).config.nonce_keyring


def test_nonce_secrets_rotate_across_two_instances_without_a_refused_nonce() -> None:
    """Old only, then old+new (new verifies), then new+old (new signs), then new only: at every step
    one instance may still run the previous phase, and each accepts the other's nonces."""
    issuer = TestIssuer(audience="https://api.test")
    old, new = "old-secret-0123456789", "new-secret-9876543210"
    phases = [old, f"{old},{new}", f" {new} , {old} ", new]
    now = 1_000_000.0
    for previous, following in itertools.pairwise(phases):
        lagging, updated = _instance(issuer, previous), _instance(issuer, following)
        assert updated.check(lagging.issue(now), now).valid, (previous, following)
        assert lagging.check(updated.issue(now), now).valid, (previous, following)
    # Skipping the verify-only phase is what breaks: an instance with only the new secret meets one
    # that still signs with the old.
    assert not _instance(issuer, new).check(_instance(issuer, old).issue(now), now).valid


@pytest.mark.parametrize("value", ["good-secret-0123456789,short", ",", "[]", "[1]", "{not json"])
def test_bad_nonce_secrets_name_the_variable_and_echo_no_secret(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^DPOP_NONCE_SECRET must be a NonceKeyring, a list of secrets") as info:
        environ_settings({"DPOP_NONCE_SECRET": value}, accepted=ACCEPTED)
    assert "good-secret" not in str(info.value)


def test_django_and_flask_style_settings_take_a_list_of_secrets() -> None:
    values = read_settings(
        {"nonce_keyring": ["new-secret-9876543210", "old-secret-0123456789"]},
        spell=lambda n: n.upper(),
        accepted={"nonce_keyring"},
    )
    ring = values["nonce_keyring"]
    only_old = read_settings({"nonce_keyring": ["old-secret-0123456789"]}, spell=str, accepted={"nonce_keyring"})
    assert ring.check(only_old["nonce_keyring"].issue(5000.0), 5000.0).valid


# -- one command a request ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    with redis_process() as (port, _):
        yield port


def _commands(raw: redis.Redis) -> dict[str, int]:
    stats = raw.info("commandstats")
    return {
        name: int(s["calls"]) for name, s in stats.items() if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    }


def test_each_request_is_exactly_one_set_sync_and_async(redis_port: int) -> None:
    url = f"redis://127.0.0.1:{redis_port}/0"
    store, astore = RedisReplayStore(url), AsyncRedisReplayStore(url)
    keys = [os.urandom(16) for _ in range(40)]
    raw = redis.Redis(port=redis_port, socket_timeout=5)  # one connection, made before counting

    async def run_async() -> list[bool]:
        assert await astore.add_if_absent(os.urandom(16), 30) is True  # connects (HELLO...) first
        raw.config_resetstat()
        answers = [await astore.add_if_absent(k, 30) for k in keys]
        await astore.aclose()
        return answers

    assert asyncio.run(run_async()) == [True] * 40
    assert _commands(raw) == {"cmdstat_set": 40}
    assert store.add_if_absent(os.urandom(16), 30) is True  # connects first
    raw.config_resetstat()
    assert [store.add_if_absent(k, 30) for k in keys] == [False] * 40
    assert _commands(raw) == {"cmdstat_set": 40}
    store.close()
    raw.close()
