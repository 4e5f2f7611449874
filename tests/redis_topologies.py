"""Redis as it runs at scale, started by the tests on loopback: a Redis Cluster and a Sentinel group.

Every process is started in its own session and killed when the context ends, whatever happens.
Without ``redis-server`` (or ``redis-cli``) the tests skip, except under ``CI``, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from servers import free_port, running


def require_redis_binaries() -> None:
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{', '.join(missing)} not installed")
    assert not missing, f"{', '.join(missing)} must be installed in CI (scripts/run-tests.sh)"


def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(what)


def _server_argv(port: int, directory: Path, *extra: str) -> list[str]:
    return [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(directory), *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[list[int]]:
    """A Redis Cluster of ``masters`` masters (no replicas), slots spread by ``redis-cli --cluster create``."""
    ports = [free_port() for _ in range(masters)]
    with contextlib.ExitStack() as stack:
        for port in ports:
            node_dir = directory / f"node-{port}"
            node_dir.mkdir()
            argv = _server_argv(
                port, node_dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000",
            )  # fmt: skip
            stack.enter_context(running(argv, port))
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in ports:
            with redis.Redis(port=port, socket_timeout=2) as node:
                _until(lambda node=node: node.cluster("info")["cluster_state"] == "ok", "cluster state ok")
        yield ports


@dataclass
class SentinelGroup:
    master: int
    replica: int
    sentinels: list[int]
    processes: dict[int, subprocess.Popen[bytes]]
    service: str = "dpop"

    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.service}"

    def master_port(self) -> int | None:
        """The master the sentinels name now (``None`` if they cannot be asked)."""
        for port in self.sentinels:
            with contextlib.suppress(redis.RedisError, OSError), redis.Redis(port=port, socket_timeout=1) as sentinel:
                address = sentinel.sentinel_get_master_addr_by_name(self.service)
                if address:
                    return int(address[1])
        return None


@contextlib.contextmanager
def sentinel_group(directory: Path, sentinels: int = 3) -> Iterator[SentinelGroup]:
    """A master, one replica and ``sentinels`` sentinels (quorum 2), tuned to fail over within about a second."""
    master, replica = free_port(), free_port()
    sentinel_ports = [free_port() for _ in range(sentinels)]
    processes: dict[int, subprocess.Popen[bytes]] = {}
    with contextlib.ExitStack() as stack:
        for port, extra in ((master, ()), (replica, ("--replicaof", "127.0.0.1", str(master)))):
            node_dir = directory / f"node-{port}"
            node_dir.mkdir()
            processes[port] = stack.enter_context(running(_server_argv(port, node_dir, *extra), port))
        with redis.Redis(port=replica, socket_timeout=2) as raw:  # synced, not just connected
            _until(lambda: raw.info("replication").get("master_link_status") == "up", "replica in sync")
        for port in sentinel_ports:
            conf = directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor dpop 127.0.0.1 {master} 2\n"
                "sentinel down-after-milliseconds dpop 400\n"
                "sentinel failover-timeout dpop 2000\n"
                "sentinel parallel-syncs dpop 1\n"
            )
            processes[port] = stack.enter_context(running(["redis-server", str(conf), "--sentinel"], port))
        for port in sentinel_ports:  # each sentinel knows the replica and the two other sentinels
            with redis.Redis(port=port, socket_timeout=2) as sentinel:
                _until(
                    lambda s=sentinel: (
                        len(s.sentinel_slaves("dpop")) == 1
                        and len(s.sentinel_sentinels("dpop")) == len(sentinel_ports) - 1
                    ),
                    "sentinels ready",
                )
        yield SentinelGroup(master, replica, sentinel_ports, processes)
