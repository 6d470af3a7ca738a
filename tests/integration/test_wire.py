"""Hostile and broken input at the wire level: each bad connection is closed,
and the server keeps serving everyone else."""

import socket
import struct
import time

import pytest
from kazoo.client import KazooClient

from conftest import four_letter
from zkwire import RawSession, buffer, connect_request, frame, recv_frame, ustring


def closed_by_server(sock, timeout=5.0):
    """True if the server closes the connection (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def still_serves(server):
    zk = KazooClient(hosts=server.hosts(), timeout=10)
    zk.start(timeout=10)
    p = zk.create("/alive-", b"ok", sequence=True)
    assert zk.get(p)[0] == b"ok"
    zk.stop()
    zk.close()


@pytest.fixture
def bystander(server):
    """A session opened before the attack that must survive it."""
    zk = KazooClient(hosts=server.hosts(), timeout=10)
    zk.start(timeout=10)
    p = zk.create("/bystander-", b"v", ephemeral=True, sequence=True)
    yield zk, p
    assert zk.get(p)[0] == b"v", "a bystander session was affected"
    zk.stop()
    zk.close()


def test_garbage_bytes_before_handshake(server, bystander):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"\x00\x00\x00\x10" + b"\xff" * 16)  # a 16-byte frame that is not a ConnectRequest
    assert closed_by_server(s)
    still_serves(server)


def test_oversized_frame_is_refused(server, bystander):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(connect_request())
    recv_frame(s)
    s.sendall(struct.pack(">i", 512 * 1024 * 1024) + b"\x00" * 64)
    assert closed_by_server(s)
    still_serves(server)


def test_negative_length_frame(server, bystander):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(struct.pack(">i", -5))
    assert closed_by_server(s)
    still_serves(server)


def test_truncated_request_body(server, bystander):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(connect_request())
    recv_frame(s)
    # a getData frame whose path length claims more bytes than the frame has
    body = struct.pack(">ii", 1, 4) + struct.pack(">i", 1000) + b"/abc"
    s.sendall(frame(body))
    # As ZooKeeper: MarshallingError, and the connection goes on.
    xid, _, err = struct.unpack(">iqi", recv_frame(s)[:16])
    assert (xid, err) == (1, -5)
    s.sendall(frame(struct.pack(">ii", 2, 3) + ustring("/") + b"\x00"))
    xid, _, err = struct.unpack(">iqi", recv_frame(s)[:16])
    assert (xid, err) == (2, 0)
    s.close()
    still_serves(server)


def test_unknown_opcode(server, bystander):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(connect_request())
    recv_frame(s)
    s.sendall(frame(struct.pack(">ii", 1, 9999) + b"junk"))
    # As ZooKeeper: Unimplemented (zxid -1), then closed.
    assert struct.unpack(">iqi", recv_frame(s)[:16]) == (1, -1, -6)
    assert closed_by_server(s)
    still_serves(server)


def test_half_sent_frame_then_close(server, bystander):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(connect_request())
    recv_frame(s)
    s.sendall(struct.pack(">i", 100) + b"\x00" * 10)
    s.close()
    still_serves(server)


def test_reconfig_gets_a_clean_error(server):
    raw = RawSession(server.port)
    body = ustring("") + ustring("") + ustring("") + struct.pack(">q", -1)
    _, _, err, _ = raw.request(16, body)
    assert err == -123  # ReconfigDisabled
    _, _, err, _ = raw.exists("/")
    assert err == 0, "the session still works after the refused reconfig"
    raw.close()


def test_client_ahead_of_server_is_refused(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(connect_request(last_zxid=1 << 60))
    assert closed_by_server(s)
    still_serves(server)


def test_client_that_never_reads_is_dropped(server, bystander):
    raw = RawSession(server.port)
    p = "/flood"
    # many getData requests for a 900 KB node, never reading replies
    zk = KazooClient(hosts=server.hosts(), timeout=10)
    zk.start(timeout=10)
    if not zk.exists(p):
        zk.create(p, b"x" * 900_000)
    zk.stop()
    zk.close()
    raw.sock.setblocking(False)
    req = frame(struct.pack(">ii", 7, 4) + ustring(p) + b"\x00")
    sent = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            raw.sock.send(req)
            sent += 1
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break
    assert time.time() < deadline, "the server kept a connection that never reads"
    still_serves(server)


def test_max_client_cnxns(tmp_path):
    from conftest import Server

    s = Server(config_lines=["maxClientCnxns=3"]).start()
    try:
        socks = []
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(connect_request())
            recv_frame(c)
            socks.append(c)
        extra = socket.create_connection(("127.0.0.1", s.port))
        extra.sendall(connect_request())
        assert closed_by_server(extra)
        socks.pop().close()
        time.sleep(0.3)
        ok = socket.create_connection(("127.0.0.1", s.port))
        ok.sendall(connect_request())
        assert len(recv_frame(ok)) > 16
        for c in socks:
            c.close()
        ok.close()
    finally:
        s.cleanup()


def test_four_letter_words_respect_the_whitelist(tmp_path):
    from conftest import Server

    s = Server(config_lines=[])
    s.config_lines = ["4lw.commands.whitelist=ruok"]
    # the whitelist line written last wins over the fixture's default "*"
    s.start()
    try:
        assert four_letter(s.port, "ruok") == "imok"
        assert "not executed because it is not in the whitelist" in four_letter(s.port, "mntr")
    finally:
        s.cleanup()


def _create_mode_body(path, flags, ttl=None):
    acl = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")
    body = ustring(path) + buffer(b"") + acl + struct.pack(">i", flags)
    if ttl is not None:
        body += struct.pack(">q", ttl)
    return body


def test_containers_and_ttl_nodes_expire():
    from conftest import Server
    from zkwire import WireClient

    s = Server(config_lines=["znode.container.checkIntervalMs=200"]).start()
    try:
        c = WireClient(s.port)
        # createContainer (19): removed once it had children and the last one went
        _, _, err, _ = c.call(19, _create_mode_body("/box", 4))
        assert err == 0
        assert c.call(1, _create_mode_body("/box/item", 0))[2] == 0
        time.sleep(0.6)
        assert c.exists("/box")[2] == 0, "a container with a child must stay"
        assert c.call(2, ustring("/box/item") + struct.pack(">i", -1))[2] == 0
        deadline = time.time() + 10
        while c.exists("/box")[2] == 0 and time.time() < deadline:
            time.sleep(0.1)
        assert c.exists("/box")[2] == -101, "the empty container was not reaped"
        # createTTL (21): a childless TTL node goes after its ttl
        assert c.call(21, _create_mode_body("/ttl", 5, ttl=300))[2] == 0
        assert c.call(21, _create_mode_body("/ttl-bad", 0, ttl=300))[2] == -8  # TTL needs a TTL mode
        deadline = time.time() + 10
        while c.exists("/ttl")[2] == 0 and time.time() < deadline:
            time.sleep(0.1)
        assert c.exists("/ttl")[2] == -101, "the TTL node did not expire"
        c.close()
    finally:
        s.cleanup()


def test_bad_auth_fails_and_closes(server, bystander):
    from zkwire import WireClient

    c = WireClient(server.port)
    c.sock.sendall(frame(struct.pack(">ii", -4, 100) + struct.pack(">i", 0) + ustring("kerberos") + buffer(b"x")))
    reply = recv_frame(c.sock)
    xid, _, err = struct.unpack(">iqi", reply[:16])
    assert (xid, err) == (-4, -115)  # AuthFailed
    # As the running ZooKeeper 3.8: no notification frame follows, the server closes.
    assert closed_by_server(c.sock)


def vm_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def test_multi_read_amplification_is_refused_without_building_the_reply(fresh_server):
    """A 1 MB znode read 1,000 times in one multiRead (a 20 KB request) would be a 1 GB
    reply: the server closes that connection before building more than its outbound
    bound (64 MiB), and keeps serving."""
    server = fresh_server
    zk = KazooClient(hosts=server.hosts(), timeout=10)
    zk.start(timeout=10)
    zk.create("/big", b"b" * 1_000_000)
    c = RawSession(server.port)
    ops = b"".join(struct.pack(">i?i", 4, False, -1) + ustring("/big") + b"\x00" for _ in range(1000))
    c.sock.sendall(frame(struct.pack(">ii", 1, 22) + ops + struct.pack(">i?i", -1, True, -1)))
    assert closed_by_server(c.sock, timeout=20)
    # Never near the 1 GB reply: the outbound bound plus the 1 MB node and the server.
    assert vm_kb(server.proc.pid, "VmHWM") < 300 * 1024
    assert zk.get("/big")[0][:1] == b"b"
    # A multiRead within the bound is answered.
    small = RawSession(server.port)
    _, _, err, body = small.request(22, struct.pack(">i?i", 4, False, -1) + ustring("/big") + b"\x00"
                                    + struct.pack(">i?i", -1, True, -1))
    assert err == 0 and len(body) > 1_000_000
    zk.stop()
    zk.close()


def test_clients_that_do_not_read_are_not_read_and_memory_comes_back(fresh_server):
    """30 connections each send 100 getData of a 1 MB znode and never read a reply (3 GB
    of replies): the server builds only what each connection may have in flight
    (backpressure: it stops reading them), serves everyone else meanwhile, and gives the
    memory back once they are gone."""
    server = fresh_server
    zk = KazooClient(hosts=server.hosts(), timeout=10)
    zk.start(timeout=10)
    zk.create("/big", b"b" * 1_000_000)
    zk.get("/big")
    start_rss = vm_kb(server.proc.pid, "VmRSS")
    hostile = []
    request = b"".join(frame(struct.pack(">ii", xid, 4) + ustring("/big") + b"\x00")
                       for xid in range(1, 101))
    for _ in range(30):
        c = RawSession(server.port)
        c.sock.sendall(request)
        hostile.append(c)
    time.sleep(3)
    t0 = time.time()
    # Everyone else is served meanwhile, reads and writes.
    for i in range(20):
        zk.create(f"/after-{i}", b"x")
        assert zk.get("/big")[0][:1] == b"b"
    peak_mb = (vm_kb(server.proc.pid, "VmHWM")) / 1024
    during_mb = vm_kb(server.proc.pid, "VmRSS") / 1024
    print(f"RSS before {start_rss / 1024:.0f} MB, during {during_mb:.0f} MB, peak {peak_mb:.0f} MB; "
          f"20 writes and reads took {time.time() - t0:.2f} s")
    # Each connection holds its credit (2 MiB) and one reply past it, not 100 MB.
    assert during_mb - start_rss / 1024 < 250, (start_rss, during_mb)
    # A hostile connection still works, slowly: it gets its replies once it reads them.
    first = hostile[0]
    for xid in range(1, 101):
        reply = recv_frame(first.sock)
        assert struct.unpack(">iqi", reply[:16])[0] == xid and len(reply) > 1_000_000
    for c in hostile:
        c.close()
    time.sleep(2)
    after_mb = vm_kb(server.proc.pid, "VmRSS") / 1024
    print(f"RSS after the clients left {after_mb:.0f} MB")
    # The memory goes back to the system (trimmed once the connections are gone).
    assert after_mb - start_rss / 1024 < 24, (start_rss, after_mb)
    assert zk.get("/big")[0][:1] == b"b"
    zk.stop()
    zk.close()


def test_a_slow_watcher_keeps_every_event():
    """A client that reads nothing while 20,000 events are queued for it gets them all
    once it reads (ZooKeeper keeps them; only a byte bound far above ends a watcher)."""
    from conftest import Server
    from zkwire import WireClient

    s = Server(tick_time=2000).start()
    try:
        zk = KazooClient(hosts=s.hosts(), timeout=10)
        zk.start(timeout=10)
        zk.create("/w")
        # A long session: it sends no pings while it reads nothing.
        watcher = WireClient(s.port, timeout_ms=40_000)
        # addWatch /w PERSISTENT_RECURSIVE
        _, _, err, _ = watcher.call(106, ustring("/w") + struct.pack(">i", 1))
        assert err == 0
        watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        n = 20_000
        for batch in range(0, n, 1000):
            t = zk.transaction()
            for i in range(batch, batch + 1000):
                t.create(f"/w/n{i:05d}")
            assert all(r is not None and not isinstance(r, Exception) for r in t.commit())
        # Everything is queued by now: read frame by frame (a read timeout inside a frame
        # would lose its start), until all events are in.
        watcher.sock.settimeout(60)
        while len(watcher.events) < n:
            watcher._read_until_reply(None)
        events = watcher.events
        assert len(events) == n, len(events)
        assert events[0] == (1, 3, "/w/n00000") and events[-1] == (1, 3, f"/w/n{n - 1:05d}")
        zk.stop()
        zk.close()
    finally:
        s.cleanup()
