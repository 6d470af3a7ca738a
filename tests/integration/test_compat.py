"""Wire behaviour that third-party clients depend on, checked against zabkeeper and, as the
reference, against Apache ZooKeeper 3.8 in the same test (the `any_server` fixture runs
each test on both). Each case is a difference a real client tripped over."""

import socket
import struct
import uuid

import pytest
from kazoo.client import KazooClient

from conftest import ApacheZooKeeper, Ensemble, Server, apache_zookeeper_available, kazoo_session
from zkwire import RawSession, WireClient, buffer, connect_request, frame, recv_frame, ustring

OPEN_ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")

STAT = ">qqqqiiiqiiq"  # czxid mzxid ctime mtime version cversion aversion owner len children pzxid


def unique(prefix):
    return f"/{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kz(any_server):
    yield from kazoo_session(any_server)


def test_request_pipelined_behind_connect_is_answered(any_server):
    # The Rust `zookeeper` crate writes its first request right behind the ConnectRequest.
    s = socket.create_connection(("127.0.0.1", any_server.port), timeout=10)
    try:
        s.sendall(connect_request() + frame(struct.pack(">ii", 1, 3) + ustring("/") + b"\x00"))
        resp = recv_frame(s)
        _proto, timeout, session = struct.unpack(">iiq", resp[:16])
        assert timeout > 0 and session != 0
        xid, _zxid, err = struct.unpack(">iqi", recv_frame(s)[:16])
        assert (xid, err) == (1, 0)
    finally:
        s.close()


def test_unknown_opcode_and_undecodable_body(any_server):
    w = WireClient(any_server.port)
    # A getData whose path claims more bytes than the frame holds: MarshallingError,
    # and the connection serves on.
    w.sock.sendall(frame(struct.pack(">ii", 1, 4) + struct.pack(">i", 1000) + b"/abc"))
    xid, _zxid, err, _ = w._read_until_reply(1)
    assert (xid, err) == (1, -5)
    _, _, err, _ = w.call(3, ustring("/") + b"\x00", xid=2)
    assert err == 0
    # An unknown opcode: Unimplemented with zxid -1, then closed.
    w.sock.sendall(frame(struct.pack(">ii", 3, 999)))
    assert struct.unpack(">iqi", recv_frame(w.sock)[:16]) == (3, -1, -6)
    with pytest.raises((ConnectionError, OSError)):
        recv_frame(w.sock)
    w.close()


def test_auth_failure_is_one_frame_then_close(any_server):
    # node-zookeeper-client dies on an extra notification frame after AuthFailed.
    s = RawSession(any_server.port)
    s.sock.sendall(frame(struct.pack(">ii", -4, 100) + struct.pack(">i", 0) + ustring("nosuch")
                         + buffer(b"secret")))
    frames = []
    with pytest.raises((ConnectionError, OSError)):
        while True:
            frames.append(recv_frame(s.sock))
    assert [struct.unpack(">iqi", f[:16])[::2] for f in frames] == [(-4, -115)]
    s.close()


def test_cversion_counts_creates_and_deletes(any_server, kz):
    p = unique("cv")
    kz.create(p)
    for i in range(4):
        kz.create(f"{p}/c{i}")
    kz.delete(f"{p}/c0")
    kz.delete(f"{p}/c1")
    st = kz.exists(p)
    assert (st.cversion, st.numChildren) == (6, 2)
    # Sequential names still count child creates only.
    assert kz.create(f"{p}/s", sequence=True) == f"{p}/s0000000004"
    assert kz.exists(p).cversion == 7


def create_extended(session, opcode, path, flags, ttl=None):
    body = ustring(path) + buffer(b"x") + OPEN_ACL + struct.pack(">i", flags)
    if ttl is not None:
        body += struct.pack(">q", ttl)
    return session.call(opcode, body)


def test_containers_and_ttl_nodes_report_no_owner(any_server, kz):
    w = WireClient(any_server.port)
    c, t = unique("ct"), unique("ttl")
    _, _, err, body = create_extended(w, 19, c, 4)
    assert err == 0
    (plen,) = struct.unpack(">i", body[:4])
    assert struct.unpack(STAT, body[4 + plen:4 + plen + 68])[7] == 0
    _, _, err, body = create_extended(w, 21, t, 5, ttl=100000)
    assert err == 0
    (plen,) = struct.unpack(">i", body[:4])
    assert struct.unpack(STAT, body[4 + plen:4 + plen + 68])[7] == 0
    assert kz.exists(c).ephemeralOwner == 0
    assert kz.exists(t).ephemeralOwner == 0
    w.close()


def multi_header(t, done=False, err=-1):
    return struct.pack(">i?i", t, done, err)


def multi_results(rest):
    """The results of a multi reply: (-1, header err, error code) for an error result,
    (type, path, ephemeralOwner or None) for create (1) and create2 (15) results."""
    results, off = [], 0
    while True:
        typ, done, herr = struct.unpack(">i?i", rest[off:off + 9])
        off += 9
        if done:
            return results
        if typ == -1:
            (code,) = struct.unpack(">i", rest[off:off + 4])
            off += 4
            results.append((typ, herr, code))
            continue
        (plen,) = struct.unpack(">i", rest[off:off + 4])
        path = rest[off + 4:off + 4 + plen].decode()
        off += 4 + plen
        owner = None
        if typ == 15:
            owner = struct.unpack(STAT, rest[off:off + 68])[7]
            off += 68
        results.append((typ, path, owner))


@pytest.mark.parametrize("kind", ["zabkeeper", "zookeeper"])
def test_ttl_nodes_need_extended_types(kind):
    """Without extendedTypesEnabled (both servers' default) a createTTL, alone or in a
    multi, and a create with a TTL mode are refused with Unimplemented and nothing is
    created; containers are not extended types."""
    if kind == "zookeeper":
        if not apache_zookeeper_available():
            pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
        server = ApacheZooKeeper(extended_types=False).start()
    else:
        server = Server(extended_types=False).start()
    try:
        w = WireClient(server.port)
        t, c, m = unique("ttl-off"), unique("box"), unique("multi-off")
        _, _, err, _ = create_extended(w, 21, t, 5, ttl=100000)
        assert err == -6, f"{kind}: createTTL answered {err}, not Unimplemented"
        assert w.exists(t)[2] == -101
        body = multi_header(1) + ustring(m) + buffer(b"v") + OPEN_ACL + struct.pack(">i", 0)
        body += multi_header(21) + ustring(t) + buffer(b"v") + OPEN_ACL + struct.pack(">iq", 5, 60000)
        body += multi_header(-1, True, -1)
        _, _, err, rest = w.call(14, body)
        # As ZooKeeper 3.8 answers: a multi reply (header 0) of per-op errors, Ok for
        # the create before the createTTL, Unimplemented for it.
        results = multi_results(rest)
        assert (err, results) == (0, [(-1, 0, 0), (-1, -6, -6)]), f"{kind}: {err} {results}"
        assert w.exists(m)[2] == -101 and w.exists(t)[2] == -101
        # create and create2 with a TTL mode: Unimplemented before any other rule; a
        # createTTL under a missing parent too, but with a mode that is not a TTL mode
        # it is BadArguments, as with extended types on.
        assert create_extended(w, 15, t, 5)[2] == -6
        assert create_extended(w, 1, t, 6)[2] == -6
        assert create_extended(w, 21, unique("no") + "/p", 5, ttl=1000)[2] == -6
        assert create_extended(w, 21, t, 0, ttl=1000)[2] == -8
        _, _, err, _ = create_extended(w, 19, c, 4)
        assert err == 0, f"{kind}: createContainer answered {err}"
        w.close()
    finally:
        server.cleanup()


def test_multi_answers_container_and_ttl_creates_with_a_stat(any_server):
    # Curator's CreateResult.getStat() is null otherwise.
    w = WireClient(any_server.port)
    a, b, c, t = unique("m1"), unique("m15"), unique("m19"), unique("m21")
    body = b""
    for opcode, path, flags in [(1, a, 0), (15, b, 0), (19, c, 4)]:
        body += multi_header(opcode) + ustring(path) + buffer(b"v") + OPEN_ACL + struct.pack(">i", flags)
    body += multi_header(21) + ustring(t) + buffer(b"v") + OPEN_ACL + struct.pack(">iq", 5, 60000)
    body += multi_header(-1, True, -1)
    _, _, err, rest = w.call(14, body)
    assert err == 0
    results = multi_results(rest)
    # The running ZooKeeper 3.8 answers create and create2 inside a multi without a
    # Stat, createContainer and createTTL with one.
    assert results == [(1, a, None), (1, b, None), (15, c, 0), (15, t, 0)]
    w.close()


def test_frames_over_jute_maxbuffer_close_the_connection(any_server, kz):
    big = unique("big")
    # The largest create whose frame fits jute.maxbuffer (1,048,575 bytes) is stored and
    # can be read back.
    w = WireClient(any_server.port)
    head = struct.pack(">ii", 1, 1) + ustring(big)
    fixed = len(head) + 4 + len(OPEN_ACL) + 4
    data = b"d" * (0xfffff - fixed)
    payload = head + buffer(data) + OPEN_ACL + struct.pack(">i", 0)
    assert len(payload) == 0xfffff
    w.sock.sendall(frame(payload))
    xid, _zxid, err, _ = w._read_until_reply(1)
    assert (xid, err) == (1, 0)
    assert len(kz.get(big)[0]) == len(data)
    # One byte more and the connection is closed, as ZooKeeper's NIOServerCnxn does.
    w2 = WireClient(any_server.port)
    payload = struct.pack(">ii", 1, 1) + ustring(big + "x") + buffer(data + b"d") + OPEN_ACL \
        + struct.pack(">i", 0)
    assert len(payload) == 0xfffff + 2
    with pytest.raises((ConnectionError, OSError)):
        # The server may close as soon as it has read the length.
        w2.sock.sendall(frame(payload))
        recv_frame(w2.sock)
    assert kz.exists(big + "x") is None
    w.close()
    w2.close()


def test_config_node_stat(any_server, kz):
    data, st = kz.get("/zookeeper/config")
    assert (data, st.version, st.aversion) == (b"", 0, -1)


def test_who_am_i_lists_digest_before_ip(any_server):
    w = WireClient(any_server.port)
    w.sock.sendall(frame(struct.pack(">ii", -4, 100) + struct.pack(">i", 0) + ustring("digest")
                         + buffer(b"alice:secret")))
    _, _, err, _ = w._read_until_reply(-4)
    assert err == 0
    _, _, err, body = w.call(107, b"")
    assert err == 0
    (n,) = struct.unpack(">i", body[:4])
    off, infos = 4, []
    for _ in range(n):
        (l1,) = struct.unpack(">i", body[off:off + 4])
        scheme = body[off + 4:off + 4 + l1].decode()
        off += 4 + l1
        (l2,) = struct.unpack(">i", body[off:off + 4])
        user = body[off + 4:off + 4 + l2].decode()
        off += 4 + l2
        infos.append((scheme, user))
    assert infos == [("digest", "alice"), ("ip", "127.0.0.1")]
    w.close()


def test_ensemble_config_node_lists_the_members():
    ens = Ensemble(participants=3).start()
    try:
        c = KazooClient(hosts=ens.hosts(), timeout=10.0)
        c.start(timeout=20)
        data, st = c.get("/zookeeper/config")
        c.stop()
        c.close()
        want = "".join(
            f"server.{i}=127.0.0.1:{ens.ports[i][1]}:{ens.ports[i][2]}:participant;"
            f"127.0.0.1:{ens.ports[i][0]}\n" for i in ens.ids) + "version=0"
        assert data.decode() == want
        assert (st.version, st.aversion, st.mzxid) == (-1, -1, 0)
    finally:
        ens.cleanup()


def test_four_letter_words_that_monitoring_reads(any_server, kz):
    from conftest import four_letter

    kz.create(unique("mon"), b"x")
    kz.get("/")
    mntr = dict(line.split("\t", 1) for line in four_letter(any_server.port, "mntr").splitlines()
                if "\t" in line)
    # collectd's zookeeper plugin, zktop and 3.8's own dashboards read these.
    for key in ["zk_open_file_descriptor_count", "zk_max_file_descriptor_count", "zk_uptime",
                "zk_local_sessions", "zk_auth_failed_count", "zk_watch_bytes",
                "zk_connection_drop_probability", "zk_last_client_response_size",
                "zk_min_client_response_size", "zk_max_client_response_size",
                "zk_num_alive_connections", "zk_outstanding_requests", "zk_znode_count"]:
        assert key in mntr, key
    assert int(mntr["zk_open_file_descriptor_count"]) > 3
    assert int(mntr["zk_max_file_descriptor_count"]) >= int(mntr["zk_open_file_descriptor_count"])
    assert int(mntr["zk_uptime"]) > 0
    assert int(mntr["zk_max_client_response_size"]) > 0
    # ZooKeeper's storage summaries: the create above was fsynced before its reply.
    for key in ["zk_avg_fsynctime", "zk_max_fsynctime", "zk_cnt_fsynctime", "zk_sum_fsynctime",
                "zk_avg_sync_processor_batch_size", "zk_cnt_snapshottime"]:
        assert key in mntr, key
    assert int(mntr["zk_cnt_fsynctime"]) >= 1
    # The asking connection counts, as ZooKeeper counts it.
    assert int(mntr["zk_num_alive_connections"]) >= 2
    assert four_letter(any_server.port, "gtmk").strip() == "306"
    dirs = dict(line.split(": ") for line in four_letter(any_server.port, "dirs").splitlines() if line)
    assert int(dirs["datadir_size"]) > 0 and int(dirs["logdir_size"]) > 0
    cons = [line for line in four_letter(any_server.port, "cons").splitlines() if "sid=0x" in line]
    assert cons, "no session in cons"
    fields = dict(f.split("=") for f in cons[0].split("(", 1)[1].rstrip(")").split(","))
    assert int(fields["est"]) > 1_600_000_000_000
    assert int(fields["lresp"]) > 0  # a monotonic clock's ms, not wall time
    assert int(fields["lcxid"], 16) > 0 and int(fields["lzxid"], 16) > 0
    srvr = four_letter(any_server.port, "srvr")
    assert "Outstanding: 0" in srvr


def node_client_dir():
    import os

    from conftest import ROOT

    d = os.path.join(ROOT, "target", "test-node")
    if not os.path.isdir(os.path.join(d, "node_modules", "node-zookeeper-client")):
        pytest.skip("node-zookeeper-client is not installed (tests/integration/setup.sh installs it)")
    return d


def run_node_client(hosts):
    """node-zookeeper-client 1.1.3 from npm: stats as ZooKeeper reports them, and an
    AuthFailed that does not kill the Node process."""
    import json
    import os
    import subprocess

    d = node_client_dir()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "compat.js")
    p = unique("node")
    r = subprocess.run(["node", script, hosts, p], cwd=d, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, NODE_PATH=os.path.join(d, "node_modules")))
    assert r.returncode == 0, f"node exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen == {"cversion": 6, "num_children": 2, "sequential": f"{p}/s0000000004",
                    "auth_failed": True, "survived": True}, seen


def test_node_zookeeper_client(any_server):
    run_node_client(any_server.hosts())


def test_node_zookeeper_client_ensemble():
    node_client_dir()
    ens = Ensemble(participants=3).start()
    try:
        run_node_client(ens.hosts())
    finally:
        ens.cleanup()


def test_null_data_reads_back_as_null(any_server, kz):
    # kazoo writes None as a null buffer (length -1) and reads one back as None, as the
    # Java client's null and the C client's value_len -1.
    path = unique("null")
    kz.create(path, None)
    assert kz.get(path)[0] is None
    assert kz.get(path)[1].dataLength == 0
    kz.set(path, b"x")
    assert kz.get(path)[0] == b"x"
    kz.set(path, None)
    assert kz.get(path)[0] is None
    # Empty data stays empty, not null.
    kz.create(path + "-empty", b"")
    assert kz.get(path + "-empty")[0] == b""


def test_get_acl_hides_digest_hashes_without_admin(any_server):
    # ZooKeeper 3.8's getACL shows digest ids as user:x to a session lacking ADMIN.
    from kazoo.security import make_digest_acl

    zk = KazooClient(hosts=any_server.hosts(), timeout=10, auth_data=[("digest", "alice:pw")])
    zk.start(timeout=10)
    try:
        ro, admin = unique("acl-ro"), unique("acl-admin")
        zk.create(ro, b"", acl=[make_digest_acl("alice", "pw", read=True)])
        zk.create(admin, b"", acl=[make_digest_acl("alice", "pw", all=True)])
        assert [a.id.id for a in zk.get_acls(ro)[0]] == ["alice:x"]
        full = make_digest_acl("alice", "pw", all=True).id.id
        assert [a.id.id for a in zk.get_acls(admin)[0]] == [full]
    finally:
        zk.stop()
        zk.close()


def test_invalid_utf8_in_a_path_becomes_the_replacement_character(any_server, kz):
    """A path with bytes that are not UTF-8: ZooKeeper's jute reads it with Java's
    `new String(bytes, UTF_8)`, so each bad byte becomes U+FFFD, which its path rules
    refuse (BadArguments) for a write; a read finds no such node. The connection serves
    on."""
    parent = unique("utf8")
    kz.create(parent)
    w = WireClient(any_server.port)
    raw = parent.encode() + b"/a\xff\xfeb"
    body = struct.pack(">i", len(raw)) + raw + buffer(b"x") + OPEN_ACL + struct.pack(">i", 0)
    assert w.call(1, body)[2] == -8
    raw_exists = struct.pack(">i", len(raw)) + raw + b"\x00"
    assert w.call(3, raw_exists)[2] == -101
    assert w.get_data(parent)[2] == 0
    assert kz.get_children(parent) == []
    w.close()
