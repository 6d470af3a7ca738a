"""kazoo, the unmodified Python ZooKeeper client, driving a real zabkeeper server."""

import socket
import struct
import struct
import threading
import time
import uuid
from collections import namedtuple

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    NoChildrenForEphemeralsError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.serialization import Watch, int_struct, write_string
from kazoo.protocol.states import EventType, KazooState
from kazoo.security import make_digest_acl, make_acl

from conftest import four_letter, wait_for


def uniq(prefix="/t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_client(server, **kw):
    c = KazooClient(hosts=server.hosts(), timeout=kw.pop("timeout", 10.0), **kw)
    c.start(timeout=10)
    return c


# ---------------------------------------------------------------- znodes


def test_create_get_set_delete_with_stats(kazoo_client):
    zk = kazoo_client
    p = uniq()
    assert zk.create(p, b"hello") == p
    data, stat = zk.get(p)
    assert data == b"hello"
    assert stat.version == 0 and stat.cversion == 0 and stat.aversion == 0
    assert stat.czxid == stat.mzxid == stat.pzxid and stat.czxid > 0
    assert stat.ctime == stat.mtime and stat.ctime > 1_600_000_000_000
    assert stat.ephemeralOwner == 0 and stat.dataLength == 5 and stat.numChildren == 0

    stat2 = zk.set(p, b"world!", version=0)
    assert stat2.version == 1 and stat2.dataLength == 6
    assert stat2.mzxid > stat.mzxid and stat2.czxid == stat.czxid and stat2.pzxid == stat.pzxid
    with pytest.raises(BadVersionError):
        zk.set(p, b"x", version=0)
    with pytest.raises(NodeExistsError):
        zk.create(p)

    child = zk.create(p + "/c", b"")
    _, parent = zk.get(p)
    assert parent.numChildren == 1 and parent.cversion == 1
    assert parent.pzxid == zk.exists(child).czxid
    with pytest.raises(NotEmptyError):
        zk.delete(p)
    zk.delete(child)
    _, parent = zk.get(p)
    # as the running ZooKeeper 3.8 shows it: pzxid moves, and clients see cversion count
    # the delete too (DataNode.copyStat: 2 x creates - numChildren)
    assert parent.numChildren == 0 and parent.cversion == 2 and parent.pzxid > stat.pzxid
    with pytest.raises(BadVersionError):
        zk.delete(p, version=7)
    zk.delete(p, version=1)
    assert zk.exists(p) is None
    with pytest.raises(NoNodeError):
        zk.get(p)
    with pytest.raises(NoNodeError):
        zk.create(p + "/a/b")


def test_root_and_zookeeper_nodes_exist(kazoo_client):
    assert "zookeeper" in kazoo_client.get_children("/")
    assert kazoo_client.exists("/zookeeper/quota") is not None


def test_invalid_paths_are_rejected(server, kazoo_client):
    from kazoo.exceptions import BadArgumentsError
    from zkwire import WireClient

    # kazoo normalises "/a/" and "/a//b" itself; the rest reach the server
    with pytest.raises(BadArgumentsError):
        kazoo_client.create("/a\u0000b")
    # At the wire level, ZooKeeper's order of checks decides the code: create looks up
    # the parent (everything before the last "/") first, then validates the full path.
    raw = WireClient(server.port)
    base = kazoo_client.create(uniq())
    expected = {
        base + "/": -8,            # parent exists, path ends with "/"  -> BadArguments
        base + "//b": -101,        # parent "base/" does not exist      -> NoNode
        "/a\u0001b": -8,           # control character                  -> BadArguments
        "/\ud7ff\uf8ff": -8,       # private-use character              -> BadArguments
        "/zookeeper\u0000x": -8,   # NUL                                -> BadArguments
        "a": -8,                   # not absolute                       -> BadArguments
        "": -8,
    }
    for bad, code in expected.items():
        _, _, err, _ = raw.call(1, _create_body(bad))
        assert err == code, (bad, err, code)
    _, _, err, _ = raw.call(1, _create_body(base + "/fine"))
    assert err == 0
    raw.close()


def _create_body(path):
    from zkwire import buffer, ustring

    acl = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")
    b = path.encode("utf-8", "surrogatepass")
    return struct.pack(">i", len(b)) + b + buffer(b"") + acl + struct.pack(">i", 0)


def test_sequential_names_follow_parent_cversion(kazoo_client):
    zk = kazoo_client
    base = zk.create(uniq("/tasks"))
    zk.create(base + "/plain")  # cversion becomes 1
    a = zk.create(base + "/task", sequence=True)
    b = zk.create(base + "/task", sequence=True)
    assert a == base + "/task0000000001"
    assert b == base + "/task0000000002"
    e = zk.create(base + "/eph-", ephemeral=True, sequence=True)
    assert e == base + "/eph-0000000003"
    assert sorted(zk.get_children(base)) == ["eph-0000000003", "plain", "task0000000001", "task0000000002"]


def test_children_with_stat_and_makepath(kazoo_client):
    zk = kazoo_client
    base = uniq()
    zk.create(base + "/x/y/z", b"1", makepath=True)
    children, stat = zk.get_children(base + "/x", include_data=True)
    assert children == ["y"] and stat.numChildren == 1


def test_large_data_limit(kazoo_client):
    zk = kazoo_client
    p = uniq()
    zk.create(p, b"x" * (1024 * 1000))
    assert len(zk.get(p)[0]) == 1024 * 1000
    with pytest.raises(Exception):
        zk.set(p, b"x" * (1024 * 1024 + 10))
    # the server and the session are still fine
    assert zk.exists(p) is not None


# ---------------------------------------------------------------- multi


def test_multi_commits_all(kazoo_client):
    zk = kazoo_client
    p = uniq()
    zk.create(p, b"v0")
    t = zk.transaction()
    t.create(p + "/a", b"A")
    t.set_data(p, b"v1", version=0)
    t.check(p, 1)
    t.create(p + "/b", b"B")
    t.delete(p + "/b")
    results = t.commit()
    assert results[0] == p + "/a"
    assert results[1].version == 1
    assert results[2] is True and results[4] is True
    assert zk.get(p)[0] == b"v1"
    assert zk.get_children(p) == ["a"]


def test_multi_is_all_or_nothing_with_zookeeper_error_results(kazoo_client):
    zk = kazoo_client
    p = uniq()
    zk.create(p, b"v0")
    t = zk.transaction()
    t.create(p + "/a", b"A")
    t.set_data(p, b"v1", version=5)  # fails: BadVersion
    t.create(p + "/b", b"B")
    results = t.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], BadVersionError)
    assert isinstance(results[2], RuntimeInconsistency)
    assert zk.exists(p + "/a") is None and zk.exists(p + "/b") is None
    assert zk.get(p)[0] == b"v0"


# ---------------------------------------------------------------- ephemerals and sessions


def test_ephemeral_gone_after_session_close(server, kazoo_client):
    owner = new_client(server)
    p = uniq()
    owner.create(p, b"mine", ephemeral=True)
    stat = kazoo_client.exists(p)
    assert stat.ephemeralOwner == owner.client_id[0]
    with pytest.raises(NoChildrenForEphemeralsError):
        owner.create(p + "/child")
    owner.stop()
    owner.close()
    assert kazoo_client.exists(p) is None


def test_ephemeral_gone_after_session_expiry(server, kazoo_client):
    # A raw session that stops talking: the server must expire it.
    from zkwire import RawSession

    p = uniq()
    raw = RawSession(server.port, timeout_ms=800)
    raw.create(p, b"", flags=1)
    assert kazoo_client.exists(p).ephemeralOwner == raw.session_id
    seen = threading.Event()
    kazoo_client.exists(p, watch=lambda ev: seen.set())
    # no pings from here on; minSessionTimeout is 2 ticks (400 ms), so 800 ms applies
    assert seen.wait(10), "ephemeral was not deleted after the session expired"
    assert kazoo_client.exists(p) is None
    raw.close()


def test_session_moves_and_reconnect_keeps_session(server):
    zk = new_client(server)
    sid, passwd = zk.client_id
    p = uniq()
    zk.create(p, b"", ephemeral=True)
    states = []
    zk.add_listener(lambda s: states.append(s))
    zk._connection._socket.shutdown(socket.SHUT_RDWR)  # force a reconnect
    wait_for(lambda: KazooState.SUSPENDED in states and zk.state == KazooState.CONNECTED, what="reconnect")
    assert zk.client_id[0] == sid
    assert zk.exists(p).ephemeralOwner == sid
    zk.stop()
    zk.close()


def test_reconnect_with_wrong_password_is_expired(server):
    from zkwire import RawSession

    zk = new_client(server)
    sid, _ = zk.client_id
    raw = RawSession(server.port, session_id=sid, passwd=b"\x00" * 16, expect_valid=False)
    assert raw.timeout == 0 and raw.session_id == 0
    zk.stop()
    zk.close()


def test_session_timeout_is_negotiated(server):
    from zkwire import RawSession

    low = RawSession(server.port, timeout_ms=1)
    assert low.timeout == 2 * 200  # minSessionTimeout = 2 ticks
    high = RawSession(server.port, timeout_ms=10_000_000)
    assert high.timeout == 20 * 200  # maxSessionTimeout = 20 ticks
    low.close()
    high.close()


# ---------------------------------------------------------------- ACLs


def test_digest_acl_and_addauth(server, kazoo_client):
    p = uniq()
    acl = make_digest_acl("bob", "secret", all=True)
    kazoo_client.create(p, b"private", acl=[acl])
    with pytest.raises(NoAuthError):
        kazoo_client.get(p)
    bob = new_client(server, auth_data=[("digest", "bob:secret")])
    assert bob.get(p)[0] == b"private"
    acls, stat = bob.get_acls(p)
    assert acls[0].id.scheme == "digest" and acls[0].id.id == acl.id.id
    # setACL with aversion
    open_acl = make_acl("world", "anyone", all=True)
    assert bob.set_acls(p, [open_acl], version=0).aversion == 1
    with pytest.raises(BadVersionError):
        bob.set_acls(p, [open_acl], version=0)
    assert kazoo_client.get(p)[0] == b"private"
    eve = new_client(server, auth_data=[("digest", "bob:wrong")])
    bob.set_acls(p, [acl], version=1)
    with pytest.raises(NoAuthError):
        eve.get(p)
    bob.stop(); bob.close(); eve.stop(); eve.close()


def test_read_only_acl_forbids_writes(kazoo_client):
    p = uniq()
    kazoo_client.create(p, b"ro", acl=[make_acl("world", "anyone", read=True)])
    assert kazoo_client.get(p)[0] == b"ro"
    with pytest.raises(NoAuthError):
        kazoo_client.set(p, b"no")
    with pytest.raises(NoAuthError):
        kazoo_client.create(p + "/child")


def test_ip_acl(kazoo_client):
    p = uniq()
    kazoo_client.create(p, b"ip", acl=[make_acl("ip", "127.0.0.1", all=True)])
    assert kazoo_client.get(p)[0] == b"ip"
    q = uniq()
    kazoo_client.create(q, b"ip", acl=[make_acl("ip", "10.1.2.0/24", all=True)])
    with pytest.raises(NoAuthError):
        kazoo_client.get(q)


# ---------------------------------------------------------------- watches


def test_data_watch_fires_once_before_the_change_is_visible(server, kazoo_client):
    p = uniq()
    kazoo_client.create(p, b"0")
    events = []
    other = new_client(server)

    def watcher(ev):
        # the watch event arrives before any later reply can show the change
        events.append((ev, "pending"))

    kazoo_client.get(p, watch=watcher)
    other.set(p, b"1")
    other.set(p, b"2")
    wait_for(lambda: events, what="data watch")
    time.sleep(0.3)
    assert len(events) == 1
    assert events[0][0].type == EventType.CHANGED and events[0][0].path == p
    other.stop(); other.close()


def test_exists_watch_created_and_deleted(server, kazoo_client):
    p = uniq()
    got = []
    assert kazoo_client.exists(p, watch=got.append) is None
    kazoo_client.create(p)
    wait_for(lambda: got)
    assert got[0].type == EventType.CREATED
    kazoo_client.exists(p, watch=got.append)
    kazoo_client.delete(p)
    wait_for(lambda: len(got) == 2)
    assert got[1].type == EventType.DELETED


def test_child_watch(kazoo_client):
    p = kazoo_client.create(uniq())
    got = []
    assert kazoo_client.get_children(p, watch=got.append) == []
    kazoo_client.create(p + "/kid")
    wait_for(lambda: got)
    assert got[0].type == EventType.CHILD and got[0].path == p


class AddWatch(namedtuple("AddWatch", "path mode")):
    """addWatch (106): kazoo 2.11 has no helper for it, so the test sends the record
    through kazoo's own connection."""

    type = 106

    def serialize(self):
        b = bytearray()
        b.extend(write_string(self.path))
        b.extend(int_struct.pack(self.mode))
        return b

    @classmethod
    def deserialize(cls, bytes, offset):
        return True


def add_watch(client, path, mode):
    result = client.handler.async_result()
    client._call(AddWatch(path, mode), result)
    return result.get(timeout=10)


def record_raw_events(client):
    """Every watch event kazoo's connection receives, including ones for
    persistent watches that kazoo itself does not dispatch."""
    seen = []
    conn = client._connection
    original = conn._read_watch_event

    def wrapper(buffer, offset):
        watch, _ = Watch.deserialize(buffer, offset)
        seen.append((watch.type, watch.path))
        return original(buffer, offset)

    conn._read_watch_event = wrapper
    return seen


def test_persistent_recursive_watch(server, kazoo_client):
    base = kazoo_client.create(uniq())
    seen = record_raw_events(kazoo_client)
    add_watch(kazoo_client, base, 1)
    other = new_client(server)
    other.create(base + "/a", b"")
    other.create(base + "/a/b", b"")
    other.set(base + "/a/b", b"x")
    other.set(base + "/a/b", b"y")
    other.delete(base + "/a/b")
    expected = [
        (1, base + "/a"),        # NodeCreated
        (1, base + "/a/b"),
        (3, base + "/a/b"),      # NodeDataChanged, twice: the watch persists
        (3, base + "/a/b"),
        (2, base + "/a/b"),      # NodeDeleted
    ]
    wait_for(lambda: len(seen) >= len(expected), what="persistent recursive events")
    time.sleep(0.2)
    # recursive watches never report NodeChildrenChanged
    assert seen == expected
    other.stop(); other.close()


def test_persistent_watch_on_one_node(server, kazoo_client):
    p = kazoo_client.create(uniq())
    seen = record_raw_events(kazoo_client)
    add_watch(kazoo_client, p, 0)
    kazoo_client.set(p, b"1")
    kazoo_client.create(p + "/c")
    kazoo_client.set(p, b"2")
    wait_for(lambda: len(seen) >= 3)
    assert seen == [(3, p), (4, p), (3, p)]


def test_kazoo_resets_its_watches_on_disconnect(server):
    # kazoo does not send setWatches: on a lost connection it drops its watchers and
    # tells them with a NONE event (its recipes then re-register). The server must not
    # deliver a stale one-shot event afterwards.
    zk = new_client(server)
    p = zk.create(uniq(), b"0")
    got = []
    zk.get(p, watch=got.append)
    states = []
    zk.add_listener(states.append)
    zk._connection._socket.shutdown(socket.SHUT_RDWR)
    wait_for(lambda: KazooState.SUSPENDED in states and zk.state == KazooState.CONNECTED, what="reconnect")
    assert [e.type for e in got] == [EventType.NONE]
    zk.set(p, b"1")
    time.sleep(0.3)
    assert [e.type for e in got] == [EventType.NONE]
    zk.stop(); zk.close()


def test_set_watches_after_a_forced_reconnect(server, kazoo_client):
    """A client resumes its session on a new connection and re-registers its watches
    with setWatches (101) and relativeZxid; kazoo makes the changes."""
    from zkwire import WireClient

    first = WireClient(server.port)
    d, e, c = kazoo_client.create(uniq(), b"0"), uniq(), kazoo_client.create(uniq())
    first.get_data(d, watch=True)
    first.exists(e, watch=True)
    first.get_children(c, watch=True)
    rel = first.last_zxid
    first.sock.shutdown(socket.SHUT_RDWR)  # forced disconnect
    first.close()

    again = WireClient(server.port, session_id=first.session_id, passwd=first.passwd, last_zxid=rel)
    assert again.session_id == first.session_id
    _, _, err, _ = again.set_watches(rel, data=[d], exist=[e], child=[c])
    assert err == 0
    kazoo_client.set(d, b"1")
    kazoo_client.create(e)
    kazoo_client.create(c + "/kid")
    events = again.wait_events(3)
    assert sorted((t, p) for t, _, p in events) == sorted([(3, d), (1, e), (4, c)])
    # one-shot: no second event
    kazoo_client.set(d, b"2")
    time.sleep(0.3)
    assert len(again.wait_events(4, timeout=0.5)) == 3
    again.close()


def test_changes_while_disconnected_fire_on_set_watches(server, kazoo_client):
    """Changes made while the client was away (after relativeZxid) fire at once when
    the watches are re-registered, with setWatches2 (105) including persistent ones."""
    from zkwire import WireClient

    first = WireClient(server.port)
    d, e, c = kazoo_client.create(uniq(), b"0"), uniq(), kazoo_client.create(uniq())
    first.get_data(d, watch=True)
    rel = first.last_zxid
    first.close()
    kazoo_client.set(d, b"changed while away")
    kazoo_client.create(e)
    kazoo_client.create(c + "/kid")
    again = WireClient(server.port, session_id=first.session_id, passwd=first.passwd, last_zxid=rel)
    _, _, err, _ = again.set_watches2(rel, data=[d], exist=[e], child=[c], recursive=[c])
    assert err == 0
    events = again.wait_events(3)
    assert sorted((t, p) for t, _, p in events) == sorted([(3, d), (1, e), (4, c)])
    # the persistent recursive watch stays registered
    kazoo_client.set(c + "/kid", b"x")
    events = again.wait_events(4)
    assert (3, c + "/kid") in [(t, p) for t, _, p in events]
    again.close()


# ---------------------------------------------------------------- misc ops


def test_sync_and_server_version_via_4lw(server, kazoo_client):
    p = kazoo_client.create(uniq())
    assert kazoo_client.sync(p) == p
    assert four_letter(server.port, "ruok") == "imok"
    srvr = four_letter(server.port, "srvr")
    assert "Mode: standalone" in srvr and "Zxid: 0x" in srvr and "Node count:" in srvr
    mntr = dict(line.split("\t", 1) for line in four_letter(server.port, "mntr").splitlines())
    assert mntr["zk_server_state"] == "standalone"
    assert int(mntr["zk_znode_count"]) >= 4
    assert int(mntr["zk_num_alive_connections"]) >= 1
    conf = four_letter(server.port, "conf")
    assert f"clientPort={server.port}" in conf
    assert four_letter(server.port, "isro") == "rw"


def test_wchs_wchc_wchp_and_dump(server, kazoo_client):
    p = kazoo_client.create(uniq())
    kazoo_client.get(p, watch=lambda e: None)
    wchp = four_letter(server.port, "wchp")
    assert p in wchp
    assert "Total watches:" in four_letter(server.port, "wchs")
    sid = "0x%x" % kazoo_client.client_id[0]
    assert sid in four_letter(server.port, "wchc")
    e = kazoo_client.create(uniq(), ephemeral=True)
    dump = four_letter(server.port, "dump")
    assert e in dump and sid in dump
