"""Real Redis topologies on loopback for the tests: a Sentinel group and a Cluster.

Started from the distribution's redis-server binary (Redis 7) in a temporary folder,
each server a child process known by its pid only; :meth:`stop` kills those pids and
removes the folder. Nothing here talks to a server the test did not start.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from pipeline.embedded import SYSTEM_REDIS, die_with_parent, free_port

SERVICE = "mymaster"
#: Sentinels call a primary down after this long without an answer.
DOWN_AFTER_MS = 1000
#: Cluster nodes call a primary failing after this long without an answer.
CLUSTER_NODE_TIMEOUT_MS = 2000


def redis_binary() -> str | None:
    return SYSTEM_REDIS if Path(SYSTEM_REDIS).exists() else None


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    role: str

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """kill -9, as a crashed machine would go."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def _wait_listening(server: Server, log: Path, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"redis-server on {server.port} exited: {log.read_text()[-500:]}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), 0.2),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on {server.port}")


def _wait(what: str, check: object, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()  # type: ignore[operator]
            if last:
                return
        except redis.RedisError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class _Servers:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lc-topology-")))
    servers: list[Server] = field(default_factory=list)

    def start(self, role: str, args: list[str], *, port: int | None = None) -> Server:
        binary = redis_binary()
        assert binary is not None
        port = port or free_port()
        folder = self.root / f"{role}-{port}"
        folder.mkdir(exist_ok=True)
        log = folder / "log"
        conf = folder / "redis.conf"
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f'dir "{folder}"',
            f'logfile "{log}"',
            "save ''",
            "appendonly no",
            *args,
        ]
        conf.write_text("\n".join(lines) + "\n")
        extra = ["--sentinel"] if role.startswith("sentinel") else []
        process = subprocess.Popen(
            [binary, str(conf), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        server = Server(port, process, role)
        self.servers.append(server)
        _wait_listening(server, log)
        return server

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.kill()
        alive = [s.process.pid for s in self.servers if s.process.poll() is None]
        shutil.rmtree(self.root, ignore_errors=True)
        assert not alive, f"redis-servers still running: {alive}"


class SentinelGroup(_Servers):
    """1 primary + ``replicas`` replicas + 3 sentinels (quorum 2), all on loopback."""

    def __init__(self, replicas: int = 1) -> None:
        super().__init__()
        self.primary = self.start("primary", [])
        self.replicas = [
            self.start("replica", [f"replicaof 127.0.0.1 {self.primary.port}"])
            for _ in range(replicas)
        ]
        self.sentinels = [
            self.start(
                f"sentinel{i}",
                [
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {SERVICE} 10000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                ],
            )
            for i in range(3)
        ]
        primary = self.primary.client()
        _wait(
            "replicas in sync",
            lambda: primary.info("replication")["connected_slaves"] == replicas
            and all(r.client().info("replication")["master_link_status"] == "up"
                    for r in self.replicas),
        )  # fmt: skip
        for sentinel in self.sentinels:
            client = sentinel.client()
            _wait(
                "sentinels to know each other and the replicas",
                lambda c=client: (
                    len(c.sentinel_sentinels(SERVICE)) == 2  # type: ignore[misc]
                    and len(c.sentinel_slaves(SERVICE)) == replicas
                ),
            )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def current_primary_port(self) -> int:
        _host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def wait_for_promotion(self, old_port: int, deadline_s: float = 30.0) -> float:
        """When (``time.monotonic()``) a sentinel first named another primary than
        ``old_port`` (polled every 20 ms)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for sentinel in self.sentinels:
                with contextlib.suppress(redis.RedisError):
                    _, port = sentinel.client().sentinel_get_master_addr_by_name(SERVICE)
                    if int(port) != old_port:
                        return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"no promotion within {deadline_s} s")


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free too and below 65,536."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with contextlib.suppress(OSError), socket.socket() as bus:
            bus.bind(("127.0.0.1", port + 10000))
            return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterNodes(_Servers):
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each, on
    loopback, created with ``redis-cli --cluster create``."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        super().__init__()
        args = [
            "cluster-enabled yes",
            f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}",
            "cluster-config-file nodes.conf",
            "cluster-require-full-coverage no",
        ]
        count = primaries * (1 + replicas)
        nodes = [self.start("node", args, port=_cluster_port()) for _ in range(count)]
        cli = str(Path(redis_binary() or "").with_name("redis-cli"))
        done = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        self.nodes = nodes

        def replicas_in_sync() -> bool:
            roles = [n.client().info("replication") for n in nodes]
            linked = [r for r in roles if r["role"] == "slave" and r["master_link_status"] == "up"]
            return len(linked) == primaries * replicas

        _wait("every replica in sync with its primary", replicas_in_sync)
        for node in nodes:
            _wait(
                "the cluster to be ok",
                lambda n=node: "cluster_state:ok" in self.cli(n.port, "CLUSTER", "INFO"),
            )  # type: ignore[misc]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    @staticmethod
    def cli(port: int, *args: str) -> str:
        """What ``redis-cli -p port args...`` prints (the raw text of cluster commands)."""
        cli = str(Path(redis_binary() or "").with_name("redis-cli"))
        done = subprocess.run(
            [cli, "-p", str(port), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def node(self, port: int) -> Server:
        return next(n for n in self.nodes if n.port == port)

    def _slot_owners(self, via: Server | None = None) -> dict[int, tuple[str, int]]:
        """slot -> (node id, port) of its primary, as a live node sees it."""
        asker = via or next(n for n in self.nodes if n.process.poll() is None)
        owners: dict[int, tuple[str, int]] = {}
        for line in self.cli(asker.port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                first, _, last = part.partition("-")
                for slot in range(int(first), int(last or first) + 1):
                    owners[slot] = (fields[0], port)
        return owners

    def primary_of(self, key: str) -> Server:
        """The node that serves ``key``'s slot now."""
        return self.node(self._slot_owners()[key_slot(key.encode())][1])

    def wait_for_promotion(self, key: str, old_port: int, deadline_s: float = 30.0) -> float:
        """When (``time.monotonic()``) a live node first named another primary than
        ``old_port`` for ``key``'s slot (polled every 20 ms)."""
        slot = key_slot(key.encode())
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.SubprocessError, OSError, StopIteration):
                owner = self._slot_owners().get(slot)
                if owner is not None and owner[1] != old_port:
                    return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"no promotion within {deadline_s} s")

    def move_slot(self, key: str, to_port: int, batch: int = 100) -> int:
        """Move ``key``'s slot to the primary at ``to_port`` as ``redis-cli --cluster
        reshard`` does (IMPORTING/MIGRATING, MIGRATE of its keys, SETSLOT NODE on every
        primary); returns how many keys moved."""
        slot = str(key_slot(key.encode()))
        source_id, source_port = self._slot_owners()[int(slot)]
        target = self.node(to_port)
        target_id = self.cli(to_port, "CLUSTER", "MYID").strip()
        self.cli(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self.cli(source_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        source = redis.Redis(port=source_port, socket_timeout=10)
        moved = 0
        while keys := source.cluster("GETKEYSINSLOT", slot, batch):
            source.migrate("127.0.0.1", target.port, list(keys), 0, 5000)
            moved += len(keys)
        for port in {to_port, source_port, *(p for _, p in self._slot_owners().values())}:
            self.cli(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        return moved

    def primary_ports(self) -> list[int]:
        """Ports of the nodes that own slots now."""
        lines = self.cli(self.nodes[0].port, "CLUSTER", "NODES").splitlines()
        return sorted(
            int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
            for line in lines
            if "master" in line.split()[2] and "fail" not in line.split()[2]
        )
