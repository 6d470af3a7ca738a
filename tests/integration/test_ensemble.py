"""Replicated ensembles of real zabkeeper processes on loopback, configured by zoo.cfg
files with server.N lines and myid, driven by kazoo."""

import hashlib
import os
import signal
import socket
import struct
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, NodeExistsError, SessionExpiredError
from kazoo.retry import KazooRetry

from conftest import Ensemble, four_letter, rss_mb
from zkwire import RawSession, connect_request, recv_frame


def client(hosts, timeout=10.0):
    c = KazooClient(hosts=hosts, timeout=timeout,
                    connection_retry=KazooRetry(max_tries=-1, max_delay=0.5))
    c.start(timeout=30)
    return c


class Writer(threading.Thread):
    """Creates /load/w{i}-N sequentially, recording which creates were acknowledged."""

    def __init__(self, hosts, wid):
        super().__init__(daemon=True)
        self.hosts, self.wid = hosts, wid
        self.stop = threading.Event()
        self.acked = []
        self.unknown = []
        self.errors = 0

    def run(self):
        zk = client(self.hosts)
        n = 0
        while not self.stop.is_set():
            path = f"/load/w{self.wid}-{n:06d}"
            try:
                zk.create(path, str(n).encode(), makepath=True)
                self.acked.append(path)
                n += 1
            except NodeExistsError:
                # an earlier attempt whose outcome was unknown did take effect
                self.acked.append(path)
                n += 1
            except Exception:
                self.errors += 1
                self.unknown.append(path)
                time.sleep(0.05)
        zk.stop()
        zk.close()


def all_data(hosts_one):
    """Every znode under / with data and version, read from one server."""
    zk = KazooClient(hosts=hosts_one, timeout=10)
    zk.start(timeout=30)
    zk.sync("/")
    out = {}

    def walk(p):
        for c in zk.get_children(p):
            q = (p.rstrip("/") + "/" + c)
            if q.startswith("/zookeeper"):
                continue
            data, stat = zk.get(q)
            out[q] = (data, stat.version, stat.czxid, stat.mzxid)
            walk(q)

    walk("/")
    zk.stop()
    zk.close()
    return out


def converge(ens, ids, timeout=60):
    """Waits until every listed server returns the same data for every znode."""
    deadline = time.time() + timeout
    while True:
        views = {i: all_data(ens.hosts([i])) for i in ids}
        first = views[ids[0]]
        if all(v == first for v in views.values()):
            return first
        if time.time() > deadline:
            diffs = {i: len(v) for i, v in views.items()}
            raise AssertionError(f"servers did not converge: node counts {diffs}")
        time.sleep(0.5)


def run_failover(participants, observers):
    ens = Ensemble(participants=participants, observers=observers).start()
    try:
        modes = ens.wait_serving()
        assert list(modes.values()).count("leader") == 1
        if observers:
            assert all(modes[i] == "observer" for i in ens.observers)
        leader = ens.leader()
        srvr = four_letter(ens.ports[leader][0], "srvr")
        assert "Mode: leader" in srvr
        mntr = dict(l.split("\t", 1) for l in four_letter(ens.ports[leader][0], "mntr").splitlines())
        assert mntr["zk_server_state"] == "leader"
        assert int(mntr["zk_followers"]) == participants + observers - 1
        assert int(mntr["zk_synced_followers"]) >= participants // 2

        # a session on a follower with an ephemeral, which must survive the leader's death
        follower = next(i for i in ens.ids if i != leader and i not in ens.observers)
        others = [i for i in ens.ids if i != leader]
        owner = client(ens.hosts([follower] + [i for i in others if i != follower]))
        owner.create("/eph", b"mine", ephemeral=True)
        sid = owner.client_id[0]

        writers = [Writer(ens.hosts(), i) for i in range(3)]
        for w in writers:
            w.start()
        time.sleep(1.5)
        before_kill = sum(len(w.acked) for w in writers)
        assert before_kill > 0, "no write was acknowledged before the kill"

        ens.servers[leader].kill9()
        modes = ens.wait_serving(ids=others, timeout=60)
        new_leader = [i for i, m in modes.items() if m == "leader"][0]
        assert new_leader != leader
        time.sleep(2.0)
        after = sum(len(w.acked) for w in writers)
        assert after > before_kill, "writes did not resume after the leader was killed"

        # the old leader restarts and catches up
        ens.servers[leader].start(wait=False)
        ens.wait_serving(timeout=60)
        time.sleep(1.0)
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(30)

        assert owner.client_id[0] == sid
        assert owner.exists("/eph").ephemeralOwner == sid, "the session or its ephemeral was lost"

        data = converge(ens, ens.ids)
        for w in writers:
            for path in w.acked:
                assert path in data, f"acknowledged write {path} is missing"
        assert data["/eph"][0] == b"mine"
        owner.stop()
        owner.close()
        # the ephemeral goes everywhere once its session closed
        deadline = time.time() + 20
        while time.time() < deadline:
            if all("/eph" not in all_data(ens.hosts([i])) for i in ens.ids):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the ephemeral survived its session's close on some server")
    finally:
        ens.cleanup()


def test_three_servers_and_an_observer_survive_leader_kill():
    run_failover(participants=3, observers=1)


def test_five_servers_survive_leader_kill():
    run_failover(participants=5, observers=0)


def test_minority_never_accepts_a_write():
    ens = Ensemble(participants=3).start()
    try:
        leader = ens.leader()
        survivors = [i for i in ens.ids if i != leader]
        # kill two of three: the last one must not accept writes
        for i in [leader, survivors[0]]:
            ens.servers[i].kill9()
        lone = survivors[1]
        zk = KazooClient(hosts=ens.hosts([lone]), timeout=3,
                         connection_retry=KazooRetry(max_tries=2, max_delay=0.2))
        with pytest.raises(Exception):
            zk.start(timeout=5)
            zk.create("/minority-write", b"x")
        try:
            zk.stop()
            zk.close()
        except Exception:
            pass
        assert ens.mode(lone) in (None, "looking")
        # quorum back: the write never happened
        ens.servers[leader].start(wait=False)
        ens.wait_serving(ids=[leader, lone], timeout=60)
        assert "/minority-write" not in all_data(ens.hosts([lone]))
    finally:
        ens.cleanup()


def test_quorum_reads_see_every_acknowledged_write():
    ens = Ensemble(participants=3)
    for s in ens.servers.values():
        s.config_lines.append("zabkeeper.quorumReads=yes")
    ens.start()
    try:
        leader = ens.leader()
        followers = [i for i in ens.ids if i != leader]
        writer = client(ens.hosts([followers[0]]))
        reader = client(ens.hosts([followers[1]]))
        writer.create("/qr", b"0")
        for n in range(1, 30):
            writer.set("/qr", str(n).encode())
            # no sync: the server confirms with a quorum before it answers the read
            assert reader.get("/qr")[0] == str(n).encode()
        # a sync through a follower completes under quorumReads too
        assert reader.sync("/") == "/"
        writer.stop(); writer.close(); reader.stop(); reader.close()
    finally:
        ens.cleanup()


def session_password(session_id):
    """The password zabkeeper derives from a session id (any server can check it)."""
    return hashlib.sha1(b"zabkeeper-session-secret" + struct.pack(">q", session_id)).digest()[:16]


def reconnect_answer(port, session_id, passwd, tries=20):
    """Resumes a session on one server with a raw handshake: the answer's (timeout,
    session id). A server may close the connection without an answer (it could not decide
    yet); the client then tries again, as ZooKeeper clients do."""
    for _ in range(tries):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(connect_request(10000, session_id, passwd))
                resp = recv_frame(s)
                _proto, timeout, sid = struct.unpack(">iiq", resp[:16])
                return timeout, sid
        except (ConnectionError, OSError):
            time.sleep(0.2)
    raise AssertionError("no answer to the reconnect")


def test_reconnect_to_a_follower_that_was_behind():
    """A session created through one follower while another follower is stopped, and
    resumed at once on that follower when it runs again, is taken over, never answered
    "expired"; a session that never existed (valid password: answered after the
    follower's revalidation sync) and a wrong password still are. A learner answers an
    unknown session only after a ZAB sync, so the outcome does not depend on which
    message the follower reads first. (On real processes the follower usually reads the
    leader's backlog before the handshake, so this guards the answers; the simulator's
    scripted lagging-learner run in sim/tests/bites.rs is the one that reliably produces
    the lag and catches a learner answering from its own table.)"""
    ens = Ensemble(participants=3).start()
    try:
        leader = ens.leader()
        a, lagging = [i for i in ens.ids if i != leader]
        proc = ens.servers[lagging].proc
        for attempt in range(3):
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                owner = RawSession(ens.ports[a][0])
                # the handshake waits in the stopped server's socket buffer
                pending = socket.create_connection(("127.0.0.1", ens.ports[lagging][0]), timeout=10)
                pending.sendall(connect_request(10000, owner.session_id, owner.passwd))
                time.sleep(0.2)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            try:
                resp = recv_frame(pending)
                _proto, timeout, sid = struct.unpack(">iiq", resp[:16])
            except (ConnectionError, OSError):
                # closed without an answer (allowed): ask again
                timeout, sid = reconnect_answer(ens.ports[lagging][0], owner.session_id, owner.passwd)
            pending.close()
            assert timeout > 0, f"live session 0x{owner.session_id:x} told it expired (attempt {attempt})"
            assert sid == owner.session_id
            owner.close()
        unknown = 0x7fff_0000_0000_0001
        timeout, _ = reconnect_answer(ens.ports[lagging][0], unknown, session_password(unknown))
        assert timeout == 0, "a session that never existed must be told it expired"
        # a wrong password is refused as well
        timeout, _ = reconnect_answer(ens.ports[lagging][0], unknown, b"\x01" * 16)
        assert timeout == 0
    finally:
        ens.cleanup()


def test_forged_peer_handshakes_do_not_break_a_serving_ensemble():
    """Unauthenticated 16-byte handshakes that claim member sids (a "smaller sid" nudge
    to each server, a "larger sid" dial to each server), sent over and over to every
    quorum port, must not displace the live ZAB connections: every write succeeds."""
    ens = Ensemble(participants=3, tick_time=100).start()
    stop = threading.Event()
    sent = [0]

    def forge():
        while not stop.is_set():
            for target in ens.ids:
                for claimed in ens.ids:
                    if claimed == target:
                        continue
                    try:
                        with socket.create_connection(("127.0.0.1", ens.ports[target][1]), timeout=1) as s:
                            s.sendall(struct.pack(">IIQ", 0x5A4B5052, 1, claimed))
                            sent[0] += 1
                            time.sleep(0.02)
                    except OSError:
                        pass
            time.sleep(0.1)

    try:
        zk = client(ens.hosts())
        zk.ensure_path("/forged")
        attacker = threading.Thread(target=forge, daemon=True)
        attacker.start()
        failed = 0
        deadline = time.time() + 8
        n = 0
        while time.time() < deadline:
            try:
                zk.create(f"/forged/n{n}", b"x")
            except Exception:  # noqa: BLE001 - any failure counts
                failed += 1
            n += 1
            time.sleep(0.02)
        stop.set()
        attacker.join(5)
        assert sent[0] > 50, "the attack did not run"
        assert failed == 0, f"{failed} of {n} writes failed under forged handshakes"
        assert len(zk.get_children("/forged")) == n
        modes = ens.wait_serving(timeout=10)
        assert sorted(modes.values()).count("leader") == 1
        zk.stop()
        zk.close()
    finally:
        stop.set()
        ens.cleanup()


def test_a_snap_larger_than_any_peer_frame_travels_in_parts():
    """A follower that missed more than commitLogCount txns gets a SNAP. With 30 MB of
    data the SNAP is larger than the largest peer frame (2 x jute.maxbuffer + 16 MiB):
    it travels in 1 MiB parts, and the follower serves every byte of it. A frame that
    claims 900 MiB, from a connection that says the stopped member's sid, is refused at
    its length (it was buffered up to 1 GiB): the connection closes before 64 MiB of it
    are sent, and the server's memory does not grow."""
    ens = Ensemble(participants=3, tick_time=100,
                   extra_lines=lambda i: ["commitLogCount=10", "snapCount=100000"]).start()
    try:
        leader = ens.leader()
        lagging = max(i for i in ens.ids if i != leader)
        ens.servers[lagging].stop()
        zk = client(ens.hosts([leader]))
        blob = os.urandom(1000 * 1000)
        for n in range(30):
            zk.create(f"/big{n}", blob[n:] + blob[:n])
        zk.stop()
        zk.close()
        # While it is down, someone claims its sid to a server with a smaller one (whose
        # connection to it is gone), and sends a frame that says 900 MiB.
        target = min(ens.ids)
        pid = ens.servers[target].proc.pid
        before = rss_mb(pid)
        with socket.create_connection(("127.0.0.1", ens.ports[target][1]), timeout=5) as s:
            s.sendall(struct.pack(">IIQ", 0x5A4B5052, 1, lagging))
            s.recv(16)  # the answering handshake: the connection is installed
            refused = False
            try:
                s.sendall(struct.pack(">I", 900 << 20))
                for _ in range(64):
                    s.sendall(b"\0" * (1 << 20))
            except OSError:
                refused = True
        assert refused, "a 900 MiB frame was read past its length"
        assert rss_mb(pid) < before + 32, (before, rss_mb(pid))
        ens.servers[lagging].start(wait=False)
        ens.wait_serving(timeout=60)
        zk = client(ens.hosts([lagging]))
        zk.sync("/")
        for n in range(30):
            assert zk.get(f"/big{n}")[0] == blob[n:] + blob[:n], n
        zk.stop()
        zk.close()
        assert "SNAP" in ens.servers[lagging].log(), "the follower was not sent a SNAP"
    finally:
        ens.cleanup()
