"""Local sessions (localSessionsEnabled, localSessionsUpgradingEnabled), on a real
3-server ensemble of zabkeeper and of Apache ZooKeeper 3.8 started the same way: a new
session is held by the server it connects to (mntr's zk_local_sessions there, no global
session anywhere), writes persistent nodes through the leader, is upgraded to a global
session by its first ephemeral (or refused with EphemeralOnLocalSession where upgrading
is off, as by default), is unknown to every other server, and expires on its own server."""

import struct
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import EphemeralOnLocalSessionError, RolledBackError, SessionExpiredError

from conftest import Ensemble, apache_zookeeper_available, four_letter, wait_for
from zkwire import RawSession


def mntr(e, i):
    out = {}
    for line in four_letter(e.ports[i][0], "mntr").splitlines():
        k, _, v = line.partition("\t")
        out[k] = v
    return out


def sessions(e, i):
    m = mntr(e, i)
    return int(m["zk_global_sessions"]), int(m["zk_local_sessions"])


@pytest.mark.parametrize("kind", ["zabkeeper", "zookeeper"])
def test_local_sessions_are_held_by_one_server_until_an_ephemeral_upgrades_them(kind):
    if kind == "zookeeper" and not apache_zookeeper_available():
        pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
    # Servers 2 and 3 upgrade local sessions; server 1 does not (the default of both).
    lines = lambda i: ["localSessionsEnabled=true"] + (
        ["localSessionsUpgradingEnabled=true"] if i != 1 else [])
    e = Ensemble(kind=kind, tick_time=200, extra_lines=lines)
    clients = []
    try:
        e.start()
        leader = e.leader()
        upgrading = [i for i in (2, 3) if i != leader][0]

        c = KazooClient(hosts=e.hosts([upgrading]), timeout=10.0)
        clients.append(c)
        c.start(timeout=15)
        session = c.client_id[0]
        assert session >> 56 == upgrading
        assert sessions(e, upgrading) == (0, 1)
        assert sessions(e, leader)[0] == 0
        c.create("/persistent", b"p")
        assert sessions(e, leader)[0] == 0

        # The first ephemeral upgrades the session: the same id, now global everywhere.
        path = c.create("/ephemeral", b"e", ephemeral=True)
        assert c.exists(path).ephemeralOwner == session
        assert c.client_id[0] == session
        c.sync("/")
        assert sessions(e, upgrading) == (1, 0)
        assert sessions(e, leader)[0] == 1
        # Its close is global: the ephemeral goes.
        other = KazooClient(hosts=e.hosts([leader]), timeout=10.0)
        clients.append(other)
        other.start(timeout=15)
        c.stop()
        wait_for(lambda: other.exists("/ephemeral") is None, 10, "the ephemeral removed")
        assert other.get("/persistent")[0] == b"p"

        # Where upgrading is off, an ephemeral is refused; persistent writes go on.
        off = KazooClient(hosts=e.hosts([1]), timeout=10.0)
        clients.append(off)
        off.start(timeout=15)
        with pytest.raises(EphemeralOnLocalSessionError):
            off.create("/refused", b"", ephemeral=True)
        with pytest.raises(EphemeralOnLocalSessionError):
            off.create("/refused-", b"", ephemeral=True, sequence=True)
        # In a multi the leader fails the op: EphemeralOnLocalSession for its own local
        # session, SessionExpired for another server's (as ZooKeeper 3.8 answers).
        t = off.transaction()
        t.create("/refused-in-multi", b"")
        t.create("/refused-in-multi/e", b"", ephemeral=True)
        results = t.commit()
        want = EphemeralOnLocalSessionError if leader == 1 else SessionExpiredError
        assert [type(r) for r in results] == [RolledBackError, want], results
        assert off.exists("/refused-in-multi") is None
        off.create("/from-1", b"1")
        assert other.get("/from-1")[0] == b"1"

        # A local session is unknown elsewhere (expired), resumed on its own server, and
        # expires there when it goes silent.
        raw = RawSession(e.ports[upgrading][0], timeout_ms=1000)
        elsewhere = RawSession(e.ports[leader][0], session_id=raw.session_id, passwd=raw.passwd,
                               expect_valid=False)
        assert (elsewhere.timeout, elsewhere.session_id) == (0, 0)
        again = RawSession(e.ports[upgrading][0], session_id=raw.session_id, passwd=raw.passwd)
        assert again.session_id == raw.session_id
        # A local close is answered at once.
        again.sock.sendall(struct.pack(">iii", 8, 99, -11))
        reply = again.sock.recv(64)
        assert struct.unpack(">iiqi", reply[:20])[1::2] == (99, 0)
        silent = RawSession(e.ports[upgrading][0], timeout_ms=1000)
        time.sleep(3)
        late = RawSession(e.ports[upgrading][0], session_id=silent.session_id,
                          passwd=silent.passwd, expect_valid=False)
        assert late.timeout == 0
        for r in (raw, elsewhere, again, silent, late):
            r.close()
    finally:
        for c in clients:
            c.stop()
            c.close()
        e.cleanup()
