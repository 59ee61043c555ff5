"""IsLabDB from another language: a plain gRPC client in Python, with no SDK.

Run by cluster-tests/tests/any_language.rs against a real cluster:

    python3 cluster-tests/python/plain_client.py HOST:PORT HOST:PORT ...

It generates the stubs from proto/proto/islab/v1 at run time (grpc_tools.protoc), sends no
routing metadata (no `islab-epoch`), and behaves as a simple client would: it sends each
request to some node and, on UNAVAILABLE with an `islab-leader` hint, sends it once more to the
hinted node. Every request must succeed within that one redirect, also on shards idle past the
quiescence delay (2 s), and requests sent to a shard's leader must succeed at once. It also
lists the services through gRPC reflection. Any failure exits non-zero, naming what was wrong.

Needs: grpcio, grpcio-tools, grpcio-reflection (cluster-tests/python/requirements.txt; the
project's scripts/test installs them).
"""

import os
import sys
import tempfile
import time

try:
    import grpc
    import grpc_tools
    from grpc_tools import protoc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
except ImportError as e:
    sys.exit(
        f"missing Python package ({e}): python3 -m pip install -r "
        "cluster-tests/python/requirements.txt"
    )

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOS = os.path.join(ROOT, "proto", "proto")
LINEARIZABLE, SERIALIZABLE = 0, 1
IDLE_PAST_LEASE_S = 2.5


def fail(msg):
    sys.exit(f"plain_client: FAILED: {msg}")


def generate_stubs():
    out = tempfile.mkdtemp(prefix="islab-py-stubs-")
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = ["islab/v1/kv.proto", "islab/v1/shard.proto", "islab/v1/admin.proto"]
    rc = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out}",
         f"--grpc_python_out={out}", *files]
    )
    if rc != 0:
        fail(f"protoc could not compile {files} (exit {rc})")
    sys.path.insert(0, out)
    from islab.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc  # noqa: E402

    return kv_pb2, kv_pb2_grpc, admin_pb2, admin_pb2_grpc


kv_pb2, kv_pb2_grpc, admin_pb2, admin_pb2_grpc = generate_stubs()


class Plain:
    """Stubs per node; follows at most one hint per request."""

    def __init__(self, endpoints):
        self.endpoints = endpoints
        self.channels = {}
        self.redirects = 0
        self.calls = 0

    def kv(self, addr):
        if addr not in self.channels:
            self.channels[addr] = grpc.insecure_channel(addr)
        return kv_pb2_grpc.KvStub(self.channels[addr])

    def admin(self, addr):
        self.kv(addr)
        return admin_pb2_grpc.AdminStub(self.channels[addr])

    def call(self, method, request, addr):
        """(answer, the node that answered)."""
        self.calls += 1
        try:
            return getattr(self.kv(addr), method)(request, timeout=15), addr
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            hint = dict(e.trailing_metadata() or ()).get("islab-leader")
            if not hint:
                fail(f"{method} via {addr}: UNAVAILABLE with no leader hint: {e.details()!r}")
            self.redirects += 1
            try:
                return getattr(self.kv(hint), method)(request, timeout=15), hint
            except grpc.RpcError as e2:
                fail(
                    f"{method} via {addr}, redirected to {hint}: {e2.code().name} "
                    f"{e2.details()!r} (one redirect must reach a node that serves it)"
                )


def services(addr):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(addr))
    answers = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    return {s.name for a in answers for s in a.list_services_response.service}


def wait_until(what, timeout, check):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return
        time.sleep(0.1)
    fail(f"timed out after {timeout}s waiting for {what}: {last}")


def main(endpoints):
    c = Plain(endpoints)

    print("--- reflection lists the services")
    listed = services(endpoints[0])
    for name in ["islab.v1.Kv", "islab.v1.Admin", "grpc.health.v1.Health"]:
        if name not in listed:
            fail(f"reflection on {endpoints[0]} lists {sorted(listed)}, not {name}")

    shard_map = c.kv(endpoints[0]).GetShardMap(kv_pb2.GetShardMapRequest(), timeout=10).map
    shards = [s.id for s in shard_map.shards]
    print(f"--- {len(shards)} shards, epoch {shard_map.epoch}")

    def put_all(tag, via):
        """Puts py:<tag>:<i> through each entry point; returns key -> (value, version, node)."""
        written = {}
        for i in range(48):
            key = f"py:{tag}:{i}".encode()
            value = f"{tag}-{i}".encode()
            addr = via(i)
            r, served = c.call("Put", kv_pb2.PutRequest(key=key, value=value), addr)
            written[key] = (value, r.version, served)
        return written

    def check_reads(written):
        for i, (key, (value, version, _)) in enumerate(written.items()):
            for addr in endpoints:
                r, _ = c.call(
                    "Get", kv_pb2.GetRequest(key=key, consistency=LINEARIZABLE), addr
                )
                if not r.found or r.value != value or r.version != version:
                    fail(f"Get {key!r} via {addr}: {r} , wrote {value!r} at {version}")

    print("--- puts through every node, following at most one hint each")
    written = put_all("a", lambda i: endpoints[i % len(endpoints)])
    leaders = {key: node for key, (_, _, node) in written.items()}
    check_reads(written)

    print("--- compare-and-swap through a node that may not lead the key's shard")
    key = b"py:a:0"
    _, version, _ = written[key]
    r, _ = c.call(
        "CompareAndSwap",
        kv_pb2.CompareAndSwapRequest(key=key, expected_version=version, value=b"swapped"),
        endpoints[-1],
    )
    if not r.succeeded or r.current_version <= version:
        fail(f"a CAS from the current version {version} did not succeed: {r}")
    r2, _ = c.call(
        "CompareAndSwap",
        kv_pb2.CompareAndSwapRequest(key=key, expected_version=version, value=b"stale"),
        endpoints[0],
    )
    if r2.succeeded or r2.current_version != r.current_version:
        fail(f"a CAS from a stale version must fail naming {r.current_version}: {r2}")
    written[key] = (b"swapped", r.current_version, None)

    print("--- batches of hash-tagged keys (one shard), through every node")
    for n, addr in enumerate(endpoints):
        ops = [
            kv_pb2.BatchOp(put=kv_pb2.PutOp(key=f"{{py{n}}}:{k}".encode(), value=b"b"))
            for k in ("x", "y", "z")
        ]
        r, _ = c.call("Batch", kv_pb2.BatchRequest(ops=ops), addr)
        if len(r.results) != 3 or any(o.version != r.version for o in r.results):
            fail(f"Batch via {addr}: {r}")
        got, _ = c.call(
            "Get", kv_pb2.GetRequest(key=f"{{py{n}}}:y".encode()), endpoints[0]
        )
        if got.version != r.version:
            fail(f"{{py{n}}}:y has version {got.version}, its batch {r.version}")

    print("--- scans of every shard, merged, see every key written")
    seen = set()
    for shard in shards:
        start = b""
        while True:
            r, _ = c.call(
                "Scan",
                kv_pb2.ScanRequest(start=start, prefix=b"py:a:", limit=7, shard=shard),
                endpoints[shard % len(endpoints)],
            )
            seen.update(kv.key for kv in r.items)
            if not r.more:
                break
            start = r.next_start
    if seen != set(written):
        fail(f"scans found {len(seen)} keys, {len(set(written))} were written")

    def quiesced():
        groups = []
        for addr in endpoints:
            status = c.admin(addr).Status(admin_pb2.StatusRequest(), timeout=10)
            groups += [(status.node_id, g.group_id, g.quiesced) for g in status.groups
                       if g.group_id != 0]
        loud = [(n, g) for n, g, q in groups if not q]
        return not loud, f"(node, shard) not yet quiescent: {loud}"

    for round in range(2):
        print(f"--- round {round}: every shard idle until quiescent on every node")
        wait_until("every shard to quiesce", 60, quiesced)
        # Quiescent leaders send nothing, so their quorum lease (the longest election timeout,
        # 1 s in these tests, 1.6 s by default) runs out while they sleep: stay idle past it.
        # This was the bug: the first write after that failed with a hintless "not the leader".
        time.sleep(IDLE_PAST_LEASE_S)
        direct_before = c.redirects
        # Straight to each key's leader as learned: served at once, no UNAVAILABLE at all.
        for i, key in enumerate(sorted(leaders)):
            value = f"idle{round}-{i}".encode()
            try:
                r = c.kv(leaders[key]).Put(kv_pb2.PutRequest(key=key, value=value), timeout=15)
            except grpc.RpcError as e:
                fail(
                    f"round {round}: Put {key!r} to its leader {leaders[key]} after the shard "
                    f"was idle: {e.code().name} {e.details()!r}"
                )
            written[key] = (value, r.version, leaders[key])
        if c.redirects != direct_before:
            fail("a put sent to the leader was redirected")
        wait_until("every shard to quiesce", 60, quiesced)
        time.sleep(IDLE_PAST_LEASE_S)
        # Through every node again: linearizable reads of idle shards, one redirect at most.
        check_reads(written)
        wait_until("every shard to quiesce", 60, quiesced)
        time.sleep(IDLE_PAST_LEASE_S)
        more = put_all(f"r{round}", lambda i: endpoints[(i + round + 1) % len(endpoints)])
        check_reads(more)

    print(f"ok: {c.calls} calls, {c.redirects} redirects, no UNAVAILABLE past one redirect")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: plain_client.py HOST:PORT [HOST:PORT ...]")
    main(sys.argv[1:])
